//! Anthropic Messages wire format: JSON and the SSE event sequence, with usage.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Value};

use crate::openai::{begin, forced_tool, now, plan, prompt_text};
use crate::stream::{error_response, json_response, sse_response};
use crate::{approx_tokens, word, MockState};

fn event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

pub async fn messages(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (v, b, guard) = match begin(&state, &body, &headers).await {
        Ok(x) => x,
        Err(res) => return res,
    };
    if b.status.is_some() {
        return error_response(guard, &b, true);
    }
    let model = v["model"].as_str().unwrap_or("mock").to_owned();
    let (mut text, n_messages) = prompt_text(&v["messages"]);
    match &v["system"] {
        Value::String(s) => text.push_str(s),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .for_each(|t| text.push_str(t)),
        _ => {}
    }
    let input_tokens = approx_tokens(&text) + 3 * n_messages;
    let (n, finish) = plan(&b, v["max_tokens"].as_u64());
    let tool_call = b.tool_call.clone().or_else(|| forced_tool(&v));
    let reasoning = b.reasoning.clone();
    let stop_reason = if tool_call.is_some() {
        "tool_use"
    } else if finish == "length" {
        "max_tokens"
    } else {
        "end_turn"
    };
    let output_tokens =
        if tool_call.is_some() { 8 } else { n } + reasoning.as_deref().map_or(0, approx_tokens);
    let id = format!("msg_mock{}", now());

    if v["stream"] != Value::Bool(true) {
        let mut content = match &tool_call {
            Some(name) => {
                json!([{"type": "tool_use", "id": "toolu_mock_1", "name": name, "input": {"q": "mock"}}])
            }
            None => {
                json!([{"type": "text", "text": (0..n).map(word).collect::<String>().trim_start()}])
            }
        };
        if let (Some(r), Some(blocks)) = (&reasoning, content.as_array_mut()) {
            blocks.insert(
                0,
                json!({"type": "thinking", "thinking": r, "signature": "mock-signature"}),
            );
        }
        let body = json!({
            "id": id, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop_reason, "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        });
        return json_response(guard, &b, &body);
    }

    let mut events = vec![event(
        "message_start",
        json!({"type": "message_start", "message": {"id": id, "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}),
    )];
    // The answer's block index: 1 after a thinking block.
    let at = usize::from(reasoning.is_some());
    if let Some(r) = &reasoning {
        events.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        ));
        events.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "thinking_delta", "thinking": r}}),
        ));
        events.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "signature_delta", "signature": "mock-signature"}}),
        ));
        events.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ));
    }
    match &tool_call {
        Some(name) => {
            events.push(event("content_block_start", json!({"type": "content_block_start", "index": at,
                "content_block": {"type": "tool_use", "id": "toolu_mock_1", "name": name, "input": {}}})));
            events.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": at,
                "delta": {"type": "input_json_delta", "partial_json": "{\"q\":"}}),
            ));
            events.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": at,
                "delta": {"type": "input_json_delta", "partial_json": "\"mock\"}"}}),
            ));
        }
        None => {
            events.push(event(
                "content_block_start",
                json!({"type": "content_block_start", "index": at,
                "content_block": {"type": "text", "text": ""}}),
            ));
            events.push(event("ping", json!({"type": "ping"})));
            for i in 0..n {
                events.push(event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": at,
                    "delta": {"type": "text_delta", "text": word(i)}}),
                ));
            }
        }
    }
    events.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": at}),
    ));
    events.push(event("message_delta", json!({"type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": {"output_tokens": output_tokens}})));
    events.push(event("message_stop", json!({"type": "message_stop"})));
    sse_response(guard, &b, events)
}
