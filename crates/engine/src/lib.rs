//! Sluice's domain logic, free of HTTP: configuration, accounts, API keys and who may do what.
//!
//! Every public operation takes a `Principal` (the authenticated caller) and returns
//! `Result<_, ApiError>`; the server only translates HTTP to these calls and back.

pub mod accounts;
pub mod agents;
pub mod auth;
pub mod billing;
pub mod config;
pub mod credits;
pub mod demo;
pub mod executions;
pub mod executor;
pub mod ingress;
pub mod key_cache;
pub mod keys;
pub mod limiter_policy;
pub mod limits;
pub mod list;
pub mod llm;
pub mod ratelimit;
pub mod ratelimit_redis;
pub mod responses;
pub mod routing;
pub use sluice_types::secret;
pub mod usage;
pub mod workflow_def;
pub mod workflows;

use std::sync::Arc;

use sluice_gateway::Gateway;
use sluice_store::{Store, StoreError};
use sluice_types::{ApiError, ErrorKind};

pub use auth::Principal;
pub use config::Config;

/// The shared state of one Sluice process: its store and what it was configured with.
pub struct Engine {
    pub store: Arc<dyn Store>,
    pub gateway: Gateway,
    pub limiter: Arc<dyn ratelimit::RateLimiter>,
    pub credits: Arc<credits::Credits>,
    pub usage: usage::UsageRecorder,
    pub settings: Settings,
    /// Where workflow templates are evaluated (worker processes in the server).
    pub sandbox: executor::sandbox::Sandbox,
    on_limiter_error: limiter_policy::OnError,
    admin_key_hash: Option<[u8; 32]>,
    /// Keys read from the store within `settings.key_cache` (see `key_cache.rs`).
    pub(crate) keys: Arc<key_cache::KeyCache>,
    /// Wakes an idle worker of this instance when an execution is queued here, so it starts at
    /// once rather than at the next poll (other instances find it by polling).
    pub(crate) work_queued: tokio::sync::Notify,
    /// Wakes this instance's `?wait=true` requests when one of its workers ends an execution
    /// (those ended elsewhere are found by their 25 ms poll).
    pub(crate) work_ended: tokio::sync::Notify,
}

/// Engine tunables that come from configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    pub credits: credits::CreditSettings,
    /// Micro-credits every new account starts with.
    pub starting_grant: i64,
    pub rate_limits: limits::RateSettings,
    pub plans: agents::PlanLimits,
    pub workflow_limits: workflow_def::DefinitionLimits,
    /// Let `http_request` nodes reach loopback, private and link-local addresses (tests, on-prem).
    pub allow_private_networks: bool,
    pub executor: executor::ExecutorSettings,
    /// How long a request waits for the store on its path (key lookup; credit leases use
    /// `credits.store_deadline`, set from the same key) before answering 503.
    pub store_deadline: std::time::Duration,
    /// How long a key read from the store authenticates requests without another read: the
    /// bound within which a revocation or tier change made through another instance is seen
    /// here (this instance's own changes apply at once). Zero: a store read per request.
    pub key_cache: std::time::Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            credits: Default::default(),
            starting_grant: 0,
            rate_limits: Default::default(),
            plans: Default::default(),
            workflow_limits: Default::default(),
            allow_private_networks: false,
            executor: Default::default(),
            store_deadline: std::time::Duration::from_secs(2),
            key_cache: std::time::Duration::from_secs(1),
        }
    }
}

/// Stops the engine's background work; `Engine::shutdown` flushes what it holds.
pub struct Background {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Engine {
    /// Must be called inside a Tokio runtime (it starts the usage writer).
    pub fn new(
        store: Arc<dyn Store>,
        admin_key: Option<&secret::SecretString>,
        gateway: Gateway,
        settings: Settings,
    ) -> Engine {
        Engine {
            limiter: Arc::new(ratelimit::InProcess::default()),
            credits: credits::Credits::new(store.clone(), settings.credits.clone()),
            usage: usage::UsageRecorder::start(store.clone()),
            store,
            gateway,
            sandbox: executor::sandbox::Sandbox::new(settings.executor.sandbox.clone()),
            on_limiter_error: limiter_policy::OnError::FailOpen,
            keys: Arc::new(key_cache::KeyCache::new(settings.key_cache)),
            work_queued: tokio::sync::Notify::new(),
            work_ended: tokio::sync::Notify::new(),
            settings,
            admin_key_hash: admin_key.map(|k| auth::sha256(k.expose().as_bytes())),
        }
    }

    /// Replaces the in-process rate limiter (e.g. with Redis, for several instances).
    pub fn with_limiter(mut self, limiter: Arc<dyn ratelimit::RateLimiter>) -> Engine {
        self.limiter = limiter;
        self
    }

    /// What happens to requests when the shared limiter does not answer (`None`: in-process).
    pub fn limiter_policy(&self) -> Option<limiter_policy::OnError> {
        self.limiter.health().map(|_| self.on_limiter_error)
    }

    /// Records the policy the shared limiter was started with (for `/readyz`).
    pub fn with_limiter_policy(mut self, policy: limiter_policy::OnError) -> Engine {
        self.on_limiter_error = policy;
        self
    }

    /// Starts the periodic credit flush and lease-expiry sweep.
    pub fn start_background(&self) -> Background {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(self.credits.clone().run(rx));
        Background { stop, task }
    }

    /// Writes every settled charge, returns every lease and stores every queued usage record.
    /// Call after the server stopped taking requests.
    pub async fn shutdown(&self, bg: Background) {
        let _ = bg.stop.send(true);
        let _ = bg.task.await;
        if let Err(e) = self.credits.flush(true).await {
            tracing::error!(error = %e, "final credit flush failed; unflushed spend stays reserved until its lease expires");
        }
        self.usage.flush().await;
    }

    /// Makes sure the admin account exists. Without a configured admin key and with no key in
    /// the store at all, issues an admin key and returns its secret so it can be shown once.
    pub async fn bootstrap(&self) -> Result<Option<String>, ApiError> {
        accounts::ensure_admin_account(&*self.store).await?;
        if self.admin_key_hash.is_some() {
            return Ok(None);
        }
        if self.store.count_keys().await.map_err(store_error)? > 0 {
            return Ok(None);
        }
        let issued = keys::issue(
            &*self.store,
            keys::KeySpec {
                account_id: accounts::ADMIN_ACCOUNT_ID.to_owned(),
                name: "bootstrap admin".to_owned(),
                scopes: vec![sluice_types::Scope::Admin],
                models: None,
                expires_at: None,
                max_spend: None,
                limits: Default::default(),
                lineage: Vec::new(),
            },
        )
        .await?;
        Ok(Some(issued.secret))
    }
}

/// A store failure as the client sees it: Sluice cannot serve right now. The cause is logged,
/// never sent.
pub fn store_error(e: StoreError) -> ApiError {
    ApiError::new(
        ErrorKind::ServiceUnavailable,
        "The service is temporarily unavailable. Retry shortly.",
    )
    .with_retry_after(1)
    .with_internal(e.to_string())
}
