//! Sluice's domain logic, free of HTTP: configuration, accounts, API keys and who may do what.
//!
//! Every public operation takes a `Principal` (the authenticated caller) and returns
//! `Result<_, ApiError>`; the server only translates HTTP to these calls and back.

pub mod accounts;
pub mod auth;
pub mod config;
pub mod demo;
pub mod keys;
pub mod list;
pub use sluice_types::secret;

use std::sync::Arc;

use sluice_gateway::Gateway;
use sluice_store::{Store, StoreError};
use sluice_types::{ApiError, ErrorKind};

pub use auth::Principal;
pub use config::Config;

/// The shared state of one Sluice process: its store and what it was configured with.
pub struct Engine {
    pub store: Arc<dyn Store>,
    pub gateway: Gateway,
    admin_key_hash: Option<[u8; 32]>,
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        admin_key: Option<&secret::SecretString>,
        gateway: Gateway,
    ) -> Engine {
        Engine {
            store,
            gateway,
            admin_key_hash: admin_key.map(|k| auth::sha256(k.expose().as_bytes())),
        }
    }

    /// Makes sure the admin account exists. Without a configured admin key and with no key in
    /// the store at all, issues an admin key and returns its secret so it can be shown once.
    pub async fn bootstrap(&self) -> Result<Option<String>, ApiError> {
        accounts::ensure_admin_account(&*self.store).await?;
        if self.admin_key_hash.is_some() {
            return Ok(None);
        }
        if self.store.count_keys().await.map_err(store_error)? > 0 {
            return Ok(None);
        }
        let issued = keys::issue(
            &*self.store,
            keys::KeySpec {
                account_id: accounts::ADMIN_ACCOUNT_ID.to_owned(),
                name: "bootstrap admin".to_owned(),
                scopes: vec![sluice_types::Scope::Admin],
                models: None,
                expires_at: None,
            },
        )
        .await?;
        Ok(Some(issued.secret))
    }
}

/// A store failure as the client sees it: Sluice cannot serve right now. The cause is logged,
/// never sent.
pub fn store_error(e: StoreError) -> ApiError {
    ApiError::new(
        ErrorKind::ServiceUnavailable,
        "The service is temporarily unavailable. Retry shortly.",
    )
    .with_retry_after(1)
    .with_internal(e.to_string())
}
