//! The embedded backend: one SQLite file in WAL mode, no other service needed.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use crate::{
    backend_err, credits_sql, execution_sql, flows_sql, migrate, sql, workflow_sql, Store,
    StoreResult,
};

pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` and migrates it.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(backend_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .connect_with(opts)
            .await
            .map_err(backend_err)?;
        let store = SqliteStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await.map_err(backend_err)?;
        // IMMEDIATE takes the write lock up front, so two processes starting together migrate
        // one after the other instead of both seeing "nothing applied".
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *conn)
            .await
            .map_err(backend_err)?;
        let result = migrate::apply_pending!(&mut *conn, migrate::SQLITE);
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        sqlx::query(end)
            .execute(&mut *conn)
            .await
            .map_err(backend_err)?;
        result
    }
}

sql::impl_common!(SqliteStore);
credits_sql::impl_credits!(SqliteStore);
flows_sql::impl_flows!(SqliteStore);
workflow_sql::impl_workflows!(SqliteStore);
execution_sql::impl_executions!(SqliteStore, "", "");

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
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
}
