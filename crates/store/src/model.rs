//! The records the stores keep: plain data, no behaviour.

use sluice_types::{Plan, Scope, Tier};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub plan: Plan,
    pub tier: Tier,
    pub created_at: i64,
}

/// An API key as stored: the secret itself is never kept, only its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub account_id: String,
    pub name: String,
    /// The public part of the secret used to find the row (not enough to authenticate).
    pub lookup: String,
    /// Hex SHA-256 of the whole secret.
    pub secret_hash: String,
    pub scopes: Vec<Scope>,
    /// `None`: every model; `Some(list)`: only these.
    pub models: Option<Vec<String>>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub created_at: i64,
    /// Spend limit in micro-credits; the key then has a wallet of its own with this balance.
    pub max_spend: Option<i64>,
    /// The key's own rate limits (0: not limited by the key).
    pub limits: sluice_types::ratelimit::Limits,
    /// The issuers whose spend cap and limits also bound this key (see `Principal::ancestors`).
    pub lineage: Vec<sluice_types::Ancestor>,
}

/// Cursor pagination: at most `limit` rows after the row with id `after`.
#[derive(Clone, Debug, Default)]
pub struct Page {
    pub after: Option<String>,
    pub limit: u32,
}

/// A wallet's state: `balance` minus `reserved` is what can still be leased.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wallet {
    pub balance: i64,
    pub reserved: i64,
}

/// The outcome of asking for a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseGrant {
    /// This much was reserved under the lease id given.
    Granted(i64),
    /// Less than the minimum is available; the wallet as it stands.
    Insufficient(Wallet),
    /// No such wallet.
    NoWallet,
}

/// One ledger line. `kind` is `topup`, `reservation`, `settlement` or `refund`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    pub id: String,
    pub wallet_id: String,
    pub kind: String,
    pub amount: i64,
    pub lease_id: Option<String>,
    pub reason: Option<String>,
    pub created_at: i64,
}

/// One metered request.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct UsageRecord {
    pub request_id: String,
    pub account_id: String,
    pub key_id: String,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost: i64,
    pub latency_ms: i64,
    pub ttfb_ms: Option<i64>,
    pub status: i64,
    pub error_code: Option<String>,
    pub created_at: i64,
}

/// Which usage records to read: one account, optionally narrowed.
#[derive(Clone, Debug, Default)]
pub struct UsageFilter {
    pub account_id: Option<String>,
    pub key_id: Option<String>,
    pub model: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// Totals of a group of usage records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageTotal {
    pub group: String,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost: i64,
}

/// An agent as stored: identity and ownership in columns, the rest as one JSON document that the
/// engine validates (so the store never needs to know an agent's fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentRecord {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub spec: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A stored Responses API answer: the Response object and the conversation (chat messages,
/// its own output included) a continuation replays, both JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseRecord {
    pub id: String,
    pub account_id: String,
    pub body: String,
    pub conversation: String,
    pub created_at: i64,
}

/// Why a create (or rename) was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum CreateRefusal {
    /// The plan allows no more; `current` is how many the account has.
    PlanLimit { current: i64 },
    /// The name is taken in this account.
    NameTaken,
}

/// The state of an Idempotency-Key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdemState {
    /// This request is the first with the key: go ahead.
    Started,
    /// The same key is being processed by another request.
    InFlight { request_hash: String },
    /// Done before: replay `status` and `response`.
    Done {
        request_hash: String,
        status: i64,
        response: String,
    },
}

/// A workflow as stored: the current version's spec; older versions are kept separately.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkflowRecord {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub version: i64,
    pub spec: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An execution row (times in Unix milliseconds; JSON fields as text).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ExecutionRecord {
    pub id: String,
    pub account_id: String,
    pub workflow_id: String,
    pub version: i64,
    /// The key that started it: its allowlist, limits and credits apply to its model calls.
    pub key_id: String,
    /// `queued`, `running`, `succeeded`, `failed`, `timed_out`, `cancelled`.
    pub status: String,
    pub input: String,
    pub output: Option<String>,
    pub error: Option<String>,
    pub timeout_at: i64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub run_after: i64,
}

/// One node's progress in one execution.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NodeRun {
    pub execution_id: String,
    pub node_id: String,
    /// `running`, `succeeded`, `failed`, `skipped`, `waiting`.
    pub status: String,
    pub attempts: i64,
    pub output: Option<String>,
    pub error: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// For `waiting` (a delay, or a retry's backoff): when to continue.
    pub resume_at: Option<i64>,
}

/// One entry of an execution's event log (numbered from 1, for `Last-Event-ID`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutionEvent {
    pub n: i64,
    pub kind: String,
    pub data: String,
    pub created_at: i64,
}
