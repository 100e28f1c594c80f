//! The OpenAI-compatible gateway against the mock provider: every contract row, both wire formats.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Method, Response};
use serde_json::{json, Value};
use sluice_testkit::{Behavior, TestApp};

use crate::assert_error;

async fn setup() -> (TestApp, String) {
    let app = TestApp::start().await;
    let acct = app.create_account("acme").await;
    let (_, key) = app.create_key(&acct, &["chat:write", "models:read"]).await;
    (app, key)
}

async fn chat(app: &TestApp, key: &str, body: Value) -> Response {
    app.req(Method::POST, "/v1/chat/completions", key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 5})
}

/// The `data:` payloads and named events of an SSE body, in order.
pub fn sse_frames(text: &str) -> Vec<(String, String)> {
    text.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|f| {
            let mut event = String::new();
            let mut data = String::new();
            for line in f.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = d.to_owned();
                }
            }
            (event, data)
        })
        .collect()
}

pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_completion_passes_unknown_fields_through_and_names_the_resolved_model() {
    let (app, key) = setup().await;
    let mut body = hello("small");
    body["seed"] = json!(7);
    body["logit_bias"] = json!({"50256": -100});
    body["fallbacks"] = json!(["mock/small"]);
    let res = chat(&app, &key, body).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-arena-resolved-model"], "mock/small");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "mock/small");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "lorem ipsum dolor sit amet"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 5);
    let sent = app.mock.bodies().pop().unwrap();
    assert_eq!(sent["model"], "small", "the upstream model name is sent");
    assert_eq!(sent["seed"], 7);
    assert_eq!(sent["logit_bias"], json!({"50256": -100}));
    assert!(
        sent.get("fallbacks").is_none(),
        "Sluice's own fields stay home"
    );
}

#[tokio::test]
async fn a_stream_forwards_chunks_and_returns_usage_only_when_asked() {
    let (app, key) = setup().await;
    let mut body = hello("mock/small");
    body["stream"] = json!(true);
    let res = chat(&app, &key, body.clone()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert_eq!(res.headers()["x-arena-resolved-model"], "mock/small");
    let frames = sse_frames(&res.text().await.unwrap());
    assert_eq!(frames.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = frames[..frames.len() - 1]
        .iter()
        .map(|f| serde_json::from_str(&f.1).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, " lorem ipsum dolor sit amet");
    assert!(
        chunks.iter().all(|c| c.get("usage").is_none()),
        "usage not asked for"
    );
    assert_eq!(
        app.mock.bodies().pop().unwrap()["stream_options"]["include_usage"],
        true,
        "but always asked upstream"
    );

    body["stream_options"] = json!({"include_usage": true});
    let frames = sse_frames(&chat(&app, &key, body).await.text().await.unwrap());
    let usage: Value = serde_json::from_str(&frames[frames.len() - 2].1).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 5);
}

#[tokio::test]
async fn a_dripped_stream_is_reassembled() {
    let (app, key) = setup().await;
    app.mock.push(
        Behavior {
            drip: true,
            ..Default::default()
        },
        1,
    );
    let mut body = hello("mock/small");
    body["stream"] = json!(true);
    let frames = sse_frames(&chat(&app, &key, body).await.text().await.unwrap());
    assert_eq!(frames.len(), 1 + 5 + 1 + 1, "{frames:?}");
    assert_eq!(frames.last().unwrap().1, "[DONE]");
}

#[tokio::test]
async fn an_unknown_model_is_400_pointing_to_the_model_list() {
    let (app, key) = setup().await;
    let e = assert_error(
        chat(&app, &key, hello("gpt-9")).await,
        400,
        "invalid_request",
        "invalid_request_error",
        Some("model"),
        false,
    )
    .await;
    assert!(e["message"].as_str().unwrap().contains("GET /v1/models"));
    assert_eq!(app.mock.stats().requests, 0);
}

#[tokio::test]
async fn a_model_outside_the_allowlist_is_422_with_the_allowed_models() {
    let (app, _) = setup().await;
    let acct = app.create_account("narrow").await;
    let (_, key) = app
        .create_key_with(
            &acct,
            json!({"scopes": ["chat:write", "models:read"], "models": ["mock/tiny"]}),
        )
        .await;
    let res = chat(&app, &key, hello("mock/small")).await;
    assert!(res.headers().get("x-arena-resolved-model").is_none());
    let e = assert_error(
        res,
        422,
        "model_not_allowed",
        "invalid_request_error",
        Some("model"),
        false,
    )
    .await;
    assert_eq!(
        e["details"],
        json!({"model": "mock/small", "allowed_models": ["mock/tiny"]})
    );
    // /v1/models shows only what the key may use.
    let v: Value = app
        .req(Method::GET, "/v1/models", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["mock/tiny", "auto", "fast"],
        "routing modes are listed too"
    );
}

#[tokio::test]
async fn a_prompt_over_the_context_window_is_400_before_any_upstream_call() {
    let (app, key) = setup().await;
    let long = "word ".repeat(100).trim_end().to_owned();
    let body = json!({"model": "mock/tiny", "messages": [{"role": "user", "content": long}]});
    let e = assert_error(
        chat(&app, &key, body).await,
        400,
        "context_length_exceeded",
        "invalid_request_error",
        Some("messages"),
        false,
    )
    .await;
    assert_eq!(e["details"]["model"], "mock/tiny");
    assert_eq!(e["details"]["max_tokens"], 64);
    // 100 × "word " is 100 tokens with cl100k, plus 3 per message and 3 to prime the reply.
    assert_eq!(e["details"]["input_tokens"], 106);
    assert_eq!(app.mock.stats().requests, 0);
}

#[tokio::test]
async fn upstream_5xx_garbage_and_unreachable_are_502() {
    let (app, key) = setup().await;
    app.mock.push(Behavior::status(500), 1);
    let res = chat(&app, &key, hello("mock/small")).await;
    assert_eq!(res.headers()["x-arena-resolved-model"], "mock/small");
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
        e["details"],
        json!({"provider": "mock", "model": "mock/small", "provider_error": "HTTP 500: mock provider error 500"})
    );

    app.mock.push(
        Behavior {
            malformed: true,
            ..Default::default()
        },
        1,
    );
    let e = assert_error(
        chat(&app, &key, hello("mock/small")).await,
        502,
        "provider_unavailable",
        "provider_error",
        None,
        true,
    )
    .await;
    assert_eq!(
        e["details"]["provider_error"],
        "the provider answered with invalid JSON"
    );

    let e = assert_error(
        chat(&app, &key, hello("dead/x")).await,
        502,
        "provider_unavailable",
        "provider_error",
        None,
        true,
    )
    .await;
    assert_eq!(
        e["details"]["provider_error"],
        "could not connect to the provider"
    );
    assert!(
        !e.to_string().contains("127.0.0.1:9"),
        "no internal addresses: {e}"
    );
}

#[tokio::test]
async fn an_unconfigured_provider_is_503_with_retry_after() {
    let (app, key) = setup().await;
    let res = chat(&app, &key, hello("down/x")).await;
    assert_eq!(res.headers()["retry-after"], "60");
    let e = assert_error(
        res,
        503,
        "provider_unavailable",
        "provider_error",
        None,
        true,
    )
    .await;
    assert_eq!(e["details"]["reason"], "provider_not_configured");
    assert_eq!(e["details"]["retry_after"], 60);
}

#[tokio::test]
async fn an_upstream_429_is_503_with_the_upstreams_retry_after() {
    let (app, key) = setup().await;
    app.mock.push(
        Behavior {
            status: Some(429),
            retry_after: Some(7),
            ..Default::default()
        },
        1,
    );
    let res = chat(&app, &key, hello("mock/small")).await;
    assert_eq!(res.headers()["retry-after"], "7");
    let e = assert_error(
        res,
        503,
        "provider_unavailable",
        "provider_error",
        None,
        true,
    )
    .await;
    assert_eq!(e["details"]["reason"], "upstream_rate_limited");
}

#[tokio::test]
async fn an_upstream_that_does_not_answer_in_time_is_504() {
    let (app, key) = setup().await;
    app.mock.push(Behavior::delay(5_000), 1);
    let started = std::time::Instant::now();
    let e = assert_error(
        chat(&app, &key, hello("mock/small")).await,
        504,
        "gateway_timeout",
        "provider_error",
        None,
        true,
    )
    .await;
    assert_eq!(e["details"]["provider"], "mock");
    assert_eq!(e["details"]["timeout_seconds"], 2.0);
    assert!(started.elapsed() < Duration::from_millis(4_000));
}

#[tokio::test]
async fn a_failure_after_the_first_chunk_is_one_sse_error_event() {
    let (app, key) = setup().await;
    for (behavior, code) in [
        (
            Behavior {
                reset_after_chunks: Some(3),
                ..Default::default()
            },
            "provider_unavailable",
        ),
        (
            Behavior {
                malformed: true,
                ..Default::default()
            },
            "provider_unavailable",
        ),
        (
            Behavior {
                chunk_delay_ms: 3_000,
                ..Default::default()
            },
            "gateway_timeout",
        ),
    ] {
        app.mock.push(behavior, 1);
        let mut body = hello("mock/small");
        body["stream"] = json!(true);
        let res = chat(&app, &key, body).await;
        assert_eq!(res.status(), 200);
        let rid = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        let frames = sse_frames(&res.text().await.unwrap());
        let (event, data) = frames.last().unwrap();
        assert_eq!(event, "error", "{frames:?}");
        assert_eq!(frames.iter().filter(|f| f.0 == "error").count(), 1);
        assert!(frames.iter().all(|f| f.1 != "[DONE]"));
        let e: Value = serde_json::from_str(data).unwrap();
        assert_eq!(e["error"]["code"], code);
        assert_eq!(e["error"]["type"], "provider_error");
        assert_eq!(e["error"]["request_id"], rid.as_str());
        assert!(
            frames.len() >= 2,
            "content came before the error: {frames:?}"
        );
    }
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_the_upstream_request() {
    let (app, key) = setup().await;
    app.mock.push(
        Behavior {
            chunk_delay_ms: 100,
            completion_tokens: Some(200),
            ..Default::default()
        },
        1,
    );
    let mut body = hello("mock/small");
    body["stream"] = json!(true);
    body["max_tokens"] = json!(500);
    let res = chat(&app, &key, body).await;
    let mut stream = res.bytes_stream();
    stream.next().await.unwrap().unwrap();
    drop(stream);
    let mock = &app.mock;
    wait_until("the mock sees the cancellation", || {
        mock.stats().cancelled == 1
    })
    .await;
    assert_eq!(mock.stats().in_flight, 0);
}

#[tokio::test]
async fn anthropic_models_are_translated_both_ways() {
    let (app, key) = setup().await;
    let body = json!({"model": "anth/claude", "max_tokens": 3, "stop": ["END"],
        "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}]});
    let res = chat(&app, &key, body.clone()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-arena-resolved-model"], "anth/claude");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "lorem ipsum dolor");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 3);
    let sent = app.mock.bodies().pop().unwrap();
    assert_eq!(sent["model"], "claude-test");
    assert_eq!(sent["system"], "Be terse.");
    assert_eq!(sent["stop_sequences"], json!(["END"]));
    assert_eq!(
        sent["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}])
    );
    let headers = app.mock.headers().pop().unwrap();
    assert!(headers
        .iter()
        .any(|(k, v)| k == "anthropic-version" && v == "2023-06-01"));

    let mut streamed = body;
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let frames = sse_frames(&chat(&app, &key, streamed).await.text().await.unwrap());
    let chunks: Vec<Value> = frames
        .iter()
        .filter(|f| f.1 != "[DONE]")
        .map(|f| serde_json::from_str(&f.1).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, " lorem ipsum dolor");
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "length"));
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 3);
    assert_eq!(frames.last().unwrap().1, "[DONE]");
}

#[tokio::test]
async fn anthropic_tool_calls_become_openai_tool_calls() {
    let (app, key) = setup().await;
    let body = json!({"model": "anth/claude", "messages": [{"role": "user", "content": "weather?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]});
    app.mock.push(
        Behavior {
            tool_call: Some("get_weather".into()),
            ..Default::default()
        },
        2,
    );
    let v: Value = chat(&app, &key, body.clone()).await.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], "{\"q\":\"mock\"}");

    let mut streamed = body;
    streamed["stream"] = json!(true);
    let frames = sse_frames(&chat(&app, &key, streamed).await.text().await.unwrap());
    let chunks: Vec<Value> = frames
        .iter()
        .filter(|f| f.1 != "[DONE]")
        .map(|f| serde_json::from_str(&f.1).unwrap())
        .collect();
    let args: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(args, "{\"q\":\"mock\"}");
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
}

#[tokio::test]
async fn embeddings_go_to_embedding_models_only() {
    let (app, key) = setup().await;
    let res = app
        .req(Method::POST, "/v1/embeddings", &key)
        .json(&json!({"model": "mock/embed", "input": ["a", "b"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-arena-resolved-model"], "mock/embed");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["model"], "mock/embed");
    let res = app
        .req(Method::POST, "/v1/embeddings", &key)
        .json(&json!({"model": "mock/small", "input": "a"}))
        .send()
        .await
        .unwrap();
    assert_error(
        res,
        400,
        "invalid_request",
        "invalid_request_error",
        Some("model"),
        false,
    )
    .await;
    let res = chat(&app, &key, hello("mock/embed")).await;
    assert_error(
        res,
        400,
        "invalid_request",
        "invalid_request_error",
        Some("model"),
        false,
    )
    .await;
}

#[tokio::test]
async fn chat_needs_the_chat_scope_and_valid_fields() {
    let (app, _) = setup().await;
    let acct = app.create_account("readonly").await;
    let (_, key) = app.create_key(&acct, &["models:read"]).await;
    let e = assert_error(
        chat(&app, &key, hello("small")).await,
        403,
        "forbidden",
        "permission_error",
        None,
        false,
    )
    .await;
    assert_eq!(e["details"]["required_scope"], "chat:write");

    let (_, key) = app.create_key(&acct, &["chat:write"]).await;
    let body = json!({"model": "small", "messages": [{"role": "wizard", "content": "x"}], "max_tokens": -1, "stream": "yes"});
    let e = assert_error(
        chat(&app, &key, body).await,
        400,
        "invalid_request",
        "invalid_request_error",
        Some("messages[0].role"),
        false,
    )
    .await;
    let fields: Vec<&str> = e["details"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["messages[0].role", "stream", "max_tokens"]);
}

#[tokio::test]
async fn choices_and_stream_options_are_validated() {
    let app = TestApp::start().await;
    let acct = app.create_account("acme").await;
    let (_, key) = app.create_key(&acct, &["chat:write"]).await;
    for (extra, field, code) in [
        (json!({"n": -1}), "n", "invalid_type"),
        (json!({"n": "x"}), "n", "invalid_type"),
        (json!({"n": 129}), "n", "max_value"),
        (json!({"best_of": 0}), "best_of", "invalid_type"),
        (
            json!({"stream_options": {"include_usage": "yes"}}),
            "stream_options.include_usage",
            "invalid_type",
        ),
    ] {
        let mut body = hello("small");
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let e = assert_error(
            chat(&app, &key, body).await,
            400,
            "invalid_request",
            "invalid_request_error",
            Some(field),
            false,
        )
        .await;
        assert_eq!(e["details"]["errors"][0]["field"], field, "{extra}");
        assert_eq!(e["details"]["errors"][0]["code"], code, "{extra}");
    }
}

#[tokio::test]
async fn unknown_models_and_too_large_max_tokens_on_a_strict_model_list_their_field_error() {
    let app = TestApp::start().await;
    let acct = app.create_account("acme").await;
    let (_, key) = app.create_key(&acct, &["chat:write"]).await;
    let mut body = hello("small");
    body["model"] = json!("no-such-model");
    let e = assert_error(
        chat(&app, &key, body).await,
        400,
        "invalid_request",
        "invalid_request_error",
        Some("model"),
        false,
    )
    .await;
    assert_eq!(e["details"]["errors"][0]["field"], "model");
    assert_eq!(e["details"]["errors"][0]["code"], "invalid_enum");
    let mut body = hello("mock/strict");
    body["max_tokens"] = json!(10_000_000);
    let e = assert_error(
        chat(&app, &key, body).await,
        400,
        "invalid_request",
        "invalid_request_error",
        Some("max_tokens"),
        false,
    )
    .await;
    assert_eq!(e["details"]["errors"][0]["code"], "max_value");
}
