//! Throw-away databases for tests: a SQLite file in a temp dir, or a uniquely named Postgres
//! database that is dropped when the value is dropped.

use std::sync::Arc;

use sqlx::Connection;

use crate::{Store, StoreError, StoreResult};

/// Which backend a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// `SLUICE_TEST_BACKEND=postgres` switches server tests to Postgres; SQLite otherwise.
    pub fn from_env() -> Backend {
        match std::env::var("SLUICE_TEST_BACKEND").as_deref() {
            Ok("postgres") => Backend::Postgres,
            _ => Backend::Sqlite,
        }
    }
}

/// The Postgres server tests use: `SLUICE_TEST_POSTGRES_URL` or the local trust-auth server.
pub fn postgres_admin_url() -> String {
    std::env::var("SLUICE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database that exists for the lifetime of this value.
pub struct TestDatabase {
    pub url: String,
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl TestDatabase {
    pub async fn new(backend: Backend) -> StoreResult<TestDatabase> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().map_err(|e| StoreError::Backend(e.to_string()))?;
                let url = format!("sqlite://{}", dir.path().join("sluice.db").display());
                Ok(TestDatabase {
                    url,
                    backend,
                    _dir: Some(dir),
                    pg_name: None,
                })
            }
            Backend::Postgres => {
                let name = format!(
                    "sluice_test_{}",
                    sluice_types::id::random_base62(16).to_lowercase()
                );
                let admin = postgres_admin_url();
                let mut conn = sqlx::PgConnection::connect(&admin).await.map_err(|e| {
                    StoreError::Backend(format!("cannot reach Postgres at {admin}: {e}"))
                })?;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .map_err(crate::backend_err)?;
                let _ = conn.close().await;
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
                Ok(TestDatabase {
                    url: format!("{base}/{name}"),
                    backend,
                    _dir: None,
                    pg_name: Some(name),
                })
            }
        }
    }

    /// `sqlite` or `postgres`, as `Store::backend` names it.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// Opens (and migrates) a store on this database; call it again for a second "instance".
    pub async fn open(&self) -> StoreResult<Arc<dyn Store>> {
        crate::open(&self.url).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        // Drop runs outside any async context we may block on, so a short-lived thread with its
        // own runtime removes the database; FORCE ends connections a test left open.
        let admin = postgres_admin_url();
        let handle = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = handle.join();
    }
}
