//! The queries both backends share, written once and expanded per backend by `impl_common!`.
//!
//! Both SQLite and Postgres accept `$N` placeholders, `RETURNING` and `CAST(… AS TEXT)`, so the
//! text is identical; only the pool and row types differ.

use sluice_types::{scope, Plan, Tier};

use crate::{Account, ApiKey, StoreError};

/// Defines a row decoder that works for both backends' row types.
macro_rules! row_fn {
    ($name:ident, $out:ty, |$row:ident, $e:ident| $body:expr) => {
        pub(crate) fn $name<R>($row: &R) -> Result<$out, StoreError>
        where
            R: sqlx::Row,
            for<'a> &'a str: sqlx::ColumnIndex<R>,
            for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
            for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
            for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
            for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        {
            let $e = crate::backend_err;
            Ok($body)
        }
    };
}
pub(crate) use row_fn;

pub(crate) const ACCOUNT_COLS: &str = "id, name, plan, tier, created_at";
pub(crate) const KEY_COLS: &str =
    "id, account_id, name, lookup, secret_hash, scopes, models, expires_at, revoked_at, created_at, max_spend, \
     rl_rpm, rl_rps, rl_tpm, rl_tps, lineage";

pub(crate) fn models_to_text(models: &Option<Vec<String>>) -> Option<String> {
    models.as_ref().map(|m| m.join("\n"))
}

pub(crate) fn models_from_text(text: Option<String>) -> Option<Vec<String>> {
    text.map(|t| {
        if t.is_empty() {
            Vec::new()
        } else {
            t.split('\n').map(str::to_owned).collect()
        }
    })
}

pub(crate) fn account_from_parts(
    id: String,
    name: String,
    plan: String,
    tier: String,
    created_at: i64,
) -> Result<Account, StoreError> {
    Ok(Account {
        plan: Plan::parse(&plan)
            .ok_or_else(|| StoreError::Backend(format!("account {id}: unknown plan {plan}")))?,
        tier: Tier::parse(&tier)
            .ok_or_else(|| StoreError::Backend(format!("account {id}: unknown tier {tier}")))?,
        id,
        name,
        created_at,
    })
}

pub(crate) fn scopes_from_text(text: &str) -> Vec<sluice_types::Scope> {
    scope::parse_list(text)
}

/// Maps a unique or foreign-key violation to the store's error; anything else is a backend error.
pub(crate) fn classify(
    e: sqlx::Error,
    unique_field: &'static str,
    fk_field: &'static str,
) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.is_unique_violation() {
            let msg = db.message();
            // Both backends name the violated column or constraint in the message.
            let field = if msg.contains("name") {
                "name"
            } else {
                unique_field
            };
            return StoreError::Conflict { field };
        }
        if db.is_foreign_key_violation() {
            return StoreError::MissingReference { field: fk_field };
        }
    }
    crate::backend_err(e)
}

row_fn!(key_from_row, ApiKey, |row, e| {
    let scopes: String = row.try_get("scopes").map_err(e)?;
    ApiKey {
        id: row.try_get("id").map_err(e)?,
        account_id: row.try_get("account_id").map_err(e)?,
        name: row.try_get("name").map_err(e)?,
        lookup: row.try_get("lookup").map_err(e)?,
        secret_hash: row.try_get("secret_hash").map_err(e)?,
        scopes: scopes_from_text(&scopes),
        models: models_from_text(row.try_get("models").map_err(e)?),
        expires_at: row.try_get("expires_at").map_err(e)?,
        revoked_at: row.try_get("revoked_at").map_err(e)?,
        created_at: row.try_get("created_at").map_err(e)?,
        max_spend: row.try_get("max_spend").map_err(e)?,
        limits: {
            let get = |c: &str| -> Result<u64, StoreError> {
                let v: Option<i64> = row.try_get(c).map_err(e)?;
                Ok(v.unwrap_or(0).max(0) as u64)
            };
            sluice_types::ratelimit::Limits {
                rpm: get("rl_rpm")?,
                rps: get("rl_rps")?,
                tpm: get("rl_tpm")?,
                tps: get("rl_tps")?,
            }
        },
        lineage: {
            let v: Option<String> = row.try_get("lineage").map_err(e)?;
            match v {
                Some(t) => serde_json::from_str(&t)
                    .map_err(|err| StoreError::Backend(format!("api_keys.lineage: {err}")))?,
                None => Vec::new(),
            }
        },
    }
});

row_fn!(account_from_row, Account, |row, e| account_from_parts(
    row.try_get("id").map_err(e)?,
    row.try_get("name").map_err(e)?,
    row.try_get("plan").map_err(e)?,
    row.try_get("tier").map_err(e)?,
    row.try_get("created_at").map_err(e)?,
)?);

/// Takes one of an account's plan slots for a resource (`column` is `agent_count` or
/// `workflow_count`) inside an open transaction, in one conditional write, so concurrent creates
/// serialise on the account row and the limit is exact. Evaluates to `Option<CreateRefusal>`:
/// `Some` when the plan is full (the transaction should then be dropped). The current count is
/// read on the same connection: a second one could wait behind this transaction's own lock.
macro_rules! take_plan_slot {
    ($tx:expr, $column:literal, $account:expr, $limit:expr) => {{
        let row = sqlx::query(concat!(
            "UPDATE accounts SET ",
            $column,
            " = ",
            $column,
            " + 1 WHERE id = $1 AND (CAST($2 AS BIGINT) IS NULL OR ",
            $column,
            " < $2) RETURNING ",
            $column
        ))
        .bind($account)
        .bind($limit)
        .fetch_optional(&mut *$tx)
        .await
        .map_err($crate::backend_err)?;
        if row.is_some() {
            None
        } else {
            let (current,): (i64,) =
                sqlx::query_as(concat!("SELECT ", $column, " FROM accounts WHERE id = $1"))
                    .bind($account)
                    .fetch_one(&mut *$tx)
                    .await
                    .map_err($crate::backend_err)?;
            Some($crate::CreateRefusal::PlanLimit { current })
        }
    }};
}
pub(crate) use take_plan_slot;

/// Gives back a plan slot (after a delete) inside an open transaction.
macro_rules! free_plan_slot {
    ($tx:expr, $column:literal, $account:expr) => {
        sqlx::query(concat!(
            "UPDATE accounts SET ",
            $column,
            " = ",
            $column,
            " - 1 WHERE id = $1"
        ))
        .bind($account)
        .execute(&mut *$tx)
        .await
        .map_err($crate::backend_err)?
    };
}
pub(crate) use free_plan_slot;

/// Implements `AccountStore` and `KeyStore` for a store type with a `pool` field.
macro_rules! impl_common {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::AccountStore for $store {
            async fn create_account(&self, a: &$crate::Account) -> $crate::StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_err)?;
                sqlx::query(
                    "INSERT INTO accounts (id, name, plan, tier, created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&a.id)
                .bind(&a.name)
                .bind(a.plan.as_str())
                .bind(a.tier.as_str())
                .bind(a.created_at)
                .execute(&mut *tx)
                .await
                .map_err(|e| $crate::sql::classify(e, "id", "id"))?;
                sqlx::query("INSERT INTO wallets (id, balance) VALUES ($1, 0)")
                    .bind(&a.id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::backend_err)?;
                tx.commit().await.map_err($crate::backend_err)
            }

            async fn get_account(&self, id: &str) -> $crate::StoreResult<Option<$crate::Account>> {
                let q = format!("SELECT {} FROM accounts WHERE id = $1", $crate::sql::ACCOUNT_COLS);
                let row = sqlx::query(&q)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_err)?;
                row.as_ref().map($crate::sql::account_from_row).transpose()
            }

            async fn update_account(
                &self,
                id: &str,
                plan: Option<sluice_types::Plan>,
                tier: Option<sluice_types::Tier>,
            ) -> $crate::StoreResult<Option<$crate::Account>> {
                let q = format!(
                    "UPDATE accounts SET plan = COALESCE(CAST($2 AS TEXT), plan), tier = COALESCE(CAST($3 AS TEXT), tier) \
                     WHERE id = $1 RETURNING {}",
                    $crate::sql::ACCOUNT_COLS
                );
                let row = sqlx::query(&q)
                    .bind(id)
                    .bind(plan.map(|p| p.as_str()))
                    .bind(tier.map(|t| t.as_str()))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_err)?;
                row.as_ref().map($crate::sql::account_from_row).transpose()
            }

            async fn list_accounts(
                &self,
                page: &$crate::Page,
            ) -> $crate::StoreResult<Vec<$crate::Account>> {
                let q = format!(
                    "SELECT {} FROM accounts \
                     WHERE (CAST($1 AS TEXT) IS NULL OR seq < (SELECT seq FROM accounts WHERE id = $1)) \
                     ORDER BY seq DESC LIMIT $2",
                    $crate::sql::ACCOUNT_COLS
                );
                let rows = sqlx::query(&q)
                    .bind(page.after.as_deref())
                    .bind(i64::from(page.limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::backend_err)?;
                rows.iter().map($crate::sql::account_from_row).collect()
            }
        }

        #[async_trait::async_trait]
        impl $crate::KeyStore for $store {
            async fn create_key(&self, k: &$crate::ApiKey) -> $crate::StoreResult<()> {
                let q = format!(
                    "INSERT INTO api_keys ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
                    $crate::sql::KEY_COLS
                );
                let mut tx = self.pool.begin().await.map_err($crate::backend_err)?;
                sqlx::query(&q)
                    .bind(&k.id)
                    .bind(&k.account_id)
                    .bind(&k.name)
                    .bind(&k.lookup)
                    .bind(&k.secret_hash)
                    .bind(sluice_types::scope::join_list(&k.scopes))
                    .bind($crate::sql::models_to_text(&k.models))
                    .bind(k.expires_at)
                    .bind(k.revoked_at)
                    .bind(k.created_at)
                    .bind(k.max_spend)
                    .bind(k.limits.rpm as i64)
                    .bind(k.limits.rps as i64)
                    .bind(k.limits.tpm as i64)
                    .bind(k.limits.tps as i64)
                    .bind(
                        (!k.lineage.is_empty())
                            .then(|| serde_json::to_string(&k.lineage).unwrap_or_default()),
                    )
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| $crate::sql::classify(e, "lookup", "account_id"))?;
                if let Some(limit) = k.max_spend {
                    sqlx::query("INSERT INTO wallets (id, balance) VALUES ($1, $2)")
                        .bind(&k.id)
                        .bind(limit)
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::backend_err)?;
                }
                tx.commit().await.map_err($crate::backend_err)
            }

            async fn get_key(&self, id: &str) -> $crate::StoreResult<Option<$crate::ApiKey>> {
                let q = format!("SELECT {} FROM api_keys WHERE id = $1", $crate::sql::KEY_COLS);
                let row = sqlx::query(&q)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_err)?;
                row.as_ref().map($crate::sql::key_from_row).transpose()
            }

            async fn find_key_with_tier(
                &self,
                lookup: &str,
            ) -> $crate::StoreResult<Option<($crate::ApiKey, sluice_types::Tier)>> {
                let cols: Vec<String> = $crate::sql::KEY_COLS.split(',').map(|c| format!("k.{}", c.trim())).collect();
                let q = format!(
                    "SELECT {}, a.tier AS account_tier FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.lookup = $1",
                    cols.join(", ")
                );
                let row = sqlx::query(&q)
                    .bind(lookup)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_err)?;
                let Some(row) = row else { return Ok(None) };
                let key = $crate::sql::key_from_row(&row)?;
                let tier: String = sqlx::Row::try_get(&row, "account_tier").map_err($crate::backend_err)?;
                let tier = sluice_types::Tier::parse(&tier)
                    .ok_or_else(|| $crate::StoreError::Backend(format!("unknown tier {tier}")))?;
                Ok(Some((key, tier)))
            }

            async fn find_key_by_lookup(
                &self,
                lookup: &str,
            ) -> $crate::StoreResult<Option<$crate::ApiKey>> {
                let q = format!("SELECT {} FROM api_keys WHERE lookup = $1", $crate::sql::KEY_COLS);
                let row = sqlx::query(&q)
                    .bind(lookup)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_err)?;
                row.as_ref().map($crate::sql::key_from_row).transpose()
            }

            async fn list_keys(
                &self,
                account_id: Option<&str>,
                page: &$crate::Page,
            ) -> $crate::StoreResult<Vec<$crate::ApiKey>> {
                let q = format!(
                    "SELECT {} FROM api_keys \
                     WHERE (CAST($1 AS TEXT) IS NULL OR account_id = $1) \
                       AND (CAST($2 AS TEXT) IS NULL OR seq < (SELECT seq FROM api_keys WHERE id = $2)) \
                     ORDER BY seq DESC LIMIT $3",
                    $crate::sql::KEY_COLS
                );
                let rows = sqlx::query(&q)
                    .bind(account_id)
                    .bind(page.after.as_deref())
                    .bind(i64::from(page.limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::backend_err)?;
                rows.iter().map($crate::sql::key_from_row).collect()
            }

            async fn revoke_key(
                &self,
                id: &str,
                at: i64,
            ) -> $crate::StoreResult<Option<$crate::ApiKey>> {
                sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                    .bind(id)
                    .bind(at)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::backend_err)?;
                $crate::KeyStore::get_key(self, id).await
            }

            async fn count_keys(&self) -> $crate::StoreResult<i64> {
                let row: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM api_keys")
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::backend_err)?;
                Ok(row.0)
            }
        }
    };
}
pub(crate) use impl_common;
