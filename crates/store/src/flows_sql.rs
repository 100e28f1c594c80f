//! `AgentStore` and `IdempotencyStore` for both backends, written once (`impl_flows!`).

use crate::sql::row_fn;
use crate::{AgentRecord, StoreError};

pub(crate) const AGENT_COLS: &str = "id, account_id, name, spec, created_at, updated_at";

row_fn!(agent_from_row, AgentRecord, |row, e| AgentRecord {
    id: row.try_get("id").map_err(e)?,
    account_id: row.try_get("account_id").map_err(e)?,
    name: row.try_get("name").map_err(e)?,
    spec: row.try_get("spec").map_err(e)?,
    created_at: row.try_get("created_at").map_err(e)?,
    updated_at: row.try_get("updated_at").map_err(e)?,
});

/// True for a unique violation (the agent's name is taken).
pub(crate) fn is_unique(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

macro_rules! impl_flows {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::AgentStore for $store {
            async fn create_agent(
                &self,
                a: &$crate::AgentRecord,
                limit: Option<i64>,
            ) -> $crate::StoreResult<Result<(), $crate::CreateRefusal>> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_err)?;
                if let Some(full) = $crate::sql::take_plan_slot!(tx, "agent_count", &a.account_id, limit) {
                    return Ok(Err(full));
                }
                let q = format!("INSERT INTO agents ({}) VALUES ($1, $2, $3, $4, $5, $6)", $crate::flows_sql::AGENT_COLS);
                let res = sqlx::query(&q)
                    .bind(&a.id)
                    .bind(&a.account_id)
                    .bind(&a.name)
                    .bind(&a.spec)
                    .bind(a.created_at)
                    .bind(a.updated_at)
                    .execute(&mut *tx)
                    .await;
                match res {
                    Ok(_) => {}
                    Err(e) if $crate::flows_sql::is_unique(&e) => return Ok(Err($crate::CreateRefusal::NameTaken)),
                    Err(e) => return Err($crate::backend_err(e)),
                }
                tx.commit().await.map_err($crate::backend_err)?;
                Ok(Ok(()))
            }

            async fn get_agent(&self, account_id: &str, id: &str) -> $crate::StoreResult<Option<$crate::AgentRecord>> {
                let q = format!("SELECT {} FROM agents WHERE id = $1 AND account_id = $2", $crate::flows_sql::AGENT_COLS);
                let row = sqlx::query(&q)
                    .bind(id)
                    .bind(account_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_err)?;
                row.as_ref().map($crate::flows_sql::agent_from_row).transpose()
            }

            async fn list_agents(&self, account_id: &str, page: &$crate::Page) -> $crate::StoreResult<Vec<$crate::AgentRecord>> {
                let q = format!(
                    "SELECT {} FROM agents WHERE account_id = $1 \
                     AND (CAST($2 AS TEXT) IS NULL OR seq < (SELECT seq FROM agents WHERE id = $2)) \
                     ORDER BY seq DESC LIMIT $3",
                    $crate::flows_sql::AGENT_COLS
                );
                let rows = sqlx::query(&q)
                    .bind(account_id)
                    .bind(page.after.as_deref())
                    .bind(i64::from(page.limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::backend_err)?;
                rows.iter().map($crate::flows_sql::agent_from_row).collect()
            }

            async fn update_agent(
                &self,
                a: &$crate::AgentRecord,
            ) -> $crate::StoreResult<Result<Option<$crate::AgentRecord>, $crate::CreateRefusal>> {
                let q = format!(
                    "UPDATE agents SET name = $3, spec = $4, updated_at = $5 WHERE id = $1 AND account_id = $2 RETURNING {}",
                    $crate::flows_sql::AGENT_COLS
                );
                let res = sqlx::query(&q)
                    .bind(&a.id)
                    .bind(&a.account_id)
                    .bind(&a.name)
                    .bind(&a.spec)
                    .bind(a.updated_at)
                    .fetch_optional(&self.pool)
                    .await;
                match res {
                    Ok(row) => Ok(Ok(row.as_ref().map($crate::flows_sql::agent_from_row).transpose()?)),
                    Err(e) if $crate::flows_sql::is_unique(&e) => Ok(Err($crate::CreateRefusal::NameTaken)),
                    Err(e) => Err($crate::backend_err(e)),
                }
            }

            async fn delete_agent(&self, account_id: &str, id: &str) -> $crate::StoreResult<bool> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_err)?;
                let n = sqlx::query("DELETE FROM agents WHERE id = $1 AND account_id = $2")
                    .bind(id)
                    .bind(account_id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::backend_err)?
                    .rows_affected();
                if n > 0 {
                    $crate::sql::free_plan_slot!(tx, "agent_count", account_id);
                }
                tx.commit().await.map_err($crate::backend_err)?;
                Ok(n > 0)
            }
        }

        #[async_trait::async_trait]
        impl $crate::IdempotencyStore for $store {
            async fn idem_begin(
                &self,
                account_id: &str,
                route: &str,
                key: &str,
                request_hash: &str,
                now: i64,
                ttl: i64,
            ) -> $crate::StoreResult<$crate::IdemState> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_err)?;
                // An expired record is replaced as if it were absent.
                sqlx::query("DELETE FROM idempotency WHERE account_id = $1 AND route = $2 AND key = $3 AND created_at < $4")
                    .bind(account_id)
                    .bind(route)
                    .bind(key)
                    .bind(now - ttl)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::backend_err)?;
                let inserted = sqlx::query(
                    "INSERT INTO idempotency (account_id, route, key, request_hash, created_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (account_id, route, key) DO NOTHING",
                )
                .bind(account_id)
                .bind(route)
                .bind(key)
                .bind(request_hash)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err($crate::backend_err)?
                .rows_affected();
                let state = if inserted == 1 {
                    $crate::IdemState::Started
                } else {
                    let (hash, status, response): (String, Option<i64>, Option<String>) = sqlx::query_as(
                        "SELECT request_hash, status, response FROM idempotency WHERE account_id = $1 AND route = $2 AND key = $3",
                    )
                    .bind(account_id)
                    .bind(route)
                    .bind(key)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err($crate::backend_err)?;
                    match (status, response) {
                        (Some(status), Some(response)) => $crate::IdemState::Done { request_hash: hash, status, response },
                        _ => $crate::IdemState::InFlight { request_hash: hash },
                    }
                };
                tx.commit().await.map_err($crate::backend_err)?;
                Ok(state)
            }

            async fn idem_finish(&self, account_id: &str, route: &str, key: &str, status: i64, response: &str) -> $crate::StoreResult<()> {
                sqlx::query("UPDATE idempotency SET status = $4, response = $5 WHERE account_id = $1 AND route = $2 AND key = $3")
                    .bind(account_id)
                    .bind(route)
                    .bind(key)
                    .bind(status)
                    .bind(response)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::backend_err)?;
                Ok(())
            }

            async fn idem_abandon(&self, account_id: &str, route: &str, key: &str) -> $crate::StoreResult<()> {
                sqlx::query("DELETE FROM idempotency WHERE account_id = $1 AND route = $2 AND key = $3 AND status IS NULL")
                    .bind(account_id)
                    .bind(route)
                    .bind(key)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::backend_err)?;
                Ok(())
            }
        }
    };
}
pub(crate) use impl_flows;
