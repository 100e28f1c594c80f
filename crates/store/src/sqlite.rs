//! The embedded backend: one SQLite file in WAL mode, no other service needed.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use crate::{
    backend_err, credits_sql, execution_sql, flows_sql, migrate, responses_sql, sql, workflow_sql,
    Store, StoreResult,
};

pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
}

impl SqliteStore {
    /// Batched statements bind by position (`?`); see `credits_sql::usage_insert_sql`.
    pub(crate) const NUMBERED_PARAMS: bool = false;

    /// Opens (creating if needed) the database at `url` and migrates it.
    ///
    /// Two processes creating the same fresh file at once can get `SQLITE_BUSY` without the busy
    /// handler being consulted (switching a new file to WAL, or WAL recovery), so a busy open is
    /// retried for up to [`OPEN_DEADLINE`] before it is reported.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let deadline = tokio::time::Instant::now() + OPEN_DEADLINE;
        let mut pause = Duration::from_millis(10);
        loop {
            match Self::open_once(url).await {
                Err(OpenError::Busy(_)) if tokio::time::Instant::now() + pause < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(250));
                }
                Err(OpenError::Busy(e)) => return Err(backend_err(e)),
                Err(OpenError::Failed(e)) => return Err(e),
                Ok(store) => return Ok(store),
            }
        }
    }

    async fn open_once(url: &str) -> Result<Self, OpenError> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .connect_with(opts)
            .await?;
        let store = SqliteStore { pool };
        if let Err(e) = store.migrate().await {
            store.pool.close().await;
            return Err(e);
        }
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), OpenError> {
        let mut conn = self.pool.acquire().await?;
        // IMMEDIATE takes the write lock up front, so two processes starting together migrate
        // one after the other instead of both seeing "nothing applied".
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        // The block keeps the macro's `?` from skipping the ROLLBACK.
        let result = async { migrate::apply_pending!(&mut *conn, migrate::SQLITE) }.await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        sqlx::query(end).execute(&mut *conn).await?;
        result.map_err(OpenError::Failed)
    }
}

/// How long a busy open is retried (a peer process migrating holds the write lock meanwhile).
const OPEN_DEADLINE: Duration = Duration::from_secs(15);

/// An open that failed because another connection held the database, or for any other reason.
enum OpenError {
    Busy(sqlx::Error),
    Failed(crate::StoreError),
}

impl From<sqlx::Error> for OpenError {
    fn from(e: sqlx::Error) -> Self {
        // SQLITE_BUSY (5) and its extended codes (BUSY_RECOVERY 261, BUSY_SNAPSHOT 517).
        let busy = matches!(&e, sqlx::Error::Database(d)
            if d.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| c & 0xff == 5));
        if busy {
            OpenError::Busy(e)
        } else {
            OpenError::Failed(backend_err(e))
        }
    }
}

sql::impl_common!(SqliteStore);
credits_sql::impl_credits!(SqliteStore);
flows_sql::impl_flows!(SqliteStore);
responses_sql::impl_responses!(SqliteStore);
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
