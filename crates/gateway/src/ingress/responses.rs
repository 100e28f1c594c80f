//! `/v1/responses` (OpenAI Responses API) in: `input` (a string or items), `instructions`,
//! function tools, `tool_choice`, `max_output_tokens` and `text.format` become the internal chat
//! request; a chat completion becomes a Response object. Items and tools no chat provider can
//! take (hosted tools such as `web_search`, encrypted reasoning) are dropped by the rules in
//! README's "Responses API" table. A stored response keeps its conversation as chat messages,
//! so `previous_response_id` continues it on any provider.

use serde_json::{json, Map, Value};
use sluice_types::validation::Errors;
use sluice_types::{id, now_unix, ApiError, ErrorKind};

use super::{cached_tokens, field, get, reasoning_of, text_of};
use crate::chat::{ChatRequest, Ingress};

/// What a Response object repeats from its request, and the id it will have.
#[derive(Clone, Debug)]
pub struct ResponseMeta {
    pub id: String,
    pub created_at: i64,
    pub store: bool,
    /// The request's own fields, echoed into the Response object.
    pub echo: Map<String, Value>,
}

/// Makes the default of an echoed field.
type MakeDefault = fn() -> Value;

/// Request fields a Response object echoes back (with their defaults when absent).
const ECHOED: &[(&str, MakeDefault)] = &[
    ("instructions", || Value::Null),
    ("max_output_tokens", || Value::Null),
    ("parallel_tool_calls", || Value::Bool(true)),
    ("previous_response_id", || Value::Null),
    ("reasoning", || json!({"effort": null, "summary": null})),
    ("temperature", || Value::Null),
    ("text", || json!({"format": {"type": "text"}})),
    ("tool_choice", || json!("auto")),
    ("tools", || json!([])),
    ("top_p", || Value::Null),
    ("truncation", || json!("disabled")),
    ("user", || Value::Null),
    ("metadata", || json!({})),
];

/// A translated Responses request: the chat request, the conversation so far (what a stored
/// response keeps, instructions excluded as the API does), and what the answer echoes.
pub struct Prepared {
    pub request: ChatRequest,
    pub conversation: Vec<Value>,
    pub meta: ResponseMeta,
}

fn check(body: &Map<String, Value>) -> Result<(), ApiError> {
    let mut errors = Errors::new();
    match body.get("model") {
        Some(Value::String(s)) if !s.is_empty() => {}
        None | Some(Value::Null) => errors.add("model", "required", "model is required"),
        Some(_) => errors.add("model", "invalid_type", "model must be a non-empty string"),
    }
    match body.get("input") {
        Some(Value::String(_) | Value::Array(_)) => {}
        None | Some(Value::Null) => errors.add("input", "required", "input is required"),
        Some(_) => errors.add(
            "input",
            "invalid_type",
            "input must be a string or an array of input items",
        ),
    }
    if let Some(v) = body.get("max_output_tokens").filter(|v| !v.is_null()) {
        if v.as_u64().is_none_or(|n| n == 0) {
            errors.add(
                "max_output_tokens",
                "invalid_type",
                "max_output_tokens must be a positive integer",
            );
        }
    }
    for (k, what) in [
        ("instructions", "a string"),
        ("previous_response_id", "a string"),
    ] {
        if body.get(k).is_some_and(|v| !v.is_string() && !v.is_null()) {
            errors.add(k, "invalid_type", format!("{k} must be {what}"));
        }
    }
    if body
        .get("tools")
        .is_some_and(|v| !v.is_array() && !v.is_null())
    {
        errors.add("tools", "invalid_type", "tools must be an array");
    }
    for k in ["store", "stream", "parallel_tool_calls"] {
        if body.get(k).is_some_and(|v| !v.is_boolean() && !v.is_null()) {
            errors.add(k, "invalid_type", format!("{k} must be a boolean"));
        }
    }
    errors.finish()
}

/// Responses content (a string or parts) → chat content.
fn content(c: &Value, at: &str) -> Result<Value, ApiError> {
    let parts = match c {
        Value::String(s) => return Ok(json!(s)),
        Value::Array(p) => p,
        Value::Null => return Ok(json!("")),
        _ => {
            return Err(field(
                at,
                "content must be a string or an array of parts",
                "invalid_type",
            ))
        }
    };
    let mut out = Vec::new();
    let mut images = false;
    for (i, p) in parts.iter().enumerate() {
        match p["type"].as_str() {
            Some("input_text" | "output_text" | "text") => {
                out.push(json!({"type": "text", "text": p["text"]}))
            }
            Some("refusal") => out.push(json!({"type": "text", "text": p["refusal"]})),
            Some("input_image") => {
                let Some(url) = p["image_url"].as_str() else {
                    return Err(field(
                        format!("{at}[{i}].image_url"),
                        "input_image needs an image_url (file ids are not supported)",
                        "required",
                    ));
                };
                images = true;
                let mut image = json!({"url": url});
                if let Some(d) = p["detail"].as_str() {
                    image["detail"] = json!(d);
                }
                out.push(json!({"type": "image_url", "image_url": image}));
            }
            other => {
                return Err(field(
                    format!("{at}[{i}].type"),
                    format!(
                        "content parts of type '{}' cannot be sent to this model",
                        other.unwrap_or("(none)")
                    ),
                    "invalid_enum",
                ))
            }
        }
    }
    if images {
        Ok(Value::Array(out))
    } else {
        Ok(json!(text_of(&Value::Array(out))))
    }
}

/// Appends a tool call to the assistant message it belongs to (the last one, when it was the
/// previous item), or to a new one.
fn push_call(out: &mut Vec<Value>, call: Value, joins: bool) {
    if joins {
        if let Some(last) = out.last_mut().filter(|m| m["role"] == "assistant") {
            match last["tool_calls"].as_array_mut() {
                Some(calls) => calls.push(call),
                None => last["tool_calls"] = json!([call]),
            }
            return;
        }
    }
    out.push(json!({"role": "assistant", "content": null, "tool_calls": [call]}));
}

/// `input` → chat messages.
fn input_messages(input: &Value) -> Result<Vec<Value>, ApiError> {
    let items = match input {
        Value::String(s) => return Ok(vec![json!({"role": "user", "content": s})]),
        Value::Array(items) => items,
        _ => return Ok(vec![]),
    };
    let mut out: Vec<Value> = Vec::new();
    let mut last_was_assistant = false;
    for (i, item) in items.iter().enumerate() {
        let at = format!("input[{i}]");
        let kind = item["type"]
            .as_str()
            .unwrap_or(if item["role"].is_string() {
                "message"
            } else {
                ""
            });
        let mut assistant = false;
        match kind {
            "message" => {
                let role = match item["role"].as_str() {
                    Some("developer" | "system") => "system",
                    Some("user") => "user",
                    Some("assistant") => "assistant",
                    Some(r) => {
                        return Err(field(
                            format!("{at}.role"),
                            format!(
                                "Invalid role: '{r}'. Allowed: user, assistant, system, developer"
                            ),
                            "invalid_enum",
                        ))
                    }
                    None => {
                        return Err(field(format!("{at}.role"), "role is required", "required"))
                    }
                };
                let c = content(&item["content"], &format!("{at}.content"))?;
                assistant = role == "assistant";
                out.push(json!({"role": role, "content": c}));
            }
            "function_call" | "custom_tool_call" => {
                let args = item["arguments"]
                    .as_str()
                    .or(item["input"].as_str())
                    .unwrap_or("{}");
                let call = json!({"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": args}});
                push_call(&mut out, call, last_was_assistant);
                assistant = true;
            }
            "function_call_output" | "custom_tool_call_output" => {
                let output = match &item["output"] {
                    Value::String(s) => s.clone(),
                    v @ Value::Array(_) => text_of(v),
                    v => v.to_string(),
                };
                out.push(
                    json!({"role": "tool", "tool_call_id": item["call_id"], "content": output}),
                );
            }
            // Encrypted or provider-specific reasoning: no chat provider can take it back.
            "reasoning" => {}
            "item_reference" => return Err(field(
                format!("{at}.type"),
                "item_reference is not supported; send the item itself or use previous_response_id",
                "invalid_enum",
            )),
            // Calls of hosted tools (web search, file search, …) that nothing behind Sluice runs.
            k if k.ends_with("_call") || k.ends_with("_call_output") => {}
            other => {
                return Err(field(
                    format!("{at}.type"),
                    format!("input items of type '{other}' are not supported"),
                    "invalid_enum",
                ))
            }
        }
        last_was_assistant = assistant;
    }
    Ok(out)
}

/// Function tools → chat tools. Hosted tools (`web_search`, `file_search`, `computer_use`,
/// `code_interpreter`, `mcp`, `image_generation`, `local_shell`, …) are dropped; a
/// `namespace` contributes the function tools inside it.
fn tools(list: &[Value], out: &mut Vec<Value>) {
    for t in list {
        match t["type"].as_str() {
            Some("function") => {
                let mut f = json!({"name": t["name"],
                    "parameters": if t["parameters"].is_object() { t["parameters"].clone() } else { json!({"type": "object", "properties": {}}) }});
                if let Some(d) = t["description"].as_str() {
                    f["description"] = json!(d);
                }
                if let Some(s) = t["strict"].as_bool() {
                    f["strict"] = json!(s);
                }
                out.push(json!({"type": "function", "function": f}));
            }
            Some("namespace") => tools(t["tools"].as_array().map_or(&[], |v| v), out),
            _ => {}
        }
    }
}

/// A Responses body (and the stored conversation it continues) → the internal request.
pub fn prepare(body: Map<String, Value>, history: Vec<Value>) -> Result<Prepared, ApiError> {
    check(&body)?;
    let mut conversation = history;
    conversation.extend(input_messages(get(&body, "input"))?);
    let mut messages = Vec::with_capacity(conversation.len() + 1);
    if let Some(i) = body
        .get("instructions")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        messages.push(json!({"role": "system", "content": i}));
    }
    messages.extend(conversation.iter().cloned());
    if messages.is_empty() {
        return Err(field("input", "input must not be empty", "min_length"));
    }
    let mut chat = Map::new();
    chat.insert("model".into(), get(&body, "model").clone());
    chat.insert("messages".into(), Value::Array(messages));
    if let Some(n) = body.get("max_output_tokens").filter(|v| !v.is_null()) {
        chat.insert("max_tokens".into(), n.clone());
    }
    for k in [
        "temperature",
        "top_p",
        "user",
        "fallbacks",
        "allow_fallbacks",
        "fallback_on",
    ] {
        if let Some(v) = body.get(k).filter(|v| !v.is_null()) {
            chat.insert(k.into(), v.clone());
        }
    }
    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    if stream {
        chat.insert("stream".into(), json!(true));
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    let mut tool_list = Vec::new();
    tools(
        body.get("tools")
            .and_then(Value::as_array)
            .map_or(&[], |v| v),
        &mut tool_list,
    );
    if !tool_list.is_empty() {
        chat.insert("tools".into(), Value::Array(tool_list));
        let choice = match body.get("tool_choice") {
            Some(Value::String(s)) if ["auto", "none", "required"].contains(&s.as_str()) => {
                Some(json!(s))
            }
            Some(c) if c["type"] == "function" => {
                Some(json!({"type": "function", "function": {"name": c["name"]}}))
            }
            _ => None,
        };
        if let Some(c) = choice {
            chat.insert("tool_choice".into(), c);
        }
        if let Some(p) = body.get("parallel_tool_calls").filter(|v| v.is_boolean()) {
            chat.insert("parallel_tool_calls".into(), p.clone());
        }
    }
    let format = &get(&body, "text")["format"];
    match format["type"].as_str() {
        Some("json_schema") => {
            let mut schema = json!({"name": format["name"].as_str().unwrap_or("output"), "schema": format["schema"]});
            if let Some(s) = format["strict"].as_bool() {
                schema["strict"] = json!(s);
            }
            chat.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": schema}),
            );
        }
        Some("json_object") => {
            chat.insert("response_format".into(), json!({"type": "json_object"}));
        }
        _ => {}
    }
    let mut echo = Map::new();
    for (k, default) in ECHOED {
        let v = body.get(*k).filter(|v| !v.is_null()).cloned();
        echo.insert((*k).into(), v.unwrap_or_else(default));
    }
    let meta = ResponseMeta {
        id: id::new_id("resp"),
        created_at: now_unix(),
        store: body.get("store").and_then(Value::as_bool).unwrap_or(true),
        echo,
    };
    Ok(Prepared {
        request: ChatRequest {
            body: Value::Object(chat),
            ingress: Ingress::Responses,
            native: None,
        },
        conversation,
        meta,
    })
}

/// A Responses `usage` object.
pub fn usage(prompt: u64, completion: u64, cached: u64) -> Value {
    json!({
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    })
}

/// `status` and `incomplete_details` for a chat finish reason.
pub fn status_for(finish: Option<&str>) -> (&'static str, Value) {
    match finish {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// The Response object.
pub fn response(
    meta: &ResponseMeta,
    model: &str,
    status: &str,
    output: Vec<Value>,
    usage: Value,
    incomplete: Value,
) -> Value {
    let mut r = json!({
        "id": meta.id, "object": "response", "created_at": meta.created_at, "status": status,
        "error": null, "incomplete_details": incomplete, "model": model, "output": output,
        "usage": usage, "store": meta.store,
    });
    if let Some(o) = r.as_object_mut() {
        for (k, v) in &meta.echo {
            o.insert(k.clone(), v.clone());
        }
    }
    r
}

pub fn message_item(text: &str, status: &str) -> Value {
    json!({"type": "message", "id": id::new_id("msg"), "status": status, "role": "assistant",
           "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]})
}

pub fn call_item(call_id: &Value, name: &Value, arguments: &str, status: &str) -> Value {
    json!({"type": "function_call", "id": id::new_id("fc"), "call_id": call_id, "name": name,
           "arguments": arguments, "status": status})
}

pub fn reasoning_item(text: &str) -> Value {
    json!({"type": "reasoning", "id": id::new_id("rs"), "summary": [],
           "content": [{"type": "reasoning_text", "text": text}]})
}

/// A chat completion → a Response object.
pub fn from_chat(v: &Value, meta: &ResponseMeta, model: &str) -> Value {
    let choice = &v["choices"][0];
    let msg = &choice["message"];
    let mut output = Vec::new();
    if let Some(r) = reasoning_of(msg) {
        output.push(reasoning_item(r));
    }
    if let Some(t) = msg["content"].as_str().filter(|t| !t.is_empty()) {
        output.push(message_item(t, "completed"));
    }
    for c in msg["tool_calls"].as_array().into_iter().flatten() {
        let args = c["function"]["arguments"].as_str().unwrap_or("{}");
        output.push(call_item(
            &c["id"],
            &c["function"]["name"],
            args,
            "completed",
        ));
    }
    let (status, incomplete) = status_for(choice["finish_reason"].as_str());
    let u = &v["usage"];
    let usage = usage(
        u["prompt_tokens"].as_u64().unwrap_or(0),
        u["completion_tokens"].as_u64().unwrap_or(0),
        cached_tokens(u),
    );
    response(meta, model, status, output, usage, incomplete)
}

/// A Response's output as the chat messages a continuation replays.
pub fn output_messages(output: &Value) -> Vec<Value> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for item in output.as_array().into_iter().flatten() {
        match item["type"].as_str() {
            Some("message") => text.push_str(&text_of(&item["content"])),
            Some("function_call") => calls.push(json!({"id": item["call_id"], "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]}})),
            _ => {}
        }
    }
    if text.is_empty() && calls.is_empty() {
        return vec![];
    }
    let mut m = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
    if !calls.is_empty() {
        m["tool_calls"] = Value::Array(calls);
    }
    vec![m]
}

/// The 404 for a response id this account has not stored.
pub fn not_found(id: &str) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        format!("No response with id '{id}' found. Responses are kept only when created with store: true."),
    )
    .with_param("previous_response_id")
    .with_detail("resource_type", "response")
    .with_detail("resource_id", id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prep(v: Value) -> Prepared {
        prepare(v.as_object().unwrap().clone(), vec![]).unwrap()
    }

    #[test]
    fn codex_items_become_chat_messages() {
        let p = prep(json!({
            "model": "m", "instructions": "You are Codex.", "store": false, "stream": true,
            "input": [
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "xyz"},
                {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": "{\"cmd\":\"ls\"}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"}
            ],
            "tools": [{"type": "function", "name": "shell", "parameters": {"type": "object"}, "strict": false},
                      {"type": "web_search"},
                      {"type": "namespace", "name": "mcp", "tools": [{"type": "function", "name": "inner"}]}],
            "tool_choice": "auto", "parallel_tool_calls": false, "reasoning": {"effort": "medium"},
            "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k", "max_output_tokens": 100,
            "client_metadata": {"x": "y"}
        }));
        let chat = p.request.body;
        let msgs = chat["messages"].as_array().unwrap();
        assert_eq!(
            msgs[0],
            json!({"role": "system", "content": "You are Codex."})
        );
        assert_eq!(msgs[1], json!({"role": "system", "content": "rules"}));
        assert_eq!(msgs[2], json!({"role": "user", "content": "hi"}));
        assert_eq!(msgs[3]["tool_calls"][0]["id"], "call_1");
        assert_eq!(
            msgs[4],
            json!({"role": "tool", "tool_call_id": "call_1", "content": "a.txt"})
        );
        let names: Vec<&str> = chat["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["shell", "inner"]);
        assert_eq!(chat["max_tokens"], 100);
        assert_eq!(chat["parallel_tool_calls"], false);
        for k in [
            "include",
            "prompt_cache_key",
            "client_metadata",
            "reasoning",
            "store",
            "input",
            "instructions",
        ] {
            assert!(chat.get(k).is_none(), "{k} must not reach a chat provider");
        }
        assert!(!p.meta.store);
        assert_eq!(
            p.conversation.len(),
            4,
            "instructions are not part of the stored conversation"
        );
    }

    #[test]
    fn completions_become_response_objects() {
        let p = prep(
            json!({"model": "m", "input": "hi", "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}}}),
        );
        assert_eq!(
            p.request.body["response_format"]["json_schema"]["name"],
            "x"
        );
        let v = json!({"choices": [{"finish_reason": "length", "message": {"content": "par",
            "tool_calls": [{"id": "call_9", "function": {"name": "f", "arguments": "{}"}}]}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2}});
        let r = from_chat(&v, &p.meta, "mock/m");
        assert_eq!(r["object"], "response");
        assert_eq!(r["status"], "incomplete");
        assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(r["output"][0]["content"][0]["text"], "par");
        assert_eq!(r["output"][1]["call_id"], "call_9");
        assert_eq!(r["usage"]["total_tokens"], 5);
        assert_eq!(r["tool_choice"], "auto");
        let replay = output_messages(&r["output"]);
        assert_eq!(replay[0]["content"], "par");
        assert_eq!(replay[0]["tool_calls"][0]["id"], "call_9");
    }

    #[test]
    fn unknown_items_and_roles_are_refused_by_field() {
        let e = prepare(
            json!({"model": "m", "input": [{"type": "item_reference", "id": "x"}]})
                .as_object()
                .unwrap()
                .clone(),
            vec![],
        )
        .err()
        .unwrap();
        assert_eq!(e.param.as_deref(), Some("input[0].type"));
        let e = prepare(
            json!({"model": "m", "input": [{"role": "tool", "content": "x"}]})
                .as_object()
                .unwrap()
                .clone(),
            vec![],
        )
        .err()
        .unwrap();
        assert_eq!(e.param.as_deref(), Some("input[0].role"));
    }
}
