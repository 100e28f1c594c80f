//! `/v1/chat/completions`: admission (shape, model, allowlist, context window) without any
//! network, then dispatch to the provider's adapter.

use std::sync::Arc;

use serde_json::{Map, Value};
use sluice_types::validation::Errors;
use sluice_types::{ApiError, ErrorKind, Principal};

use crate::catalog::{Mode, Model, ProviderKind};
use crate::{anthropic, openai, tokens, upstream, ChatOutcome, ChatReply, Gateway, UsageCell};

/// A request that passed admission: what to send, where, and what it may cost in tokens.
#[derive(Debug)]
pub struct Admitted {
    pub model: Arc<Model>,
    pub body: Map<String, Value>,
    pub stream: bool,
    /// The client asked for usage in the stream (`stream_options.include_usage`).
    pub include_usage: bool,
    /// The prompt's exact token count, when admission needed it (the cheap bound did not fit).
    pub prompt_tokens_exact: Option<u64>,
    /// Never below the true prompt count: the exact count, or the byte bound.
    pub prompt_tokens_max: u64,
    /// The completion budget: the request's `max_tokens`, else the model's maximum output.
    pub max_tokens: u64,
}

const ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

fn positive_int(errors: &mut Errors, body: &Map<String, Value>, field: &str) -> Option<u64> {
    match body.get(field) {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => Some(n),
            _ => {
                errors.add(
                    field,
                    "invalid_type",
                    format!("{field} must be a positive integer"),
                );
                None
            }
        },
    }
}

/// Field checks on a chat body; every problem at once.
fn check_shape(body: &Map<String, Value>) -> Result<(), ApiError> {
    let mut errors = Errors::new();
    match body.get("model") {
        Some(Value::String(s)) if !s.is_empty() => {}
        None | Some(Value::Null) => errors.add(
            "model",
            "required",
            "model is required; GET /v1/models lists the models you may use",
        ),
        Some(_) => errors.add("model", "invalid_type", "model must be a non-empty string"),
    }
    match body.get("messages") {
        Some(Value::Array(msgs)) if msgs.is_empty() => {
            errors.add("messages", "min_length", "messages must not be empty")
        }
        Some(Value::Array(msgs)) => {
            for (i, m) in msgs.iter().enumerate() {
                match m.get("role").and_then(Value::as_str) {
                    Some(r) if ROLES.contains(&r) => {}
                    Some(r) => errors.add(
                        format!("messages[{i}].role"),
                        "invalid_enum",
                        format!("Invalid role: '{r}'. Allowed: {}", ROLES.join(", ")),
                    ),
                    None => errors.add(
                        format!("messages[{i}].role"),
                        "required",
                        "every message needs a role",
                    ),
                }
            }
        }
        None | Some(Value::Null) => errors.add("messages", "required", "messages is required"),
        Some(_) => errors.add("messages", "invalid_type", "messages must be an array"),
    }
    if body
        .get("stream")
        .is_some_and(|v| !v.is_boolean() && !v.is_null())
    {
        errors.add("stream", "invalid_type", "stream must be a boolean");
    }
    if body
        .get("stream_options")
        .is_some_and(|v| !v.is_object() && !v.is_null())
    {
        errors.add(
            "stream_options",
            "invalid_type",
            "stream_options must be an object",
        );
    }
    if body
        .get("tools")
        .is_some_and(|v| !v.is_array() && !v.is_null())
    {
        errors.add("tools", "invalid_type", "tools must be an array");
    }
    positive_int(&mut errors, body, "max_tokens");
    positive_int(&mut errors, body, "max_completion_tokens");
    errors.finish()
}

/// Prompts longer than this many bytes are tokenized off the async workers.
const BLOCKING_COUNT_BYTES: u64 = 16 * 1024;

/// The exact prompt count; long prompts are counted on a blocking thread.
async fn count_exact(
    t: crate::catalog::Tokenizer,
    body: &Map<String, Value>,
    upper: u64,
) -> Result<u64, ApiError> {
    let count = move |body: &Map<String, Value>| {
        let messages = body
            .get("messages")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        tokens::count_chat(t, messages, body.get("tools")) as u64
    };
    if upper < BLOCKING_COUNT_BYTES {
        return Ok(count(body));
    }
    let owned = body.clone();
    tokio::task::spawn_blocking(move || count(&owned))
        .await
        .map_err(|e| ApiError::internal(format!("token counting task failed: {e}")))
}

impl Gateway {
    /// Resolves a model name the key may use, or the contract's error for why not.
    pub fn resolve(&self, who: &Principal, name: &str, mode: Mode) -> Result<Arc<Model>, ApiError> {
        let model = self.catalog.get(name).ok_or_else(|| {
            ApiError::new(
                ErrorKind::InvalidFields,
                format!(
                    "Unknown model '{name}'. GET /v1/models lists the models this key may use."
                ),
            )
            .with_param("model")
        })?;
        if let Some(allowed) = &who.models {
            if !allowed.iter().any(|a| model.is_named(a)) {
                return Err(ApiError::new(
                    ErrorKind::ModelNotAllowed,
                    format!("The model '{name}' is not allowed for this API key."),
                )
                .with_param("model")
                .with_detail("model", name)
                .with_detail("allowed_models", allowed.clone()));
            }
        }
        if model.mode != mode {
            let what = match model.mode {
                Mode::Chat => "a chat model; use /v1/chat/completions",
                Mode::Embedding => "an embedding model; use /v1/embeddings",
            };
            return Err(
                ApiError::new(ErrorKind::InvalidFields, format!("'{name}' is {what}."))
                    .with_param("model"),
            );
        }
        if !model.provider.configured {
            return Err(upstream::unavailable(model, "provider_not_configured", 60));
        }
        Ok(model.clone())
    }

    /// Every check that needs no network. The prompt is measured by a one-pass byte bound; only
    /// when that bound does not fit the context window is it counted exactly with the model's
    /// tokenizer (on a blocking thread when long), so typical requests never pay for BPE.
    pub async fn admit_chat(&self, who: &Principal, body: Value) -> Result<Admitted, ApiError> {
        let Value::Object(body) = body else {
            return Err(ApiError::new(
                ErrorKind::MalformedRequest,
                "The request body must be a JSON object.",
            ));
        };
        check_shape(&body)?;
        let name = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let model = self.resolve(who, name, Mode::Chat)?;
        let requested = body
            .get("max_completion_tokens")
            .or_else(|| body.get("max_tokens"))
            .and_then(Value::as_u64);
        if let Some(n) = requested.filter(|&n| n > u64::from(model.max_output_tokens)) {
            return Err(ApiError::new(
                ErrorKind::InvalidFields,
                format!(
                    "max_tokens is {n}, but '{}' generates at most {} tokens.",
                    model.id, model.max_output_tokens
                ),
            )
            .with_param("max_tokens"));
        }
        let messages = body
            .get("messages")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let window = u64::from(model.context_window);
        let upper = tokens::chat_upper_bound(messages, body.get("tools")) as u64;
        let (exact, prompt_tokens) = if upper + requested.unwrap_or(1) <= window {
            (None, upper)
        } else {
            let n = count_exact(model.tokenizer, &body, upper).await?;
            (Some(n), n)
        };
        let needed = prompt_tokens + requested.unwrap_or(1);
        if needed > window {
            return Err(ApiError::new(
                ErrorKind::ContextLengthExceeded,
                format!(
                    "Input exceeds the context length of '{}': {prompt_tokens} prompt tokens{} > {window}. Shorten the messages or lower max_tokens.",
                    model.id,
                    requested.map(|r| format!(" + {r} max_tokens")).unwrap_or_default()
                ),
            )
            .with_param("messages")
            .with_detail("model", model.id.as_str())
            .with_detail("max_tokens", window)
            .with_detail("input_tokens", prompt_tokens)
            .with_detail("requested_output_tokens", requested.unwrap_or(0)));
        }
        let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let include_usage = body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let max_tokens = requested
            .unwrap_or(u64::from(model.max_output_tokens))
            .min(window.saturating_sub(prompt_tokens));
        Ok(Admitted {
            model,
            body,
            stream,
            include_usage,
            prompt_tokens_exact: exact,
            prompt_tokens_max: prompt_tokens,
            max_tokens,
        })
    }

    /// Calls the provider. Dropping the returned stream (or this future) cancels the upstream
    /// request: the connection is closed.
    pub async fn dispatch_chat(&self, a: &Admitted) -> Result<ChatOutcome, ApiError> {
        let model = a.model.clone();
        let client = self.client(&model)?;
        let usage = Arc::new(UsageCell::default());
        let reply = match model.provider.kind {
            ProviderKind::OpenAi | ProviderKind::Mock => {
                let body = openai::prepare(&a.body, &model, a.stream);
                let res = upstream::post(client, &model, "/chat/completions", &body).await?;
                if a.stream {
                    let events = Box::pin(upstream::events(res, model.clone()));
                    ChatReply::Stream(openai::chunk_stream(
                        events,
                        model.clone(),
                        a.include_usage,
                        usage.clone(),
                    ))
                } else {
                    let v = openai::finish_json(
                        upstream::read_json(&model, res).await?,
                        &model,
                        "choices",
                    )?;
                    if let Some(u) = crate::Usage::from_openai(&v["usage"]) {
                        usage.set(u);
                    }
                    ChatReply::Json(v)
                }
            }
            ProviderKind::Anthropic => {
                let body = anthropic::prepare(&a.body, &model, a.stream, a.max_tokens)?;
                let res = upstream::post(client, &model, "/messages", &body).await?;
                if a.stream {
                    let events = Box::pin(upstream::events(res, model.clone()));
                    ChatReply::Stream(anthropic::chunk_stream(
                        events,
                        model.clone(),
                        a.include_usage,
                        usage.clone(),
                    ))
                } else {
                    let v = anthropic::to_openai(&upstream::read_json(&model, res).await?, &model)?;
                    if let Some(u) = crate::Usage::from_openai(&v["usage"]) {
                        usage.set(u);
                    }
                    ChatReply::Json(v)
                }
            }
        };
        Ok(ChatOutcome {
            model,
            reply,
            usage,
        })
    }

    /// Admission and dispatch in one call.
    pub async fn chat(&self, who: &Principal, body: Value) -> Result<ChatOutcome, ApiError> {
        let admitted = self.admit_chat(who, body).await?;
        self.dispatch_chat(&admitted).await
    }
}
