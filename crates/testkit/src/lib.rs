//! Test support: in-process Sluice servers on `127.0.0.1:0` over a throw-away database, and a
//! harness that runs the real `sluice` binary.
//!
//! Tests pick the backend with `SLUICE_TEST_BACKEND` (`sqlite`, the default, or `postgres`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod catalog;
pub mod process;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use serde_json::{json, Value};
use sluice_engine::secret::SecretString;
use sluice_engine::Engine;
use sluice_gateway::{Catalog, Gateway};
pub use sluice_mock::{Behavior, MockProvider};
use sluice_server::AppState;
pub use sluice_store::testing::{Backend, TestDatabase};
use tokio::sync::oneshot;

/// The admin key every test server is configured with.
pub fn admin_key() -> String {
    "sk-test-admin-0123456789abcdefghij".to_owned()
}

/// The `sluice` binary built next to the running test (Cargo builds it for the server's
/// integration tests); template workers are started from it as in production.
pub fn sluice_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // Test binaries live in target/<profile>/deps, tool binaries in target/<profile>.
    let dirs = [exe.parent(), exe.parent().and_then(|d| d.parent())];
    let found = dirs
        .into_iter()
        .flatten()
        .map(|d| d.join("sluice"))
        .find(|b| b.exists());
    found.unwrap_or_else(|| {
            panic!("the sluice binary is missing next to {}: build it with `cargo build -p sluice-server` (cargo test builds it)", exe.display())
        })
}

/// Engine settings for tests: quick flushes, so charges reach the store within a test.
pub fn test_settings() -> sluice_engine::Settings {
    sluice_engine::Settings {
        credits: sluice_engine::credits::CreditSettings {
            flush_interval: std::time::Duration::from_millis(50),
            idle_return: std::time::Duration::from_millis(200),
            ..Default::default()
        },
        starting_grant: 0,
        plans: Default::default(),
        workflow_limits: Default::default(),
        allow_private_networks: true,
        executor: sluice_engine::executor::ExecutorSettings {
            workers: 4,
            poll_interval: std::time::Duration::from_millis(20),
            sandbox: sluice_engine::executor::sandbox::SandboxSettings {
                worker_exe: Some(sluice_bin()),
                ..Default::default()
            },
            ..Default::default()
        },
        rate_limits: sluice_engine::limits::RateSettings {
            key_prefix: format!("sluice:test:{}:", sluice_types::id::random_base62(12)),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// One running in-process server. Dropping it stops the server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub engine: Arc<Engine>,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// A database, a mock provider, and the first server on them; start more with `TestServer::on`.
pub struct TestApp {
    pub server: TestServer,
    pub db: TestDatabase,
    pub mock: MockProvider,
}

impl TestApp {
    /// A fresh database for the configured backend and a server on it.
    pub async fn start() -> TestApp {
        Self::start_with(None).await
    }

    /// Like `start`, with extra routes mounted under the same middleware.
    pub async fn start_with(extra: Option<Router<AppState>>) -> TestApp {
        Self::start_with_settings(extra, test_settings()).await
    }

    /// Like `start_with`, with engine settings of the test's own.
    pub async fn start_with_settings(
        extra: Option<Router<AppState>>,
        settings: sluice_engine::Settings,
    ) -> TestApp {
        let db = TestDatabase::new(Backend::from_env())
            .await
            .expect("test database");
        let mock = MockProvider::start().await.expect("mock provider");
        let catalog = catalog::test_catalog(&mock.base_url());
        let server = TestServer::on_with(&db, catalog, extra, settings).await;
        TestApp { server, db, mock }
    }

    /// A second server on the same database and catalog (another "instance").
    pub async fn another_instance(&self) -> TestServer {
        self.another_instance_with(test_settings()).await
    }

    /// A second instance with engine settings of the test's own.
    pub async fn another_instance_with(&self, settings: sluice_engine::Settings) -> TestServer {
        let catalog = catalog::test_catalog(&self.mock.base_url());
        TestServer::on_with(&self.db, catalog, None, settings).await
    }
}

impl std::ops::Deref for TestApp {
    type Target = TestServer;
    fn deref(&self) -> &TestServer {
        &self.server
    }
}

impl TestServer {
    /// Starts a server on an existing database (a second "instance" sharing the store).
    pub async fn on(
        db: &TestDatabase,
        catalog: Catalog,
        extra: Option<Router<AppState>>,
    ) -> TestServer {
        Self::on_with(db, catalog, extra, test_settings()).await
    }

    /// Like `on`, with engine settings of the test's own.
    pub async fn on_with(
        db: &TestDatabase,
        catalog: Catalog,
        extra: Option<Router<AppState>>,
        settings: sluice_engine::Settings,
    ) -> TestServer {
        let store = db.open().await.expect("open store");
        let breaker = sluice_gateway::routing::BreakerSettings {
            failures: 3,
            cooldown: std::time::Duration::from_secs(1),
        };
        let gateway = Gateway::with_breaker(catalog, breaker).expect("gateway");
        let engine = Arc::new(Engine::new(
            store,
            Some(&SecretString::new(admin_key())),
            gateway,
            settings,
        ));
        engine.bootstrap().await.expect("bootstrap");
        engine.listen_for_key_changes().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = sluice_server::app(engine.clone(), extra);
        let (stop, stopped) = oneshot::channel::<()>();
        let background = engine.start_background();
        let (stop_workers, workers_rx) = tokio::sync::watch::channel(false);
        let workers = engine.start_executor(engine.settings.executor.clone(), workers_rx);
        let bg_engine = engine.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            let _ = sluice_server::serve::serve(
                listener,
                app,
                shutdown,
                std::time::Duration::from_secs(5),
                &Default::default(),
            )
            .await;
            // As `sluice serve` does: stop the workers, settle credits, store usage.
            let _ = stop_workers.send(true);
            for w in workers {
                let _ = w.await;
            }
            bg_engine.shutdown(background).await;
        });
        TestServer {
            addr,
            engine,
            client: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A request with the given key as a Bearer token.
    pub fn req(&self, method: reqwest::Method, path: &str, key: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(key)
    }

    /// Creates an account as admin with a balance that no test exhausts; returns its id.
    pub async fn create_account(&self, name: &str) -> String {
        self.create_account_with_balance(name, 1_000_000_000_000)
            .await
    }

    /// Creates an account as admin and tops it up by `balance` micro-credits; returns its id.
    /// Its rate tier is `unlimited`, so limits only apply in tests that ask for them.
    pub async fn create_account_with_balance(&self, name: &str, balance: i64) -> String {
        self.create_account_with(
            json!({"name": name, "plan": "pro", "tier": "unlimited"}),
            balance,
        )
        .await
    }

    /// Creates an account from `body` as admin and tops it up by `balance`; returns its id.
    pub async fn create_account_with(&self, body: Value, balance: i64) -> String {
        let res = self
            .req(reqwest::Method::POST, "/v1/accounts", &admin_key())
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "create account");
        let v: Value = res.json().await.unwrap();
        let id = v["id"].as_str().unwrap().to_owned();
        if balance > 0 {
            let res = self
                .req(
                    reqwest::Method::POST,
                    &format!("/v1/accounts/{id}/credits"),
                    &admin_key(),
                )
                .json(&json!({"amount": balance, "reason": "test funds"}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "top up");
        }
        id
    }

    /// Creates a key in `account_id` with `scopes` as admin; returns (key id, secret).
    pub async fn create_key(&self, account_id: &str, scopes: &[&str]) -> (String, String) {
        self.create_key_with(account_id, json!({"scopes": scopes}))
            .await
    }

    /// Creates a key in `account_id` with extra fields (`scopes`, `models`, …); returns (id, secret).
    pub async fn create_key_with(&self, account_id: &str, fields: Value) -> (String, String) {
        let mut body = json!({"name": "test key", "account_id": account_id});
        if let (Some(b), Some(f)) = (body.as_object_mut(), fields.as_object()) {
            b.extend(f.clone());
        }
        let res = self
            .req(reqwest::Method::POST, "/v1/keys", &admin_key())
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "create key");
        let v: Value = res.json().await.unwrap();
        (
            v["id"].as_str().unwrap().to_owned(),
            v["secret"].as_str().unwrap().to_owned(),
        )
    }

    /// Stops accepting, drains, and waits for the server task.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
