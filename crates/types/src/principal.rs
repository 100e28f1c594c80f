//! The authenticated caller and what it may do: scopes (admin implies all) and account reach.

use crate::{ApiError, Scope};

/// Who is calling: resolved once per request from the presented secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub key_id: String,
    pub account_id: String,
    pub scopes: Vec<Scope>,
    /// The key's model allowlist; `None` allows every model.
    pub models: Option<Vec<String>>,
    /// The key has a spend limit, i.e. a wallet of its own (id = `key_id`).
    pub spend_limited: bool,
    /// The account's rate tier (its limits come from configuration).
    pub tier: crate::Tier,
    /// The key's own, tighter limits (0 = not limited by the key).
    pub key_limits: crate::ratelimit::Limits,
    /// The keys this key was issued through that bound it (spend cap, limits), issuer first
    /// of all: their wallets and limits apply to this key's requests too.
    pub ancestors: Vec<Ancestor>,
}

/// A key in the chain of issuers whose bounds a key issued through it still obeys.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ancestor {
    pub key_id: String,
    /// The ancestor has a spend cap: its wallet is drawn on by every request of its descendants.
    #[serde(default)]
    pub spend_capped: bool,
    /// The ancestor's own limits; its buckets count its descendants' requests as well.
    #[serde(default)]
    pub limits: crate::ratelimit::Limits,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.scopes.contains(&Scope::Admin)
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.is_admin() || self.scopes.contains(&scope)
    }

    /// 403 `forbidden` naming the missing scope and the ones the key has.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(ApiError::missing_scope(
                scope.as_str(),
                self.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            ))
        }
    }

    /// Admins act in every account; everyone else only in their own.
    pub fn may_act_in(&self, account_id: &str) -> bool {
        self.is_admin() || self.account_id == account_id
    }
}
