//! `ResponseStore` for both backends, written once (`impl_responses!`).

use crate::sql::row_fn;
use crate::{ResponseRecord, StoreError};

pub(crate) const COLS: &str = "id, account_id, body, conversation, created_at";

row_fn!(response_from_row, ResponseRecord, |row, e| ResponseRecord {
    id: row.try_get("id").map_err(e)?,
    account_id: row.try_get("account_id").map_err(e)?,
    body: row.try_get("body").map_err(e)?,
    conversation: row.try_get("conversation").map_err(e)?,
    created_at: row.try_get("created_at").map_err(e)?,
});

macro_rules! impl_responses {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::ResponseStore for $store {
            async fn save_response(&self, r: &$crate::ResponseRecord) -> $crate::StoreResult<()> {
                let q = format!(
                    "INSERT INTO responses ({}) VALUES ($1, $2, $3, $4, $5)",
                    $crate::responses_sql::COLS
                );
                sqlx::query(&q)
                    .bind(&r.id)
                    .bind(&r.account_id)
                    .bind(&r.body)
                    .bind(&r.conversation)
                    .bind(r.created_at)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::backend_err)?;
                Ok(())
            }

            async fn get_response(
                &self,
                account_id: &str,
                id: &str,
            ) -> $crate::StoreResult<Option<$crate::ResponseRecord>> {
                let q = format!(
                    "SELECT {} FROM responses WHERE id = $1 AND account_id = $2",
                    $crate::responses_sql::COLS
                );
                let row = sqlx::query(&q)
                    .bind(id)
                    .bind(account_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend_err)?;
                row.as_ref()
                    .map($crate::responses_sql::response_from_row)
                    .transpose()
            }

            async fn delete_response(
                &self,
                account_id: &str,
                id: &str,
            ) -> $crate::StoreResult<bool> {
                let res = sqlx::query("DELETE FROM responses WHERE id = $1 AND account_id = $2")
                    .bind(id)
                    .bind(account_id)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::backend_err)?;
                Ok(res.rows_affected() > 0)
            }
        }
    };
}
pub(crate) use impl_responses;
