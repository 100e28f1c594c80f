//! The ingress formats that are not OpenAI chat: each translates its request into the internal
//! chat request (`chat::ChatRequest`) and the chat answer (JSON or chunks) back into its own
//! shape, so admission, limits, credits and routing are the chat path's, unchanged.
//!
//! `messages` is Anthropic's Messages API, `responses` OpenAI's Responses API, `completions`
//! the legacy completions API. Upstream adapters (`openai`, `anthropic`, `native`) never see
//! these formats, only the internal request; a new wire format is one module here.

pub mod completions;
pub mod messages;
mod messages_stream;
pub mod responses;
mod responses_stream;

use serde_json::Value;
use sluice_types::{ApiError, ErrorKind};

pub use messages_stream::events as messages_events;
pub use responses::ResponseMeta;
pub use responses_stream::events as responses_events;

/// A body field, `null` when absent (indexing a `Map` would panic).
pub(crate) fn get<'a>(body: &'a serde_json::Map<String, Value>, key: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    body.get(key).unwrap_or(&NULL)
}

/// A 400 on one field of the client's own request.
pub(crate) fn field(
    param: impl Into<String>,
    msg: impl Into<String>,
    code: &'static str,
) -> ApiError {
    ApiError::new(ErrorKind::InvalidFields, msg)
        .with_param(param)
        .with_field_error(code)
}

/// The text of OpenAI-style content: a string, or the `text` of each part.
pub(crate) fn text_of(content: &Value) -> String {
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

/// Reasoning text a provider put beside the answer (`reasoning_content` — DeepSeek, llama.cpp,
/// vLLM — or `reasoning` — OpenRouter, Ollama).
pub(crate) fn reasoning_of(v: &Value) -> Option<&str> {
    ["reasoning_content", "reasoning"]
        .iter()
        .find_map(|k| v[*k].as_str())
        .filter(|s| !s.is_empty())
}

/// Cached prompt tokens in an OpenAI `usage` object.
pub(crate) fn cached_tokens(usage: &Value) -> u64 {
    usage["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap_or(0)
}

/// Makes an id carry the given prefix (`msg_`, `resp_`) whatever the provider called it.
pub(crate) fn prefixed(prefix: &str, id: &str) -> String {
    if id.starts_with(prefix) {
        id.to_owned()
    } else if id.is_empty() {
        sluice_types::id::new_id(prefix.trim_end_matches('_'))
    } else {
        format!("{prefix}{id}")
    }
}
