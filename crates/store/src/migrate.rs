//! Schema migrations embedded in the binary, applied in order at start-up, each once.
//!
//! Each backend has its own SQL files (types differ); the bookkeeping is shared. Concurrent
//! starts are serialised by the caller (an advisory lock on Postgres, `BEGIN IMMEDIATE` on SQLite).

/// One migration: its version (the file's number) and its SQL.
pub(crate) struct Migration {
    pub version: i64,
    pub sql: &'static str,
}

/// Both backends' migration lists from one list of file names (`migrations/<backend>/<name>.sql`).
macro_rules! migrations {
    ($($version:literal => $name:literal),* $(,)?) => {
        pub(crate) const SQLITE: &[Migration] = &[
            $(Migration { version: $version, sql: include_str!(concat!("../migrations/sqlite/", $name, ".sql")) },)*
        ];
        pub(crate) const POSTGRES: &[Migration] = &[
            $(Migration { version: $version, sql: include_str!(concat!("../migrations/postgres/", $name, ".sql")) },)*
        ];
    };
}

migrations! {
    1 => "0001_accounts_keys",
    2 => "0002_credits_usage",
    3 => "0003_key_limits",
    4 => "0004_agents_idempotency",
    5 => "0005_workflows",
    6 => "0006_executions",
    7 => "0007_key_lineage",
    8 => "0008_responses",
}

pub(crate) const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS sluice_migrations \
     (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";

/// Applies every migration newer than the highest applied one, inside the given connection's
/// open transaction.
macro_rules! apply_pending {
    ($conn:expr, $migrations:expr) => {{
        let conn = $conn;
        sqlx::query($crate::migrate::CREATE_TABLE)
            .execute(&mut *conn)
            .await
            .map_err($crate::backend_err)?;
        let (current,): (i64,) =
            sqlx::query_as("SELECT COALESCE(MAX(version), 0) FROM sluice_migrations")
                .fetch_one(&mut *conn)
                .await
                .map_err($crate::backend_err)?;
        for m in $migrations.iter().filter(|m| m.version > current) {
            sqlx::raw_sql(m.sql)
                .execute(&mut *conn)
                .await
                .map_err($crate::backend_err)?;
            sqlx::query("INSERT INTO sluice_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(m.version)
                .bind(sluice_types::now_unix())
                .execute(&mut *conn)
                .await
                .map_err($crate::backend_err)?;
            tracing::debug!(version = m.version, "applied migration");
        }
        Ok::<(), $crate::StoreError>(())
    }};
}
pub(crate) use apply_pending;
