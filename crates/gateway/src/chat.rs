//! `/v1/chat/completions`: admission (shape, model, allowlist, context window) without any
//! network, then dispatch to the provider's adapter.

use std::sync::Arc;

use serde_json::{Map, Value};
use sluice_types::validation::Errors;
use sluice_types::{ApiError, ErrorKind, Principal};

use crate::catalog::{Mode, Model, ProviderKind};
use crate::routing::{order_mode, FailureClass, Needs};
use crate::{
    anthropic, native, openai, tokens, upstream, ChatOutcome, ChatReply, Gateway, UsageCell, Wire,
};

/// Which API a chat request came in through; errors name that API's fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ingress {
    /// `/v1/chat/completions` (also agents and workflow nodes).
    #[default]
    Chat,
    /// `/v1/messages` (Anthropic).
    Messages,
    /// `/v1/responses` (OpenAI Responses).
    Responses,
    /// `/v1/completions` (legacy OpenAI).
    Completions,
}

impl Ingress {
    /// The field the client set its output budget with.
    fn max_tokens_param(self, body: &Map<String, Value>) -> &'static str {
        match self {
            Ingress::Responses => "max_output_tokens",
            Ingress::Chat if body.contains_key("max_completion_tokens") => "max_completion_tokens",
            _ => "max_tokens",
        }
    }

    /// The field that holds the prompt.
    pub fn prompt_param(self) -> &'static str {
        match self {
            Ingress::Chat | Ingress::Messages => "messages",
            Ingress::Responses => "input",
            Ingress::Completions => "prompt",
        }
    }
}

/// An Anthropic Messages body as the client sent it: Anthropic-format providers get it as it
/// came (only `model` and a clamped `max_tokens` rewritten), with the client's beta header.
#[derive(Clone, Debug)]
pub struct Native {
    pub body: Map<String, Value>,
    pub beta: Option<String>,
}

/// A chat request in the internal model: an OpenAI chat body (what every ingress translates
/// to and every adapter translates from), where it came from, and the original body when an
/// upstream of the same format can take it untranslated.
#[derive(Debug)]
pub struct ChatRequest {
    pub body: Value,
    pub ingress: Ingress,
    pub native: Option<Native>,
}

impl From<Value> for ChatRequest {
    fn from(body: Value) -> Self {
        ChatRequest {
            body,
            ingress: Ingress::Chat,
            native: None,
        }
    }
}

/// A request that passed admission: what to send, where, and what it may cost in tokens.
#[derive(Debug)]
pub struct Admitted {
    /// The first candidate (the model asked for, or the routing mode's first choice).
    pub model: Arc<Model>,
    /// Every model that may serve the request, in order: deployments of the model asked for (or
    /// the routing mode's choices), then each fallback's.
    pub candidates: Vec<Arc<Model>>,
    pub allow_fallbacks: bool,
    pub fallback_on: Vec<FailureClass>,
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
    /// Completions requested (`n`, `best_of`; 1 by default): each may use `max_tokens`.
    pub choices: u64,
    pub ingress: Ingress,
    pub native: Option<Native>,
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

/// The most completions one request may ask for (`n`, `best_of`), as OpenAI allows.
const MAX_CHOICES: u64 = 128;

/// How many completions the request fans out to: each may use up to `max_tokens`.
fn choices(body: &Map<String, Value>) -> u64 {
    ["n", "best_of"]
        .iter()
        .filter_map(|f| body.get(*f).and_then(Value::as_u64))
        .max()
        .unwrap_or(1)
        .clamp(1, MAX_CHOICES)
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
    for field in ["n", "best_of"] {
        if positive_int(&mut errors, body, field).is_some_and(|n| n > MAX_CHOICES) {
            errors.add(
                field,
                "max_value",
                format!("{field} must be at most {MAX_CHOICES}"),
            );
        }
    }
    if body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .is_some_and(|v| !v.is_boolean() && !v.is_null())
    {
        errors.add(
            "stream_options.include_usage",
            "invalid_type",
            "stream_options.include_usage must be a boolean",
        );
    }
    match body.get("fallbacks") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, f) in items.iter().enumerate() {
                if f.as_str().is_none_or(|s| s.is_empty()) {
                    errors.add(
                        format!("fallbacks[{i}]"),
                        "invalid_type",
                        "each fallback must be a model name",
                    );
                }
            }
        }
        Some(_) => errors.add(
            "fallbacks",
            "invalid_type",
            "fallbacks must be an array of model names",
        ),
    }
    if body
        .get("allow_fallbacks")
        .is_some_and(|v| !v.is_boolean() && !v.is_null())
    {
        errors.add(
            "allow_fallbacks",
            "invalid_type",
            "allow_fallbacks must be a boolean",
        );
    }
    match body.get("fallback_on") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, f) in items.iter().enumerate() {
                if f.as_str().and_then(FailureClass::parse).is_none() {
                    errors.add(
                        format!("fallback_on[{i}]"),
                        "invalid_enum",
                        "Invalid fallback_on value. Allowed: rate_limit, provider_error, timeout",
                    );
                }
            }
        }
        Some(_) => errors.add(
            "fallback_on",
            "invalid_type",
            "fallback_on must be an array",
        ),
    }
    errors.finish()
}

/// Lowers every output-budget field the body has to `max`.
pub fn clamp_max_tokens(body: &mut Map<String, Value>, max: u64) {
    for f in ["max_tokens", "max_completion_tokens"] {
        if body.get(f).and_then(Value::as_u64).is_some_and(|n| n > max) {
            body.insert(f.to_owned(), Value::from(max));
        }
    }
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
        // A shared alias resolves to the best deployment this key may use.
        let preferred = self.catalog.all_named(name).into_iter().find(|m| {
            m.mode == mode
                && m.provider.configured
                && who
                    .models
                    .as_ref()
                    .is_none_or(|a| a.iter().any(|x| m.is_named(x)))
        });
        let model = preferred
            .as_ref()
            .or_else(|| self.catalog.get(name))
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::InvalidFields,
                    format!(
                        "Unknown model '{name}'. GET /v1/models lists the models this key may use."
                    ),
                )
                .with_param("model")
                .with_field_error("invalid_enum")
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
                    .with_param("model")
                    .with_field_error("invalid_enum"),
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
    pub async fn admit_chat(
        &self,
        who: &Principal,
        req: impl Into<ChatRequest>,
    ) -> Result<Admitted, ApiError> {
        let ChatRequest {
            body,
            ingress,
            mut native,
        } = req.into();
        let Value::Object(mut body) = body else {
            return Err(ApiError::new(
                ErrorKind::MalformedRequest,
                "The request body must be a JSON object.",
            ));
        };
        check_shape(&body)?;
        let name = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut requested = body
            .get("max_completion_tokens")
            .or_else(|| body.get("max_tokens"))
            .and_then(Value::as_u64);
        let messages = body
            .get("messages")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let upper = tokens::chat_upper_bound(messages, body.get("tools")) as u64;
        let tools = body
            .get("tools")
            .and_then(Value::as_array)
            .is_some_and(|t| !t.is_empty());
        let is_mode = name == "auto" || name == "fast";

        // The first model: the one asked for, or the best the routing mode can find.
        let (model, mut exact) = if is_mode {
            let (m, exact) = self
                .pick_mode(who, &name, &body, upper, requested, tools)
                .await?;
            (m, exact)
        } else {
            (self.resolve(who, &name, Mode::Chat)?, None)
        };
        let max_out = u64::from(model.max_output_tokens);
        if let Some(n) = requested.filter(|&n| n > max_out) {
            if model.strict_max_tokens.unwrap_or(self.strict_max_tokens) {
                let param = ingress.max_tokens_param(&body);
                return Err(ApiError::new(
                    ErrorKind::InvalidFields,
                    format!(
                        "{param} is {n}, but '{}' generates at most {max_out} tokens.",
                        model.id
                    ),
                )
                .with_param(param)
                .with_field_error("max_value"));
            }
            // Clients (coding agents) ask for a large budget and expect the model's own limit:
            // clamp, and reserve and charge at the clamped value.
            requested = Some(max_out);
            clamp_max_tokens(&mut body, max_out);
            if let Some(n) = native.as_mut() {
                clamp_max_tokens(&mut n.body, max_out);
            }
        }
        let window = u64::from(model.context_window);
        if exact.is_none() && upper + requested.unwrap_or(1) > window {
            exact = Some(count_exact(model.tokenizer, &body, upper).await?);
        }
        let prompt_tokens = exact.unwrap_or(upper);
        if prompt_tokens + requested.unwrap_or(1) > window {
            return Err(ApiError::new(
                ErrorKind::ContextLengthExceeded,
                format!(
                    "Input exceeds the context length of '{}': {prompt_tokens} prompt tokens{} > {window}. Shorten the messages or lower max_tokens.",
                    model.id,
                    requested.map(|r| format!(" + {r} max_tokens")).unwrap_or_default()
                ),
            )
            .with_param(ingress.prompt_param())
            .with_detail("model", model.id.as_str())
            .with_detail("max_tokens", window)
            .with_detail("input_tokens", prompt_tokens));
        }
        let needs = Needs {
            prompt_tokens,
            output_tokens: requested.unwrap_or(1),
            tools: false,
        };

        // Candidates: the mode's choices, or the asked-for model's deployments; then fallbacks.
        let mut candidates: Vec<Arc<Model>> = if is_mode {
            self.mode_candidates(who, &name, &Needs { tools, ..needs })
        } else {
            self.deployments(who, &name, &needs)
        };
        if !candidates.iter().any(|c| c.id == model.id) {
            candidates.insert(0, model.clone());
        }
        for (i, f) in body
            .get("fallbacks")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            let f = f.as_str().unwrap_or_default();
            self.resolve(who, f, Mode::Chat).map_err(|mut e| {
                e.param = Some(format!("fallbacks[{i}]"));
                e
            })?;
            for d in self.deployments(who, f, &needs) {
                if !candidates.iter().any(|c| c.id == d.id) {
                    candidates.push(d);
                }
            }
        }
        let allow_fallbacks = body
            .get("allow_fallbacks")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let fallback_on = match body.get("fallback_on").and_then(Value::as_array) {
            Some(list) => list
                .iter()
                .filter_map(|v| v.as_str().and_then(FailureClass::parse))
                .collect(),
            None => vec![
                FailureClass::RateLimit,
                FailureClass::ProviderError,
                FailureClass::Timeout,
            ],
        };
        let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let include_usage = body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let max_tokens = requested
            .unwrap_or(u64::from(model.max_output_tokens))
            .min(window.saturating_sub(prompt_tokens));
        let choices = choices(&body);
        Ok(Admitted {
            model,
            candidates,
            allow_fallbacks,
            fallback_on,
            body,
            stream,
            include_usage,
            prompt_tokens_exact: exact,
            prompt_tokens_max: prompt_tokens,
            max_tokens,
            choices,
            ingress,
            native,
        })
    }

    /// Models the key may use for chat whose provider is configured.
    fn usable(&self, who: &Principal, m: &Model) -> bool {
        m.mode == Mode::Chat
            && m.provider.configured
            && who
                .models
                .as_ref()
                .is_none_or(|allowed| allowed.iter().any(|a| m.is_named(a)))
    }

    /// Every deployment of `name` the key may use and whose context fits, healthiest first.
    fn deployments(&self, who: &Principal, name: &str, needs: &Needs) -> Vec<Arc<Model>> {
        let all: Vec<Arc<Model>> = self
            .catalog
            .all_named(name)
            .into_iter()
            .filter(|m| self.usable(who, m) && needs.fits(m))
            .collect();
        order_mode("auto", all, &self.health)
    }

    /// Every model a routing mode may use for this request, best first.
    fn mode_candidates(&self, who: &Principal, mode: &str, needs: &Needs) -> Vec<Arc<Model>> {
        let all: Vec<Arc<Model>> = self
            .catalog
            .models
            .iter()
            .filter(|m| {
                self.usable(who, m) && (!needs.tools || m.capabilities.tools) && needs.fits(m)
            })
            .cloned()
            .collect();
        order_mode(mode, all, &self.health)
    }

    /// The first choice of `auto`/`fast`; counts the prompt exactly when its byte bound rules out
    /// every model, so a prompt that really fits somewhere is not refused.
    async fn pick_mode(
        &self,
        who: &Principal,
        mode: &str,
        body: &Map<String, Value>,
        upper: u64,
        requested: Option<u64>,
        tools: bool,
    ) -> Result<(Arc<Model>, Option<u64>), ApiError> {
        let needs = Needs {
            prompt_tokens: upper,
            output_tokens: requested.unwrap_or(1),
            tools,
        };
        if let Some(m) = self.mode_candidates(who, mode, &needs).into_iter().next() {
            return Ok((m, None));
        }
        let exact = count_exact(crate::catalog::Tokenizer::Cl100k, body, upper).await?;
        let needs = Needs {
            prompt_tokens: exact,
            ..needs
        };
        match self.mode_candidates(who, mode, &needs).into_iter().next() {
            Some(m) => Ok((m, Some(exact))),
            None => Err(ApiError::new(
                ErrorKind::InvalidFields,
                format!(
                    "No model this key may use can serve this request with `{mode}` ({exact} prompt tokens{}). GET /v1/models lists the models and their context windows.",
                    if tools { ", tools" } else { "" }
                ),
            )
            .with_param("model")
            .with_field_error("invalid_enum")
            .with_detail("input_tokens", exact)),
        }
    }

    /// Calls the provider. Dropping the returned stream (or this future) cancels the upstream
    /// request: the connection is closed.
    pub async fn dispatch_chat(&self, a: &Admitted) -> Result<ChatOutcome, ApiError> {
        self.dispatch_chat_to(a, &a.model).await
    }

    /// Calls one candidate of an admitted request.
    pub async fn dispatch_chat_to(
        &self,
        a: &Admitted,
        model: &Arc<Model>,
    ) -> Result<ChatOutcome, ApiError> {
        let model = model.clone();
        let client = self.client(&model)?;
        let usage = Arc::new(UsageCell::default());
        let mut wire = Wire::OpenAi;
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
            ProviderKind::Anthropic if a.native.is_some() => {
                wire = Wire::Anthropic;
                native::dispatch(client, &model, a, usage.clone()).await?
            }
            ProviderKind::Anthropic => {
                let max_tokens = a.max_tokens.min(u64::from(model.max_output_tokens));
                let body = anthropic::prepare(&a.body, &model, a.stream, max_tokens)?;
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
            wire,
        })
    }

    /// Admission and dispatch in one call.
    pub async fn chat(
        &self,
        who: &Principal,
        req: impl Into<ChatRequest>,
    ) -> Result<ChatOutcome, ApiError> {
        let admitted = self.admit_chat(who, req).await?;
        self.dispatch_chat(&admitted).await
    }
}
