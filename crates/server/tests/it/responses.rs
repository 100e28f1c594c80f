//! `/v1/responses` (OpenAI Responses API) onto both upstream formats: JSON, event streams,
//! function tools, stored conversations (`previous_response_id`, GET, DELETE, per account),
//! errors in the contract's envelope, credits; and the legacy `/v1/completions`.

use reqwest::{Method, Response};
use serde_json::{json, Value};
use sluice_testkit::{Behavior, TestApp};

use crate::assert_error;
use crate::credits::{assert_reconciles, charged, key_for, settled};
use crate::gateway::sse_frames;
use crate::messages::{setup, MODELS};

async fn post(app: &TestApp, key: &str, body: &Value) -> Response {
    app.req(Method::POST, "/v1/responses", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn hello(model: &str) -> Value {
    json!({"model": model, "input": "Say hello", "instructions": "Be brief.", "max_output_tokens": 5})
}

async fn stream(app: &TestApp, key: &str, mut body: Value) -> Vec<Value> {
    body["stream"] = json!(true);
    let res = post(app, key, &body).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let text = res.text().await.unwrap();
    sse_frames(&text)
        .into_iter()
        .map(|(e, d)| {
            let v: Value = serde_json::from_str(&d).unwrap();
            assert_eq!(v["type"], e.as_str(), "each event names itself");
            v
        })
        .collect()
}

#[tokio::test]
async fn a_response_is_answered_in_the_responses_shape_by_either_upstream_format() {
    let (app, key) = setup().await;
    for model in MODELS {
        let res = post(&app, &key, &hello(model)).await;
        assert_eq!(res.status(), 200, "{model}");
        assert_eq!(res.headers()["x-arena-resolved-model"], model);
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["object"], "response");
        assert!(v["id"].as_str().unwrap().starts_with("resp_"));
        assert_eq!(v["model"], model);
        assert_eq!(v["status"], "incomplete", "5 tokens is the budget");
        assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(v["instructions"], "Be brief.");
        assert_eq!(v["max_output_tokens"], 5);
        let item = &v["output"][0];
        assert_eq!(item["type"], "message");
        assert_eq!(item["role"], "assistant");
        assert_eq!(item["content"][0]["type"], "output_text");
        assert_eq!(item["content"][0]["text"], "lorem ipsum dolor sit amet");
        assert_eq!(v["usage"]["output_tokens"], 5);
        let sent = app.mock.bodies().pop().unwrap();
        if model == "mock/small" {
            assert_eq!(
                sent["messages"],
                json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}])
            );
            assert_eq!(sent["max_tokens"], 5);
        } else {
            assert_eq!(sent["system"], "Be brief.");
            assert_eq!(sent["max_tokens"], 5);
        }
    }
}

#[tokio::test]
async fn a_stream_has_the_responses_event_sequence_from_either_upstream_format() {
    let (app, key) = setup().await;
    for model in MODELS {
        let evs = stream(&app, &key, hello(model)).await;
        let names: Vec<&str> = evs
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .filter(|t| *t != "response.output_text.delta")
            .collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.incomplete"
            ],
            "{model}"
        );
        let seq: Vec<u64> = evs
            .iter()
            .map(|e| e["sequence_number"].as_u64().unwrap())
            .collect();
        assert_eq!(seq, (0..evs.len() as u64).collect::<Vec<_>>());
        let text: String = evs
            .iter()
            .filter(|e| e["type"] == "response.output_text.delta")
            .map(|e| e["delta"].as_str().unwrap())
            .collect();
        assert_eq!(text.trim_start(), "lorem ipsum dolor sit amet");
        let last = &evs.last().unwrap()["response"];
        assert_eq!(last["usage"]["output_tokens"], 5);
        assert_eq!(last["output"][0]["content"][0]["text"], text);
    }
}

#[tokio::test]
async fn a_function_call_round_trip_continues_with_previous_response_id() {
    let (app, key) = setup().await;
    let tools = json!([{"type": "function", "name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}},
        {"type": "web_search"}]);
    for model in MODELS {
        let first = json!({"model": model, "input": [{"role": "user", "content": "Weather in Oslo?"}],
            "tools": tools, "tool_choice": {"type": "function", "name": "get_weather"}});
        let v: Value = post(&app, &key, &first).await.json().await.unwrap();
        assert_eq!(v["status"], "completed", "{model}: {v}");
        let call = v["output"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(call["type"], "function_call");
        assert_eq!(call["name"], "get_weather");
        assert_eq!(call["arguments"], "{\"q\":\"mock\"}");
        let sent = app.mock.bodies().pop().unwrap();
        assert_eq!(
            sent["tools"].as_array().unwrap().len(),
            1,
            "{model}: web_search is dropped"
        );

        let second = json!({"model": model, "previous_response_id": v["id"], "tools": tools,
            "max_output_tokens": 5,
            "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}]});
        let v2: Value = post(&app, &key, &second).await.json().await.unwrap();
        assert_eq!(v2["output"][0]["type"], "message", "{model}: {v2}");
        assert_eq!(v2["previous_response_id"], v["id"]);
        let sent = app.mock.bodies().pop().unwrap();
        let msgs = sent["messages"].as_array().unwrap();
        if model == "mock/small" {
            assert_eq!(
                msgs[0],
                json!({"role": "user", "content": "Weather in Oslo?"})
            );
            assert_eq!(msgs[1]["tool_calls"][0]["id"], call["call_id"]);
            assert_eq!(
                msgs[2],
                json!({"role": "tool", "tool_call_id": call["call_id"], "content": "sunny"})
            );
        } else {
            assert_eq!(msgs[1]["content"][0]["type"], "tool_use");
            assert_eq!(msgs[2]["content"][0]["tool_use_id"], call["call_id"]);
        }

        // Streamed, the call arrives as an item with argument deltas.
        let evs = stream(&app, &key, first.clone()).await;
        let added = evs
            .iter()
            .find(|e| {
                e["type"] == "response.output_item.added" && e["item"]["type"] == "function_call"
            })
            .unwrap_or_else(|| panic!("{model}: no function_call item"));
        assert_eq!(added["item"]["name"], "get_weather");
        let done = evs
            .iter()
            .find(|e| e["type"] == "response.function_call_arguments.done")
            .unwrap();
        assert_eq!(done["arguments"], "{\"q\":\"mock\"}");
        let completed = evs.last().unwrap();
        assert_eq!(completed["type"], "response.completed");
        // A streamed response is stored too, and can be continued.
        let id = completed["response"]["id"].as_str().unwrap();
        let res = app
            .req(Method::GET, &format!("/v1/responses/{id}"), &key)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
}

#[tokio::test]
async fn stored_responses_belong_to_their_account() {
    let (app, key) = setup().await;
    let other_acct = app.create_account("other").await;
    let (_, other) = app.create_key(&other_acct, &["chat:write"]).await;
    let v: Value = post(&app, &key, &hello("mock/small"))
        .await
        .json()
        .await
        .unwrap();
    let id = v["id"].as_str().unwrap();
    let path = format!("/v1/responses/{id}");

    let got: Value = app
        .req(Method::GET, &path, &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, v);
    let res = app.req(Method::GET, &path, &other).send().await.unwrap();
    assert_error(res, 404, "not_found", "invalid_request_error", None, false).await;
    let mut cont = hello("mock/small");
    cont["previous_response_id"] = json!(id);
    assert_error(
        post(&app, &other, &cont).await,
        404,
        "not_found",
        "invalid_request_error",
        Some("previous_response_id"),
        false,
    )
    .await;
    let res = app.req(Method::DELETE, &path, &other).send().await.unwrap();
    assert_error(res, 404, "not_found", "invalid_request_error", None, false).await;

    let res = app.req(Method::DELETE, &path, &key).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(
        v,
        json!({"id": id, "object": "response.deleted", "deleted": true})
    );
    let res = app.req(Method::GET, &path, &key).send().await.unwrap();
    assert_error(res, 404, "not_found", "invalid_request_error", None, false).await;

    // store: false keeps nothing.
    let mut body = hello("mock/small");
    body["store"] = json!(false);
    let v: Value = post(&app, &key, &body).await.json().await.unwrap();
    assert_eq!(v["store"], false);
    let res = app
        .req(
            Method::GET,
            &format!("/v1/responses/{}", v["id"].as_str().unwrap()),
            &key,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn codexs_request_fields_are_accepted_and_not_forwarded() {
    let (app, key) = setup().await;
    let body = json!({
        "model": "mock/small", "instructions": "You are Codex.", "store": false, "stream": false,
        "input": [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
                  {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "say hi"}]}],
        "tools": [{"type": "function", "name": "shell", "parameters": {"type": "object"}, "strict": false}],
        "tool_choice": "auto", "parallel_tool_calls": false, "reasoning": {"effort": "medium", "summary": "auto"},
        "include": ["reasoning.encrypted_content"], "prompt_cache_key": "abc", "max_output_tokens": 32000,
        "client_metadata": {"session": "s1"}, "text": {"verbosity": "medium"}
    });
    let res = post(&app, &key, &body).await;
    assert_eq!(res.status(), 200);
    let sent = app.mock.bodies().pop().unwrap();
    assert_eq!(sent["max_tokens"], 1024, "clamped to the model's limit");
    assert_eq!(
        sent["messages"][1],
        json!({"role": "system", "content": "rules"})
    );
    assert_eq!(sent["parallel_tool_calls"], false);
    for k in [
        "include",
        "prompt_cache_key",
        "client_metadata",
        "reasoning",
        "text",
        "store",
        "input",
    ] {
        assert!(sent.get(k).is_none(), "{k} was forwarded");
    }
}

#[tokio::test]
async fn errors_use_the_contracts_envelope() {
    let (app, key) = setup().await;
    assert_error(
        post(&app, &key, &json!({"model": "mock/small"})).await,
        400,
        "invalid_request",
        "invalid_request_error",
        Some("input"),
        false,
    )
    .await;
    let mut body = hello("mock/strict");
    body["max_output_tokens"] = json!(5000);
    let e = assert_error(
        post(&app, &key, &body).await,
        400,
        "invalid_request",
        "invalid_request_error",
        Some("max_output_tokens"),
        false,
    )
    .await;
    assert_eq!(e["details"]["errors"][0]["code"], "max_value");
    let res = app
        .req(Method::POST, "/v1/responses", "sk-nope")
        .json(&hello("mock/small"))
        .send()
        .await
        .unwrap();
    assert_error(
        res,
        401,
        "unauthorized",
        "authentication_error",
        None,
        false,
    )
    .await;
    // Mid-stream: `response.failed`, then one `error` event.
    app.mock.push(
        Behavior {
            reset_after_chunks: Some(4),
            ..Default::default()
        },
        1,
    );
    let evs = stream(&app, &key, hello("mock/small")).await;
    let n = evs.len();
    assert_eq!(evs[n - 2]["type"], "response.failed");
    assert_eq!(
        evs[n - 2]["response"]["error"]["code"],
        "provider_unavailable"
    );
    assert_eq!(evs[n - 1]["type"], "error");
    assert_eq!(evs[n - 1]["code"], "provider_unavailable");
    assert_eq!(evs[n - 1]["error"]["code"], "provider_unavailable");
}

#[tokio::test]
async fn responses_and_completions_are_charged_once() {
    let app = TestApp::start().await;
    let (acct, key) = key_for(&app, 1_000_000).await;
    for model in MODELS {
        assert_eq!(post(&app, &key, &hello(model)).await.status(), 200);
        let _ = stream(&app, &key, hello(model)).await;
    }
    let legacy = json!({"model": "mock/small", "prompt": "Say hello", "max_tokens": 5});
    let res = app
        .req(Method::POST, "/v1/completions", &key)
        .json(&legacy)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let records = settled(&app.server, &acct, 5).await;
    assert_eq!(records.len(), 5);
    for r in &records {
        assert_eq!((r.status, r.completion_tokens), (200, 5), "{r:?}");
        assert_eq!(r.cost, r.prompt_tokens + 2 * r.completion_tokens, "{r:?}");
    }
    assert_eq!(
        assert_reconciles(&app.server, &acct).await,
        1_000_000 - charged(&records)
    );
}

#[tokio::test]
async fn legacy_completions_are_served_by_chat_models() {
    let (app, key) = setup().await;
    let res = app
        .req(Method::POST, "/v1/completions", &key)
        .json(&json!({"model": "anth/claude", "prompt": "Say hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(
        v["choices"][0]["text"],
        "lorem ipsum dolor sit amet consectetur adipiscing elit lorem ipsum dolor sit"
    );
    assert_eq!(
        app.mock.bodies().pop().unwrap()["max_tokens"],
        16,
        "the legacy default"
    );
    let res = app
        .req(Method::POST, "/v1/completions", &key)
        .json(
            &json!({"model": "mock/small", "prompt": "Say hello", "max_tokens": 3, "stream": true}),
        )
        .send()
        .await
        .unwrap();
    let text = res.text().await.unwrap();
    let frames = sse_frames(&text);
    assert_eq!(frames.last().unwrap().1, "[DONE]");
    let words: String = frames
        .iter()
        .filter(|(_, d)| d != "[DONE]")
        .map(|(_, d)| {
            let v: Value = serde_json::from_str(d).unwrap();
            assert_eq!(v["object"], "text_completion");
            v["choices"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(words.trim_start(), "lorem ipsum dolor");
    assert_error(
        app.req(Method::POST, "/v1/completions", &key)
            .json(&json!({"model": "mock/small", "prompt": ["a", "b"]}))
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
        "invalid_request_error",
        Some("prompt"),
        false,
    )
    .await;
}

#[tokio::test]
async fn base64_embeddings_pass_through() {
    let (app, key) = setup().await;
    let res = app
        .req(Method::POST, "/v1/embeddings", &key)
        .json(&json!({"model": "mock/embed", "input": "hi", "encoding_format": "base64"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    let b64 = v["data"][0]["embedding"].as_str().unwrap();
    assert_eq!(b64.len(), 44, "8 floats = 32 bytes = 44 base64 characters");
}

#[tokio::test]
async fn responses_are_limited_and_refused_like_chat() {
    let app = TestApp::start().await;
    let acct = app.create_account_with_balance("limited", 1_000_000).await;
    let (_, limited) = app
        .create_key_with(
            &acct,
            json!({"scopes": ["chat:write"], "models": ["mock/small"], "rate_limits": {"rpm": 1}}),
        )
        .await;
    assert_eq!(
        post(&app, &limited, &hello("mock/small")).await.status(),
        200
    );
    let res = post(&app, &limited, &hello("mock/small")).await;
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(res.headers()["x-arena-rate-limit-dimension"], "rpm");
    assert_error(
        res,
        429,
        "rate_limit_exceeded",
        "invalid_request_error",
        None,
        true,
    )
    .await;
    let e = assert_error(
        post(&app, &limited, &hello("anth/claude")).await,
        422,
        "model_not_allowed",
        "invalid_request_error",
        Some("model"),
        false,
    )
    .await;
    assert_eq!(e["details"]["allowed_models"], json!(["mock/small"]));

    let poor = app.create_account_with_balance("poor", 0).await;
    let (_, poor_key) = app.create_key(&poor, &["chat:write"]).await;
    let weak_acct = app.create_account_with_balance("weak", 1_000_000).await;
    let (_, weak) = app.create_key(&weak_acct, &["models:read"]).await;
    let before = app.mock.stats().requests;
    assert_error(
        post(&app, &poor_key, &hello("mock/small")).await,
        402,
        "insufficient_credits",
        "billing_error",
        None,
        false,
    )
    .await;
    assert_error(
        post(&app, &weak, &hello("mock/small")).await,
        403,
        "forbidden",
        "permission_error",
        None,
        false,
    )
    .await;
    assert_error(
        post(&app, &poor_key, &hello("no-such-model")).await,
        400,
        "invalid_request",
        "invalid_request_error",
        Some("model"),
        false,
    )
    .await;
    assert_eq!(app.mock.stats().requests, before, "no upstream call");

    let (app2, key) = setup().await;
    for (model, status) in [("mock/err500", 502), ("down/x", 503)] {
        assert_error(
            post(&app2, &key, &hello(model)).await,
            status,
            "provider_unavailable",
            "provider_error",
            None,
            true,
        )
        .await;
    }
}
