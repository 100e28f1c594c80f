//! Account and key rate limits through the server: exact headers and bodies, both dialects.

use reqwest::{Method, Response};
use serde_json::{json, Value};
use sluice_testkit::{admin_key, TestApp};

use crate::assert_error;

fn hello() -> Value {
    json!({"model": "mock/small", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 5})
}

async fn chat(app: &TestApp, key: &str, body: &Value) -> Response {
    app.req(Method::POST, "/v1/chat/completions", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn header(res: &Response, name: &str) -> String {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// An account on `tier` and a key with its own `limits`.
async fn key_with(app: &TestApp, tier: Value, limits: Value) -> (String, String) {
    let acct = app
        .create_account_with(
            json!({"name": format!("acct-{}", sluice_types::id::random_base62(6)), "tier": tier}),
            1_000_000_000,
        )
        .await;
    let (_, key) = app
        .create_key_with(
            &acct,
            json!({"scopes": ["chat:write"], "rate_limits": limits}),
        )
        .await;
    (acct, key)
}

#[tokio::test]
async fn the_request_over_the_limit_is_429_with_the_exact_headers_and_body() {
    let app = TestApp::start().await;
    let (_, key) = key_with(&app, json!("unlimited"), json!({"rpm": 3})).await;
    for left in ["2", "1", "0"] {
        let res = chat(&app, &key, &hello()).await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "x-ratelimit-limit"), "3");
        assert_eq!(header(&res, "x-ratelimit-remaining"), left);
        assert_eq!(header(&res, "ratelimit-policy"), "\"key-rpm\";q=3;w=60");
    }
    let res = chat(&app, &key, &hello()).await;
    assert_eq!(
        header(&res, "retry-after"),
        "20",
        "one request's share of a 60 s window, rounded up"
    );
    assert_eq!(header(&res, "x-arena-rate-limit-dimension"), "rpm");
    assert_eq!(header(&res, "x-ratelimit-limit"), "3");
    assert_eq!(header(&res, "x-ratelimit-remaining"), "0");
    assert_eq!(header(&res, "x-ratelimit-reset"), "20");
    assert_eq!(header(&res, "ratelimit"), "\"key-rpm\";r=0;t=20");
    let e = assert_error(
        res,
        429,
        "rate_limit_exceeded",
        "invalid_request_error",
        None,
        true,
    )
    .await;
    assert_eq!(
        e["details"],
        json!({"dimension": "rpm", "limit": 3, "window_seconds": 60, "retry_after": 20})
    );
    assert_eq!(
        app.mock.stats().requests,
        3,
        "no upstream call for a refused request"
    );
}

#[tokio::test]
async fn retry_after_is_enough_and_not_more() {
    let app = TestApp::start().await;
    let (_, key) = key_with(&app, json!("unlimited"), json!({"rps": 2})).await;
    assert_eq!(chat(&app, &key, &hello()).await.status(), 200);
    assert_eq!(chat(&app, &key, &hello()).await.status(), 200);
    let res = chat(&app, &key, &hello()).await;
    assert_eq!(res.status(), 429);
    let wait: u64 = header(&res, "retry-after").parse().unwrap();
    assert_eq!(wait, 1, "half a second's wait rounds up to 1 s, never 0");
    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    assert_eq!(chat(&app, &key, &hello()).await.status(), 200);
}

#[tokio::test]
async fn tpm_refuses_a_large_prompt_while_rpm_has_room() {
    let app = TestApp::start().await;
    let (_, key) = key_with(&app, json!("unlimited"), json!({"rpm": 100, "tpm": 1000})).await;
    let big = json!({"model": "mock/small", "messages": [{"role": "user", "content": "word ".repeat(5000)}], "max_tokens": 5});
    let res = chat(&app, &key, &big).await;
    assert_eq!(header(&res, "x-arena-rate-limit-dimension"), "tpm");
    let e = assert_error(
        res,
        429,
        "rate_limit_exceeded",
        "invalid_request_error",
        None,
        true,
    )
    .await;
    assert_eq!(e["details"]["dimension"], "tpm");
    assert_eq!(e["details"]["limit"], 1000);
    // The refused request consumed nothing: rpm still has all 100.
    let res = chat(&app, &key, &hello()).await;
    assert_eq!(res.status(), 200);
    let policy = header(&res, "ratelimit-policy");
    assert!(
        policy.contains("\"key-rpm\";q=100;w=60") && policy.contains("\"key-tpm\";q=1000;w=60"),
        "{policy}"
    );
    assert_eq!(app.mock.stats().requests, 1);
}

#[tokio::test]
async fn a_keys_limit_is_tighter_than_its_accounts() {
    let app = TestApp::start().await;
    let (_, key) = key_with(&app, json!(1), json!({"rpm": 2})).await;
    assert_eq!(chat(&app, &key, &hello()).await.status(), 200);
    assert_eq!(chat(&app, &key, &hello()).await.status(), 200);
    let e = assert_error(
        chat(&app, &key, &hello()).await,
        429,
        "rate_limit_exceeded",
        "invalid_request_error",
        None,
        true,
    )
    .await;
    assert_eq!(e["details"]["limit"], 2);
    assert!(e["message"].as_str().unwrap().contains("this API key"));
}

#[tokio::test]
async fn an_accounts_limit_is_shared_by_its_keys() {
    let app = TestApp::start().await;
    // Tier 1 allows 10 requests per second.
    let (acct, a) = key_with(&app, json!(1), json!({})).await;
    let (_, b) = app.create_key(&acct, &["chat:write"]).await;
    // Twelve requests at once over both keys: the account's 10 per second hold for both together
    // (GCRA refills one every 100 ms, so a slow machine may let one more through).
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let key = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (client, url) = (app.client.clone(), app.url("/v1/chat/completions"));
            tokio::spawn(async move {
                client
                    .post(url)
                    .bearer_auth(key)
                    .json(&hello())
                    .send()
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut ok = 0;
    let mut refused = None;
    for t in tasks {
        let res = t.await.unwrap();
        match res.status().as_u16() {
            200 => ok += 1,
            429 => refused = Some(res),
            s => panic!("unexpected {s}"),
        }
    }
    let refill = (started.elapsed().as_millis() / 100) as usize;
    assert!(
        (10..=10 + refill).contains(&ok),
        "{ok} allowed in {:?}",
        started.elapsed()
    );
    let res = refused.expect("the account limit refused some");
    assert_eq!(header(&res, "x-arena-rate-limit-dimension"), "rps");
    let e = assert_error(
        res,
        429,
        "rate_limit_exceeded",
        "invalid_request_error",
        None,
        true,
    )
    .await;
    assert_eq!(e["details"]["limit"], 10);
    assert!(e["message"].as_str().unwrap().contains("this account"));
}

#[tokio::test]
async fn an_admin_changes_an_accounts_tier() {
    let app = TestApp::start().await;
    let (acct, key) = key_with(&app, json!(1), json!({})).await;
    // Use up tier 1's 10 per second until refused (bounded: a refill is one per 100 ms).
    let mut sent = 0;
    while chat(&app, &key, &hello()).await.status() != 429 {
        sent += 1;
        assert!(sent < 100, "tier 1 never refused");
    }
    let res = app
        .req(Method::PATCH, &format!("/v1/accounts/{acct}"), &admin_key())
        .json(&json!({"tier": "unlimited"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["tier"], "unlimited");
    assert_eq!(chat(&app, &key, &hello()).await.status(), 200);
    let res = app
        .req(Method::PATCH, &format!("/v1/accounts/{acct}"), &admin_key())
        .json(&json!({"tier": 2}))
        .send()
        .await
        .unwrap();
    assert_error(
        res,
        400,
        "invalid_request",
        "invalid_request_error",
        Some("tier"),
        false,
    )
    .await;
}

#[tokio::test]
async fn flows_routes_share_a_per_account_request_limit_in_the_flows_dialect() {
    let app = TestApp::start().await;
    let (_, key) = key_with(&app, json!("unlimited"), json!({})).await;
    for i in 0..300 {
        let res = app
            .req(Method::GET, "/v1/agents", &key)
            .send()
            .await
            .unwrap();
        assert_ne!(res.status(), 429, "request {i}");
        if i == 0 {
            assert_eq!(header(&res, "x-ratelimit-limit"), "300");
            assert_eq!(header(&res, "x-ratelimit-remaining"), "299");
        }
    }
    // GCRA refills one request every 200 ms, so a few more may pass while the loop ran.
    let started = std::time::Instant::now();
    let mut extra = 0;
    let res = loop {
        let res = app
            .req(Method::GET, "/v1/workflows/wf_x", &key)
            .send()
            .await
            .unwrap();
        if res.status() == 429 {
            break res;
        }
        extra += 1;
        assert!(
            extra <= 5 + started.elapsed().as_millis() / 200,
            "the flows limit is not enforced"
        );
    };
    assert_eq!(header(&res, "x-arena-rate-limit-dimension"), "requests");
    let e = assert_error(
        res,
        429,
        "rate_limited",
        "invalid_request_error",
        None,
        true,
    )
    .await;
    assert_eq!(
        e["details"],
        json!({"dimension": "requests", "limit": 300, "window_seconds": 60, "retry_after": 1})
    );
    // The gateway is not counted against the flows limit.
    assert_eq!(chat(&app, &key, &hello()).await.status(), 200);
}
