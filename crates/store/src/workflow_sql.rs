//! `WorkflowStore` for both backends, written once (`impl_workflows!`).

use crate::sql::row_fn;
use crate::{StoreError, WorkflowRecord};

pub(crate) const WORKFLOW_COLS: &str =
    "id, account_id, name, version, spec, created_at, updated_at";

row_fn!(workflow_from_row, WorkflowRecord, |row, e| WorkflowRecord {
    id: row.try_get("id").map_err(e)?,
    account_id: row.try_get("account_id").map_err(e)?,
    name: row.try_get("name").map_err(e)?,
    version: row.try_get("version").map_err(e)?,
    spec: row.try_get("spec").map_err(e)?,
    created_at: row.try_get("created_at").map_err(e)?,
    updated_at: row.try_get("updated_at").map_err(e)?,
});

macro_rules! impl_workflows {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::WorkflowStore for $store {
            async fn create_workflow(
                &self,
                w: &$crate::WorkflowRecord,
                limit: Option<i64>,
            ) -> $crate::StoreResult<Result<(), $crate::CreateRefusal>> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_err)?;
                if let Some(full) = $crate::sql::take_plan_slot!(tx, "workflow_count", &w.account_id, limit) {
                    return Ok(Err(full));
                }
                let q = format!("INSERT INTO workflows ({}) VALUES ($1, $2, $3, $4, $5, $6, $7)", $crate::workflow_sql::WORKFLOW_COLS);
                let res = sqlx::query(&q)
                    .bind(&w.id)
                    .bind(&w.account_id)
                    .bind(&w.name)
                    .bind(w.version)
                    .bind(&w.spec)
                    .bind(w.created_at)
                    .bind(w.updated_at)
                    .execute(&mut *tx)
                    .await;
                match res {
                    Ok(_) => {}
                    Err(e) if $crate::flows_sql::is_unique(&e) => return Ok(Err($crate::CreateRefusal::NameTaken)),
                    Err(e) => return Err($crate::backend_err(e)),
                }
                sqlx::query("INSERT INTO workflow_versions (workflow_id, version, spec, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(&w.id)
                    .bind(w.version)
                    .bind(&w.spec)
                    .bind(w.created_at)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::backend_err)?;
                tx.commit().await.map_err($crate::backend_err)?;
                Ok(Ok(()))
            }

            async fn get_workflow(&self, account_id: &str, id: &str) -> $crate::StoreResult<Option<$crate::WorkflowRecord>> {
                let q = format!("SELECT {} FROM workflows WHERE id = $1 AND account_id = $2", $crate::workflow_sql::WORKFLOW_COLS);
                let row = sqlx::query(&q)
                    .bind(id)
                    .bind(account_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_err)?;
                row.as_ref().map($crate::workflow_sql::workflow_from_row).transpose()
            }

            async fn list_workflows(&self, account_id: &str, page: &$crate::Page) -> $crate::StoreResult<Vec<$crate::WorkflowRecord>> {
                let q = format!(
                    "SELECT {} FROM workflows WHERE account_id = $1 \
                     AND (CAST($2 AS TEXT) IS NULL OR seq < (SELECT seq FROM workflows WHERE id = $2)) \
                     ORDER BY seq DESC LIMIT $3",
                    $crate::workflow_sql::WORKFLOW_COLS
                );
                let rows = sqlx::query(&q)
                    .bind(account_id)
                    .bind(page.after.as_deref())
                    .bind(i64::from(page.limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::backend_err)?;
                rows.iter().map($crate::workflow_sql::workflow_from_row).collect()
            }

            async fn update_workflow(
                &self,
                w: &$crate::WorkflowRecord,
            ) -> $crate::StoreResult<Result<Option<$crate::WorkflowRecord>, $crate::CreateRefusal>> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_err)?;
                let q = format!(
                    "UPDATE workflows SET name = $3, version = $4, spec = $5, updated_at = $6 \
                     WHERE id = $1 AND account_id = $2 AND version = $4 - 1 RETURNING {}",
                    $crate::workflow_sql::WORKFLOW_COLS
                );
                let res = sqlx::query(&q)
                    .bind(&w.id)
                    .bind(&w.account_id)
                    .bind(&w.name)
                    .bind(w.version)
                    .bind(&w.spec)
                    .bind(w.updated_at)
                    .fetch_optional(&mut *tx)
                    .await;
                let row = match res {
                    Ok(Some(row)) => row,
                    Ok(None) => return Ok(Ok(None)),
                    Err(e) if $crate::flows_sql::is_unique(&e) => return Ok(Err($crate::CreateRefusal::NameTaken)),
                    Err(e) => return Err($crate::backend_err(e)),
                };
                let saved = $crate::workflow_sql::workflow_from_row(&row)?;
                sqlx::query("INSERT INTO workflow_versions (workflow_id, version, spec, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(&w.id)
                    .bind(w.version)
                    .bind(&w.spec)
                    .bind(w.updated_at)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::backend_err)?;
                tx.commit().await.map_err($crate::backend_err)?;
                Ok(Ok(Some(saved)))
            }

            async fn delete_workflow(&self, account_id: &str, id: &str) -> $crate::StoreResult<bool> {
                let mut tx = self.pool.begin().await.map_err($crate::backend_err)?;
                let n = sqlx::query("DELETE FROM workflows WHERE id = $1 AND account_id = $2")
                    .bind(id)
                    .bind(account_id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::backend_err)?
                    .rows_affected();
                if n > 0 {
                    $crate::sql::free_plan_slot!(tx, "workflow_count", account_id);
                }
                tx.commit().await.map_err($crate::backend_err)?;
                Ok(n > 0)
            }

            async fn workflow_version(&self, workflow_id: &str, version: i64) -> $crate::StoreResult<Option<String>> {
                let row: Option<(String,)> = sqlx::query_as("SELECT spec FROM workflow_versions WHERE workflow_id = $1 AND version = $2")
                    .bind(workflow_id)
                    .bind(version)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_err)?;
                Ok(row.map(|r| r.0))
            }
        }
    };
}
pub(crate) use impl_workflows;
