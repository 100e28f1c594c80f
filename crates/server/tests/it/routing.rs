//! Routing modes, fallbacks and circuit breakers against the mock provider's scripted faults.

use std::time::Duration;

use reqwest::{Method, Response};
use serde_json::{json, Value};
use sluice_testkit::{Behavior, TestApp};

use crate::assert_error;

async fn setup() -> (TestApp, String, String) {
    let app = TestApp::start().await;
    let acct = app.create_account_with_balance("acme", 1_000_000).await;
    let (_, key) = app
        .create_key(&acct, &["chat:write", "models:read", "usage:read"])
        .await;
    (app, acct, key)
}

fn body(model: &str, extra: Value) -> Value {
    let mut b = json!({"model": model, "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 5});
    if let (Some(o), Some(e)) = (b.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    b
}

async fn chat(app: &TestApp, key: &str, b: Value) -> Response {
    app.req(Method::POST, "/v1/chat/completions", key)
        .json(&b)
        .send()
        .await
        .unwrap()
}

fn h(res: &Response, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

/// How many requests for `upstream` the mock received.
fn calls(app: &TestApp, upstream: &str) -> usize {
    app.mock
        .bodies()
        .iter()
        .filter(|b| b["model"] == upstream)
        .count()
}

#[tokio::test]
async fn a_failing_primary_falls_back_with_the_headers() {
    let (app, _, key) = setup().await;
    let res = chat(
        &app,
        &key,
        body("mock/broken", json!({"fallbacks": ["mock/backup"]})),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        h(&res, "x-arena-resolved-model").as_deref(),
        Some("mock/backup")
    );
    assert_eq!(h(&res, "x-arena-fallback-index").as_deref(), Some("1"));
    assert_eq!(
        h(&res, "x-arena-fallback-reason").as_deref(),
        Some("provider_error")
    );
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["model"], "mock/backup");
    // Without a fallback answering, the headers are absent.
    let res = chat(
        &app,
        &key,
        body("mock/small", json!({"fallbacks": ["mock/backup"]})),
    )
    .await;
    assert_eq!(h(&res, "x-arena-fallback-index"), None);
    assert_eq!(
        h(&res, "x-arena-resolved-model").as_deref(),
        Some("mock/small")
    );
}

#[tokio::test]
async fn a_primary_that_times_out_falls_back_with_reason_timeout() {
    let (app, _, key) = setup().await;
    let res = chat(
        &app,
        &key,
        body("mock/slow", json!({"fallbacks": ["mock/backup"]})),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        h(&res, "x-arena-fallback-reason").as_deref(),
        Some("timeout")
    );
    assert_eq!(
        h(&res, "x-arena-resolved-model").as_deref(),
        Some("mock/backup")
    );
}

#[tokio::test]
async fn without_fallbacks_allowed_the_primarys_error_is_returned_as_is() {
    let (app, _, key) = setup().await;
    let res = chat(
        &app,
        &key,
        body(
            "mock/broken",
            json!({"fallbacks": ["mock/backup"], "allow_fallbacks": false}),
        ),
    )
    .await;
    let e = assert_error(
        res,
        502,
        "provider_unavailable",
        "provider_error",
        None,
        true,
    )
    .await;
    assert_eq!(e["details"]["model"], "mock/broken");
    assert_eq!(calls(&app, "backup"), 0);
}

#[tokio::test]
async fn fallback_on_timeout_does_not_fall_back_on_a_500() {
    let (app, _, key) = setup().await;
    let res = chat(
        &app,
        &key,
        body(
            "mock/err500",
            json!({"fallbacks": ["mock/backup"], "fallback_on": ["timeout"]}),
        ),
    )
    .await;
    let e = assert_error(
        res,
        502,
        "provider_unavailable",
        "provider_error",
        None,
        true,
    )
    .await;
    assert_eq!(
        e["details"]["provider_error"],
        "HTTP 500: mock provider error 500"
    );
    assert_eq!(calls(&app, "backup"), 0);
}

#[tokio::test]
async fn a_failure_after_the_first_streamed_chunk_does_not_fall_back() {
    let (app, _, key) = setup().await;
    app.mock.push(
        Behavior {
            reset_after_chunks: Some(3),
            ..Default::default()
        },
        1,
    );
    let res = chat(
        &app,
        &key,
        body(
            "mock/small",
            json!({"stream": true, "fallbacks": ["mock/backup"]}),
        ),
    )
    .await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(text.contains("event: error"), "{text}");
    assert!(!text.contains("[DONE]"));
    assert_eq!(
        calls(&app, "backup"),
        0,
        "no fallback once bytes reached the client"
    );
}

#[tokio::test]
async fn a_stream_that_fails_before_its_first_chunk_falls_back() {
    let (app, _, key) = setup().await;
    app.mock.push(
        Behavior {
            reset_after_chunks: Some(0),
            ..Default::default()
        },
        1,
    );
    let res = chat(
        &app,
        &key,
        body(
            "mock/small",
            json!({"stream": true, "fallbacks": ["mock/backup"]}),
        ),
    )
    .await;
    assert_eq!(
        h(&res, "x-arena-resolved-model").as_deref(),
        Some("mock/backup")
    );
    let text = res.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
}

#[tokio::test]
async fn the_breaker_opens_half_opens_after_the_cooldown_and_closes_on_success() {
    let (app, _, key) = setup().await;
    app.mock.push(Behavior::status(500), 3);
    for _ in 0..3 {
        assert_eq!(
            chat(&app, &key, body("mock/flaky", json!({})))
                .await
                .status(),
            502
        );
    }
    assert_eq!(calls(&app, "flaky"), 3);
    // Open: the provider is not called, and the client is told when to come back.
    let res = chat(&app, &key, body("mock/flaky", json!({}))).await;
    assert_eq!(h(&res, "retry-after").as_deref(), Some("1"));
    let e = assert_error(
        res,
        503,
        "provider_unavailable",
        "provider_error",
        None,
        true,
    )
    .await;
    assert_eq!(e["details"]["reason"], "circuit_open");
    assert_eq!(
        calls(&app, "flaky"),
        3,
        "an open circuit sends nothing upstream"
    );
    // /readyz names the open circuit but stays ready (traffic is routed around it).
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let ready: Value = res.json().await.unwrap();
    assert_eq!(ready["checks"]["providers"]["status"], "degraded");
    assert_eq!(
        ready["checks"]["providers"]["open_circuits"],
        json!(["mock/flaky"])
    );
    // After the cool-down one probe goes through; it succeeds and the circuit closes.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        chat(&app, &key, body("mock/flaky", json!({})))
            .await
            .status(),
        200
    );
    assert_eq!(
        chat(&app, &key, body("mock/flaky", json!({})))
            .await
            .status(),
        200
    );
    assert_eq!(calls(&app, "flaky"), 5);
}

#[tokio::test]
async fn a_failed_probe_opens_the_circuit_again() {
    let (app, _, key) = setup().await;
    app.mock.push(Behavior::status(500), 4);
    for _ in 0..3 {
        chat(&app, &key, body("mock/flaky", json!({}))).await;
    }
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        chat(&app, &key, body("mock/flaky", json!({})))
            .await
            .status(),
        502,
        "the probe fails"
    );
    assert_eq!(
        chat(&app, &key, body("mock/flaky", json!({})))
            .await
            .status(),
        503,
        "open again at once"
    );
    assert_eq!(calls(&app, "flaky"), 4);
}

#[tokio::test]
async fn auto_skips_models_without_tools_or_context_for_the_request() {
    let (app, _, key) = setup().await;
    let tools =
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    // No tools, short prompt: the highest priority model (mock/notools, 10).
    let res = chat(&app, &key, body("auto", json!({}))).await;
    assert_eq!(
        h(&res, "x-arena-resolved-model").as_deref(),
        Some("mock/notools")
    );
    // Tools: mock/notools (10) cannot; mock/tiny (5) cannot fit the tool definitions in its
    // 64-token window; mock/small can.
    let res = chat(&app, &key, body("auto", json!({"tools": tools}))).await;
    assert_eq!(
        h(&res, "x-arena-resolved-model").as_deref(),
        Some("mock/small")
    );
    // Among mock/tiny and mock/small, a short prompt goes to mock/tiny (higher priority)…
    let acct = app.create_account_with_balance("two", 1_000_000).await;
    let (_, two) = app
        .create_key_with(
            &acct,
            json!({"scopes": ["chat:write"], "models": ["mock/tiny", "mock/small"]}),
        )
        .await;
    let res = chat(&app, &two, body("auto", json!({}))).await;
    assert_eq!(
        h(&res, "x-arena-resolved-model").as_deref(),
        Some("mock/tiny")
    );
    // …and one too long for its context to mock/small.
    let long = json!({"model": "auto", "messages": [{"role": "user", "content": "word ".repeat(200)}], "max_tokens": 5});
    let res = chat(&app, &two, long).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        h(&res, "x-arena-resolved-model").as_deref(),
        Some("mock/small")
    );
}

#[tokio::test]
async fn auto_respects_the_allowlist_and_fast_prefers_the_lowest_latency() {
    let (app, _, _) = setup().await;
    let acct = app.create_account_with_balance("narrow", 1_000_000).await;
    let (_, key) = app.create_key_with(&acct, json!({"scopes": ["chat:write", "models:read"], "models": ["mock/small", "mock/slowish"]})).await;
    let res = chat(&app, &key, body("auto", json!({}))).await;
    assert_eq!(
        h(&res, "x-arena-resolved-model").as_deref(),
        Some("mock/small")
    );
    // Measure both, then `fast` picks the quicker one.
    assert_eq!(
        chat(&app, &key, body("mock/slowish", json!({})))
            .await
            .status(),
        200
    );
    let res = chat(&app, &key, body("fast", json!({}))).await;
    assert_eq!(
        h(&res, "x-arena-resolved-model").as_deref(),
        Some("mock/small")
    );
    let v: Value = app
        .req(Method::GET, "/v1/models/fast", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["owned_by"], "sluice");
}

#[tokio::test]
async fn when_every_candidate_is_down_it_is_503_with_what_was_tried() {
    let (app, _, key) = setup().await;
    let res = chat(
        &app,
        &key,
        body("mock/ratelimited", json!({"fallbacks": ["mock/broken"]})),
    )
    .await;
    assert_eq!(
        h(&res, "retry-after").as_deref(),
        Some("7"),
        "the soonest cool-down: the upstream's Retry-After"
    );
    let e = assert_error(
        res,
        503,
        "provider_unavailable",
        "provider_error",
        None,
        true,
    )
    .await;
    assert_eq!(e["details"]["reason"], "all_candidates_unavailable");
    assert_eq!(
        e["details"]["attempts"],
        json!([
            {"model": "mock/ratelimited", "provider": "mock", "reason": "rate_limit", "error": "provider_unavailable"},
            {"model": "mock/broken", "provider": "mock", "reason": "provider_error", "error": "provider_unavailable"}
        ])
    );
    let text = e.to_string();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("fault:"),
        "no upstream internals: {text}"
    );
    // The upstream's 429 keeps the model out for its Retry-After: the next request skips it.
    let before = calls(&app, "fault:status=429,retry_after=7");
    let res = chat(
        &app,
        &key,
        body("mock/ratelimited", json!({"fallbacks": ["mock/backup"]})),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(calls(&app, "fault:status=429,retry_after=7"), before);
}

#[tokio::test]
async fn a_request_that_fell_back_is_charged_once_at_the_answering_models_price() {
    let (app, acct, key) = setup().await;
    let res = chat(
        &app,
        &key,
        body("mock/broken", json!({"fallbacks": ["mock/backup"]})),
    )
    .await;
    assert_eq!(res.status(), 200);
    app.engine.credits.flush(true).await.unwrap();
    app.engine.usage.flush().await;
    let f = sluice_store::UsageFilter {
        account_id: Some(acct.clone()),
        ..Default::default()
    };
    let records = app.engine.store.list_usage(&f, 10).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].model.as_deref(), Some("mock/backup"));
    assert_eq!(records[0].cost, 9 + 5 * 2);
    let w = app.engine.store.wallet(&acct).await.unwrap().unwrap();
    assert_eq!((w.balance, w.reserved), (1_000_000 - 19, 0));
    let settlements: i64 = app
        .engine
        .store
        .ledger(
            &acct,
            &sluice_store::Page {
                after: None,
                limit: 100,
            },
        )
        .await
        .unwrap()
        .iter()
        .filter(|e| e.kind == "settlement")
        .map(|e| e.amount)
        .sum();
    assert_eq!(settlements, 19);
}

#[tokio::test]
async fn routing_fields_are_validated() {
    let (app, _, key) = setup().await;
    let res = chat(&app, &key, body("mock/small", json!({"fallbacks": "mock/backup", "fallback_on": ["sometimes"], "allow_fallbacks": "yes"}))).await;
    let e = assert_error(
        res,
        400,
        "invalid_request",
        "invalid_request_error",
        Some("fallbacks"),
        false,
    )
    .await;
    assert_eq!(e["details"]["errors"].as_array().unwrap().len(), 3);
    let res = chat(
        &app,
        &key,
        body("mock/small", json!({"fallbacks": ["gpt-9"]})),
    )
    .await;
    assert_error(
        res,
        400,
        "invalid_request",
        "invalid_request_error",
        Some("fallbacks[0]"),
        false,
    )
    .await;
}
