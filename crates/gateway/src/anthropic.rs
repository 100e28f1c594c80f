//! The Anthropic Messages API, translated both ways: OpenAI chat requests become Messages
//! requests (system prompt, images, tool calls and results, tool choice, stop sequences), and
//! Messages answers and SSE events become OpenAI completions and chunks (stop reasons, usage,
//! thinking as `reasoning_content`).

use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use serde_json::{json, Map, Value};
use sluice_types::{ApiError, ErrorKind};

use crate::catalog::Model;
use crate::upstream::provider_error;
use crate::{sse, ChunkStream, Usage, UsageCell};

fn bad(msg: impl Into<String>, param: &str) -> ApiError {
    ApiError::new(ErrorKind::InvalidFields, msg)
        .with_param(param)
        .with_field_error("invalid_format")
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// OpenAI content (string or parts) → Anthropic content blocks.
fn blocks(content: &Value, at: &str) -> Result<Vec<Value>, ApiError> {
    match content {
        Value::String(s) => Ok(vec![json!({"type": "text", "text": s})]),
        Value::Null => Ok(vec![]),
        Value::Array(parts) => parts
            .iter()
            .enumerate()
            .map(|(i, p)| match p["type"].as_str() {
                Some("text") => Ok(json!({"type": "text", "text": p["text"]})),
                Some("image_url") => {
                    let url = p["image_url"]["url"].as_str().unwrap_or_default();
                    match url.strip_prefix("data:").and_then(|r| r.split_once(";base64,")) {
                        Some((media, data)) => Ok(json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}})),
                        None => Ok(json!({"type": "image", "source": {"type": "url", "url": url}})),
                    }
                }
                _ => Err(bad(format!("{at}[{i}]: unsupported content part for an Anthropic model"), at)),
            })
            .collect(),
        _ => Err(bad(format!("{at} must be a string or an array of parts"), at)),
    }
}

/// Appends blocks to the last message if it has the same role (Anthropic wants alternation).
fn push(messages: &mut Vec<Value>, role: &str, mut content: Vec<Value>) {
    if let Some(last) = messages.last_mut() {
        if last["role"] == role {
            if let Some(arr) = last["content"].as_array_mut() {
                arr.append(&mut content);
                return;
            }
        }
    }
    messages.push(json!({"role": role, "content": content}));
}

/// The Messages request for an OpenAI chat body.
pub fn prepare(
    body: &Map<String, Value>,
    model: &Model,
    stream: bool,
    max_tokens: u64,
) -> Result<Value, ApiError> {
    if body.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(bad("n > 1 is not supported by Anthropic models", "n"));
    }
    let mut system = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    let empty = Vec::new();
    for (i, m) in body
        .get("messages")
        .and_then(Value::as_array)
        .unwrap_or(&empty)
        .iter()
        .enumerate()
    {
        let at = format!("messages[{i}].content");
        match m["role"].as_str().unwrap_or_default() {
            "system" | "developer" => system.push(text_of(&m["content"])),
            "user" => push(&mut messages, "user", blocks(&m["content"], &at)?),
            "assistant" => {
                let mut content = blocks(&m["content"], &at)?;
                for call in m["tool_calls"].as_array().unwrap_or(&empty) {
                    let args = call["function"]["arguments"].as_str().unwrap_or("{}");
                    let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
                    content.push(json!({"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": input}));
                }
                push(&mut messages, "assistant", content);
            }
            "tool" | "function" => {
                let block = json!({"type": "tool_result", "tool_use_id": m["tool_call_id"], "content": text_of(&m["content"])});
                push(&mut messages, "user", vec![block]);
            }
            _ => {}
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model.upstream));
    out.insert("messages".into(), Value::Array(messages));
    out.insert("max_tokens".into(), json!(max_tokens));
    if !system.is_empty() {
        out.insert("system".into(), json!(system.join("\n\n")));
    }
    for key in ["temperature", "top_p", "top_k"] {
        if let Some(v) = body.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), v.clone());
        }
    }
    match body.get("stop") {
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            out.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(Value::Array(tools)) = body.get("tools") {
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| {
                let f = &t["function"];
                json!({"name": f["name"], "description": f["description"].as_str().unwrap_or(""),
                       "input_schema": if f["parameters"].is_object() { f["parameters"].clone() } else { json!({"type": "object"}) }})
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = body.get("tool_choice") {
        let c = match choice {
            Value::String(s) if s == "auto" => Some(json!({"type": "auto"})),
            Value::String(s) if s == "required" => Some(json!({"type": "any"})),
            Value::String(s) if s == "none" => Some(json!({"type": "none"})),
            Value::Object(_) => choice["function"]["name"]
                .as_str()
                .map(|n| json!({"type": "tool", "name": n})),
            _ => None,
        };
        if let Some(c) = c {
            out.insert("tool_choice".into(), c);
        }
    }
    if let Some(user) = body.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    if stream {
        out.insert("stream".into(), json!(true));
    }
    Ok(Value::Object(out))
}

/// Every prompt token, cached or not: Anthropic's `input_tokens` excludes the cache reads and
/// writes, which are still part of the prompt (and billed).
pub fn input_tokens(usage: &Value) -> u64 {
    [
        "input_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
    ]
    .iter()
    .filter_map(|k| usage[*k].as_u64())
    .sum()
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
pub fn finish_reason(stop: &str) -> &'static str {
    match stop {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A Messages answer → an OpenAI chat completion.
pub fn to_openai(v: &Value, model: &Model) -> Result<Value, ApiError> {
    let Some(content) = v["content"].as_array() else {
        return Err(provider_error(
            model,
            "the provider's answer has no `content`",
        ));
    };
    let mut text = String::new();
    let mut thinking = String::new();
    let mut calls = Vec::new();
    for b in content {
        match b["type"].as_str() {
            Some("text") => text.push_str(b["text"].as_str().unwrap_or_default()),
            Some("thinking") => thinking.push_str(b["thinking"].as_str().unwrap_or_default()),
            Some("tool_use") => calls.push(json!({"id": b["id"], "type": "function",
                "function": {"name": b["name"], "arguments": b["input"].to_string()}})),
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    if !thinking.is_empty() {
        // Where OpenAI-compatible servers (DeepSeek, vLLM, llama.cpp) put reasoning.
        message["reasoning_content"] = json!(thinking);
    }
    let usage = Usage {
        prompt_tokens: input_tokens(&v["usage"]),
        completion_tokens: v["usage"]["output_tokens"].as_u64().unwrap_or(0),
    };
    Ok(json!({
        "id": v["id"], "object": "chat.completion", "created": now(), "model": model.id,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(v["stop_reason"].as_str().unwrap_or("end_turn"))}],
        "usage": usage.to_openai(),
    }))
}

struct State<S> {
    events: S,
    model: Arc<Model>,
    usage: Arc<UsageCell>,
    wants_usage: bool,
    id: String,
    created: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    /// Anthropic block index → OpenAI tool call index.
    tool_index: Vec<(u64, u64)>,
    finished: bool,
    pending: std::collections::VecDeque<Value>,
}

impl<S> State<S> {
    fn chunk(&self, delta: Value, finish: Value) -> Value {
        json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model.id,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    }

    /// Turns one Anthropic event into zero or more OpenAI chunks.
    fn translate(&mut self, ev: &sse::Event) -> Result<(), ApiError> {
        let v: Value = serde_json::from_str(&ev.data).map_err(|_| {
            provider_error(&self.model, "the provider sent an invalid stream event")
        })?;
        let kind = v["type"].as_str().unwrap_or(ev.event.as_str());
        match kind {
            "message_start" => {
                self.id = v["message"]["id"].as_str().unwrap_or("msg").to_owned();
                self.prompt_tokens = input_tokens(&v["message"]["usage"]);
                let c = self.chunk(json!({"role": "assistant", "content": ""}), Value::Null);
                self.pending.push_back(c);
            }
            "content_block_start" if v["content_block"]["type"] == "tool_use" => {
                let idx = self.tool_index.len() as u64;
                self.tool_index
                    .push((v["index"].as_u64().unwrap_or(0), idx));
                let b = &v["content_block"];
                let c = self.chunk(
                    json!({"tool_calls": [{"index": idx, "id": b["id"], "type": "function",
                    "function": {"name": b["name"], "arguments": ""}}]}),
                    Value::Null,
                );
                self.pending.push_back(c);
            }
            "content_block_delta" => {
                let d = &v["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => {
                        let t = d["text"].as_str().unwrap_or_default();
                        self.usage.add_generated(t);
                        let c = self.chunk(json!({"content": t}), Value::Null);
                        self.pending.push_back(c);
                    }
                    Some("thinking_delta") => {
                        let t = d["thinking"].as_str().unwrap_or_default();
                        self.usage.add_generated(t);
                        let c = self.chunk(json!({"reasoning_content": t}), Value::Null);
                        self.pending.push_back(c);
                    }
                    Some("input_json_delta") => {
                        let block = v["index"].as_u64().unwrap_or(0);
                        let idx = self
                            .tool_index
                            .iter()
                            .find(|(b, _)| *b == block)
                            .map_or(0, |(_, i)| *i);
                        let part = d["partial_json"].as_str().unwrap_or_default();
                        self.usage.add_generated(part);
                        let c = self.chunk(json!({"tool_calls": [{"index": idx, "function": {"arguments": part}}]}), Value::Null);
                        self.pending.push_back(c);
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                self.completion_tokens = v["usage"]["output_tokens"]
                    .as_u64()
                    .unwrap_or(self.completion_tokens);
                if let Some(stop) = v["delta"]["stop_reason"].as_str() {
                    let c = self.chunk(json!({}), json!(finish_reason(stop)));
                    self.pending.push_back(c);
                }
            }
            "message_stop" => {
                let usage = Usage {
                    prompt_tokens: self.prompt_tokens,
                    completion_tokens: self.completion_tokens,
                };
                self.usage.set(usage);
                if self.wants_usage {
                    let c = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                                   "model": self.model.id, "choices": [], "usage": usage.to_openai()});
                    self.pending.push_back(c);
                }
                self.finished = true;
            }
            "error" => {
                let msg = v["error"]["message"]
                    .as_str()
                    .unwrap_or("stream error")
                    .to_owned();
                return Err(provider_error(&self.model, msg));
            }
            _ => {}
        }
        Ok(())
    }
}

/// OpenAI chunks from an Anthropic Messages SSE stream.
pub fn chunk_stream<S>(
    events: S,
    model: Arc<Model>,
    wants_usage: bool,
    usage: Arc<UsageCell>,
) -> ChunkStream
where
    S: Stream<Item = Result<sse::Event, ApiError>> + Send + Unpin + 'static,
{
    let st = State {
        events,
        model,
        usage,
        wants_usage,
        id: String::new(),
        created: now(),
        prompt_tokens: 0,
        completion_tokens: 0,
        tool_index: Vec::new(),
        finished: false,
        pending: Default::default(),
    };
    Box::pin(futures_util::stream::unfold(
        (st, false),
        |(mut st, mut ended)| async move {
            loop {
                if let Some(c) = st.pending.pop_front() {
                    return Some((Ok(c), (st, ended)));
                }
                if ended || st.finished {
                    return None;
                }
                match st.events.next().await {
                    None => {
                        ended = true;
                        let e = provider_error(
                            &st.model,
                            "the stream ended before the response was complete",
                        );
                        return Some((Err(e), (st, ended)));
                    }
                    Some(Err(e)) => return Some((Err(e), (st, true))),
                    Some(Ok(ev)) => {
                        if let Err(e) = st.translate(&ev) {
                            return Some((Err(e), (st, true)));
                        }
                    }
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Catalog, RawModel, RawProvider};

    fn model() -> Arc<Model> {
        let p = RawProvider {
            id: "anthropic".into(),
            kind: "anthropic".into(),
            base_url: None,
            api_key_env: None,
            api_key_file: None,
            connect_timeout_ms: None,
            first_byte_timeout_ms: None,
            idle_timeout_ms: None,
            max_response_bytes: None,
        };
        let m = RawModel {
            id: "anthropic/claude".into(),
            upstream: Some("claude-x".into()),
            aliases: vec![],
            mode: None,
            context_window: None,
            max_output_tokens: None,
            input_price: 0,
            output_price: 0,
            capabilities: vec![],
            priority: 0,
            tokenizer: None,
            strict_max_tokens: None,
        };
        let (c, _) = Catalog::build(&[p], &[m], &|_| None, None).unwrap();
        c.models[0].clone()
    }

    #[test]
    fn requests_move_system_tools_and_tool_results_into_place() {
        let body = json!({
            "model": "anthropic/claude", "max_tokens": 100, "stop": "END", "tool_choice": "required",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
        });
        let out = prepare(body.as_object().unwrap(), &model(), false, 100).unwrap();
        assert_eq!(out["model"], "claude-x");
        assert_eq!(out["system"], "be brief");
        assert_eq!(out["stop_sequences"], json!(["END"]));
        assert_eq!(out["tool_choice"], json!({"type": "any"}));
        assert_eq!(out["tools"][0]["input_schema"], json!({"type": "object"}));
        let msgs = out["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 3);
        assert_eq!(
            msgs[1]["content"][0],
            json!({"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}})
        );
        assert_eq!(
            msgs[2]["content"][0],
            json!({"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"})
        );
    }

    #[test]
    fn answers_become_openai_completions() {
        let v = json!({"id": "msg_1", "content": [{"type": "text", "text": "hi"}, {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}],
                       "stop_reason": "tool_use", "usage": {"input_tokens": 2, "cache_read_input_tokens": 5, "output_tokens": 3}});
        let out = to_openai(&v, &model()).unwrap();
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10})
        );
        assert_eq!(out["model"], "anthropic/claude");
    }
}
