//! The gateway: an OpenAI-compatible front for many providers.
//!
//! `Gateway::admit_chat` does every check that needs no network (shape, model, allowlist,
//! context window) and `dispatch_chat` calls the provider; callers put their own admission steps
//! (limits, credits) between the two. Never imports axum: results are JSON values and streams.

pub mod anthropic;
pub mod catalog;
pub mod chat;
pub mod embeddings;
pub mod ingress;
pub mod models;
pub mod native;
pub mod openai;
pub mod routing;
pub mod sse;
pub mod tokens;
pub mod upstream;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures_util::Stream;
use serde_json::Value;
use sluice_types::ApiError;

pub use catalog::{Catalog, Model, Provider};

/// OpenAI chat completion chunks, as they arrive; an `Err` is the last item.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Value, ApiError>> + Send>>;

/// Token usage as the provider reported it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Usage {
    /// Reads an OpenAI `usage` object.
    pub fn from_openai(v: &Value) -> Option<Usage> {
        Some(Usage {
            prompt_tokens: v.get("prompt_tokens")?.as_u64()?,
            completion_tokens: v
                .get("completion_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0),
        })
    }

    pub fn to_openai(self) -> Value {
        serde_json::json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        })
    }
}

/// What a stream learned about usage while it ran: the provider's numbers when it sent them,
/// and the generated text, so tokens can be counted when it did not (e.g. a cut stream).
#[derive(Default, Debug)]
pub struct UsageCell {
    inner: Mutex<(Option<Usage>, String)>,
}

impl UsageCell {
    pub fn set(&self, u: Usage) {
        if let Ok(mut g) = self.inner.lock() {
            g.0 = Some(u);
        }
    }

    pub fn add_generated(&self, text: &str) {
        if let Ok(mut g) = self.inner.lock() {
            g.1.push_str(text);
        }
    }

    /// The provider's usage, if it sent any.
    pub fn reported(&self) -> Option<Usage> {
        self.inner.lock().ok().and_then(|g| g.0)
    }

    /// The text generated so far.
    pub fn generated(&self) -> String {
        self.inner.lock().map(|g| g.1.clone()).unwrap_or_default()
    }
}

/// A chat answer: a whole JSON body, or a stream of chunks.
pub enum ChatReply {
    Json(Value),
    Stream(ChunkStream),
}

/// Which wire format a reply's JSON body or stream items are in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// OpenAI chat completions and chunks: what every adapter produces by default.
    OpenAi,
    /// Anthropic Messages answers and SSE events (each item carries its event name in `type`),
    /// passed through from an Anthropic-format provider to a Messages client.
    Anthropic,
}

/// The answer and what produced it.
pub struct ChatOutcome {
    pub model: Arc<Model>,
    pub reply: ChatReply,
    pub usage: Arc<UsageCell>,
    pub wire: Wire,
}

/// The gateway of one process: the catalog and one pooled HTTP client per provider.
pub struct Gateway {
    pub catalog: Catalog,
    pub health: routing::Health,
    /// Refuse a `max_tokens` above a model's output limit instead of clamping it (models may
    /// override this).
    pub strict_max_tokens: bool,
    clients: HashMap<String, reqwest::Client>,
}

impl Gateway {
    pub fn new(catalog: Catalog) -> Result<Gateway, String> {
        Self::with_breaker(catalog, routing::BreakerSettings::default())
    }

    pub fn with_breaker(
        catalog: Catalog,
        breaker: routing::BreakerSettings,
    ) -> Result<Gateway, String> {
        let mut clients = HashMap::new();
        for p in &catalog.providers {
            clients.insert(p.id.clone(), upstream::client_for(p)?);
        }
        let health = routing::Health::new(&catalog, breaker);
        Ok(Gateway {
            catalog,
            health,
            strict_max_tokens: false,
            clients,
        })
    }

    pub(crate) fn client(&self, model: &Model) -> Result<&reqwest::Client, ApiError> {
        self.clients.get(&model.provider.id).ok_or_else(|| {
            ApiError::internal(format!("no HTTP client for provider {}", model.provider.id))
        })
    }
}
