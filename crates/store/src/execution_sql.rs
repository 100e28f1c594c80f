//! `ExecutionStore` for both backends (`impl_executions!`); only the claim's row lock differs:
//! Postgres skips rows other workers are locking, SQLite serialises writers anyway.

use crate::{ExecutionEvent, ExecutionRecord, NodeRun, StoreError};

pub(crate) const EXEC_COLS: &str =
    "id, account_id, workflow_id, version, key_id, status, input, output, error, \
     timeout_at, created_at, started_at, finished_at, run_after";
pub(crate) const RUN_COLS: &str =
    "execution_id, node_id, status, attempts, output, error, started_at, finished_at, resume_at";

use crate::sql::row_fn;

row_fn!(exec_from_row, ExecutionRecord, |row, e| ExecutionRecord {
    id: row.try_get("id").map_err(e)?,
    account_id: row.try_get("account_id").map_err(e)?,
    workflow_id: row.try_get("workflow_id").map_err(e)?,
    version: row.try_get("version").map_err(e)?,
    key_id: row.try_get("key_id").map_err(e)?,
    status: row.try_get("status").map_err(e)?,
    input: row.try_get("input").map_err(e)?,
    output: row.try_get("output").map_err(e)?,
    error: row.try_get("error").map_err(e)?,
    timeout_at: row.try_get("timeout_at").map_err(e)?,
    created_at: row.try_get("created_at").map_err(e)?,
    started_at: row.try_get("started_at").map_err(e)?,
    finished_at: row.try_get("finished_at").map_err(e)?,
    run_after: row.try_get("run_after").map_err(e)?,
});

row_fn!(run_from_row, NodeRun, |row, e| NodeRun {
    execution_id: row.try_get("execution_id").map_err(e)?,
    node_id: row.try_get("node_id").map_err(e)?,
    status: row.try_get("status").map_err(e)?,
    attempts: row.try_get("attempts").map_err(e)?,
    output: row.try_get("output").map_err(e)?,
    error: row.try_get("error").map_err(e)?,
    started_at: row.try_get("started_at").map_err(e)?,
    finished_at: row.try_get("finished_at").map_err(e)?,
    resume_at: row.try_get("resume_at").map_err(e)?,
});

row_fn!(event_from_row, ExecutionEvent, |row, e| ExecutionEvent {
    n: row.try_get("n").map_err(e)?,
    kind: row.try_get("kind").map_err(e)?,
    data: row.try_get("data").map_err(e)?,
    created_at: row.try_get("created_at").map_err(e)?,
});

macro_rules! impl_executions {
    ($store:ty, $lock:literal, $share:literal) => {
        #[async_trait::async_trait]
        impl $crate::ExecutionStore for $store {
            async fn create_execution(&self, x: &$crate::ExecutionRecord) -> $crate::StoreResult<()> {
                let q = format!(
                    "INSERT INTO executions ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                    $crate::execution_sql::EXEC_COLS
                );
                sqlx::query(&q)
                    .bind(&x.id)
                    .bind(&x.account_id)
                    .bind(&x.workflow_id)
                    .bind(x.version)
                    .bind(&x.key_id)
                    .bind(&x.status)
                    .bind(&x.input)
                    .bind(&x.output)
                    .bind(&x.error)
                    .bind(x.timeout_at)
                    .bind(x.created_at)
                    .bind(x.started_at)
                    .bind(x.finished_at)
                    .bind(x.run_after)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::backend_err)?;
                Ok(())
            }

            async fn get_execution(&self, account_id: &str, id: &str) -> $crate::StoreResult<Option<$crate::ExecutionRecord>> {
                let q = format!("SELECT {} FROM executions WHERE id = $1 AND account_id = $2", $crate::execution_sql::EXEC_COLS);
                let row = sqlx::query(&q).bind(id).bind(account_id).fetch_optional(&self.pool).await.map_err($crate::backend_err)?;
                row.as_ref().map($crate::execution_sql::exec_from_row).transpose()
            }

            async fn list_executions(
                &self,
                account_id: &str,
                workflow_id: Option<&str>,
                status: Option<&str>,
                page: &$crate::Page,
            ) -> $crate::StoreResult<Vec<$crate::ExecutionRecord>> {
                let q = format!(
                    "SELECT {} FROM executions WHERE account_id = $1 \
                     AND (CAST($2 AS TEXT) IS NULL OR workflow_id = $2) \
                     AND (CAST($3 AS TEXT) IS NULL OR status = $3) \
                     AND (CAST($4 AS TEXT) IS NULL OR seq < (SELECT seq FROM executions WHERE id = $4)) \
                     ORDER BY seq DESC LIMIT $5",
                    $crate::execution_sql::EXEC_COLS
                );
                let rows = sqlx::query(&q)
                    .bind(account_id)
                    .bind(workflow_id)
                    .bind(status)
                    .bind(page.after.as_deref())
                    .bind(i64::from(page.limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::backend_err)?;
                rows.iter().map($crate::execution_sql::exec_from_row).collect()
            }

            async fn claim_execution(&self, owner: &str, now: i64, lease_ms: i64) -> $crate::StoreResult<Option<$crate::ExecutionRecord>> {
                let q = format!(
                    "UPDATE executions SET lease_owner = $1, lease_until = $3, \
                       status = CASE WHEN status = 'queued' THEN 'running' ELSE status END, \
                       started_at = COALESCE(started_at, $2) \
                     WHERE id = (SELECT id FROM executions WHERE status IN ('queued', 'running') AND run_after <= $2 \
                                 AND (lease_until IS NULL OR lease_until < $2) ORDER BY run_after LIMIT 1 {}) \
                       AND (lease_until IS NULL OR lease_until < $2) \
                     RETURNING {}",
                    $lock,
                    $crate::execution_sql::EXEC_COLS
                );
                let row = sqlx::query(&q)
                    .bind(owner)
                    .bind(now)
                    .bind(now + lease_ms)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_err)?;
                row.as_ref().map($crate::execution_sql::exec_from_row).transpose()
            }

            async fn renew_lease(&self, id: &str, owner: &str, until: i64) -> $crate::StoreResult<bool> {
                let n = sqlx::query(
                    "UPDATE executions SET lease_until = $3 WHERE id = $1 AND lease_owner = $2 AND status IN ('queued', 'running')",
                )
                .bind(id)
                .bind(owner)
                .bind(until)
                .execute(&self.pool)
                .await
                .map_err($crate::backend_err)?
                .rows_affected();
                Ok(n == 1)
            }

            async fn release_execution(&self, id: &str, owner: &str, run_after: i64) -> $crate::StoreResult<()> {
                sqlx::query("UPDATE executions SET lease_owner = NULL, lease_until = NULL, run_after = $3 WHERE id = $1 AND lease_owner = $2")
                    .bind(id)
                    .bind(owner)
                    .bind(run_after)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::backend_err)?;
                Ok(())
            }

            async fn finish_execution(&self, id: &str, status: &str, output: Option<&str>, error: Option<&str>, now: i64) -> $crate::StoreResult<bool> {
                let n = sqlx::query(
                    "UPDATE executions SET status = $2, output = $3, error = $4, finished_at = $5, lease_owner = NULL, lease_until = NULL \
                     WHERE id = $1 AND status IN ('queued', 'running')",
                )
                .bind(id)
                .bind(status)
                .bind(output)
                .bind(error)
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err($crate::backend_err)?
                .rows_affected();
                Ok(n == 1)
            }

            async fn count_leased(&self, account_id: &str, now: i64) -> $crate::StoreResult<i64> {
                let (n,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM executions WHERE account_id = $1 AND lease_until >= $2 AND status IN ('queued', 'running')",
                )
                .bind(account_id)
                .bind(now)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::backend_err)?;
                Ok(n)
            }

            async fn node_runs(&self, execution_id: &str) -> $crate::StoreResult<Vec<$crate::NodeRun>> {
                let q = format!("SELECT {} FROM node_runs WHERE execution_id = $1", $crate::execution_sql::RUN_COLS);
                let rows = sqlx::query(&q).bind(execution_id).fetch_all(&self.pool).await.map_err($crate::backend_err)?;
                rows.iter().map($crate::execution_sql::run_from_row).collect()
            }

            async fn save_node_run(&self, r: &$crate::NodeRun, owner: Option<&str>) -> $crate::StoreResult<bool> {
                // With an owner, the write lands only while that worker holds the execution's
                // lease (Postgres locks the execution row for it, so a concurrent claim waits).
                let q = match owner {
                    None => format!(
                        "INSERT INTO node_runs ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                         ON CONFLICT (execution_id, node_id) DO UPDATE SET status = $3, attempts = $4, output = $5, \
                           error = $6, started_at = $7, finished_at = $8, resume_at = $9",
                        $crate::execution_sql::RUN_COLS
                    ),
                    Some(_) => format!(
                        "INSERT INTO node_runs ({}) SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 \
                         WHERE EXISTS (SELECT 1 FROM executions WHERE id = $1 AND lease_owner = $10 \
                                       AND status IN ('queued', 'running') {}) \
                         ON CONFLICT (execution_id, node_id) DO UPDATE SET status = $3, attempts = $4, output = $5, \
                           error = $6, started_at = $7, finished_at = $8, resume_at = $9",
                        $crate::execution_sql::RUN_COLS,
                        $share
                    ),
                };
                let mut query = sqlx::query(&q)
                    .bind(&r.execution_id)
                    .bind(&r.node_id)
                    .bind(&r.status)
                    .bind(r.attempts)
                    .bind(&r.output)
                    .bind(&r.error)
                    .bind(r.started_at)
                    .bind(r.finished_at)
                    .bind(r.resume_at);
                if let Some(owner) = owner {
                    query = query.bind(owner);
                }
                let n = query
                    .execute(&self.pool)
                    .await
                    .map_err($crate::backend_err)?
                    .rows_affected();
                Ok(n == 1)
            }

            async fn append_event(&self, execution_id: &str, kind: &str, data: &str, now: i64) -> $crate::StoreResult<i64> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_err)?;
                // Numbering under the execution row's lock keeps event numbers gap-free and unique.
                sqlx::query("UPDATE executions SET run_after = run_after WHERE id = $1")
                    .bind(execution_id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::backend_err)?;
                let (n,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(n), 0) + 1 FROM execution_events WHERE execution_id = $1")
                    .bind(execution_id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err($crate::backend_err)?;
                sqlx::query("INSERT INTO execution_events (execution_id, n, kind, data, created_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(execution_id)
                    .bind(n)
                    .bind(kind)
                    .bind(data)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::backend_err)?;
                tx.commit().await.map_err($crate::backend_err)?;
                Ok(n)
            }

            async fn events_after(&self, execution_id: &str, after: i64) -> $crate::StoreResult<Vec<$crate::ExecutionEvent>> {
                let rows = sqlx::query("SELECT n, kind, data, created_at FROM execution_events WHERE execution_id = $1 AND n > $2 ORDER BY n")
                    .bind(execution_id)
                    .bind(after)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::backend_err)?;
                rows.iter().map($crate::execution_sql::event_from_row).collect()
            }
        }
    };
}
pub(crate) use impl_executions;
