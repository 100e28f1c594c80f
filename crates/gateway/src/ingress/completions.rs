//! `/v1/completions` (legacy OpenAI) in: one `prompt` becomes a user message of a chat request
//! (every provider behind Sluice is a chat model), and chat answers and chunks come back as
//! `text_completion` objects. `max_tokens` defaults to 16, as the legacy API's does.

use serde_json::{json, Map, Value};
use sluice_types::ApiError;

use super::field;
use crate::chat::{ChatRequest, Ingress};

/// The legacy API's default output budget.
const DEFAULT_MAX_TOKENS: u64 = 16;

/// A completions body → the internal request.
pub fn request(body: Value) -> Result<ChatRequest, ApiError> {
    let Value::Object(mut body) = body else {
        return Err(ApiError::new(
            sluice_types::ErrorKind::MalformedRequest,
            "The request body must be a JSON object.",
        ));
    };
    let prompt = match body.remove("prompt") {
        Some(Value::String(s)) => s,
        Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
            a[0].as_str().unwrap_or_default().to_owned()
        }
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            return Err(field(
                "prompt",
                "Send one prompt per request (an array of several prompts is not supported).",
                "max_length",
            ))
        }
        None | Some(Value::Null) => return Err(field("prompt", "prompt is required", "required")),
        Some(_) => {
            return Err(field(
                "prompt",
                "prompt must be a string (token arrays are not supported)",
                "invalid_type",
            ))
        }
    };
    if body.get("echo").and_then(Value::as_bool) == Some(true) {
        return Err(field("echo", "echo is not supported", "invalid_enum"));
    }
    if body.get("logprobs").is_some_and(|v| !v.is_null()) {
        return Err(field(
            "logprobs",
            "logprobs is not supported",
            "invalid_enum",
        ));
    }
    // Chat providers take no `suffix` or `best_of`; `best_of` would multiply the charge.
    for k in ["suffix", "best_of", "echo"] {
        body.remove(k);
    }
    body.insert(
        "messages".into(),
        json!([{"role": "user", "content": prompt}]),
    );
    if body.get("max_tokens").is_none_or(Value::is_null) {
        body.insert("max_tokens".into(), json!(DEFAULT_MAX_TOKENS));
    }
    Ok(ChatRequest {
        body: Value::Object(body),
        ingress: Ingress::Completions,
        native: None,
    })
}

fn choice(c: &Value, text: &str) -> Value {
    json!({"index": c["index"].as_u64().unwrap_or(0), "text": text, "logprobs": null,
           "finish_reason": c["finish_reason"]})
}

/// A chat completion → a text completion.
pub fn from_chat(v: &Value) -> Value {
    let choices: Vec<Value> = v["choices"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| choice(c, c["message"]["content"].as_str().unwrap_or_default()))
        .collect();
    let mut out = Map::new();
    out.insert(
        "id".into(),
        json!(super::prefixed(
            "cmpl-",
            v["id"].as_str().unwrap_or_default()
        )),
    );
    out.insert("object".into(), json!("text_completion"));
    out.insert("created".into(), v["created"].clone());
    out.insert("model".into(), v["model"].clone());
    out.insert("choices".into(), Value::Array(choices));
    if !v["usage"].is_null() {
        out.insert("usage".into(), v["usage"].clone());
    }
    Value::Object(out)
}

/// A chat chunk → a text completion chunk (usage-only chunks keep their usage).
pub fn chunk(v: &Value) -> Value {
    let choices: Vec<Value> = v["choices"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| choice(c, c["delta"]["content"].as_str().unwrap_or_default()))
        .collect();
    let mut out = json!({"id": super::prefixed("cmpl-", v["id"].as_str().unwrap_or_default()),
        "object": "text_completion", "created": v["created"], "model": v["model"], "choices": choices});
    if !v["usage"].is_null() {
        out["usage"] = v["usage"].clone();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_becomes_one_user_message_with_the_legacy_default_budget() {
        let r = request(json!({"model": "m", "prompt": ["Say hi"], "suffix": "x"})).unwrap();
        assert_eq!(
            r.body["messages"],
            json!([{"role": "user", "content": "Say hi"}])
        );
        assert_eq!(r.body["max_tokens"], 16);
        assert!(r.body.get("suffix").is_none());
        let e = request(json!({"model": "m", "prompt": ["a", "b"]}))
            .err()
            .unwrap();
        assert_eq!(e.param.as_deref(), Some("prompt"));
        let e = request(json!({"model": "m", "prompt": [1, 2]}))
            .err()
            .unwrap();
        assert_eq!(e.param.as_deref(), Some("prompt"));
    }

    #[test]
    fn chat_answers_become_text_completions() {
        let v = json!({"id": "chatcmpl-1", "created": 1, "model": "mock/m", "choices": [{"index": 0,
            "message": {"content": "hi"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 1}});
        let c = from_chat(&v);
        assert_eq!(c["object"], "text_completion");
        assert_eq!(c["choices"][0]["text"], "hi");
        assert_eq!(c["id"], "cmpl-chatcmpl-1");
    }
}
