//! Durable executions: node types, branching, synchronous results, timeouts, cancel, events.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use reqwest::Method;
use serde_json::{json, Value};
use sluice_testkit::TestApp;

use crate::assert_error;

/// A local HTTP receiver that counts calls and remembers Idempotency-Keys.
#[derive(Default)]
pub struct Receiver {
    pub calls: AtomicU64,
    pub keys: Mutex<Vec<String>>,
    pub in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
}

pub async fn receiver() -> (String, Arc<Receiver>) {
    let state = Arc::new(Receiver::default());
    async fn item(
        State(s): State<Arc<Receiver>>,
        headers: HeaderMap,
        Path(id): Path<String>,
    ) -> axum::response::Response {
        let n = s.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(k) = headers.get("idempotency-key") {
            s.keys.lock().unwrap().push(k.to_str().unwrap().to_owned());
        }
        match id.as_str() {
            "fail" => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
            "flaky" if n == 1 => {
                (axum::http::StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
            }
            "big" => "x".repeat(3 * 1024 * 1024).into_response(),
            "hang" => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                "never".into_response()
            }
            "slow" => {
                let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                s.max_in_flight.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1500)).await;
                s.in_flight.fetch_sub(1, Ordering::SeqCst);
                axum::Json(json!({"id": id, "n": n})).into_response()
            }
            _ => axum::Json(json!({"id": id, "n": n})).into_response(),
        }
    }
    use axum::response::IntoResponse;
    let app = axum::Router::new()
        .route("/item/{id}", get(item))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), state)
}

async fn key(app: &TestApp) -> String {
    let acct = app.create_account_with(json!({"name": format!("a-{}", sluice_types::id::random_base62(6)), "plan": "pro", "tier": "unlimited"}), 1_000_000).await;
    app.create_key(
        &acct,
        &[
            "workflows:read",
            "workflows:write",
            "executions:read",
            "executions:write",
            "agents:write",
            "agents:read",
        ],
    )
    .await
    .1
}

async fn wf(app: &TestApp, k: &str, mut def: Value) -> String {
    def["name"] = json!(format!("wf-{}", sluice_types::id::random_base62(6)));
    let res = app
        .req(Method::POST, "/v1/workflows", k)
        .json(&def)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let v: Value = res.json().await.unwrap();
    assert_eq!(status, 201, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_transform_chain_runs_synchronously_and_its_events_resume() {
    let app = TestApp::start().await;
    let k = key(&app).await;
    let id = wf(&app, &k, json!({"nodes": [
        {"id": "a", "type": "transform", "params": {"template": {"n": "{{ input.n + 1 }}"}}},
        {"id": "b", "type": "transform", "params": {"template": {"n": "{{ nodes.a.output.n * 2 }}"}}},
        {"id": "c", "type": "transform", "params": {"template": "result={{ nodes.b.output.n }}"}}
    ], "edges": [{"from": "a", "to": "b"}, {"from": "b", "to": "c"}]})).await;
    let res = app
        .req(
            Method::POST,
            &format!("/v1/workflows/{id}/executions?wait=true"),
            &k,
        )
        .json(&json!({"input": {"n": 4}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let loc = res.headers()["location"].to_str().unwrap().to_owned();
    let x: Value = res.json().await.unwrap();
    assert_eq!(x["status"], "succeeded");
    assert_eq!(x["output"], json!({"c": "result=10"}));
    assert_eq!(loc, format!("/v1/executions/{}", x["id"].as_str().unwrap()));
    let statuses: Vec<&str> = x["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["succeeded", "succeeded", "succeeded"]);

    let events = app
        .req(Method::GET, &format!("{loc}/events"), &k)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let kinds: Vec<&str> = events
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(kinds.first(), Some(&"execution_started"));
    assert_eq!(kinds.last(), Some(&"execution_finished"));
    assert_eq!(kinds.len(), 8);
    let resumed = app
        .req(Method::GET, &format!("{loc}/events"), &k)
        .header("last-event-id", "6")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ids: Vec<&str> = resumed
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .collect();
    assert_eq!(ids, ["7", "8"], "only what was missed");
}

#[tokio::test]
async fn a_condition_takes_one_branch_and_the_join_waits_only_for_it() {
    let app = TestApp::start().await;
    let k = key(&app).await;
    let (url, recv) = receiver().await;
    let id = wf(&app, &k, json!({"nodes": [
        {"id": "fetch", "type": "http_request", "params": {"url": format!("{url}/item/{{{{ input.id }}}}")}},
        {"id": "check", "type": "condition", "params": {"expression": "nodes.fetch.output.status == 200"}},
        {"id": "yes", "type": "transform", "params": {"template": "found {{ nodes.fetch.output.body.id }}"}},
        {"id": "no", "type": "transform", "params": {"template": "missing"}},
        {"id": "join", "type": "transform", "params": {"template": "done"}}
    ], "edges": [
        {"from": "fetch", "to": "check"},
        {"from": "check", "to": "yes", "when": true}, {"from": "check", "to": "no", "when": false},
        {"from": "yes", "to": "join"}, {"from": "no", "to": "join"}
    ]})).await;
    let res = app
        .req(
            Method::POST,
            &format!("/v1/workflows/{id}/executions?wait=true"),
            &k,
        )
        .json(&json!({"input": {"id": "42"}}))
        .send()
        .await
        .unwrap();
    let x: Value = res.json().await.unwrap();
    assert_eq!(x["status"], "succeeded", "{x}");
    let st = |n: &str| {
        x["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["id"] == n)
            .unwrap()["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        (st("yes"), st("no"), st("join")),
        ("succeeded".into(), "skipped".into(), "succeeded".into())
    );
    assert_eq!(x["nodes"][2]["output"], "found 42");
    assert_eq!(recv.calls.load(Ordering::SeqCst), 1);
    let keys = recv.keys.lock().unwrap().clone();
    assert_eq!(keys, [format!("{}:fetch:1", x["id"].as_str().unwrap())]);
}

#[tokio::test]
async fn a_failed_node_is_502_execution_failed_and_retries_use_new_keys() {
    let app = TestApp::start().await;
    let k = key(&app).await;
    let (url, recv) = receiver().await;
    let id = wf(&app, &k, json!({"nodes": [{"id": "http_request_1", "type": "http_request", "params": {"url": format!("{url}/item/fail")}}]})).await;
    let res = app
        .req(
            Method::POST,
            &format!("/v1/workflows/{id}/executions?wait=true"),
            &k,
        )
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let e = assert_error(res, 502, "execution_failed", "execution_error", None, false).await;
    assert_eq!(e["details"]["node_id"], "http_request_1");
    assert_eq!(e["details"]["node_error"], "HTTP 500");
    assert!(sluice_types::id::is_id(
        "exec",
        e["details"]["execution_id"].as_str().unwrap()
    ));

    let flaky = wf(&app, &k, json!({"nodes": [{"id": "f", "type": "http_request", "params": {"url": format!("{url}/item/flaky")},
        "retry": {"max_attempts": 3, "backoff_seconds": 0.05}}]})).await;
    recv.calls.store(0, Ordering::SeqCst);
    let x: Value = app
        .req(
            Method::POST,
            &format!("/v1/workflows/{flaky}/executions?wait=true"),
            &k,
        )
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(x["status"], "succeeded", "{x}");
    assert_eq!(x["nodes"][0]["attempts"], 2);
    let keys = recv.keys.lock().unwrap().clone();
    let exec = x["id"].as_str().unwrap();
    assert!(
        keys.ends_with(&[format!("{exec}:f:1"), format!("{exec}:f:2")]),
        "{keys:?}"
    );
}

#[tokio::test]
async fn a_hanging_node_times_out_within_the_limit_plus_two_seconds() {
    let app = TestApp::start().await;
    let k = key(&app).await;
    let (url, _) = receiver().await;
    let id = wf(&app, &k, json!({"timeout_seconds": 1, "nodes": [{"id": "h", "type": "http_request", "params": {"url": format!("{url}/item/hang")}}]})).await;
    let started = Instant::now();
    let res = app
        .req(
            Method::POST,
            &format!("/v1/workflows/{id}/executions?wait=true"),
            &k,
        )
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let e = assert_error(
        res,
        504,
        "execution_timeout",
        "execution_error",
        None,
        false,
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(e["details"]["timeout_seconds"], 1);
    assert_eq!(e["details"]["elapsed_seconds"], 1);
    let exec = e["details"]["execution_id"].as_str().unwrap();
    let x: Value = app
        .req(Method::GET, &format!("/v1/executions/{exec}"), &k)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(x["status"], "timed_out");
    assert_eq!(x["error"]["code"], "execution_timeout");
    // The node's own wait is bounded by the execution's deadline: it ends with the execution
    // (whichever timer fires first words the error).
    assert_eq!(x["nodes"][0]["status"], "failed");
    let node_error = x["nodes"][0]["error"].as_str().unwrap().to_lowercase();
    assert!(
        node_error.contains("timeout") || node_error.contains("timed out"),
        "{x}"
    );
}

#[tokio::test]
async fn cancel_stops_a_running_execution_and_listing_filters_by_status() {
    let app = TestApp::start().await;
    let k = key(&app).await;
    let id = wf(&app, &k, json!({"nodes": [{"id": "wait", "type": "delay", "params": {"seconds": 30}}, {"id": "after", "type": "transform", "params": {"template": 1}}],
        "edges": [{"from": "wait", "to": "after"}]})).await;
    let res = app
        .req(Method::POST, &format!("/v1/workflows/{id}/executions"), &k)
        .header("idempotency-key", "once")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let x: Value = res.json().await.unwrap();
    let exec = x["id"].as_str().unwrap().to_owned();
    assert_eq!(x["status"], "queued");
    let again: Value = app
        .req(Method::POST, &format!("/v1/workflows/{id}/executions"), &k)
        .header("idempotency-key", "once")
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        again["id"],
        exec.as_str(),
        "one execution per Idempotency-Key"
    );
    // The delay parks the execution without a worker; cancel ends it.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v: Value = app
            .req(Method::GET, &format!("/v1/executions/{exec}"), &k)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["nodes"][0]["status"] == "waiting" {
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let v: Value = app
        .req(Method::POST, &format!("/v1/executions/{exec}/cancel"), &k)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "cancelled");
    assert_eq!(
        v["nodes"][1]["status"], "pending",
        "nothing after the cancel ran"
    );
    let list: Value = app
        .req(
            Method::GET,
            &format!("/v1/executions?workflow_id={id}&status=cancelled"),
            &k,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let res = app
        .req(Method::GET, "/v1/executions?status=sleeping", &k)
        .send()
        .await
        .unwrap();
    assert_error(
        res,
        422,
        "validation_error",
        "invalid_request_error",
        Some("status"),
        false,
    )
    .await;
}

#[tokio::test]
async fn llm_agent_and_delay_nodes_run_through_the_gateway_and_are_charged() {
    let app = TestApp::start().await;
    let acct = app
        .create_account_with(
            json!({"name": "llm", "plan": "pro", "tier": "unlimited"}),
            1_000_000,
        )
        .await;
    let (_, k) = app
        .create_key(
            &acct,
            &[
                "workflows:read",
                "workflows:write",
                "executions:read",
                "executions:write",
                "agents:write",
                "agents:read",
            ],
        )
        .await;
    let agent: Value = app
        .req(Method::POST, "/v1/agents", &k)
        .json(&json!({"name": "helper", "model": "mock/small", "instructions": "Be brief.", "max_tokens": 3}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = wf(&app, &k, json!({"nodes": [
        {"id": "pause", "type": "delay", "params": {"seconds": 0.2}},
        {"id": "ask", "type": "llm", "params": {"model": "mock/small", "prompt": "Describe {{ input.topic }}", "max_tokens": 4}},
        {"id": "agent", "type": "agent", "params": {"agent_id": agent["id"], "input": "Summarise: {{ nodes.ask.output.text }}"}}
    ], "edges": [{"from": "pause", "to": "ask"}, {"from": "ask", "to": "agent"}]})).await;
    let started = Instant::now();
    let x: Value = app
        .req(
            Method::POST,
            &format!("/v1/workflows/{id}/executions?wait=true"),
            &k,
        )
        .json(&json!({"input": {"topic": "rivers"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(x["status"], "succeeded", "{x}");
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "the delay waited"
    );
    assert_eq!(x["nodes"][1]["output"]["text"], "lorem ipsum dolor sit");
    assert_eq!(x["output"]["agent"]["text"], "lorem ipsum dolor");
    let bodies = app.mock.bodies();
    assert_eq!(
        bodies[bodies.len() - 2]["messages"],
        json!([{"role": "user", "content": "Describe rivers"}])
    );
    assert_eq!(
        bodies[bodies.len() - 1]["messages"][1]["content"],
        "Summarise: lorem ipsum dolor sit"
    );
    // Both model calls were metered and charged to the account, like any gateway call.
    app.engine.credits.flush(true).await.unwrap();
    app.engine.usage.flush().await;
    let f = sluice_store::UsageFilter {
        account_id: Some(acct.clone()),
        ..Default::default()
    };
    let records = app.engine.store.list_usage(&f, 10).await.unwrap();
    assert_eq!(records.len(), 2);
    let charged: i64 = records.iter().map(|r| r.cost).sum();
    assert_eq!(
        app.engine
            .store
            .wallet(&acct)
            .await
            .unwrap()
            .unwrap()
            .balance,
        1_000_000 - charged
    );
}

#[tokio::test]
async fn an_accounts_plan_bounds_how_many_of_its_executions_run_at_once() {
    let app = TestApp::start().await;
    let acct = app
        .create_account_with(
            json!({"name": "free", "plan": "free", "tier": "unlimited"}),
            0,
        )
        .await;
    let (_, k) = app
        .create_key(
            &acct,
            &["workflows:write", "executions:read", "executions:write"],
        )
        .await;
    let (url, recv) = receiver().await;
    let id = wf(&app, &k, json!({"nodes": [{"id": "s", "type": "http_request", "params": {"url": format!("{url}/item/slow")}}]})).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let x: Value = app
            .req(Method::POST, &format!("/v1/workflows/{id}/executions"), &k)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(x["id"].as_str().unwrap().to_owned());
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    for exec in &ids {
        loop {
            let v: Value = app
                .req(Method::GET, &format!("/v1/executions/{exec}"), &k)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if v["status"] == "succeeded" {
                break;
            }
            assert!(Instant::now() < deadline, "{v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(
        recv.max_in_flight.load(Ordering::SeqCst),
        2,
        "the free plan runs two at a time"
    );
}

#[tokio::test]
async fn an_execution_runs_the_version_it_started_on() {
    let app = TestApp::start().await;
    let k = key(&app).await;
    let id = wf(
        &app,
        &k,
        json!({"nodes": [
        {"id": "wait", "type": "delay", "params": {"seconds": 0.3}},
        {"id": "out", "type": "transform", "params": {"template": "v1"}}
    ], "edges": [{"from": "wait", "to": "out"}]}),
    )
    .await;
    let x: Value = app
        .req(Method::POST, &format!("/v1/workflows/{id}/executions"), &k)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let exec = x["id"].as_str().unwrap().to_owned();
    let res = app
        .req(Method::PATCH, &format!("/v1/workflows/{id}"), &k)
        .json(&json!({"nodes": [
            {"id": "wait", "type": "delay", "params": {"seconds": 0}},
            {"id": "out", "type": "transform", "params": {"template": "v2"}}
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["version"], 2);
    let deadline = Instant::now() + Duration::from_secs(10);
    let done = loop {
        let v: Value = app
            .req(Method::GET, &format!("/v1/executions/{exec}"), &k)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["status"] == "succeeded" {
            break v;
        }
        assert!(Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(done["version"], 1);
    assert_eq!(
        done["output"],
        json!({"out": "v1"}),
        "the pinned version ran, not the edit"
    );
    let later: Value = app
        .req(
            Method::POST,
            &format!("/v1/workflows/{id}/executions?wait=true"),
            &k,
        )
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (later["version"].as_i64(), later["output"]["out"].as_str()),
        (Some(2), Some("v2"))
    );
}

/// Polls an execution (with `reader`, a key of its account) until it ends.
async fn finished(app: &TestApp, reader: &str, exec_id: &str) -> Value {
    let url = app.url(&format!("/v1/executions/{exec_id}"));
    crate::until_ended(&app.client, &url, reader, Duration::from_secs(15)).await
}

#[tokio::test]
async fn a_revoked_or_expired_key_makes_no_more_metered_calls_from_its_executions() {
    let app = TestApp::start().await;
    let acct = app
        .create_account_with(
            json!({"name": "k", "plan": "pro", "tier": "unlimited"}),
            1_000_000,
        )
        .await;
    let scopes = json!(["workflows:write", "executions:write", "executions:read"]);
    let (revoked_id, revoked) = app.create_key_with(&acct, json!({"scopes": scopes})).await;
    let def = json!({"nodes": [
        {"id": "pause", "type": "delay", "params": {"seconds": 3.5}},
        {"id": "ask", "type": "llm", "params": {"model": "mock/small", "prompt": "hi", "max_tokens": 4}}
    ], "edges": [{"from": "pause", "to": "ask"}]});
    // The workflow is the account's; only the start must happen before the expiry (3 s of slack
    // for a loaded machine), and the delay outlasts it.
    let id = wf(&app, &revoked, def).await;
    let soon = sluice_types::now_unix() + 3;
    let (_, expiring) = app
        .create_key_with(&acct, json!({"scopes": scopes, "expires_at": soon}))
        .await;
    let mut execs = Vec::new();
    for k in [&revoked, &expiring] {
        let res = app
            .req(Method::POST, &format!("/v1/workflows/{id}/executions"), k)
            .json(&json!({"input": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        let x: Value = res.json().await.unwrap();
        execs.push(x["id"].as_str().unwrap().to_owned());
    }
    let res = app
        .req(
            Method::DELETE,
            &format!("/v1/keys/{revoked_id}"),
            &sluice_testkit::admin_key(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (_, reader) = app.create_key(&acct, &["executions:read"]).await;
    for (exec, reason) in execs.iter().zip(["api_key_revoked", "api_key_expired"]) {
        let x = finished(&app, &reader, exec).await;
        assert_eq!(x["status"], "failed", "{x}");
        assert_eq!(x["error"]["code"], "execution_failed");
        assert_eq!(x["error"]["details"]["node_id"], "ask");
        let what = x["error"]["details"]["node_error"].as_str().unwrap();
        assert!(
            what.starts_with("unauthorized:") && what.contains(reason),
            "{what}"
        );
    }
    assert!(app.mock.bodies().is_empty(), "no model was called");
}

#[tokio::test]
async fn start_bodies_are_strict_and_a_finished_execution_cannot_be_cancelled() {
    let app = TestApp::start().await;
    let k = key(&app).await;
    let id = wf(
        &app,
        &k,
        json!({"nodes": [{"id": "t", "type": "transform", "params": {"template": 1}}]}),
    )
    .await;
    let path = format!("/v1/workflows/{id}/executions");
    for (body, field) in [
        (json!([]), "body"),
        (json!("x"), "body"),
        (json!({"extra": 1}), "extra"),
        (json!({"input": [1]}), "input"),
    ] {
        let res = app
            .req(Method::POST, &path, &k)
            .json(&body)
            .send()
            .await
            .unwrap();
        let e = assert_error(
            res,
            422,
            "validation_error",
            "invalid_request_error",
            Some(field),
            false,
        )
        .await;
        assert_eq!(e["details"]["errors"][0]["field"], field, "{body}");
    }
    let x: Value = app
        .req(Method::POST, &format!("{path}?wait=true"), &k)
        .json(&json!({"input": {}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(x["status"], "succeeded");
    let res = app
        .req(
            Method::POST,
            &format!("/v1/executions/{}/cancel", x["id"].as_str().unwrap()),
            &k,
        )
        .send()
        .await
        .unwrap();
    let e = assert_error(res, 409, "conflict", "invalid_request_error", None, false).await;
    assert_eq!(e["details"]["value"], "succeeded");
}

#[tokio::test]
async fn a_queued_execution_starts_at_once_not_at_the_next_poll() {
    let mut settings = sluice_testkit::test_settings();
    settings.executor.poll_interval = Duration::from_secs(30);
    let app = TestApp::start_with_settings(None, settings).await;
    let k = key(&app).await;
    let id = wf(
        &app,
        &k,
        json!({"nodes": [{"id": "a", "type": "transform", "params": {"template": {"ok": true}}}]}),
    )
    .await;
    for _ in 0..3 {
        let t = Instant::now();
        let res = app
            .req(
                Method::POST,
                &format!("/v1/workflows/{id}/executions?wait=true"),
                &k,
            )
            .json(&json!({"input": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        // Idle workers sleep 30 s between polls here: only the wake-up can start it this soon.
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    }
}
