//! Integration tests: real servers on 127.0.0.1:0 (and the real binary), one test binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod agents;
pub mod binary;
mod connections;
mod contract;
mod credit_refusals;
pub mod credits;
mod durability;
pub mod executions;
mod gateway;
mod hostile;
mod keys;
mod limits;
mod messages;
mod pg_outage;
mod redis_faults;
mod responses;
mod routing;
mod workflows;

use reqwest::Response;
use serde_json::Value;

/// The exact contract of an error response: status, code, type, param, the request id in the
/// body equal to both id headers, and `x-should-retry`. Returns the `error` object.
pub async fn assert_error(
    res: Response,
    status: u16,
    code: &str,
    kind: &str,
    param: Option<&str>,
    retry: bool,
) -> Value {
    assert_eq!(res.status().as_u16(), status, "status");
    let h = res.headers().clone();
    let rid = h["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(h["x-arena-trace-id"].to_str().unwrap(), rid);
    assert!(sluice_types::id::is_id("req", &rid), "{rid}");
    assert_eq!(
        h["x-should-retry"].to_str().unwrap(),
        if retry { "true" } else { "false" }
    );
    assert_eq!(h["content-type"].to_str().unwrap(), "application/json");
    let body: Value = res.json().await.unwrap();
    let e = &body["error"];
    assert_eq!(e["code"], code, "{body}");
    assert_eq!(e["type"], kind, "{body}");
    assert_eq!(e["param"], param.map_or(Value::Null, Value::from), "{body}");
    assert_eq!(e["request_id"], rid.as_str());
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    e.clone()
}

/// Polls `GET url` (an execution, read with `key`) until it has ended; panics after `within`.
/// Connection errors count as "not yet" (the server may be restarting).
pub async fn until_ended(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    within: std::time::Duration,
) -> Value {
    let until = std::time::Instant::now() + within;
    loop {
        let v = match client.get(url).bearer_auth(key).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        if matches!(
            v["status"].as_str(),
            Some("succeeded" | "failed" | "timed_out" | "cancelled")
        ) {
            return v;
        }
        assert!(std::time::Instant::now() < until, "still not ended: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// POSTs `body` as `key` and returns the JSON answer, whatever its status.
pub async fn post_json(client: &reqwest::Client, url: &str, key: &str, body: &Value) -> Value {
    let res = client.post(url).bearer_auth(key).json(body).send().await;
    res.unwrap().json().await.unwrap()
}

/// A free loopback port (for a dependency the test starts itself).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
