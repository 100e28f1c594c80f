//! Authentication (secret → `Principal`) and authorisation (scope and ownership checks).
//!
//! Secrets look like `sk-` + 48 base62 characters. The first 12 are a public lookup prefix
//! used to find the row; the whole secret's SHA-256 is compared in constant time. Secrets are
//! ~285 random bits, so a fast hash is the right tool (a slow KDF would only add latency).

use sha2::{Digest, Sha256};
use sluice_store::{ApiKey, StoreError};
pub use sluice_types::principal::Principal;
use sluice_types::{ApiError, Scope};
use subtle::ConstantTimeEq;

use crate::{accounts::ADMIN_ACCOUNT_ID, store_error, Engine};

pub const SECRET_PREFIX: &str = "sk-";
pub const SECRET_BODY_LEN: usize = 48;
pub const LOOKUP_LEN: usize = 12;
/// The id reported for the operator's configured admin key, which has no row in the store.
pub const CONFIG_ADMIN_KEY_ID: &str = "key_admin";

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

fn from_hex(s: &str) -> Option<[u8; 32]> {
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = (nib(pair[0])? << 4) | nib(pair[1])?;
    }
    Some(out)
}

/// The lookup prefix of a well-formed secret, or `None` for anything else.
pub fn lookup_of(secret: &str) -> Option<&str> {
    let body = secret.strip_prefix(SECRET_PREFIX)?;
    if body.len() != SECRET_BODY_LEN || !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    body.get(..LOOKUP_LEN)
}

/// Checks a stored key against the presented secret and the clock.
pub fn verify(
    key: &ApiKey,
    tier: sluice_types::Tier,
    secret: &str,
    now: i64,
) -> Result<Principal, ApiError> {
    let presented = sha256(secret.as_bytes());
    let stored = from_hex(&key.secret_hash).unwrap_or([0u8; 32]);
    if !bool::from(presented.ct_eq(&stored)) {
        return Err(ApiError::unauthorized("api_key_invalid"));
    }
    // Status is checked only after the secret matched, so a guess learns nothing about a key.
    if key.revoked_at.is_some() {
        return Err(ApiError::unauthorized("api_key_revoked"));
    }
    if key.expires_at.is_some_and(|t| t <= now) {
        return Err(ApiError::unauthorized("api_key_expired"));
    }
    Ok(Principal {
        key_id: key.id.clone(),
        account_id: key.account_id.clone(),
        scopes: key.scopes.clone(),
        models: key.models.clone(),
        spend_limited: key.max_spend.is_some(),
        tier,
        key_limits: key.limits,
        ancestors: key.lineage.clone(),
    })
}

impl Engine {
    /// Tells other instances to forget their cached keys; if that fails, they see the change
    /// within the key cache's bound.
    pub(crate) async fn announce_key_change(&self) {
        let announced = tokio::time::timeout(
            self.settings.store_deadline,
            self.store.announce_key_change(),
        );
        match announced.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "key change not announced; other instances see it within key_cache_ms")
            }
            Err(_) => {
                tracing::warn!(
                    "key change announcement timed out; other instances see it within key_cache_ms"
                )
            }
        }
    }

    /// Where the store can announce key changes (Postgres), makes other instances' revocations
    /// and tier changes reach this instance's key cache as they happen rather than at the end
    /// of its bound. Call before serving; true when listening.
    pub async fn listen_for_key_changes(&self) -> bool {
        if !self.keys.enabled() {
            return false;
        }
        let keys = self.keys.clone();
        let watch = self
            .store
            .watch_key_changes(std::sync::Arc::new(move || keys.invalidate()));
        // A store that does not answer at start must not hold the start-up: the bound applies.
        tokio::time::timeout(self.settings.store_deadline, watch)
            .await
            .unwrap_or(false)
    }

    /// Resolves the presented secret (from `Authorization: Bearer` or `x-api-key`).
    ///
    /// A key read from the store serves for `settings.key_cache` (verified against the secret,
    /// revocation and the clock on every use); zero makes it one indexed read per request, so a
    /// revocation on any instance takes effect on the very next request everywhere.
    pub async fn authenticate(&self, presented: Option<&str>) -> Result<Principal, ApiError> {
        let secret = match presented.map(str::trim) {
            None | Some("") => return Err(ApiError::unauthorized("missing_api_key")),
            Some(s) => s,
        };
        if let Some(admin) = &self.admin_key_hash {
            if bool::from(sha256(secret.as_bytes()).ct_eq(admin)) {
                return Ok(Principal {
                    key_id: CONFIG_ADMIN_KEY_ID.to_owned(),
                    account_id: ADMIN_ACCOUNT_ID.to_owned(),
                    scopes: vec![Scope::Admin],
                    models: None,
                    spend_limited: false,
                    tier: sluice_types::Tier::Unlimited,
                    key_limits: Default::default(),
                    ancestors: Vec::new(),
                });
            }
        }
        let Some(lookup) = lookup_of(secret) else {
            return Err(ApiError::unauthorized("api_key_invalid"));
        };
        if let Some((key, tier)) = self.keys.get(lookup) {
            return verify(&key, tier, secret, sluice_types::now_unix());
        }
        let generation = self.keys.generation();
        let read_at = std::time::Instant::now();
        // A store that does not answer must not hold every request: 503 after the deadline.
        let deadline = self.settings.store_deadline;
        let found = tokio::time::timeout(deadline, self.store.find_key_with_tier(lookup))
            .await
            .map_err(|_| store_error(StoreError::Backend("key lookup timed out".into())))?;
        let (key, tier) = found
            .map_err(store_error)?
            .ok_or_else(|| ApiError::unauthorized("api_key_invalid"))?;
        let principal = verify(&key, tier, secret, sluice_types::now_unix());
        // Only keys someone proved to hold are kept: guesses cannot fill the cache.
        if principal.is_ok() {
            self.keys
                .put(generation, std::sync::Arc::new(key), tier, read_at);
        }
        principal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(secret: &str) -> ApiKey {
        ApiKey {
            id: "key_1".into(),
            account_id: "acct_1".into(),
            name: "k".into(),
            lookup: lookup_of(secret).unwrap().into(),
            secret_hash: to_hex(&sha256(secret.as_bytes())),
            scopes: vec![Scope::ChatWrite],
            models: None,
            expires_at: None,
            revoked_at: None,
            created_at: 0,
            max_spend: None,
            limits: Default::default(),
            lineage: Vec::new(),
        }
    }

    fn reason(e: ApiError) -> String {
        e.details.unwrap()["reason"].as_str().unwrap().to_owned()
    }

    const SECRET: &str = "sk-abcdefghijkl0123456789abcdefghijklmnopqrstuvwxyz";

    #[test]
    fn a_matching_secret_yields_the_principal() {
        let p = verify(&stored(SECRET), Default::default(), SECRET, 10).unwrap();
        assert_eq!(p.account_id, "acct_1");
        assert_eq!(p.scopes, vec![Scope::ChatWrite]);
    }

    #[test]
    fn a_wrong_secret_with_the_same_lookup_is_invalid() {
        let other = "sk-abcdefghijklXXXXXXXXXXabcdefghijklmnopqrstuvwxyz";
        let mut k = stored(SECRET);
        k.revoked_at = Some(1);
        // Even for a revoked key, a wrong secret says only "invalid".
        assert_eq!(
            reason(verify(&k, Default::default(), other, 10).unwrap_err()),
            "api_key_invalid"
        );
    }

    #[test]
    fn revoked_and_expired_keys_say_so() {
        let mut k = stored(SECRET);
        k.expires_at = Some(10);
        assert_eq!(
            reason(verify(&k, Default::default(), SECRET, 10).unwrap_err()),
            "api_key_expired"
        );
        assert!(verify(&k, Default::default(), SECRET, 9).is_ok());
        k.revoked_at = Some(5);
        assert_eq!(
            reason(verify(&k, Default::default(), SECRET, 9).unwrap_err()),
            "api_key_revoked"
        );
    }

    #[test]
    fn malformed_secrets_have_no_lookup() {
        assert_eq!(lookup_of("sk-short"), None);
        assert_eq!(
            lookup_of("pk-abcdefghijkl0123456789abcdefghijklmnopqrstuvwxyz"),
            None
        );
        assert_eq!(
            lookup_of("sk-abcdefghijkl0123456789abcdefghijklmnopqrstuvwxy!"),
            None
        );
        assert_eq!(lookup_of(SECRET), Some("abcdefghijkl"));
    }

    #[test]
    fn admin_implies_every_scope_and_account() {
        let p = Principal {
            key_id: "k".into(),
            account_id: "a".into(),
            scopes: vec![Scope::Admin],
            models: None,
            spend_limited: false,
            tier: Default::default(),
            key_limits: Default::default(),
            ancestors: Vec::new(),
        };
        assert!(p.has(Scope::KeysWrite));
        assert!(p.may_act_in("other"));
        let q = Principal {
            scopes: vec![Scope::KeysRead],
            ..p
        };
        let e = q.require(Scope::KeysWrite).unwrap_err();
        let d = e.details.unwrap();
        assert_eq!(d["required_scope"], "keys:write");
        assert_eq!(d["available_scopes"], serde_json::json!(["keys:read"]));
    }
}
