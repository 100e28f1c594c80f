//! The scale-out backend: several Sluice instances share one Postgres database.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::{
    backend_err, credits_sql, execution_sql, flows_sql, migrate, responses_sql, sql, workflow_sql,
    Store, StoreResult,
};

/// The `NOTIFY` channel on which instances announce key and account changes.
const KEY_CHANNEL: &str = "sluice_keys";

/// Advisory lock id held while migrating, so concurrent starts apply each migration once.
const MIGRATION_LOCK: i64 = 0x51_1CE0;

pub struct PgStore {
    pub(crate) pool: PgPool,
}

impl PgStore {
    /// Postgres takes only `$n` placeholders.
    pub(crate) const NUMBERED_PARAMS: bool = true;

    pub async fn open(url: &str) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(2))
            .connect(url)
            .await
            .map_err(backend_err)?;
        let store = PgStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(backend_err)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(backend_err)?;
        migrate::apply_pending!(&mut *tx, migrate::POSTGRES)?;
        tx.commit().await.map_err(backend_err)
    }
}

sql::impl_common!(PgStore);
credits_sql::impl_credits!(PgStore);
flows_sql::impl_flows!(PgStore);
responses_sql::impl_responses!(PgStore);
workflow_sql::impl_workflows!(PgStore);
execution_sql::impl_executions!(PgStore, "FOR UPDATE SKIP LOCKED", "FOR SHARE");

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(backend_err)?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn announce_key_change(&self) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(KEY_CHANNEL)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(backend_err)
    }

    async fn watch_key_changes(&self, on_change: Arc<dyn Fn() + Send + Sync>) -> bool {
        // Failing here is reported by the caller (after the server's first log line).
        let Ok(mut listener) = sqlx::postgres::PgListener::connect_with(&self.pool).await else {
            return false;
        };
        if listener.listen(KEY_CHANNEL).await.is_err() {
            return false;
        }
        tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(_)) => on_change(),
                    // Reconnected: what was announced meanwhile is covered by the cache bound.
                    Ok(None) => {}
                    Err(sqlx::Error::PoolClosed) => return,
                    Err(e) => {
                        tracing::debug!(error = %e, "key change listener reconnecting");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        true
    }
}
