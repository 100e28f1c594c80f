//! The records the stores keep: plain data, no behaviour.

use sluice_types::{Plan, Scope, Tier};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub plan: Plan,
    pub tier: Tier,
    pub created_at: i64,
}

/// An API key as stored: the secret itself is never kept, only its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub account_id: String,
    pub name: String,
    /// The public part of the secret used to find the row (not enough to authenticate).
    pub lookup: String,
    /// Hex SHA-256 of the whole secret.
    pub secret_hash: String,
    pub scopes: Vec<Scope>,
    /// `None`: every model; `Some(list)`: only these.
    pub models: Option<Vec<String>>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub created_at: i64,
}

/// Cursor pagination: at most `limit` rows after the row with id `after`.
#[derive(Clone, Debug, Default)]
pub struct Page {
    pub after: Option<String>,
    pub limit: u32,
}
