//! `/v1/messages` (Anthropic Messages API) in: the request becomes the internal chat request
//! (system blocks, text and images, `tool_use`/`tool_result`, tool choice, stop sequences, the
//! output budget), and a chat completion becomes a Messages answer. What has no chat equivalent
//! is dropped by the rules in README's "Messages API" table, never forwarded blindly.

use serde_json::{json, Map, Value};
use sluice_types::validation::Errors;
use sluice_types::ApiError;

use super::{cached_tokens, field, get, prefixed, reasoning_of, text_of};
use crate::chat::{ChatRequest, Ingress, Native};

/// Messages fields with no chat equivalent, dropped when translating (they still reach an
/// Anthropic-format provider untouched).
pub const DROPPED: &[&str] = &[
    "thinking",
    "context_management",
    "cache_control",
    "container",
    "mcp_servers",
    "service_tier",
    "top_k",
];

/// The Messages body's shape, every problem at once.
fn check(body: &Map<String, Value>) -> Result<(), ApiError> {
    let mut errors = Errors::new();
    match body.get("model") {
        Some(Value::String(s)) if !s.is_empty() => {}
        None | Some(Value::Null) => errors.add("model", "required", "model is required"),
        Some(_) => errors.add("model", "invalid_type", "model must be a non-empty string"),
    }
    match body.get("messages") {
        Some(Value::Array(m)) if m.is_empty() => {
            errors.add("messages", "min_length", "messages must not be empty")
        }
        Some(Value::Array(m)) => {
            for (i, msg) in m.iter().enumerate() {
                match msg["role"].as_str() {
                    Some("user" | "assistant" | "system") => {}
                    Some(r) => errors.add(
                        format!("messages[{i}].role"),
                        "invalid_enum",
                        format!("Invalid role: '{r}'. Allowed: user, assistant"),
                    ),
                    None => errors.add(
                        format!("messages[{i}].role"),
                        "required",
                        "every message needs a role",
                    ),
                }
                if !msg["content"].is_string() && !msg["content"].is_array() {
                    errors.add(
                        format!("messages[{i}].content"),
                        "invalid_type",
                        "content must be a string or an array of content blocks",
                    );
                }
            }
        }
        None | Some(Value::Null) => errors.add("messages", "required", "messages is required"),
        Some(_) => errors.add("messages", "invalid_type", "messages must be an array"),
    }
    if let Some(v) = body.get("max_tokens").filter(|v| !v.is_null()) {
        if v.as_u64().is_none_or(|n| n == 0) {
            errors.add(
                "max_tokens",
                "invalid_type",
                "max_tokens must be a positive integer",
            );
        }
    }
    match body.get("system") {
        None | Some(Value::Null | Value::String(_) | Value::Array(_)) => {}
        Some(_) => errors.add(
            "system",
            "invalid_type",
            "system must be a string or an array of text blocks",
        ),
    }
    if body
        .get("tools")
        .is_some_and(|t| !t.is_array() && !t.is_null())
    {
        errors.add("tools", "invalid_type", "tools must be an array");
    }
    if body
        .get("stop_sequences")
        .is_some_and(|t| !t.is_array() && !t.is_null())
    {
        errors.add(
            "stop_sequences",
            "invalid_type",
            "stop_sequences must be an array of strings",
        );
    }
    errors.finish()
}

/// A Messages image block → a chat `image_url` part.
fn image_part(b: &Value, at: &str) -> Result<Value, ApiError> {
    let src = &b["source"];
    let url = match src["type"].as_str() {
        Some("base64") => format!(
            "data:{};base64,{}",
            src["media_type"].as_str().unwrap_or("image/png"),
            src["data"].as_str().unwrap_or_default()
        ),
        Some("url") => src["url"].as_str().unwrap_or_default().to_owned(),
        _ => {
            return Err(field(
                format!("{at}.source"),
                "image source must be base64 or url",
                "invalid_enum",
            ))
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// The text of a `tool_result`'s content (a string or blocks; images in results are dropped).
fn result_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// One Messages message → chat messages (a user turn with tool results becomes the tool
/// messages first, then what else it says, as chat wants results right after the calls).
fn message(m: &Value, i: usize, out: &mut Vec<Value>) -> Result<(), ApiError> {
    let role = m["role"].as_str().unwrap_or("user");
    let at = format!("messages[{i}].content");
    let blocks = match &m["content"] {
        Value::String(s) => {
            out.push(json!({"role": role, "content": s}));
            return Ok(());
        }
        Value::Array(b) => b,
        _ => return Ok(()),
    };
    let mut text = Vec::new();
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    let mut has_image = false;
    for (j, b) in blocks.iter().enumerate() {
        let at = format!("{at}[{j}]");
        match b["type"].as_str() {
            Some("text") => {
                let t = b["text"].as_str().unwrap_or_default();
                text.push(t.to_owned());
                parts.push(json!({"type": "text", "text": t}));
            }
            Some("image") => {
                has_image = true;
                parts.push(image_part(b, &at)?);
            }
            Some("document") if b["source"]["type"] == "text" => {
                let t = b["source"]["data"].as_str().unwrap_or_default();
                text.push(t.to_owned());
                parts.push(json!({"type": "text", "text": t}));
            }
            Some("tool_use" | "server_tool_use") => {
                let args = serde_json::to_string(&b["input"]).unwrap_or_else(|_| "{}".into());
                calls.push(json!({"id": b["id"], "type": "function",
                    "function": {"name": b["name"], "arguments": args}}));
            }
            Some("tool_result") => {
                let mut content = result_text(&b["content"]);
                if b["is_error"] == true && !content.starts_with("Error") {
                    content = format!("Error: {content}");
                }
                out.push(
                    json!({"role": "tool", "tool_call_id": b["tool_use_id"], "content": content}),
                );
            }
            // Reasoning from an earlier turn: chat providers take no such input.
            Some("thinking" | "redacted_thinking") => {}
            Some(other) => {
                return Err(field(
                    format!("{at}.type"),
                    format!("content blocks of type '{other}' cannot be sent to this model"),
                    "invalid_enum",
                ))
            }
            None => return Err(field(at, "every content block needs a type", "required")),
        }
    }
    match role {
        "assistant" => {
            if text.is_empty() && calls.is_empty() {
                return Ok(());
            }
            let content = if text.is_empty() {
                Value::Null
            } else {
                json!(text.concat())
            };
            let mut msg = json!({"role": "assistant", "content": content});
            if !calls.is_empty() {
                msg["tool_calls"] = Value::Array(calls);
            }
            out.push(msg);
        }
        _ if parts.is_empty() => {}
        _ if has_image => out.push(json!({"role": role, "content": parts})),
        _ => out.push(json!({"role": role, "content": text.join("\n\n")})),
    }
    Ok(())
}

fn tools(list: &[Value]) -> Vec<Value> {
    list.iter()
        // Anthropic's server tools (web search, bash, text editor, …) run only at Anthropic.
        .filter(|t| t["type"].is_null() || t["type"] == "custom")
        .map(|t| {
            let schema = if t["input_schema"].is_object() {
                t["input_schema"].clone()
            } else {
                json!({"type": "object", "properties": {}})
            };
            let mut f = json!({"name": t["name"], "parameters": schema});
            if let Some(d) = t["description"].as_str() {
                f["description"] = json!(d);
            }
            json!({"type": "function", "function": f})
        })
        .collect()
}

/// A Messages body → the internal chat body.
pub fn to_chat(body: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    check(body)?;
    let mut messages = Vec::new();
    let system = match body.get("system") {
        Some(Value::String(s)) => s.clone(),
        Some(v @ Value::Array(_)) => text_of(v),
        _ => String::new(),
    };
    if !system.is_empty() {
        messages.push(json!({"role": "system", "content": system}));
    }
    for (i, m) in get(body, "messages")
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        message(m, i, &mut messages)?;
    }
    let mut out = Map::new();
    out.insert("model".into(), get(body, "model").clone());
    out.insert("messages".into(), Value::Array(messages));
    for k in ["max_tokens", "temperature", "top_p", "stream"] {
        if let Some(v) = body.get(k).filter(|v| !v.is_null()) {
            out.insert(k.into(), v.clone());
        }
    }
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(Value::Array(stops)) = body.get("stop_sequences") {
        if !stops.is_empty() {
            out.insert("stop".into(), Value::Array(stops.clone()));
        }
    }
    let tool_list = tools(
        body.get("tools")
            .and_then(Value::as_array)
            .map_or(&[], |v| v),
    );
    let has_tools = !tool_list.is_empty();
    if has_tools {
        out.insert("tools".into(), Value::Array(tool_list));
    }
    if let Some(choice) = body.get("tool_choice").filter(|_| has_tools) {
        let c = match choice["type"].as_str() {
            Some("auto") => Some(json!("auto")),
            Some("any") => Some(json!("required")),
            Some("none") => Some(json!("none")),
            Some("tool") => Some(json!({"type": "function", "function": {"name": choice["name"]}})),
            _ => None,
        };
        if let Some(c) = c {
            out.insert("tool_choice".into(), c);
        }
        if choice["disable_parallel_tool_use"] == true {
            out.insert("parallel_tool_calls".into(), json!(false));
        }
    }
    if let Some(user) = get(body, "metadata")["user_id"].as_str() {
        out.insert("user".into(), json!(user));
    }
    // Structured output (`output_config.format`, or the older `output_format`).
    let format = body
        .get("output_config")
        .and_then(|c| c.get("format"))
        .or_else(|| body.get("output_format"));
    if let Some(f) = format.filter(|f| f["type"] == "json_schema") {
        out.insert(
            "response_format".into(),
            json!({"type": "json_schema", "json_schema": {"name": "output", "schema": f["schema"]}}),
        );
    }
    for k in ["fallbacks", "allow_fallbacks", "fallback_on"] {
        if let Some(v) = body.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    Ok(out)
}

/// The internal request for a Messages body (the body kept for Anthropic-format providers).
pub fn request(body: Value, beta: Option<String>) -> Result<ChatRequest, ApiError> {
    let Value::Object(body) = body else {
        return Err(ApiError::new(
            sluice_types::ErrorKind::MalformedRequest,
            "The request body must be a JSON object.",
        ));
    };
    let chat = to_chat(&body)?;
    Ok(ChatRequest {
        body: Value::Object(chat),
        ingress: Ingress::Messages,
        native: Some(Native { body, beta }),
    })
}

/// OpenAI `finish_reason` → Anthropic `stop_reason`.
pub fn stop_reason(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// An Anthropic `usage` object from OpenAI usage numbers (Anthropic counts cache reads apart).
pub fn usage(prompt: u64, completion: u64, cached: u64) -> Value {
    json!({
        "input_tokens": prompt.saturating_sub(cached),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": completion,
    })
}

/// Tool-call arguments as the object Anthropic clients expect (`{}` when they are not JSON).
pub fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({}),
    }
}

/// A chat completion → a Messages answer.
pub fn from_chat(v: &Value, model: &str) -> Value {
    let choice = &v["choices"][0];
    let msg = &choice["message"];
    let mut content = Vec::new();
    if let Some(r) = reasoning_of(msg) {
        content.push(json!({"type": "thinking", "thinking": r, "signature": ""}));
    }
    if let Some(t) = msg["content"].as_str().filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": t}));
    }
    for c in msg["tool_calls"].as_array().into_iter().flatten() {
        let args = c["function"]["arguments"].as_str().unwrap_or("{}");
        content.push(
            json!({"type": "tool_use", "id": c["id"], "name": c["function"]["name"],
            "input": tool_input(args)}),
        );
    }
    let u = &v["usage"];
    json!({
        "id": prefixed("msg_", v["id"].as_str().unwrap_or_default()),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice["finish_reason"].as_str().unwrap_or("stop")),
        "stop_sequence": null,
        "usage": usage(
            u["prompt_tokens"].as_u64().unwrap_or(0),
            u["completion_tokens"].as_u64().unwrap_or(0),
            cached_tokens(u),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(v: Value) -> Map<String, Value> {
        to_chat(v.as_object().unwrap()).unwrap()
    }

    #[test]
    fn claude_code_shapes_become_chat_messages() {
        let out = chat(json!({
            "model": "m", "max_tokens": 32000, "stream": true,
            "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
                       {"type": "text", "text": "Be brief."}],
            "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"},
            "context_management": {"edits": []},
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]},
                {"role": "system", "content": "reminder"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "x"},
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "a"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "file"}]},
                    {"type": "text", "text": "go on"}]}
            ],
            "tools": [{"name": "Read", "description": "reads", "input_schema": {"type": "object"}},
                      {"type": "web_search_20250305", "name": "web_search"}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "stop_sequences": ["END"], "metadata": {"user_id": "u1"}
        }));
        let msgs = out["messages"].as_array().unwrap();
        assert_eq!(
            msgs[0],
            json!({"role": "system", "content": "You are Claude Code.\nBe brief."})
        );
        assert_eq!(msgs[1], json!({"role": "user", "content": "hi"}));
        assert_eq!(msgs[2], json!({"role": "system", "content": "reminder"}));
        assert_eq!(msgs[3]["content"], "Let me look.");
        assert_eq!(
            msgs[3]["tool_calls"][0]["function"]["arguments"],
            "{\"path\":\"a\"}"
        );
        assert_eq!(
            msgs[4],
            json!({"role": "tool", "tool_call_id": "toolu_1", "content": "file"})
        );
        assert_eq!(msgs[5], json!({"role": "user", "content": "go on"}));
        assert_eq!(out["tools"].as_array().unwrap().len(), 1);
        assert_eq!(out["tool_choice"], "required");
        assert_eq!(out["parallel_tool_calls"], false);
        assert_eq!(out["stop"], json!(["END"]));
        assert_eq!(out["user"], "u1");
        assert_eq!(out["stream_options"], json!({"include_usage": true}));
        for k in DROPPED
            .iter()
            .chain(&["output_config", "system", "stop_sequences"])
        {
            assert!(!out.contains_key(*k), "{k} must not reach a chat provider");
        }
    }

    #[test]
    fn shape_errors_name_the_messages_field() {
        let e = to_chat(
            json!({"model": "m", "messages": [{"role": "tool", "content": "x"}], "max_tokens": 0})
                .as_object()
                .unwrap(),
        )
        .unwrap_err();
        let errors = e.details.unwrap()["errors"].clone();
        let fields: Vec<&str> = errors
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, ["messages[0].role", "max_tokens"]);
    }

    #[test]
    fn completions_become_messages_with_thinking_tools_and_cache_usage() {
        let v = json!({"id": "chatcmpl-1", "choices": [{"finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "ok", "reasoning_content": "think",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 6}}});
        let m = from_chat(&v, "mock/m");
        assert_eq!(m["id"], "msg_chatcmpl-1");
        assert_eq!(m["stop_reason"], "tool_use");
        assert_eq!(
            m["content"][0],
            json!({"type": "thinking", "thinking": "think", "signature": ""})
        );
        assert_eq!(m["content"][1], json!({"type": "text", "text": "ok"}));
        assert_eq!(
            m["content"][2],
            json!({"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}})
        );
        assert_eq!(
            m["usage"],
            json!({"input_tokens": 4, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 6, "output_tokens": 4})
        );
    }
}
