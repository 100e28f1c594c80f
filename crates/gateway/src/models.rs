//! `GET /v1/models`: the catalog as this key sees it, in OpenAI's list shape plus Sluice's facts.

use serde_json::{json, Value};
use sluice_types::{ApiError, Principal};

use crate::catalog::{Mode, Model};
use crate::Gateway;

fn visible(who: &Principal, m: &Model) -> bool {
    who.models
        .as_ref()
        .is_none_or(|allowed| allowed.iter().any(|a| m.is_named(a)))
}

impl Gateway {
    /// Models the key may use; the allowlist matches ids and aliases.
    pub fn list_models(&self, who: &Principal) -> Value {
        let data: Vec<Value> = self
            .catalog
            .models
            .iter()
            .filter(|m| visible(who, m))
            .map(|m| view(m))
            .chain(["auto", "fast"].iter().map(|m| mode_view(m)))
            .collect();
        json!({"object": "list", "data": data})
    }

    /// One model by id or alias, if the key may use it (otherwise it does not exist for this key).
    pub fn get_model(&self, who: &Principal, name: &str) -> Result<Value, ApiError> {
        if name == "auto" || name == "fast" {
            return Ok(mode_view(name));
        }
        match self.catalog.get(name) {
            Some(m) if visible(who, m) => Ok(view(m)),
            _ => Err(ApiError::not_found("model", name)),
        }
    }
}

/// A routing mode as a pseudo-model: `auto` (best by priority) or `fast` (lowest latency).
fn mode_view(name: &str) -> Value {
    let description = if name == "auto" {
        "Routing mode: the highest-priority healthy model this key may use that can serve the request"
    } else {
        "Routing mode: the healthy model with the lowest observed time to first byte"
    };
    json!({"id": name, "object": "model", "created": 0, "owned_by": "sluice", "mode": "routing", "description": description})
}

fn view(m: &Model) -> Value {
    let caps: Vec<&str> = [
        ("tools", m.capabilities.tools),
        ("vision", m.capabilities.vision),
        ("json", m.capabilities.json),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(n, _)| *n)
    .collect();
    json!({
        "id": m.id,
        "object": "model",
        "created": 0,
        "owned_by": m.provider.id,
        "aliases": m.aliases,
        "mode": match m.mode { Mode::Chat => "chat", Mode::Embedding => "embedding" },
        "context_window": m.context_window,
        "max_output_tokens": m.max_output_tokens,
        "pricing": {"input_per_million": m.input_price, "output_per_million": m.output_price, "unit": "micro-credits"},
        "capabilities": caps,
        "available": m.provider.configured,
    })
}
