//! Schema migrations embedded in the binary, applied in order at start-up, each once.
//!
//! Each backend has its own SQL files (types differ); the bookkeeping is shared. Concurrent
//! starts are serialised by the caller (an advisory lock on Postgres, `BEGIN IMMEDIATE` on SQLite).

/// One migration: its version (the file's number) and its SQL.
pub(crate) struct Migration {
    pub version: i64,
    pub sql: &'static str,
}

pub(crate) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("../migrations/sqlite/0001_accounts_keys.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("../migrations/sqlite/0002_credits_usage.sql"),
    },
    Migration {
        version: 3,
        sql: include_str!("../migrations/sqlite/0003_key_limits.sql"),
    },
    Migration {
        version: 4,
        sql: include_str!("../migrations/sqlite/0004_agents_idempotency.sql"),
    },
];

pub(crate) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("../migrations/postgres/0001_accounts_keys.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("../migrations/postgres/0002_credits_usage.sql"),
    },
    Migration {
        version: 3,
        sql: include_str!("../migrations/postgres/0003_key_limits.sql"),
    },
    Migration {
        version: 4,
        sql: include_str!("../migrations/postgres/0004_agents_idempotency.sql"),
    },
];

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
