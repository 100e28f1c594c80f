//! `/v1/messages` (Anthropic Messages API) in front of both upstream formats: translated onto
//! the OpenAI-format mock, passed through to the Anthropic-format mock; JSON, streams, tool
//! round trips, thinking, errors in Anthropic's shape, credits and limits.

use reqwest::Response;
use serde_json::{json, Value};
use sluice_testkit::{Behavior, TestApp};

use crate::credits::{assert_reconciles, charged, key_for, settled};
use crate::gateway::sse_frames;

/// The two upstream formats: `mock/small` speaks OpenAI chat, `anth/claude` Anthropic.
pub(crate) const MODELS: [&str; 2] = ["mock/small", "anth/claude"];

/// A server and a `chat:write` key.
pub(crate) async fn setup() -> (TestApp, String) {
    let app = TestApp::start().await;
    let acct = app.create_account("acme").await;
    let (_, key) = app.create_key(&acct, &["chat:write"]).await;
    (app, key)
}

/// A Messages request the way Anthropic's SDK sends it: `x-api-key` and the version headers.
async fn post(app: &TestApp, key: &str, body: &Value) -> Response {
    reqwest::Client::new()
        .post(app.url("/v1/messages?beta=true"))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "context-management-2025-06-27")
        .json(body)
        .send()
        .await
        .unwrap()
}

fn hello(model: &str) -> Value {
    json!({"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "Say hello"}]})
}

/// The Anthropic error shape, with the envelope's fields inside; returns `error`.
async fn assert_anthropic_error(res: Response, status: u16, kind: &str, code: &str) -> Value {
    assert_eq!(res.status().as_u16(), status);
    let rid = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(res.headers()["request-id"].to_str().unwrap(), rid);
    assert_eq!(res.headers()["content-type"], "application/json");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["request_id"], rid.as_str());
    assert_eq!(body["request_id"], rid.as_str());
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    body["error"].clone()
}

#[tokio::test]
async fn a_message_is_answered_in_the_messages_shape_by_either_upstream_format() {
    let (app, key) = setup().await;
    for model in MODELS {
        let res = post(&app, &key, &hello(model)).await;
        assert_eq!(res.status(), 200, "{model}");
        assert_eq!(res.headers()["x-arena-resolved-model"], model);
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["role"], "assistant");
        assert_eq!(v["model"], model);
        assert!(v["id"].as_str().unwrap().starts_with("msg_"), "{v}");
        assert_eq!(
            v["content"],
            json!([{"type": "text", "text": "lorem ipsum dolor sit amet"}])
        );
        assert_eq!(v["stop_reason"], "max_tokens");
        assert_eq!(v["usage"]["output_tokens"], 5);
        assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);
    }
}

#[tokio::test]
async fn claude_codes_fields_are_translated_for_openai_and_passed_through_for_anthropic() {
    let (app, key) = setup().await;
    let body = |model: &str| {
        json!({
            "model": model, "max_tokens": 32000,
            "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]},
                {"role": "system", "content": "a reminder"}
            ],
            "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"},
            "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
            "tools": [{"name": "Read", "description": "Reads a file", "input_schema": {"type": "object"}}],
            "metadata": {"user_id": "user_1"}
        })
    };
    assert_eq!(post(&app, &key, &body("mock/small")).await.status(), 200);
    let sent = app.mock.bodies().pop().unwrap();
    assert_eq!(sent["model"], "small");
    assert_eq!(
        sent["max_tokens"], 1024,
        "32000 is clamped to the model's output limit"
    );
    assert_eq!(
        sent["messages"],
        json!([{"role": "system", "content": "You are Claude Code."},
               {"role": "user", "content": "hi"}, {"role": "system", "content": "a reminder"}])
    );
    assert_eq!(sent["tools"][0]["function"]["name"], "Read");
    assert_eq!(sent["user"], "user_1");
    for k in [
        "thinking",
        "output_config",
        "context_management",
        "system",
        "metadata",
    ] {
        assert!(
            sent.get(k).is_none(),
            "{k} was forwarded to an OpenAI-format provider"
        );
    }

    assert_eq!(post(&app, &key, &body("anth/claude")).await.status(), 200);
    let sent = app.mock.bodies().pop().unwrap();
    let mut expected = body("claude-test");
    expected["max_tokens"] = json!(1024);
    assert_eq!(
        sent, expected,
        "an Anthropic provider gets the body as sent"
    );
    let headers = app.mock.headers().pop().unwrap();
    assert!(headers.contains(&(
        "anthropic-beta".to_owned(),
        "context-management-2025-06-27".to_owned()
    )));
    assert!(
        !headers.iter().any(|(_, v)| v.contains(&key)),
        "the client's key never goes upstream"
    );
}

/// The event names of a Messages stream and the parsed data of each.
async fn stream(app: &TestApp, key: &str, mut body: Value) -> Vec<(String, Value)> {
    body["stream"] = json!(true);
    let res = post(app, key, &body).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let text = res.text().await.unwrap();
    assert!(!text.contains("[DONE]"));
    sse_frames(&text)
        .into_iter()
        .map(|(e, d)| {
            let v: Value = serde_json::from_str(&d).unwrap();
            assert_eq!(v["type"], e.as_str(), "each event names itself");
            (e, v)
        })
        .collect()
}

#[tokio::test]
async fn a_stream_has_anthropics_event_sequence_from_either_upstream_format() {
    let (app, key) = setup().await;
    for model in MODELS {
        let evs = stream(&app, &key, hello(model)).await;
        let names: Vec<&str> = evs
            .iter()
            .map(|(e, _)| e.as_str())
            .filter(|e| *e != "ping" && *e != "content_block_delta")
            .collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ],
            "{model}"
        );
        assert!(evs.iter().any(|(e, _)| e == "ping"));
        let text: String = evs
            .iter()
            .filter(|(e, _)| e == "content_block_delta")
            .map(|(_, v)| v["delta"]["text"].as_str().unwrap())
            .collect();
        assert_eq!(text.trim_start(), "lorem ipsum dolor sit amet", "{model}");
        assert_eq!(evs[0].1["message"]["model"], model);
        let delta = &evs[evs.len() - 2].1;
        assert_eq!(delta["delta"]["stop_reason"], "max_tokens");
        assert_eq!(delta["usage"]["output_tokens"], 5);
    }
}

#[tokio::test]
async fn a_tool_use_round_trip_works_on_either_upstream_format() {
    let (app, key) = setup().await;
    let tools = json!([{"name": "get_weather", "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}]);
    for model in MODELS {
        let first = json!({"model": model, "max_tokens": 50, "tools": tools,
            "tool_choice": {"type": "tool", "name": "get_weather"},
            "messages": [{"role": "user", "content": "Weather in Oslo?"}]});
        let v: Value = post(&app, &key, &first).await.json().await.unwrap();
        assert_eq!(v["stop_reason"], "tool_use", "{model}: {v}");
        let call = v["content"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(call["type"], "tool_use");
        assert_eq!(call["name"], "get_weather");
        assert_eq!(call["input"], json!({"q": "mock"}));
        let id = call["id"].as_str().unwrap();

        let second = json!({"model": model, "max_tokens": 5, "tools": tools,
        "messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": v["content"]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "sunny"}]}
        ]});
        let v: Value = post(&app, &key, &second).await.json().await.unwrap();
        assert_eq!(v["stop_reason"], "max_tokens", "{model}: {v}");
        assert_eq!(v["content"][0]["type"], "text");
        let sent = app.mock.bodies().pop().unwrap();
        if model == "mock/small" {
            assert_eq!(sent["messages"][1]["tool_calls"][0]["id"], id);
            assert_eq!(
                sent["messages"][2],
                json!({"role": "tool", "tool_call_id": id, "content": "sunny"})
            );
        } else {
            assert_eq!(sent["messages"][2]["content"][0]["tool_use_id"], id);
        }

        // The same call, streamed: one tool_use block whose JSON arrives in pieces.
        let evs = stream(&app, &key, first.clone()).await;
        let start = evs
            .iter()
            .find(|(e, v)| e == "content_block_start" && v["content_block"]["type"] == "tool_use")
            .unwrap_or_else(|| panic!("{model}: no tool_use block"));
        assert_eq!(start.1["content_block"]["name"], "get_weather");
        let json: String = evs
            .iter()
            .filter_map(|(_, v)| v["delta"]["partial_json"].as_str())
            .collect();
        assert_eq!(json, "{\"q\":\"mock\"}");
        assert_eq!(evs[evs.len() - 2].1["delta"]["stop_reason"], "tool_use");
    }
}

#[tokio::test]
async fn thinking_reaches_the_client_as_thinking_blocks() {
    let (app, key) = setup().await;
    let think = Behavior {
        reasoning: Some("Let me think.".to_owned()),
        ..Default::default()
    };
    for model in MODELS {
        app.mock.push(think.clone(), 2);
        let v: Value = post(&app, &key, &hello(model)).await.json().await.unwrap();
        assert_eq!(v["content"][0]["type"], "thinking", "{model}: {v}");
        assert_eq!(v["content"][0]["thinking"], "Let me think.");
        assert_eq!(v["content"][1]["type"], "text");
        let evs = stream(&app, &key, hello(model)).await;
        let thought: String = evs
            .iter()
            .filter_map(|(_, v)| v["delta"]["thinking"].as_str())
            .collect();
        assert_eq!(thought, "Let me think.", "{model}");
    }
}

#[tokio::test]
async fn errors_use_anthropics_shape_with_the_contracts_fields() {
    let (app, key) = setup().await;
    let res = reqwest::Client::new()
        .post(app.url("/v1/messages"))
        .json(&hello("mock/small"))
        .send()
        .await
        .unwrap();
    assert_anthropic_error(res, 401, "authentication_error", "unauthorized").await;

    let e = assert_anthropic_error(
        post(&app, &key, &json!({"model": "mock/small", "max_tokens": 5})).await,
        400,
        "invalid_request_error",
        "invalid_request",
    )
    .await;
    assert_eq!(e["param"], "messages");

    let e = assert_anthropic_error(
        post(&app, &key, &hello("claude-nonexistent")).await,
        400,
        "invalid_request_error",
        "invalid_request",
    )
    .await;
    assert_eq!(e["param"], "model");

    let e = assert_anthropic_error(
        post(
            &app,
            &key,
            &json!({"model": "mock/strict", "max_tokens": 5000,
            "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await,
        400,
        "invalid_request_error",
        "invalid_request",
    )
    .await;
    assert_eq!(e["param"], "max_tokens");

    let acct = app.create_account("readonly").await;
    let (_, weak) = app.create_key(&acct, &["models:read"]).await;
    assert_anthropic_error(
        post(&app, &weak, &hello("mock/small")).await,
        403,
        "permission_error",
        "forbidden",
    )
    .await;

    assert_anthropic_error(
        post(&app, &key, &hello("mock/err500")).await,
        502,
        "api_error",
        "provider_unavailable",
    )
    .await;
    assert_anthropic_error(
        post(&app, &key, &hello("down/x")).await,
        503,
        "overloaded_error",
        "provider_unavailable",
    )
    .await;
}

#[tokio::test]
async fn a_failure_mid_stream_is_one_anthropic_error_event() {
    let (app, key) = setup().await;
    for model in MODELS {
        app.mock.push(
            Behavior {
                reset_after_chunks: Some(4),
                ..Default::default()
            },
            1,
        );
        let evs = stream(&app, &key, hello(model)).await;
        let (name, last) = evs.last().unwrap();
        assert_eq!(name, "error", "{model}: {evs:?}");
        assert_eq!(last["error"]["type"], "api_error");
        assert_eq!(last["error"]["code"], "provider_unavailable");
        assert!(evs.iter().all(|(e, _)| e != "message_stop"));
    }
}

#[tokio::test]
async fn messages_are_charged_once_and_limited_like_chat() {
    let app = TestApp::start().await;
    let (acct, key) = key_for(&app, 1_000_000).await;
    for model in MODELS {
        assert_eq!(post(&app, &key, &hello(model)).await.status(), 200);
        let _ = stream(&app, &key, hello(model)).await;
    }
    let records = settled(&app.server, &acct, 4).await;
    assert_eq!(records.len(), 4);
    for r in &records {
        assert_eq!(r.status, 200);
        assert_eq!(r.completion_tokens, 5);
        assert_eq!(r.cost, r.prompt_tokens + 2 * r.completion_tokens, "{r:?}");
    }
    let balance = assert_reconciles(&app.server, &acct).await;
    assert_eq!(balance, 1_000_000 - charged(&records));

    // A key's request limit applies to Messages requests too.
    let limited_acct = app.create_account_with_balance("limited", 1_000_000).await;
    let (_, limited) = app
        .create_key_with(
            &limited_acct,
            json!({"scopes": ["chat:write"], "rate_limits": {"rpm": 1}}),
        )
        .await;
    assert_eq!(
        post(&app, &limited, &hello("anth/claude")).await.status(),
        200
    );
    let res = post(&app, &limited, &hello("anth/claude")).await;
    assert!(res.headers().contains_key("retry-after"));
    assert_anthropic_error(res, 429, "rate_limit_error", "rate_limit_exceeded").await;

    // An account that cannot pay is refused before any upstream call.
    let poor = app.create_account_with_balance("poor", 0).await;
    let (_, poor_key) = app.create_key(&poor, &["chat:write"]).await;
    let before = app.mock.stats().requests;
    assert_anthropic_error(
        post(&app, &poor_key, &hello("anth/claude")).await,
        402,
        "billing_error",
        "insufficient_credits",
    )
    .await;
    assert_eq!(app.mock.stats().requests, before);
}

#[tokio::test]
async fn count_tokens_answers_for_any_model_without_calling_upstream() {
    let (app, key) = setup().await;
    let count = |model: &str| {
        json!({"model": model, "system": "Be brief.",
            "messages": [{"role": "user", "content": "How many tokens is this?"}]})
    };
    let mut seen = Vec::new();
    for model in ["mock/small", "anth/claude", "claude-sonnet-4-5"] {
        let res = reqwest::Client::new()
            .post(app.url("/v1/messages/count_tokens?beta=true"))
            .header("x-api-key", &key)
            .json(&count(model))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{model}");
        let v: Value = res.json().await.unwrap();
        seen.push(v["input_tokens"].as_u64().unwrap());
    }
    assert!(seen.iter().all(|&n| n > 5 && n == seen[0]), "{seen:?}");
    assert_eq!(app.mock.stats().requests, 0);
}
