//! OpenAI wire format: chat completions (JSON and SSE with usage), embeddings, models.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::stream::{error_response, json_response, sse_response, Guard};
use crate::{approx_tokens, word, Behavior, MockState};

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn bad_request(msg: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(
            json!({"error": {"message": msg, "type": "invalid_request_error", "code": null}}),
        ),
    )
        .into_response()
}

/// Text of every message, for the prompt estimate.
pub(crate) fn prompt_text(messages: &Value) -> (String, u64) {
    let mut text = String::new();
    let mut count = 0;
    for m in messages.as_array().map(Vec::as_slice).unwrap_or(&[]) {
        count += 1;
        match &m["content"] {
            Value::String(s) => text.push_str(s),
            Value::Array(parts) => {
                for p in parts {
                    if let Some(t) = p["text"].as_str() {
                        text.push_str(t);
                    }
                }
            }
            _ => {}
        }
    }
    (text, count)
}

/// The tool a request forces (`tool_choice` naming a function, or `required`/`any` with tools),
/// unless the conversation already ends with a tool result: then the mock answers in text, so
/// a client's tool round trip ends.
pub(crate) fn forced_tool(v: &Value) -> Option<String> {
    let last = v["messages"].as_array().and_then(|m| m.last())?;
    let answered = last["role"] == "tool"
        || last["content"]
            .as_array()
            .is_some_and(|c| c.iter().any(|b| b["type"] == "tool_result"));
    if answered {
        return None;
    }
    let first = || {
        let t = v["tools"].as_array()?.first()?;
        t["function"]["name"]
            .as_str()
            .or(t["name"].as_str())
            .map(str::to_owned)
    };
    let c = &v["tool_choice"];
    match (c.as_str(), c["type"].as_str()) {
        (Some("required"), _) | (_, Some("any")) => first(),
        (_, Some("function")) => c["function"]["name"]
            .as_str()
            .or(c["name"].as_str())
            .map(str::to_owned),
        (_, Some("tool")) => c["name"].as_str().map(str::to_owned),
        _ => None,
    }
}

/// Standard base64 (the embeddings API's `encoding_format: "base64"`).
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for (i, shift) in [18, 12, 6, 0].iter().enumerate() {
            if i <= c.len() {
                out.push(char::from(ABC[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// How many tokens to generate and why generation stops.
pub(crate) fn plan(b: &Behavior, max_tokens: Option<u64>) -> (u64, &'static str) {
    let want = b.completion_tokens.unwrap_or(12);
    match max_tokens {
        Some(m) if m < want => (m, "length"),
        _ => (want, "stop"),
    }
}

pub(crate) async fn begin(
    state: &Arc<MockState>,
    body: &Bytes,
    headers: &HeaderMap,
) -> Result<(Value, Behavior, Guard), Response> {
    let v: Value = serde_json::from_slice(body).map_err(|_| bad_request("body is not JSON"))?;
    state.record(&v, headers);
    let guard = Guard::new(state);
    let b = state.next_behavior(v["model"].as_str().unwrap_or(""));
    if b.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(b.delay_ms)).await;
    }
    Ok((v, b, guard))
}

pub async fn chat(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (v, b, guard) = match begin(&state, &body, &headers).await {
        Ok(x) => x,
        Err(res) => return res,
    };
    if b.status.is_some() {
        return error_response(guard, &b, false);
    }
    let model = v["model"].as_str().unwrap_or("mock").to_owned();
    let (text, n_messages) = prompt_text(&v["messages"]);
    let prompt_tokens = b
        .prompt_tokens
        .unwrap_or(approx_tokens(&text) + 3 * n_messages + 3);
    let max = v["max_completion_tokens"]
        .as_u64()
        .or(v["max_tokens"].as_u64());
    let (n, finish) = plan(&b, max);
    let id = format!("chatcmpl-mock{}", now());
    let created = now();
    let tool = b.tool_call.clone().or_else(|| forced_tool(&v));
    let reasoning = b.reasoning.clone();
    let completion_tokens =
        if tool.is_some() { 8 } else { n } + reasoning.as_deref().map_or(0, approx_tokens);
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens});

    if v["stream"] != Value::Bool(true) {
        let message = match &tool {
            Some(name) => json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_mock_1", "type": "function", "function": {"name": name, "arguments": "{\"q\":\"mock\"}"}}]}),
            None => {
                json!({"role": "assistant", "content": (0..n).map(word).collect::<String>().trim_start()})
            }
        };
        let finish = if tool.is_some() { "tool_calls" } else { finish };
        let mut message = message;
        if let Some(r) = &reasoning {
            message["reasoning_content"] = json!(r);
        }
        let body = json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage,
        });
        return json_response(guard, &b, &body);
    }

    let include_usage = v["stream_options"]["include_usage"] == Value::Bool(true) && !b.omit_usage;
    let chunk = |delta: Value, finish: Value| {
        let c = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    if let Some(r) = &reasoning {
        for part in r.split_inclusive(' ') {
            events.push(chunk(json!({"reasoning_content": part}), Value::Null));
        }
    }
    match &tool {
        Some(name) => {
            events.push(chunk(json!({"tool_calls": [{"index": 0, "id": "call_mock_1", "type": "function", "function": {"name": name, "arguments": ""}}]}), Value::Null));
            events.push(chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"q\":\"mock\"}"}}]}), Value::Null));
            events.push(chunk(json!({}), json!("tool_calls")));
        }
        None => {
            for i in 0..n {
                events.push(chunk(json!({"content": word(i)}), Value::Null));
            }
            events.push(chunk(json!({}), json!(finish)));
        }
    }
    if include_usage {
        let c = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [], "usage": usage});
        events.push(format!("data: {c}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_owned());
    sse_response(guard, &b, events)
}

/// A deterministic unit-ish vector for a text.
fn vector(text: &str, dims: usize) -> Vec<f32> {
    let mut h: u64 = 1469598103934665603;
    for byte in text.bytes() {
        h = (h ^ u64::from(byte)).wrapping_mul(1099511628211);
    }
    (0..dims)
        .map(|i| {
            let x = h.rotate_left((i * 7) as u32) % 2000;
            (x as f32 / 1000.0) - 1.0
        })
        .collect()
}

pub async fn embeddings(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (v, b, guard) = match begin(&state, &body, &headers).await {
        Ok(x) => x,
        Err(res) => return res,
    };
    if b.status.is_some() {
        return error_response(guard, &b, false);
    }
    let inputs: Vec<String> = match &v["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| x.to_string())
            })
            .collect(),
        _ => {
            drop(guard);
            return bad_request("input must be a string or an array");
        }
    };
    let dims = v["dimensions"].as_u64().unwrap_or(8) as usize;
    let tokens: u64 = inputs.iter().map(|s| approx_tokens(s)).sum();
    let as_base64 = v["encoding_format"] == "base64";
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let e = vector(s, dims);
            let embedding = if as_base64 {
                let bytes: Vec<u8> = e.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64(&bytes))
            } else {
                json!(e)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let body = json!({"object": "list", "data": data, "model": v["model"], "usage": {"prompt_tokens": tokens, "total_tokens": tokens}});
    json_response(guard, &b, &body)
}

pub async fn models() -> axum::Json<Value> {
    axum::Json(
        json!({"object": "list", "data": [{"id": "mock", "object": "model", "created": 0, "owned_by": "sluice-mock"}]}),
    )
}
