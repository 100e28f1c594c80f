//! Storage by capability: small `Send + Sync` traits, each implemented for SQLite and Postgres.
//!
//! No business rules live here or in SQL: the stores keep and return records; the engine decides.

mod credits_sql;
mod execution_sql;
mod flows_sql;
mod migrate;
mod model;
mod postgres;
mod responses_sql;
mod sql;
mod sqlite;
mod workflow_sql;

#[cfg(feature = "testing")]
pub mod conformance;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;

use async_trait::async_trait;

pub use model::{
    Account, AgentRecord, ApiKey, CreateRefusal, ExecutionEvent, ExecutionRecord, IdemState,
    LeaseGrant, LedgerEntry, NodeRun, Page, ResponseRecord, UsageFilter, UsageRecord, UsageTotal,
    Wallet, WorkflowRecord,
};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// The largest balance a wallet may hold (micro-credits): a quarter of `i64::MAX`, so sums of
/// balances and reservations never overflow.
pub const MAX_BALANCE: i64 = i64::MAX / 4;

/// What a store can fail with. Text in `Backend` is for logs; the engine never shows it.
#[derive(Debug)]
pub enum StoreError {
    /// A unique column already holds this value.
    Conflict { field: &'static str },
    /// A reference (e.g. `account_id`) points at nothing.
    MissingReference { field: &'static str },
    /// Connection, query or decode failure.
    Backend(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Conflict { field } => write!(f, "unique value taken: {field}"),
            StoreError::MissingReference { field } => write!(f, "reference not found: {field}"),
            StoreError::Backend(e) => write!(f, "store error: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

pub type StoreResult<T> = Result<T, StoreError>;

/// Accounts: create, read, list.
#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn create_account(&self, account: &Account) -> StoreResult<()>;
    async fn get_account(&self, id: &str) -> StoreResult<Option<Account>>;
    /// Changes plan and/or tier; `None` when there is no such account.
    async fn update_account(
        &self,
        id: &str,
        plan: Option<sluice_types::Plan>,
        tier: Option<sluice_types::Tier>,
    ) -> StoreResult<Option<Account>>;
    /// Newest first; `page.after` is the id of the last account of the previous page.
    async fn list_accounts(&self, page: &Page) -> StoreResult<Vec<Account>>;
}

/// API keys: create, look up for authentication, list, revoke.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Fails with `Conflict` when the lookup prefix is taken and `MissingReference` when the
    /// account does not exist.
    async fn create_key(&self, key: &ApiKey) -> StoreResult<()>;
    async fn get_key(&self, id: &str) -> StoreResult<Option<ApiKey>>;
    /// The authentication path: one indexed read (joined with the account's tier).
    async fn find_key_with_tier(
        &self,
        lookup: &str,
    ) -> StoreResult<Option<(ApiKey, sluice_types::Tier)>>;
    /// A key by its public lookup prefix.
    async fn find_key_by_lookup(&self, lookup: &str) -> StoreResult<Option<ApiKey>>;
    /// Newest first, optionally only one account's keys.
    async fn list_keys(&self, account_id: Option<&str>, page: &Page) -> StoreResult<Vec<ApiKey>>;
    /// Marks the key revoked at `at` (keeping the first revocation time); returns the key, or
    /// `None` when there is no such key.
    async fn revoke_key(&self, id: &str, at: i64) -> StoreResult<Option<ApiKey>>;
    async fn count_keys(&self) -> StoreResult<i64>;
}

/// Wallets, leases and the ledger. Every operation is one transaction that starts with a write,
/// so concurrent instances serialise on the wallet row and the balance never goes below zero.
#[async_trait]
pub trait CreditStore: Send + Sync {
    /// Creates a wallet; a positive `initial` is recorded as a `topup` with `reason`.
    async fn create_wallet(
        &self,
        id: &str,
        initial: i64,
        reason: &str,
        now: i64,
    ) -> StoreResult<()>;
    async fn wallet(&self, id: &str) -> StoreResult<Option<Wallet>>;
    /// Adds `amount` to the balance (a `topup` entry). `None` if there is no such wallet or the
    /// balance would pass `MAX_BALANCE`.
    async fn top_up(
        &self,
        id: &str,
        amount: i64,
        reason: &str,
        now: i64,
    ) -> StoreResult<Option<Wallet>>;
    /// Reserves up to `want` (at least `min`) under a new lease `lease_id` held by `holder`.
    #[allow(clippy::too_many_arguments)]
    async fn acquire_lease(
        &self,
        wallet_id: &str,
        want: i64,
        min: i64,
        lease_id: &str,
        holder: &str,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<LeaseGrant>;
    /// Charges `spend` to the lease's wallet, optionally extends the lease, and optionally returns
    /// `give_back` of its unused part (or all of it and closes the lease when `close`).
    /// Returns false when the lease was already closed (e.g. expired): nothing is charged then.
    #[allow(clippy::too_many_arguments)]
    async fn settle_lease(
        &self,
        lease_id: &str,
        spend: i64,
        give_back: i64,
        close: bool,
        renew_until: Option<i64>,
        now: i64,
    ) -> StoreResult<bool>;
    /// Closes leases whose holder stopped renewing them, refunding their unused part.
    async fn expire_leases(&self, now: i64) -> StoreResult<u64>;
    /// Newest first.
    async fn ledger(&self, wallet_id: &str, page: &Page) -> StoreResult<Vec<LedgerEntry>>;
    /// The wallet recomputed from its ledger alone.
    async fn recompute(&self, wallet_id: &str) -> StoreResult<Wallet>;
}

/// Usage records, written in batches off the request path.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Inserts every record in one transaction; a request id already stored is skipped.
    async fn insert_usage(&self, records: &[UsageRecord]) -> StoreResult<()>;
    /// Newest first.
    async fn list_usage(&self, filter: &UsageFilter, limit: u32) -> StoreResult<Vec<UsageRecord>>;
    /// Totals grouped by `day` (UTC date), `model` or `key`.
    async fn usage_totals(
        &self,
        filter: &UsageFilter,
        group_by: &str,
    ) -> StoreResult<Vec<UsageTotal>>;
}

/// Agents, with the plan limit taken atomically with the insert.
#[async_trait]
pub trait AgentStore: Send + Sync {
    /// Inserts unless the account already has `limit` agents or the name is taken.
    async fn create_agent(
        &self,
        a: &AgentRecord,
        limit: Option<i64>,
    ) -> StoreResult<Result<(), CreateRefusal>>;
    async fn get_agent(&self, account_id: &str, id: &str) -> StoreResult<Option<AgentRecord>>;
    async fn list_agents(&self, account_id: &str, page: &Page) -> StoreResult<Vec<AgentRecord>>;
    /// Replaces name and spec; `Ok(None)` when there is no such agent.
    async fn update_agent(
        &self,
        a: &AgentRecord,
    ) -> StoreResult<Result<Option<AgentRecord>, CreateRefusal>>;
    /// True when an agent was deleted.
    async fn delete_agent(&self, account_id: &str, id: &str) -> StoreResult<bool>;
}

/// Workflows and their versions, with the plan limit taken atomically with the insert.
#[async_trait]
pub trait WorkflowStore: Send + Sync {
    /// Inserts version 1 unless the account is at `limit` or the name is taken.
    async fn create_workflow(
        &self,
        w: &WorkflowRecord,
        limit: Option<i64>,
    ) -> StoreResult<Result<(), CreateRefusal>>;
    async fn get_workflow(&self, account_id: &str, id: &str)
        -> StoreResult<Option<WorkflowRecord>>;
    async fn list_workflows(
        &self,
        account_id: &str,
        page: &Page,
    ) -> StoreResult<Vec<WorkflowRecord>>;
    /// Saves `w` as version `w.version` if the stored version is `w.version - 1` (no lost
    /// updates); `Ok(None)` when there is no such workflow or it changed meanwhile.
    async fn update_workflow(
        &self,
        w: &WorkflowRecord,
    ) -> StoreResult<Result<Option<WorkflowRecord>, CreateRefusal>>;
    async fn delete_workflow(&self, account_id: &str, id: &str) -> StoreResult<bool>;
    /// The spec of one saved version.
    async fn workflow_version(
        &self,
        workflow_id: &str,
        version: i64,
    ) -> StoreResult<Option<String>>;
}

/// Executions, their node runs and event log, and the queue that hands them to workers.
#[async_trait]
pub trait ExecutionStore: Send + Sync {
    async fn create_execution(&self, e: &ExecutionRecord) -> StoreResult<()>;
    async fn get_execution(
        &self,
        account_id: &str,
        id: &str,
    ) -> StoreResult<Option<ExecutionRecord>>;
    /// Newest first, optionally one workflow's or one status.
    async fn list_executions(
        &self,
        account_id: &str,
        workflow_id: Option<&str>,
        status: Option<&str>,
        page: &Page,
    ) -> StoreResult<Vec<ExecutionRecord>>;
    /// Takes the oldest unfinished execution that is due and not leased (or whose lease lapsed —
    /// its worker died), leasing it to `owner` until `now + lease_ms`. Several instances may call
    /// this at once: each execution goes to one.
    async fn claim_execution(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
    ) -> StoreResult<Option<ExecutionRecord>>;
    /// Extends `owner`'s lease; false when it no longer holds it (or the execution ended).
    async fn renew_lease(&self, id: &str, owner: &str, until: i64) -> StoreResult<bool>;
    /// Gives the execution back to the queue, due at `run_after`.
    async fn release_execution(&self, id: &str, owner: &str, run_after: i64) -> StoreResult<()>;
    /// Sets a terminal status unless one is set already; true when this call set it.
    async fn finish_execution(
        &self,
        id: &str,
        status: &str,
        output: Option<&str>,
        error: Option<&str>,
        now: i64,
    ) -> StoreResult<bool>;
    /// How many of the account's executions a worker holds right now.
    async fn count_leased(&self, account_id: &str, now: i64) -> StoreResult<i64>;
    async fn node_runs(&self, execution_id: &str) -> StoreResult<Vec<NodeRun>>;
    /// Writes a node run. With `owner`, only while that worker holds the execution's lease
    /// (false otherwise: a worker that lost its lease cannot write); `None` for the API closing
    /// the nodes of an execution that ended.
    async fn save_node_run(&self, run: &NodeRun, owner: Option<&str>) -> StoreResult<bool>;
    /// Appends to the event log; returns the event's number.
    async fn append_event(
        &self,
        execution_id: &str,
        kind: &str,
        data: &str,
        now: i64,
    ) -> StoreResult<i64>;
    async fn events_after(
        &self,
        execution_id: &str,
        after: i64,
    ) -> StoreResult<Vec<ExecutionEvent>>;
}

/// Idempotency keys (24 h; older records are treated as absent and replaced).
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` for this request, or reports what an earlier request with it did.
    async fn idem_begin(
        &self,
        account_id: &str,
        route: &str,
        key: &str,
        request_hash: &str,
        now: i64,
        ttl: i64,
    ) -> StoreResult<IdemState>;
    /// Stores the response of the request that claimed `key`.
    async fn idem_finish(
        &self,
        account_id: &str,
        route: &str,
        key: &str,
        status: i64,
        response: &str,
    ) -> StoreResult<()>;
    /// Forgets `key` (the request failed in a way a retry should redo).
    async fn idem_abandon(&self, account_id: &str, route: &str, key: &str) -> StoreResult<()>;
}

/// Stored Responses API answers, per account.
#[async_trait]
pub trait ResponseStore: Send + Sync {
    async fn save_response(&self, r: &ResponseRecord) -> StoreResult<()>;
    /// `None` when the id is unknown or belongs to another account.
    async fn get_response(&self, account_id: &str, id: &str)
        -> StoreResult<Option<ResponseRecord>>;
    /// False when there was no such response in the account.
    async fn delete_response(&self, account_id: &str, id: &str) -> StoreResult<bool>;
}

/// Everything a Sluice process needs from its database.
#[async_trait]
pub trait Store:
    AccountStore
    + KeyStore
    + CreditStore
    + UsageStore
    + AgentStore
    + IdempotencyStore
    + WorkflowStore
    + ExecutionStore
    + ResponseStore
{
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Cheap round trip proving the store answers (for `/readyz`).
    async fn ping(&self) -> StoreResult<()>;
    /// Closes the pool; pending queries finish first.
    async fn close(&self);
    /// Tells the other instances sharing the store that a key or an account changed
    /// (Postgres `NOTIFY`); nothing where the store has no such channel.
    async fn announce_key_change(&self) -> StoreResult<()> {
        Ok(())
    }
    /// Calls `on_change` for every change another instance announces, until the store is
    /// closed. False where the store has no such channel: the key cache's bound alone applies
    /// (as it does for an announcement missed while the listening connection was down).
    async fn watch_key_changes(&self, _on_change: Arc<dyn Fn() + Send + Sync>) -> bool {
        false
    }
}

/// Opens the store named by `url` (`sqlite://path`, `sqlite::memory:`, `postgres://…`) and
/// brings its schema up to date.
pub async fn open(url: &str) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::open(url).await?))
    } else {
        Err(StoreError::Backend(
            "database URL must start with sqlite:// or postgres://".to_owned(),
        ))
    }
}

pub(crate) fn backend_err(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}
