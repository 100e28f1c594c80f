//! API keys: issue (secret shown once), list, read, revoke — with scope and ownership rules.
//!
//! A key can only hand out what it has: a non-admin key cannot create keys with scopes it lacks
//! or with models outside its own allowlist, never outlives, outspends or outpaces its issuer,
//! and only admins create keys in other accounts.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_store::{ApiKey, Store, StoreError};
use sluice_types::ratelimit::Limits;
use sluice_types::validation::Errors;
use sluice_types::{id, Ancestor, ApiError, ErrorKind, Scope};

use crate::accounts::check_name;
use crate::auth::{self, LOOKUP_LEN, SECRET_BODY_LEN, SECRET_PREFIX};
use crate::list::{self, List};
use crate::{store_error, Engine, Principal};

/// `POST /v1/keys` body, loosely typed so every problem is reported at once.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct KeyRequest {
    pub name: Option<Value>,
    pub account_id: Option<Value>,
    pub scopes: Option<Value>,
    pub models: Option<Value>,
    pub expires_at: Option<Value>,
    /// Spend limit in micro-credits.
    pub max_spend: Option<Value>,
    /// The key's own limits: `{"rpm", "rps", "tpm", "tps"}`, each optional.
    pub rate_limits: Option<Value>,
}

/// What to issue, after validation and permission checks.
#[derive(Debug, Clone)]
pub struct KeySpec {
    pub account_id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub models: Option<Vec<String>>,
    pub expires_at: Option<i64>,
    pub max_spend: Option<i64>,
    pub limits: Limits,
    /// Filled in by `bound_by_issuer`: the issuers whose bounds this key keeps.
    pub lineage: Vec<Ancestor>,
}

/// A key as the API shows it. `secret` is present only in the response that created it.
#[derive(Serialize, Debug, PartialEq)]
pub struct KeyView {
    pub id: String,
    pub object: &'static str,
    pub name: String,
    pub account_id: String,
    /// The secret's first characters, to recognise a key without revealing it.
    pub prefix: String,
    pub scopes: Vec<&'static str>,
    pub models: Option<Vec<String>>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub created_at: i64,
    pub max_spend: Option<i64>,
    /// The key's own rate limits (0: only the account's apply).
    pub rate_limits: Limits,
    /// Keys this one was issued through whose spend cap and limits bound it too.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bounded_by: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl From<ApiKey> for KeyView {
    fn from(k: ApiKey) -> Self {
        KeyView {
            prefix: format!("{SECRET_PREFIX}{}", k.lookup),
            id: k.id,
            object: "api_key",
            name: k.name,
            account_id: k.account_id,
            scopes: k.scopes.iter().map(|s| s.as_str()).collect(),
            models: k.models,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            created_at: k.created_at,
            max_spend: k.max_spend,
            rate_limits: k.limits,
            bounded_by: k.lineage.into_iter().map(|a| a.key_id).collect(),
            secret: None,
        }
    }
}

/// A freshly issued key and its secret (the only time the secret exists outside the client).
pub struct Issued {
    pub key: ApiKey,
    pub secret: String,
}

/// Parses `expires_at`: Unix seconds, or an RFC 3339 timestamp.
fn parse_time(v: &Value) -> Result<i64, &'static str> {
    match v {
        Value::Number(n) => n.as_i64().ok_or("invalid_type"),
        Value::String(s) => {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map(|t| t.unix_timestamp())
                .map_err(|_| "invalid_format")
        }
        _ => Err("invalid_type"),
    }
}

fn string_list(errors: &mut Errors, field: &str, v: &Value) -> Option<Vec<String>> {
    let Value::Array(items) = v else {
        errors.add(
            field,
            "invalid_type",
            format!("{field} must be an array of strings"),
        );
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(s) if !s.is_empty() => out.push(s.clone()),
            _ => errors.add(
                format!("{field}[{i}]"),
                "invalid_type",
                format!("{field}[{i}] must be a non-empty string"),
            ),
        }
    }
    Some(out)
}

impl KeyRequest {
    /// Field-level validation; `default_account` is the caller's own account.
    pub fn validate(self, default_account: &str, now: i64) -> Result<KeySpec, ApiError> {
        let mut errors = Errors::new();
        let name = check_name(&mut errors, self.name.as_ref());
        let account_id = match &self.account_id {
            None | Some(Value::Null) => default_account.to_owned(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                errors.add("account_id", "invalid_type", "account_id must be a string");
                String::new()
            }
        };
        let scopes = match &self.scopes {
            None | Some(Value::Null) => Scope::defaults(),
            Some(v) => {
                let names = string_list(&mut errors, "scopes", v).unwrap_or_default();
                let mut scopes = Vec::new();
                for (i, n) in names.iter().enumerate() {
                    match Scope::parse(n) {
                        Some(s) if !scopes.contains(&s) => scopes.push(s),
                        Some(_) => {}
                        None => errors.add(
                            format!("scopes[{i}]"),
                            "invalid_enum",
                            format!(
                                "Invalid scope: '{n}'. Allowed: {}",
                                Scope::ALL
                                    .iter()
                                    .map(|s| s.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ),
                    }
                }
                scopes
            }
        };
        let models = match &self.models {
            None | Some(Value::Null) => None,
            Some(v) => string_list(&mut errors, "models", v),
        };
        let expires_at = match &self.expires_at {
            None | Some(Value::Null) => None,
            Some(v) => match parse_time(v) {
                Ok(t) if t > now => Some(t),
                Ok(_) => {
                    errors.add(
                        "expires_at",
                        "min_value",
                        "expires_at must be in the future",
                    );
                    None
                }
                Err(code) => {
                    errors.add(
                        "expires_at",
                        code,
                        "expires_at must be Unix seconds or an RFC 3339 timestamp",
                    );
                    None
                }
            },
        };
        let max_spend = match &self.max_spend {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_i64() {
                Some(n) if n >= 0 => Some(n),
                _ => {
                    errors.add(
                        "max_spend",
                        "invalid_type",
                        "max_spend must be a non-negative integer (micro-credits)",
                    );
                    None
                }
            },
        };
        let mut limits = Limits::default();
        match &self.rate_limits {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    let slot = match k.as_str() {
                        "rpm" => &mut limits.rpm,
                        "rps" => &mut limits.rps,
                        "tpm" => &mut limits.tpm,
                        "tps" => &mut limits.tps,
                        other => {
                            errors.add(
                                format!("rate_limits.{other}"),
                                "invalid_enum",
                                format!(
                                    "Invalid rate limit '{other}'. Allowed: rpm, rps, tpm, tps"
                                ),
                            );
                            continue;
                        }
                    };
                    match v.as_u64() {
                        Some(n) => *slot = n,
                        None => errors.add(
                            format!("rate_limits.{k}"),
                            "invalid_type",
                            format!(
                                "rate_limits.{k} must be a non-negative integer (0 = no key limit)"
                            ),
                        ),
                    }
                }
            }
            Some(_) => errors.add(
                "rate_limits",
                "invalid_type",
                "rate_limits must be an object",
            ),
        }
        errors.finish()?;
        Ok(KeySpec {
            account_id,
            name: name.unwrap_or_default(),
            scopes,
            models,
            expires_at,
            max_spend,
            limits,
            lineage: Vec::new(),
        })
    }
}

/// A key may only hand out permissions it holds itself.
fn check_delegation(by: &Principal, spec: &KeySpec) -> Result<(), ApiError> {
    if by.is_admin() {
        return Ok(());
    }
    for scope in &spec.scopes {
        by.require(*scope)?;
    }
    if let Some(own) = &by.models {
        let wider = match &spec.models {
            None => true,
            Some(m) => m.iter().any(|x| !own.contains(x)),
        };
        if wider {
            return Err(ApiError::new(
                ErrorKind::Forbidden,
                "A key cannot allow models outside its own model allowlist.",
            )
            .with_param("models")
            .with_detail("reason", "models_exceed_allowlist")
            .with_detail("allowed_models", own.clone()));
        }
    }
    Ok(())
}

/// How many issuers deep a chain of bounded keys may go (each adds wallets and limit buckets to
/// every request of the keys below it).
const MAX_LINEAGE: usize = 8;

fn exceeds_issuer(field: &str, what: String) -> ApiError {
    ApiError::new(ErrorKind::Forbidden, what)
        .with_param(field)
        .with_detail("reason", "exceeds_issuer")
}

/// A key issued by a non-admin key never outlives, outspends or outpaces its issuer: an omitted
/// bound is inherited, a wider one is refused, and the issuer's spend cap and limits keep
/// applying to the new key's requests (it draws on the issuer's wallet and buckets as well).
fn bound_by_issuer(issuer: &ApiKey, spec: &mut KeySpec) -> Result<(), ApiError> {
    if let Some(limit) = issuer.expires_at {
        match spec.expires_at {
            Some(t) if t > limit => {
                return Err(exceeds_issuer(
                    "expires_at",
                    format!("A key cannot outlive the key that issues it (it expires at {limit})."),
                ))
            }
            Some(_) => {}
            None => spec.expires_at = Some(limit),
        }
    }
    if let (Some(cap), Some(asked)) = (issuer.max_spend, spec.max_spend) {
        if asked > cap {
            return Err(exceeds_issuer(
                "max_spend",
                format!(
                    "A key cannot have a larger max_spend than the key that issues it ({cap})."
                ),
            ));
        }
    }
    let own = issuer.limits;
    for (name, mine, theirs) in [
        ("rpm", &mut spec.limits.rpm, own.rpm),
        ("rps", &mut spec.limits.rps, own.rps),
        ("tpm", &mut spec.limits.tpm, own.tpm),
        ("tps", &mut spec.limits.tps, own.tps),
    ] {
        if theirs == 0 {
            continue;
        }
        if *mine == 0 {
            *mine = theirs;
        } else if *mine > theirs {
            return Err(exceeds_issuer(
                &format!("rate_limits.{name}"),
                format!(
                    "A key cannot have a higher {name} than the key that issues it ({theirs})."
                ),
            ));
        }
    }
    let mut lineage = issuer.lineage.clone();
    if issuer.max_spend.is_some() || issuer.limits != Limits::default() {
        lineage.push(Ancestor {
            key_id: issuer.id.clone(),
            spend_capped: issuer.max_spend.is_some(),
            limits: issuer.limits,
        });
    }
    if lineage.len() > MAX_LINEAGE {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            format!("Keys can be issued through at most {MAX_LINEAGE} bounded keys."),
        )
        .with_detail("reason", "lineage_too_deep"));
    }
    spec.lineage = lineage;
    Ok(())
}

/// Generates a secret, stores its hash and returns both. Used by the API, the CLI and bootstrap.
pub async fn issue(store: &dyn Store, spec: KeySpec) -> Result<Issued, ApiError> {
    // A lookup collision is astronomically unlikely (62^12), but retrying costs nothing.
    for _ in 0..3 {
        let body = id::random_base62(SECRET_BODY_LEN);
        let secret = format!("{SECRET_PREFIX}{body}");
        let key = ApiKey {
            id: id::new_id("key"),
            account_id: spec.account_id.clone(),
            name: spec.name.clone(),
            lookup: body[..LOOKUP_LEN].to_owned(),
            secret_hash: auth::to_hex(&auth::sha256(secret.as_bytes())),
            scopes: spec.scopes.clone(),
            models: spec.models.clone(),
            expires_at: spec.expires_at,
            revoked_at: None,
            created_at: sluice_types::now_unix(),
            max_spend: spec.max_spend,
            limits: spec.limits,
            lineage: spec.lineage.clone(),
        };
        match store.create_key(&key).await {
            Ok(()) => return Ok(Issued { key, secret }),
            Err(StoreError::Conflict { .. }) => continue,
            Err(StoreError::MissingReference { .. }) => {
                return Err(
                    ApiError::not_found("account", &spec.account_id).with_param("account_id")
                )
            }
            Err(e) => return Err(store_error(e)),
        }
    }
    Err(ApiError::internal("three key lookup collisions in a row"))
}

impl Engine {
    pub async fn create_key(&self, by: &Principal, req: KeyRequest) -> Result<KeyView, ApiError> {
        by.require(Scope::KeysWrite)?;
        let spec = req.validate(&by.account_id, sluice_types::now_unix())?;
        if !by.may_act_in(&spec.account_id) {
            return Err(ApiError::not_owner("account").with_param("account_id"));
        }
        check_delegation(by, &spec)?;
        let mut spec = spec;
        if !by.is_admin() {
            let issuer = self
                .store
                .get_key(&by.key_id)
                .await
                .map_err(store_error)?
                .ok_or_else(|| ApiError::unauthorized("api_key_revoked"))?;
            bound_by_issuer(&issuer, &mut spec)?;
        }
        let issued = issue(&*self.store, spec).await?;
        let mut view = KeyView::from(issued.key);
        view.secret = Some(issued.secret);
        Ok(view)
    }

    /// Admins list every key (or one account's with `account_id`); others their account's.
    pub async fn list_keys(
        &self,
        by: &Principal,
        account_id: Option<&str>,
        limit: Option<&str>,
        after: Option<&str>,
    ) -> Result<List<KeyView>, ApiError> {
        by.require(Scope::KeysRead)?;
        let scope = match account_id {
            Some(a) if !by.may_act_in(a) => return Err(ApiError::not_owner("account")),
            Some(a) => Some(a),
            None if by.is_admin() => None,
            None => Some(by.account_id.as_str()),
        };
        let (page, limit) = list::page(limit, after)?;
        let rows = self
            .store
            .list_keys(scope, &page)
            .await
            .map_err(store_error)?;
        let views = rows.into_iter().map(KeyView::from).collect();
        Ok(list::finish(views, limit, |k: &KeyView| &k.id))
    }

    async fn owned_key(&self, by: &Principal, id: &str) -> Result<ApiKey, ApiError> {
        let key = self
            .store
            .get_key(id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| ApiError::not_found("api_key", id))?;
        if !by.may_act_in(&key.account_id) {
            return Err(ApiError::not_owner("api key"));
        }
        Ok(key)
    }

    pub async fn get_key(&self, by: &Principal, id: &str) -> Result<KeyView, ApiError> {
        by.require(Scope::KeysRead)?;
        Ok(self.owned_key(by, id).await?.into())
    }

    /// Revokes a key; revoking twice keeps the first time and succeeds.
    pub async fn revoke_key(&self, by: &Principal, id: &str) -> Result<KeyView, ApiError> {
        by.require(Scope::KeysWrite)?;
        self.owned_key(by, id).await?;
        let key = self
            .store
            .revoke_key(id, sluice_types::now_unix())
            .await
            .map_err(store_error)?
            .ok_or_else(|| ApiError::not_found("api_key", id))?;
        self.keys.invalidate();
        self.announce_key_change().await;
        Ok(key.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(v: Value) -> KeyRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn every_field_problem_is_reported() {
        let e = req(json!({"scopes": ["chat:write", "bogus"], "models": "x", "expires_at": 5}))
            .validate("acct_1", 100)
            .unwrap_err();
        let fields: Vec<String> = e.details.unwrap()["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                format!(
                    "{}:{}",
                    x["field"].as_str().unwrap(),
                    x["code"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            fields,
            [
                "name:required",
                "scopes[1]:invalid_enum",
                "models:invalid_type",
                "expires_at:min_value"
            ]
        );
    }

    #[test]
    fn expiry_accepts_unix_seconds_and_rfc3339() {
        let s = req(json!({"name": "k", "expires_at": "2100-01-01T00:00:00Z"}))
            .validate("acct_1", 0)
            .unwrap();
        assert_eq!(s.expires_at, Some(4_102_444_800));
        let s = req(json!({"name": "k", "expires_at": 4_102_444_800_i64}))
            .validate("acct_1", 0)
            .unwrap();
        assert_eq!(s.expires_at, Some(4_102_444_800));
    }

    #[test]
    fn a_key_cannot_grant_more_than_it_has() {
        let by = Principal {
            key_id: "key_1".into(),
            account_id: "acct_1".into(),
            scopes: vec![Scope::KeysWrite, Scope::ChatWrite],
            models: Some(vec!["a".into()]),
            spend_limited: false,
            tier: Default::default(),
            key_limits: Default::default(),
            ancestors: Vec::new(),
        };
        let spec = |scopes: Vec<Scope>, models: Option<Vec<String>>| KeySpec {
            account_id: "acct_1".into(),
            name: "k".into(),
            scopes,
            models,
            expires_at: None,
            max_spend: None,
            limits: Default::default(),
            lineage: Vec::new(),
        };
        assert!(
            check_delegation(&by, &spec(vec![Scope::ChatWrite], Some(vec!["a".into()]))).is_ok()
        );
        let e =
            check_delegation(&by, &spec(vec![Scope::Admin], Some(vec!["a".into()]))).unwrap_err();
        assert_eq!(e.details.unwrap()["required_scope"], "admin");
        let e = check_delegation(&by, &spec(vec![Scope::ChatWrite], None)).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("models"));
    }
}
