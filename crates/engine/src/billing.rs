//! Credits and usage as the API shows them: top-ups, the balance with its ledger, and usage
//! records with grouped totals.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sluice_store::{LedgerEntry, Page, UsageFilter, UsageRecord};
use sluice_types::validation::Errors;
use sluice_types::{now_unix, ApiError, Scope};

use crate::{store_error, Engine, Principal};

/// `POST /v1/accounts/{id}/credits`.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct TopUpRequest {
    pub amount: Option<Value>,
    pub reason: Option<Value>,
}

#[derive(Serialize, Debug)]
pub struct EntryView {
    pub id: String,
    pub object: &'static str,
    pub kind: String,
    pub amount: i64,
    pub lease_id: Option<String>,
    pub reason: Option<String>,
    pub created_at: i64,
}

impl From<LedgerEntry> for EntryView {
    fn from(e: LedgerEntry) -> Self {
        EntryView {
            id: e.id,
            object: "ledger_entry",
            kind: e.kind,
            amount: e.amount,
            lease_id: e.lease_id,
            reason: e.reason,
            created_at: e.created_at,
        }
    }
}

/// An account's credits: `available` = `balance` − `reserved` (held by requests in flight).
#[derive(Serialize, Debug)]
pub struct CreditsView {
    pub object: &'static str,
    pub account_id: String,
    pub balance: i64,
    pub reserved: i64,
    pub available: i64,
    pub unit: &'static str,
    pub entries: Vec<EntryView>,
}

/// `GET /v1/usage` query values, as given.
#[derive(Deserialize, Debug, Default)]
pub struct UsageQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub key_id: Option<String>,
    pub model: Option<String>,
    pub group_by: Option<String>,
    pub account_id: Option<String>,
    pub limit: Option<String>,
}

/// Unix seconds or RFC 3339.
fn parse_time(errors: &mut Errors, field: &str, v: Option<&str>) -> Option<i64> {
    let v = v?;
    if let Ok(n) = v.parse::<i64>() {
        return Some(n);
    }
    match time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339) {
        Ok(t) => Some(t.unix_timestamp()),
        Err(_) => {
            errors.add(
                field,
                "invalid_format",
                format!("{field} must be Unix seconds or an RFC 3339 timestamp"),
            );
            None
        }
    }
}

fn day_label(day: &str) -> String {
    let Ok(n) = day.parse::<i64>() else {
        return day.to_owned();
    };
    time::OffsetDateTime::from_unix_timestamp(n * 86_400)
        .map(|t| t.date().to_string())
        .unwrap_or_else(|_| day.to_owned())
}

fn usage_json(r: &UsageRecord) -> Value {
    json!({
        "object": "usage_record", "request_id": r.request_id, "account_id": r.account_id, "key_id": r.key_id,
        "model": r.model, "provider": r.provider, "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens, "cost": r.cost, "latency_ms": r.latency_ms,
        "ttfb_ms": r.ttfb_ms, "status": r.status, "error_code": r.error_code, "created_at": r.created_at,
    })
}

impl Engine {
    /// The account an admin names, or the caller's own.
    fn target_account(&self, by: &Principal, account_id: Option<&str>) -> Result<String, ApiError> {
        match account_id {
            Some(a) if by.may_act_in(a) => Ok(a.to_owned()),
            Some(_) => Err(ApiError::not_owner("account")),
            None => Ok(by.account_id.clone()),
        }
    }

    pub async fn top_up(
        &self,
        by: &Principal,
        account_id: &str,
        req: TopUpRequest,
    ) -> Result<CreditsView, ApiError> {
        by.require(Scope::Admin)?;
        let mut errors = Errors::new();
        let amount = match &req.amount {
            None | Some(Value::Null) => {
                errors.add("amount", "required", "amount (micro-credits) is required");
                0
            }
            Some(v) => match v.as_i64() {
                Some(n) if n > 0 && n <= i64::MAX / 4 => n,
                Some(n) if n <= 0 => {
                    errors.add(
                        "amount",
                        "min_value",
                        "amount must be a positive number of micro-credits",
                    );
                    0
                }
                _ => {
                    errors.add(
                        "amount",
                        "invalid_type",
                        "amount must be an integer number of micro-credits",
                    );
                    0
                }
            },
        };
        let reason = match &req.reason {
            None | Some(Value::Null) => "top-up".to_owned(),
            Some(Value::String(s)) if s.chars().count() <= 200 => s.clone(),
            Some(Value::String(_)) => {
                errors.add(
                    "reason",
                    "max_length",
                    "reason must be at most 200 characters",
                );
                String::new()
            }
            Some(_) => {
                errors.add("reason", "invalid_type", "reason must be a string");
                String::new()
            }
        };
        errors.finish()?;
        let done = self
            .store
            .top_up(account_id, amount, &reason, now_unix())
            .await
            .map_err(store_error)?;
        if done.is_none() {
            let exists = self
                .store
                .wallet(account_id)
                .await
                .map_err(store_error)?
                .is_some();
            if !exists {
                return Err(ApiError::not_found("account", account_id));
            }
            let mut e = Errors::new();
            e.add(
                "amount",
                "max_value",
                format!(
                    "This top-up would take the balance past the largest allowed ({} micro-credits).",
                    sluice_store::MAX_BALANCE
                ),
            );
            e.finish()?;
        }
        self.credits_view(account_id).await
    }

    /// `GET /v1/credits`: the caller's account (or, for admins, `account_id`).
    pub async fn credits(
        &self,
        by: &Principal,
        account_id: Option<&str>,
    ) -> Result<CreditsView, ApiError> {
        by.require(Scope::UsageRead)?;
        let account = self.target_account(by, account_id)?;
        self.credits_view(&account).await
    }

    async fn credits_view(&self, account: &str) -> Result<CreditsView, ApiError> {
        let w = self
            .store
            .wallet(account)
            .await
            .map_err(store_error)?
            .ok_or_else(|| ApiError::not_found("account", account))?;
        let entries = self
            .store
            .ledger(
                account,
                &Page {
                    after: None,
                    limit: 50,
                },
            )
            .await
            .map_err(store_error)?;
        Ok(CreditsView {
            object: "credits",
            account_id: account.to_owned(),
            balance: w.balance,
            reserved: w.reserved,
            available: w.balance - w.reserved,
            unit: "micro-credits",
            entries: entries.into_iter().map(EntryView::from).collect(),
        })
    }

    /// `GET /v1/usage`: records (newest first) and totals, optionally grouped.
    pub async fn usage_report(&self, by: &Principal, q: UsageQuery) -> Result<Value, ApiError> {
        by.require(Scope::UsageRead)?;
        let account = self.target_account(by, q.account_id.as_deref())?;
        let mut errors = Errors::new();
        let from = parse_time(&mut errors, "from", q.from.as_deref());
        let to = parse_time(&mut errors, "to", q.to.as_deref());
        let group_by = q.group_by.as_deref();
        if let Some(g) = group_by.filter(|g| !["day", "model", "key"].contains(g)) {
            errors.add(
                "group_by",
                "invalid_enum",
                format!("Invalid group_by: '{g}'. Allowed: day, model, key"),
            );
        }
        let (_, limit) = crate::list::page(q.limit.as_deref(), None)?;
        errors.finish()?;
        let filter = UsageFilter {
            account_id: Some(account),
            key_id: q.key_id,
            model: q.model,
            from,
            to,
        };
        let records = self
            .store
            .list_usage(&filter, limit)
            .await
            .map_err(store_error)?;
        let totals = self
            .store
            .usage_totals(&filter, "key")
            .await
            .map_err(store_error)?;
        let sum = |f: fn(&sluice_store::UsageTotal) -> i64| totals.iter().map(f).sum::<i64>();
        let mut out = json!({
            "object": "usage",
            "data": records.iter().map(usage_json).collect::<Vec<_>>(),
            "totals": {
                "requests": sum(|t| t.requests), "prompt_tokens": sum(|t| t.prompt_tokens),
                "completion_tokens": sum(|t| t.completion_tokens), "cost": sum(|t| t.cost),
            },
        });
        if let Some(g) = group_by {
            let groups = self
                .store
                .usage_totals(&filter, g)
                .await
                .map_err(store_error)?;
            out["group_by"] = json!(g);
            out["groups"] = groups
                .into_iter()
                .map(|t| {
                    let group = if g == "day" {
                        day_label(&t.group)
                    } else {
                        t.group
                    };
                    json!({"group": group, "requests": t.requests, "prompt_tokens": t.prompt_tokens,
                           "completion_tokens": t.completion_tokens, "cost": t.cost})
                })
                .collect();
        }
        Ok(out)
    }
}
