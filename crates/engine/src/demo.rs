//! `sluice serve --demo`: a mock-backed catalog and a ready-to-use key, so the README's curl
//! commands work on a machine with no internet and no configuration.

use serde_json::json;
use sluice_gateway::catalog::{RawModel, RawProvider};
use sluice_types::{ApiError, Plan, Scope, Tier};

use crate::config::Config;
use crate::{accounts, keys, Engine};

pub const DEMO_ACCOUNT: &str = "demo";
/// The demo account starts with 100 credits (100,000,000 micro-credits).
pub const DEMO_GRANT: i64 = 100_000_000;

fn model(id: &str, alias: &str, mode: &str) -> RawModel {
    RawModel {
        id: id.to_owned(),
        upstream: None,
        aliases: vec![alias.to_owned()],
        mode: Some(mode.to_owned()),
        context_window: Some(16_384),
        max_output_tokens: Some(4_096),
        // Micro-credits per 1M tokens: 0.15 and 0.60 credits, priced like a small hosted model.
        input_price: 150_000,
        output_price: 600_000,
        capabilities: vec!["tools".to_owned(), "json".to_owned()],
        priority: 0,
        tokenizer: None,
        strict_max_tokens: None,
    }
}

/// Adds the `mock` provider and the `mock/demo` (alias `demo`) chat and `mock/embed` embedding
/// models, unless the configuration already defines them.
pub fn add_catalog(config: &mut Config) {
    if !config.providers.iter().any(|p| p.id == "mock") {
        config.providers.push(RawProvider {
            id: "mock".to_owned(),
            kind: "mock".to_owned(),
            base_url: None,
            api_key_env: None,
            api_key_file: None,
            connect_timeout_ms: None,
            first_byte_timeout_ms: None,
            idle_timeout_ms: None,
            max_response_bytes: None,
        });
    }
    if !config.models.iter().any(|m| m.id == "mock/demo") {
        config.models.push(model("mock/demo", "demo", "chat"));
    }
    if !config.models.iter().any(|m| m.id == "mock/embed") {
        config
            .models
            .push(model("mock/embed", "demo-embed", "embedding"));
    }
}

/// Ensures the demo account exists and issues a fresh key in it; returns the secret.
pub async fn issue_key(engine: &Engine) -> Result<String, ApiError> {
    let existing = engine
        .store
        .list_accounts(&sluice_store::Page {
            after: None,
            limit: 1000,
        })
        .await
        .map_err(crate::store_error)?
        .into_iter()
        .find(|a| a.name == DEMO_ACCOUNT);
    let account = match existing {
        Some(a) => a,
        None => {
            let req = accounts::AccountRequest {
                name: Some(json!(DEMO_ACCOUNT)),
                plan: Some(json!(Plan::Pro.as_str())),
                tier: Some(Tier::T1.to_json()),
            };
            accounts::insert(&*engine.store, req.validate()?, DEMO_GRANT).await?
        }
    };
    let issued = keys::issue(
        &*engine.store,
        keys::KeySpec {
            account_id: account.id,
            name: "demo".to_owned(),
            scopes: Scope::defaults(),
            models: None,
            expires_at: None,
            max_spend: None,
            limits: Default::default(),
            lineage: Vec::new(),
        },
    )
    .await?;
    Ok(issued.secret)
}
