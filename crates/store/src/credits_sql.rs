//! `CreditStore` and `UsageStore` for both backends, written once (`impl_credits!`).
//!
//! Each credit operation is one transaction whose first statement is a write on the row it
//! depends on, so SQLite takes its write lock up front and Postgres locks the row: two instances
//! can never both spend the same balance.

use crate::{LedgerEntry, StoreError, UsageRecord, Wallet};

pub(crate) const LEDGER_COLS: &str = "id, wallet_id, kind, amount, lease_id, reason, created_at";
pub(crate) const USAGE_COLS: &str =
    "request_id, account_id, key_id, model, provider, prompt_tokens, \
     completion_tokens, cost, latency_ms, ttfb_ms, status, error_code, created_at";

pub(crate) fn entry_id() -> String {
    sluice_types::id::new_id("le")
}

use crate::sql::row_fn;

row_fn!(wallet_from_row, Wallet, |row, e| Wallet {
    balance: row.try_get("balance").map_err(e)?,
    reserved: row.try_get("reserved").map_err(e)?,
});

row_fn!(entry_from_row, LedgerEntry, |row, e| LedgerEntry {
    id: row.try_get("id").map_err(e)?,
    wallet_id: row.try_get("wallet_id").map_err(e)?,
    kind: row.try_get("kind").map_err(e)?,
    amount: row.try_get("amount").map_err(e)?,
    lease_id: row.try_get("lease_id").map_err(e)?,
    reason: row.try_get("reason").map_err(e)?,
    created_at: row.try_get("created_at").map_err(e)?,
});

row_fn!(usage_from_row, UsageRecord, |row, e| UsageRecord {
    request_id: row.try_get("request_id").map_err(e)?,
    account_id: row.try_get("account_id").map_err(e)?,
    key_id: row.try_get("key_id").map_err(e)?,
    model: row.try_get("model").map_err(e)?,
    provider: row.try_get("provider").map_err(e)?,
    prompt_tokens: row.try_get("prompt_tokens").map_err(e)?,
    completion_tokens: row.try_get("completion_tokens").map_err(e)?,
    cost: row.try_get("cost").map_err(e)?,
    latency_ms: row.try_get("latency_ms").map_err(e)?,
    ttfb_ms: row.try_get("ttfb_ms").map_err(e)?,
    status: row.try_get("status").map_err(e)?,
    error_code: row.try_get("error_code").map_err(e)?,
    created_at: row.try_get("created_at").map_err(e)?,
});

/// `INSERT … VALUES (…), (…)` for `rows` usage records (13 columns each), with `$n`
/// placeholders (`numbered`) or anonymous `?` ones. SQLite resolves each `$n` by scanning the
/// statement's parameter names, which costs quadratic time over a 1,300-parameter batch; `?`
/// binds by position.
pub(crate) fn usage_insert_sql(rows: usize, numbered: bool) -> String {
    let mut q = format!("INSERT INTO usage_records ({USAGE_COLS}) VALUES ");
    for r in 0..rows {
        if r > 0 {
            q.push_str(", ");
        }
        q.push('(');
        for c in 0..13 {
            if c > 0 {
                q.push_str(", ");
            }
            if numbered {
                q.push_str(&format!("${}", r * 13 + c + 1));
            } else {
                q.push('?');
            }
        }
        q.push(')');
    }
    q.push_str(" ON CONFLICT (request_id) DO NOTHING");
    q
}

/// The `WHERE` clause for a usage filter, with `$1`…`$5` bound in `bind_filter!` order.
pub(crate) const USAGE_WHERE: &str = "WHERE (CAST($1 AS TEXT) IS NULL OR account_id = $1) \
     AND (CAST($2 AS TEXT) IS NULL OR key_id = $2) \
     AND (CAST($3 AS TEXT) IS NULL OR model = $3) \
     AND (CAST($4 AS BIGINT) IS NULL OR created_at >= $4) \
     AND (CAST($5 AS BIGINT) IS NULL OR created_at < $5)";

/// The SQL expression a usage total is grouped by.
pub(crate) fn group_expr(group_by: &str) -> Result<&'static str, StoreError> {
    match group_by {
        "day" => Ok("CAST(created_at / 86400 AS TEXT)"),
        "model" => Ok("COALESCE(model, '')"),
        "key" => Ok("key_id"),
        other => Err(StoreError::Backend(format!(
            "unknown usage grouping {other}"
        ))),
    }
}

/// Inserts one ledger line inside an open transaction.
macro_rules! ledger_line {
    ($tx:expr, $wallet:expr, $kind:expr, $amount:expr, $lease:expr, $reason:expr, $now:expr) => {
        sqlx::query(
            "INSERT INTO ledger (id, wallet_id, kind, amount, lease_id, reason, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind($crate::credits_sql::entry_id())
        .bind($wallet)
        .bind($kind)
        .bind($amount)
        .bind($lease)
        .bind($reason)
        .bind($now)
        .execute(&mut *$tx)
        .await
        .map_err($crate::backend_err)?
    };
}
pub(crate) use ledger_line;

macro_rules! impl_credits {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::CreditStore for $store {
            async fn create_wallet(&self, id: &str, initial: i64, reason: &str, now: i64) -> $crate::StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_err)?;
                sqlx::query("INSERT INTO wallets (id, balance) VALUES ($1, $2)")
                    .bind(id)
                    .bind(initial)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| $crate::sql::classify(e, "id", "id"))?;
                if initial > 0 {
                    $crate::credits_sql::ledger_line!(tx, id, "topup", initial, None::<&str>, Some(reason), now);
                }
                tx.commit().await.map_err($crate::backend_err)
            }

            async fn wallet(&self, id: &str) -> $crate::StoreResult<Option<$crate::Wallet>> {
                let row = sqlx::query("SELECT balance, reserved FROM wallets WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_err)?;
                row.as_ref().map($crate::credits_sql::wallet_from_row).transpose()
            }

            async fn top_up(&self, id: &str, amount: i64, reason: &str, now: i64) -> $crate::StoreResult<Option<$crate::Wallet>> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_err)?;
                // Balances stay below MAX_BALANCE, so no sum of them can overflow a 64-bit integer.
                let row = sqlx::query("UPDATE wallets SET balance = balance + $2 WHERE id = $1 AND balance <= $3 - $2 RETURNING balance, reserved")
                    .bind(id)
                    .bind(amount)
                    .bind($crate::MAX_BALANCE)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err($crate::backend_err)?;
                let Some(row) = row else { return Ok(None) };
                let w = $crate::credits_sql::wallet_from_row(&row)?;
                $crate::credits_sql::ledger_line!(tx, id, "topup", amount, None::<&str>, Some(reason), now);
                tx.commit().await.map_err($crate::backend_err)?;
                Ok(Some(w))
            }

            async fn acquire_lease(
                &self,
                wallet_id: &str,
                want: i64,
                min: i64,
                lease_id: &str,
                holder: &str,
                expires_at: i64,
                now: i64,
            ) -> $crate::StoreResult<$crate::LeaseGrant> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_err)?;
                // Every SET expression sees the old row, so `last_grant` and the new `reserved`
                // agree. The grant is `want`, but never more than half of what is available
                // (unless `min` needs more), so other instances sharing the wallet still find
                // some; the WHERE clause ensures at least `min` is available.
                let grant = "CASE WHEN $2 <= (CASE WHEN (balance - reserved) / 2 >= $3 THEN (balance - reserved) / 2 ELSE $3 END) \
                             THEN $2 ELSE (CASE WHEN (balance - reserved) / 2 >= $3 THEN (balance - reserved) / 2 ELSE $3 END) END";
                let q = format!(
                    "UPDATE wallets SET last_grant = {grant}, reserved = reserved + {grant} \
                     WHERE id = $1 AND balance - reserved >= $3 AND balance - reserved > 0 \
                     RETURNING last_grant"
                );
                let row = sqlx::query(&q)
                .bind(wallet_id)
                .bind(want)
                .bind(min)
                .fetch_optional(&mut *tx)
                .await
                .map_err($crate::backend_err)?;
                let Some(row) = row else {
                    drop(tx);
                    return Ok(match $crate::CreditStore::wallet(self, wallet_id).await? {
                        Some(w) => $crate::LeaseGrant::Insufficient(w),
                        None => $crate::LeaseGrant::NoWallet,
                    });
                };
                let granted: i64 = sqlx::Row::try_get(&row, "last_grant").map_err($crate::backend_err)?;
                sqlx::query("INSERT INTO leases (id, wallet_id, holder, amount, spent, expires_at) VALUES ($1, $2, $3, $4, 0, $5)")
                    .bind(lease_id)
                    .bind(wallet_id)
                    .bind(holder)
                    .bind(granted)
                    .bind(expires_at)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::backend_err)?;
                $crate::credits_sql::ledger_line!(tx, wallet_id, "reservation", granted, Some(lease_id), None::<&str>, now);
                tx.commit().await.map_err($crate::backend_err)?;
                Ok($crate::LeaseGrant::Granted(granted))
            }

            async fn settle_lease(
                &self,
                lease_id: &str,
                spend: i64,
                give_back: i64,
                close: bool,
                renew_until: Option<i64>,
                now: i64,
            ) -> $crate::StoreResult<bool> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_err)?;
                // A lease never pays out more than it holds: spend and refunds are capped by
                // what is left of it, so the wallet's reserved amount can never go negative.
                let row = sqlx::query(
                    "UPDATE leases SET spent = spent + $2, amount = amount - $3, \
                       expires_at = COALESCE(CAST($4 AS BIGINT), expires_at), \
                       closed_at = CASE WHEN $5 THEN $6 ELSE closed_at END \
                     WHERE id = $1 AND closed_at IS NULL AND spent + $2 + $3 <= amount \
                     RETURNING wallet_id, amount, spent",
                )
                .bind(lease_id)
                .bind(spend)
                .bind(give_back)
                .bind(renew_until)
                .bind(close)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .map_err($crate::backend_err)?;
                let Some(row) = row else { return Ok(false) };
                let wallet: String = sqlx::Row::try_get(&row, "wallet_id").map_err($crate::backend_err)?;
                let amount: i64 = sqlx::Row::try_get(&row, "amount").map_err($crate::backend_err)?;
                let spent: i64 = sqlx::Row::try_get(&row, "spent").map_err($crate::backend_err)?;
                let unused = if close { amount - spent } else { 0 };
                let refund = give_back + unused;
                sqlx::query("UPDATE wallets SET balance = balance - $2, reserved = reserved - $2 - $3 WHERE id = $1")
                    .bind(&wallet)
                    .bind(spend)
                    .bind(refund)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::backend_err)?;
                if spend > 0 {
                    $crate::credits_sql::ledger_line!(tx, &wallet, "settlement", spend, Some(lease_id), None::<&str>, now);
                }
                if refund > 0 {
                    $crate::credits_sql::ledger_line!(tx, &wallet, "refund", refund, Some(lease_id), None::<&str>, now);
                }
                if close && unused > 0 {
                    sqlx::query("UPDATE leases SET amount = spent WHERE id = $1")
                        .bind(lease_id)
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::backend_err)?;
                }
                tx.commit().await.map_err($crate::backend_err)?;
                Ok(true)
            }

            async fn expire_leases(&self, now: i64) -> $crate::StoreResult<u64> {
                let ids: Vec<(String,)> = sqlx::query_as("SELECT id FROM leases WHERE closed_at IS NULL AND expires_at < $1 LIMIT 1000")
                    .bind(now)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::backend_err)?;
                let mut n = 0;
                for (id,) in ids {
                    let mut tx = self.pool.begin().await.map_err($crate::backend_err)?;
                    let row = sqlx::query(
                        "UPDATE leases SET closed_at = $2 WHERE id = $1 AND closed_at IS NULL AND expires_at < $2 \
                         RETURNING wallet_id, amount, spent",
                    )
                    .bind(&id)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err($crate::backend_err)?;
                    let Some(row) = row else { continue };
                    let wallet: String = sqlx::Row::try_get(&row, "wallet_id").map_err($crate::backend_err)?;
                    let amount: i64 = sqlx::Row::try_get(&row, "amount").map_err($crate::backend_err)?;
                    let spent: i64 = sqlx::Row::try_get(&row, "spent").map_err($crate::backend_err)?;
                    let unused = amount - spent;
                    sqlx::query("UPDATE wallets SET reserved = reserved - $2 WHERE id = $1")
                        .bind(&wallet)
                        .bind(unused)
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::backend_err)?;
                    sqlx::query("UPDATE leases SET amount = spent WHERE id = $1")
                        .bind(&id)
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::backend_err)?;
                    if unused > 0 {
                        $crate::credits_sql::ledger_line!(tx, &wallet, "refund", unused, Some(id.as_str()), Some("lease expired"), now);
                    }
                    tx.commit().await.map_err($crate::backend_err)?;
                    n += 1;
                }
                Ok(n)
            }

            async fn ledger(&self, wallet_id: &str, page: &$crate::Page) -> $crate::StoreResult<Vec<$crate::LedgerEntry>> {
                let q = format!(
                    "SELECT {} FROM ledger WHERE wallet_id = $1 \
                     AND (CAST($2 AS TEXT) IS NULL OR seq < (SELECT seq FROM ledger WHERE id = $2)) \
                     ORDER BY seq DESC LIMIT $3",
                    $crate::credits_sql::LEDGER_COLS
                );
                let rows = sqlx::query(&q)
                    .bind(wallet_id)
                    .bind(page.after.as_deref())
                    .bind(i64::from(page.limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::backend_err)?;
                rows.iter().map($crate::credits_sql::entry_from_row).collect()
            }

            async fn recompute(&self, wallet_id: &str) -> $crate::StoreResult<$crate::Wallet> {
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT kind, CAST(SUM(amount) AS BIGINT) FROM ledger WHERE wallet_id = $1 GROUP BY kind",
                )
                .bind(wallet_id)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::backend_err)?;
                let sum = |k: &str| rows.iter().filter(|(kind, _)| kind == k).map(|(_, v)| *v).sum::<i64>();
                Ok($crate::Wallet {
                    balance: sum("topup") - sum("settlement"),
                    reserved: sum("reservation") - sum("settlement") - sum("refund"),
                })
            }
        }

        #[async_trait::async_trait]
        impl $crate::UsageStore for $store {
            async fn insert_usage(&self, records: &[$crate::UsageRecord]) -> $crate::StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_err)?;
                // Multi-row statements: one round trip per 100 records instead of per record.
                for chunk in records.chunks(100) {
                    let q = $crate::credits_sql::usage_insert_sql(chunk.len(), <$store>::NUMBERED_PARAMS);
                    let mut query = sqlx::query(&q);
                    for r in chunk {
                        query = query
                            .bind(&r.request_id)
                            .bind(&r.account_id)
                            .bind(&r.key_id)
                            .bind(&r.model)
                            .bind(&r.provider)
                            .bind(r.prompt_tokens)
                            .bind(r.completion_tokens)
                            .bind(r.cost)
                            .bind(r.latency_ms)
                            .bind(r.ttfb_ms)
                            .bind(r.status)
                            .bind(&r.error_code)
                            .bind(r.created_at);
                    }
                    query.execute(&mut *tx).await.map_err($crate::backend_err)?;
                }
                tx.commit().await.map_err($crate::backend_err)
            }

            async fn list_usage(&self, f: &$crate::UsageFilter, limit: u32) -> $crate::StoreResult<Vec<$crate::UsageRecord>> {
                let q = format!(
                    "SELECT {} FROM usage_records {} ORDER BY seq DESC LIMIT $6",
                    $crate::credits_sql::USAGE_COLS,
                    $crate::credits_sql::USAGE_WHERE
                );
                let rows = sqlx::query(&q)
                    .bind(f.account_id.as_deref())
                    .bind(f.key_id.as_deref())
                    .bind(f.model.as_deref())
                    .bind(f.from)
                    .bind(f.to)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::backend_err)?;
                rows.iter().map($crate::credits_sql::usage_from_row).collect()
            }

            async fn usage_totals(&self, f: &$crate::UsageFilter, group_by: &str) -> $crate::StoreResult<Vec<$crate::UsageTotal>> {
                let g = $crate::credits_sql::group_expr(group_by)?;
                let q = format!(
                    "SELECT {g} AS grp, CAST(COUNT(*) AS BIGINT), CAST(SUM(prompt_tokens) AS BIGINT), \
                     CAST(SUM(completion_tokens) AS BIGINT), CAST(SUM(cost) AS BIGINT) \
                     FROM usage_records {} GROUP BY grp ORDER BY grp",
                    $crate::credits_sql::USAGE_WHERE
                );
                let rows: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(&q)
                    .bind(f.account_id.as_deref())
                    .bind(f.key_id.as_deref())
                    .bind(f.model.as_deref())
                    .bind(f.from)
                    .bind(f.to)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::backend_err)?;
                Ok(rows
                    .into_iter()
                    .map(|(group, requests, prompt_tokens, completion_tokens, cost)| $crate::UsageTotal {
                        group,
                        requests,
                        prompt_tokens,
                        completion_tokens,
                        cost,
                    })
                    .collect())
            }
        }
    };
}
pub(crate) use impl_credits;
