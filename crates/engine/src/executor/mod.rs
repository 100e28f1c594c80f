//! Durable workflow executions. The store is the source of truth: every state change is written
//! before it is acted on, workers claim executions with leases (a dead worker's lease lapses and
//! another instance takes over), finished nodes are never run again, and the interrupted node is
//! retried under its retry policy. Timeouts are enforced by whoever holds the lease.

pub mod nodes;
pub mod sandbox;
pub mod ssrf;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{json, Map, Value};
use sluice_store::{ExecutionRecord, NodeRun};
use sluice_types::{id, ApiError, Dialect, ErrorKind, Principal};

use crate::workflow_def::{Definition, Node};
use crate::workflows::WorkflowSpec;
use crate::Engine;

/// Lease length; renewed every `HEARTBEAT`, so a dead worker's executions move on within it.
const LEASE_MS: i64 = 5_000;
const HEARTBEAT: Duration = Duration::from_millis(500);

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Executor tunables (`[executions]`).
#[derive(Clone, Debug)]
pub struct ExecutorSettings {
    /// Executions one instance works on at once.
    pub workers: usize,
    /// How often an idle worker looks for work.
    pub poll_interval: Duration,
    /// Templates and conditions: worker processes, their memory, the output cap (which also
    /// caps HTTP response bodies; a node's `max_response_bytes` may only lower it).
    pub sandbox: sandbox::SandboxSettings,
    /// Largest execution context (input plus every node's output), serialised, in bytes.
    pub max_context_bytes: usize,
}

impl Default for ExecutorSettings {
    fn default() -> Self {
        ExecutorSettings {
            workers: 4,
            poll_interval: Duration::from_millis(200),
            sandbox: Default::default(),
            max_context_bytes: 8 * 1024 * 1024,
        }
    }
}

/// The error stored on a failed or timed-out execution, in the envelope's shape (flows dialect).
pub fn error_json(e: &ApiError) -> String {
    let mut inner = json!({
        "code": e.kind.code(Dialect::Flows),
        "message": e.message,
        "type": e.kind.error_type().as_str(),
        "param": e.param,
    });
    if let Some(d) = &e.details {
        inner["details"] = Value::Object(d.clone());
    }
    json!({"error": inner}).to_string()
}

pub fn node_failed(exec: &str, node: &str, what: &str) -> ApiError {
    ApiError::new(ErrorKind::ExecutionFailed, "Workflow execution failed")
        .with_detail("execution_id", exec)
        .with_detail("node_id", node)
        .with_detail("node_error", what)
}

pub fn timed_out(exec: &ExecutionRecord, timeout_seconds: u64, now: i64) -> ApiError {
    let started = exec.started_at.unwrap_or(exec.created_at);
    ApiError::new(ErrorKind::ExecutionTimeout, "Workflow execution timed out")
        .with_detail("execution_id", exec.id.as_str())
        .with_detail("timeout_seconds", timeout_seconds)
        .with_detail(
            "elapsed_seconds",
            ((now - started).max(0) as f64 / 1000.0).round() as u64,
        )
}

/// How one attempt at a node left it.
enum Outcome {
    /// Finished (succeeded, failed or skipped), recorded.
    Settled,
    /// Waiting until this time (a delay, or a retry's backoff), recorded.
    WaitUntil(i64),
    /// This worker lost the lease: it must stop touching the execution.
    Lost,
}

enum Step {
    /// Keep going.
    Continue,
    /// Nothing to do until this time (a delay or a retry's backoff): give the execution back.
    WaitUntil(i64),
    /// The execution ended.
    Done,
}

impl Engine {
    async fn event(&self, exec: &str, kind: &str, data: Value) {
        if let Err(e) = self
            .store
            .append_event(exec, kind, &data.to_string(), now_ms())
            .await
        {
            tracing::warn!(error = %e, exec, kind, "execution event not stored");
        }
    }

    /// The key that started the execution, checked again as the door would check it: a key
    /// revoked or expired since then makes no more metered calls (its spend cap is enforced by
    /// the reservation itself).
    async fn principal_for(&self, exec: &ExecutionRecord) -> Result<Principal, String> {
        if exec.key_id == crate::auth::CONFIG_ADMIN_KEY_ID {
            return Ok(Principal {
                key_id: exec.key_id.clone(),
                account_id: exec.account_id.clone(),
                scopes: vec![sluice_types::Scope::Admin],
                models: None,
                spend_limited: false,
                tier: sluice_types::Tier::Unlimited,
                key_limits: Default::default(),
                ancestors: Vec::new(),
            });
        }
        let refused = |reason: &'static str, what: &str| {
            let e = ApiError::unauthorized(reason);
            format!(
                "{}: the API key that started this execution {what} ({reason})",
                e.kind.code(Dialect::Flows)
            )
        };
        let key = self
            .store
            .get_key(&exec.key_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| refused("api_key_revoked", "no longer exists"))?;
        if key.revoked_at.is_some() {
            return Err(refused("api_key_revoked", "was revoked"));
        }
        if key
            .expires_at
            .is_some_and(|t| t <= sluice_types::now_unix())
        {
            return Err(refused("api_key_expired", "has expired"));
        }
        let tier = self
            .store
            .get_account(&key.account_id)
            .await
            .map_err(|e| e.to_string())?
            .map(|a| a.tier)
            .unwrap_or_default();
        Ok(Principal {
            key_id: key.id,
            account_id: key.account_id,
            scopes: key.scopes,
            models: key.models,
            spend_limited: key.max_spend.is_some(),
            tier,
            key_limits: key.limits,
            ancestors: key.lineage,
        })
    }

    /// Marks nodes still running or waiting when an execution ends early, so none looks alive.
    pub async fn close_open_nodes(&self, exec_id: &str, status: &str) {
        let runs = self.store.node_runs(exec_id).await.unwrap_or_default();
        for mut r in runs
            .into_iter()
            .filter(|r| matches!(r.status.as_str(), "running" | "waiting"))
        {
            r.status = status.to_owned();
            r.resume_at = None;
            r.finished_at = Some(now_ms());
            let _ = self.store.save_node_run(&r, None).await;
        }
    }

    async fn finish(
        &self,
        exec: &ExecutionRecord,
        status: &str,
        output: Option<Value>,
        error: Option<&ApiError>,
    ) {
        let out = output.as_ref().map(Value::to_string);
        let err = error.map(error_json);
        match self
            .store
            .finish_execution(&exec.id, status, out.as_deref(), err.as_deref(), now_ms())
            .await
        {
            Ok(true) => {
                if status != "succeeded" {
                    self.close_open_nodes(&exec.id, status).await;
                }
                let mut data = json!({"status": status});
                if let Some(o) = output {
                    data["output"] = o;
                }
                if let Some(e) = err.and_then(|e| serde_json::from_str::<Value>(&e).ok()) {
                    data["error"] = e["error"].clone();
                }
                self.event(&exec.id, "execution_finished", data).await;
                self.work_ended.notify_waiters();
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, exec = exec.id.as_str(), "execution result not stored")
            }
        }
    }

    /// Runs one node once; `Ok(output)` or `Err(message)`.
    async fn run_node(
        &self,
        exec: &ExecutionRecord,
        node: &Node,
        ctx: &Value,
        attempt: i64,
        deadline: i64,
    ) -> Result<Value, String> {
        let node_timeout = node.timeout_seconds.map_or(i64::MAX, |s| s as i64 * 1000);
        let left = (deadline - now_ms()).clamp(1, node_timeout);
        let timeout = Duration::from_millis(left as u64);
        let work = async {
            if node.kind == "condition" {
                let expr = node
                    .params
                    .get("expression")
                    .and_then(Value::as_str)
                    .unwrap_or("false")
                    .to_owned();
                let job = sandbox::Job::Condition {
                    expr,
                    ctx: ctx.clone(),
                };
                return self.sandbox.run(job, timeout).await;
            }
            let params = Value::Object(node.params.clone());
            let params = if nodes::is_literal(&params) {
                params
            } else {
                let job = sandbox::Job::Render {
                    value: params,
                    ctx: ctx.clone(),
                };
                self.sandbox.run(job, timeout).await?
            };
            match node.kind.as_str() {
                "transform" => Ok(params["template"].clone()),
                "http_request" => {
                    let key = format!("{}:{}:{attempt}", exec.id, node.id);
                    nodes::http_request(
                        self.settings.allow_private_networks,
                        &params,
                        &key,
                        timeout,
                        self.settings.executor.sandbox.max_output_bytes,
                    )
                    .await
                }
                "llm" => {
                    let who = self.principal_for(exec).await?;
                    let who = &who;
                    nodes::chat(self, who, nodes::llm_request(&params), id::new_id("req")).await
                }
                "agent" => {
                    let who = self.principal_for(exec).await?;
                    let who = &who;
                    let agent_id = params["agent_id"].as_str().unwrap_or_default();
                    let agent = self.get_agent(who, agent_id).await.map_err(|e| e.message)?;
                    let req = Engine::run_request(&agent.spec, &json!({"input": params["input"]}))
                        .map_err(|e| e.message)?;
                    nodes::chat(self, who, req, id::new_id("req")).await
                }
                other => Err(format!("unknown node type {other}")),
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "Node timed out after {}s",
                timeout.as_secs_f64().round()
            )),
        }
    }

    /// One pass over the DAG: settle what can be settled, run every ready node concurrently.
    async fn step(&self, exec: &ExecutionRecord, def: &Definition, owner: &str) -> Step {
        let now = now_ms();
        if now >= exec.timeout_at {
            self.finish(
                exec,
                "timed_out",
                None,
                Some(&timed_out(exec, def.timeout_seconds, now)),
            )
            .await;
            return Step::Done;
        }
        let runs: HashMap<String, NodeRun> = match self.store.node_runs(&exec.id).await {
            Ok(r) => r.into_iter().map(|r| (r.node_id.clone(), r)).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read node runs; will retry");
                return Step::WaitUntil(now + 1_000);
            }
        };
        let status = |id: &str| runs.get(id).map(|r| r.status.as_str()).unwrap_or("pending");
        let mut outputs = Map::new();
        for r in runs.values().filter(|r| r.status == "succeeded") {
            let v = r
                .output
                .as_deref()
                .and_then(|o| serde_json::from_str(o).ok())
                .unwrap_or(Value::Null);
            outputs.insert(r.node_id.clone(), v);
        }
        if let Some(failed) = runs.values().find(|r| r.status == "failed") {
            let err = node_failed(
                &exec.id,
                &failed.node_id,
                failed.error.as_deref().unwrap_or("failed"),
            );
            self.finish(exec, "failed", None, Some(&err)).await;
            return Step::Done;
        }
        let input: Value = serde_json::from_str(&exec.input).unwrap_or(Value::Null);
        let ctx = nodes::context(&input, &outputs);
        let ctx_bytes = exec.input.len()
            + runs
                .values()
                .filter_map(|r| r.output.as_ref().map(String::len))
                .sum::<usize>();
        // An edge is taken when its source succeeded (and, from a condition, chose its `when`).
        let taken = |from: &str, when: Option<bool>| -> Option<bool> {
            match status(from) {
                "succeeded" => {
                    Some(when.is_none_or(|w| outputs.get(from) == Some(&Value::Bool(w))))
                }
                "skipped" => Some(false),
                _ => None,
            }
        };
        let mut ready: Vec<&Node> = Vec::new();
        let mut soonest: Option<i64> = None;
        let mut skips = Vec::new();
        for node in &def.nodes {
            let st = status(&node.id);
            if matches!(st, "succeeded" | "skipped") {
                continue;
            }
            let incoming: Vec<Option<bool>> = def
                .edges
                .iter()
                .filter(|e| e.to == node.id)
                .map(|e| taken(&e.from, e.when))
                .collect();
            if incoming.iter().any(Option::is_none) {
                continue;
            }
            if !incoming.is_empty() && !incoming.contains(&Some(true)) {
                skips.push(node.id.clone());
                continue;
            }
            match (st, runs.get(&node.id).and_then(|r| r.resume_at)) {
                ("waiting", Some(at)) if at > now => {
                    soonest = Some(soonest.map_or(at, |s| s.min(at)))
                }
                _ => ready.push(node),
            }
        }
        for id in &skips {
            let run = NodeRun {
                execution_id: exec.id.clone(),
                node_id: id.clone(),
                status: "skipped".into(),
                finished_at: Some(now),
                ..Default::default()
            };
            if !self.persist(&run, owner, exec).await {
                return Step::Done;
            }
            self.event(
                &exec.id,
                "node_finished",
                json!({"node_id": id, "status": "skipped"}),
            )
            .await;
        }
        if !skips.is_empty() {
            return Step::Continue;
        }
        if ready.is_empty() {
            if let Some(at) = soonest {
                return Step::WaitUntil(at.min(exec.timeout_at));
            }
            // Everything has settled: the outputs of the nodes nothing follows are the result.
            let sinks: Map<String, Value> = def
                .nodes
                .iter()
                .filter(|n| {
                    status(&n.id) == "succeeded"
                        && !def
                            .edges
                            .iter()
                            .any(|e| e.from == n.id && status(&e.to) == "succeeded")
                })
                .map(|n| {
                    (
                        n.id.clone(),
                        outputs.get(&n.id).cloned().unwrap_or(Value::Null),
                    )
                })
                .collect();
            self.finish(exec, "succeeded", Some(Value::Object(sinks)), None)
                .await;
            return Step::Done;
        }
        let results = join_all(ready.into_iter().map(|node| {
            let prior = runs.get(&node.id).cloned();
            let ctx = &ctx;
            async move { self.attempt(exec, node, prior, ctx, ctx_bytes, owner).await }
        }))
        .await;
        if results.iter().any(|r| matches!(r, Outcome::Lost)) {
            return Step::Done;
        }
        match results
            .iter()
            .filter_map(|r| match r {
                Outcome::WaitUntil(at) => Some(*at),
                _ => None,
            })
            .min()
        {
            Some(at) => Step::WaitUntil(at),
            None => Step::Continue,
        }
    }

    /// Writes a node run as the lease holder, retrying while the store fails (a node's outcome
    /// must land before anything depends on it). False when this worker no longer holds the
    /// lease, or the execution's time ran out while the store was failing: the worker must then
    /// stop touching the execution.
    async fn persist(&self, run: &NodeRun, owner: &str, exec: &ExecutionRecord) -> bool {
        let mut wait = Duration::from_millis(25);
        loop {
            match self.store.save_node_run(run, Some(owner)).await {
                Ok(landed) => return landed,
                Err(e) => {
                    tracing::warn!(error = %e, exec = exec.id.as_str(), node = run.node_id.as_str(), "node run not stored; retrying");
                    if now_ms() > exec.timeout_at + LEASE_MS {
                        return false;
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// One attempt at one node, persisted before and after. Returns a time to come back at when
    /// the node now waits (a delay, or a retry's backoff).
    async fn attempt(
        &self,
        exec: &ExecutionRecord,
        node: &Node,
        prior: Option<NodeRun>,
        ctx: &Value,
        ctx_bytes: usize,
        owner: &str,
    ) -> Outcome {
        let now = now_ms();
        let mut run = prior.unwrap_or_else(|| NodeRun {
            execution_id: exec.id.clone(),
            node_id: node.id.clone(),
            ..Default::default()
        });
        if node.kind == "delay" {
            if run.status == "waiting" {
                run.status = "succeeded".into();
                run.output =
                    Some(json!({"waited_seconds": node.params.get("seconds")}).to_string());
                run.finished_at = Some(now);
                if !self.persist(&run, owner, exec).await {
                    return Outcome::Lost;
                }
                self.event(
                    &exec.id,
                    "node_finished",
                    json!({"node_id": node.id, "status": "succeeded"}),
                )
                .await;
                return Outcome::Settled;
            }
            let secs = node
                .params
                .get("seconds")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            let at = now + (secs * 1000.0) as i64;
            run.status = "waiting".into();
            run.attempts = 1;
            run.started_at = Some(now);
            run.resume_at = Some(at);
            if !self.persist(&run, owner, exec).await {
                return Outcome::Lost;
            }
            self.event(
                &exec.id,
                "node_started",
                json!({"node_id": node.id, "attempt": 1}),
            )
            .await;
            return Outcome::WaitUntil(at);
        }
        // A run left `running` was interrupted (its worker died mid-attempt): that attempt
        // counts, and with none left the node fails instead of running again.
        let max = i64::from(node.retry.max_attempts);
        if run.status == "running" && run.attempts >= max {
            let what = format!(
                "The node was interrupted (the worker running attempt {} stopped) and has no attempts left (max_attempts {max}).",
                run.attempts
            );
            run.status = "failed".into();
            run.error = Some(what.clone());
            run.finished_at = Some(now);
            if !self.persist(&run, owner, exec).await {
                return Outcome::Lost;
            }
            self.event(&exec.id, "node_finished", json!({"node_id": node.id, "status": "failed", "attempt": run.attempts, "error": what})).await;
            return Outcome::Settled;
        }
        run.attempts += 1;
        run.status = "running".into();
        run.started_at = Some(now);
        run.resume_at = None;
        if !self.persist(&run, owner, exec).await {
            return Outcome::Lost;
        }
        self.event(
            &exec.id,
            "node_started",
            json!({"node_id": node.id, "attempt": run.attempts}),
        )
        .await;
        let result = self
            .run_node(exec, node, ctx, run.attempts, exec.timeout_at)
            .await
            .and_then(|out| {
                let text = out.to_string();
                let caps = &self.settings.executor;
                if text.len() > caps.sandbox.max_output_bytes {
                    Err(sandbox::too_large(caps.sandbox.max_output_bytes))
                } else if ctx_bytes + text.len() > caps.max_context_bytes {
                    Err(format!(
                        "the execution's context would exceed its {}-byte limit ([executions] max_context_bytes)",
                        caps.max_context_bytes
                    ))
                } else {
                    Ok(text)
                }
            });
        let done = now_ms();
        match result {
            Ok(out) => {
                run.status = "succeeded".into();
                run.output = Some(out);
                run.error = None;
                run.finished_at = Some(done);
                if !self.persist(&run, owner, exec).await {
                    return Outcome::Lost;
                }
                self.event(
                    &exec.id,
                    "node_finished",
                    json!({"node_id": node.id, "status": "succeeded", "attempt": run.attempts}),
                )
                .await;
                Outcome::Settled
            }
            Err(what) => {
                run.error = Some(what.clone());
                run.finished_at = Some(done);
                let retry = run.attempts < i64::from(node.retry.max_attempts);
                let wait = (node.retry.backoff_seconds
                    * 1000.0
                    * 2f64.powi(run.attempts as i32 - 1)) as i64;
                if retry && done + wait < exec.timeout_at {
                    run.status = "waiting".into();
                    run.resume_at = Some(done + wait);
                } else {
                    run.status = "failed".into();
                }
                if !self.persist(&run, owner, exec).await {
                    return Outcome::Lost;
                }
                self.event(&exec.id, "node_finished", json!({"node_id": node.id, "status": run.status, "attempt": run.attempts, "error": what})).await;
                if run.status == "waiting" {
                    Outcome::WaitUntil(done + wait)
                } else {
                    Outcome::Settled
                }
            }
        }
    }

    /// Works on one claimed execution until it ends, waits, or the lease is lost (cancelled, or
    /// taken over after this worker stalled).
    async fn work_on(self: &Arc<Self>, exec: ExecutionRecord, owner: &str) {
        let spec: Option<WorkflowSpec> = match self
            .store
            .workflow_version(&exec.workflow_id, exec.version)
            .await
        {
            Ok(Some(s)) => serde_json::from_str(&s).ok(),
            _ => None,
        };
        let Some(spec) = spec else {
            let err = ApiError::internal("the workflow version of this execution is missing");
            self.finish(&exec, "failed", None, Some(&err)).await;
            return;
        };
        let runs = self.store.node_runs(&exec.id).await.unwrap_or_default();
        if runs.is_empty()
            && self
                .store
                .events_after(&exec.id, 0)
                .await
                .map(|e| e.is_empty())
                .unwrap_or(false)
        {
            self.event(
                &exec.id,
                "execution_started",
                json!({"workflow_id": exec.workflow_id, "version": exec.version}),
            )
            .await;
        }
        let (lost_tx, mut lost_rx) = tokio::sync::watch::channel(false);
        let heart = {
            let engine = self.clone();
            let (id, owner) = (exec.id.clone(), owner.to_owned());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(HEARTBEAT).await;
                    match engine
                        .store
                        .renew_lease(&id, &owner, now_ms() + LEASE_MS)
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => {
                            let _ = lost_tx.send(true);
                            return;
                        }
                        Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
                    }
                }
            })
        };
        let def = spec.definition;
        loop {
            // The execution's own deadline bounds every step, so a hanging node cannot keep it
            // `running` past its timeout; a lost lease (cancel) stops it at once.
            let deadline = Duration::from_millis((exec.timeout_at - now_ms()).max(0) as u64 + 50);
            let step = tokio::select! {
                s = self.step(&exec, &def, owner) => s,
                _ = tokio::time::sleep(deadline) => Step::Continue,
                _ = lost_rx.wait_for(|l| *l) => Step::Done,
            };
            match step {
                Step::Continue => continue,
                Step::Done => break,
                Step::WaitUntil(at) => {
                    let _ = self.store.release_execution(&exec.id, owner, at).await;
                    break;
                }
            }
        }
        heart.abort();
    }

    /// True when the account's other leased executions already fill its plan's concurrency.
    async fn over_plan_concurrency(&self, exec: &ExecutionRecord) -> bool {
        let Ok(Some(account)) = self.store.get_account(&exec.account_id).await else {
            return false;
        };
        let Some(limit) =
            self.settings.plans.concurrent_executions[crate::agents::plan_index(account.plan)]
        else {
            return false;
        };
        // The count includes the execution just claimed.
        self.store
            .count_leased(&exec.account_id, now_ms())
            .await
            .is_ok_and(|n| n > limit)
    }

    /// Starts the executor's workers; they stop when `stop` fires.
    pub fn start_executor(
        self: &Arc<Self>,
        settings: ExecutorSettings,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        (0..settings.workers.max(1))
            .map(|_| {
                let engine = self.clone();
                let mut stop = stop.clone();
                let owner = id::new_id("worker");
                let poll = settings.poll_interval;
                tokio::spawn(async move {
                    loop {
                        if *stop.borrow() {
                            return;
                        }
                        match engine
                            .store
                            .claim_execution(&owner, now_ms(), LEASE_MS)
                            .await
                        {
                            Ok(Some(exec)) if engine.over_plan_concurrency(&exec).await => {
                                // The account already has its plan's share running: later.
                                let _ = engine
                                    .store
                                    .release_execution(&exec.id, &owner, now_ms() + 100)
                                    .await;
                            }
                            Ok(Some(exec)) => engine.work_on(exec, &owner).await,
                            Ok(None) => {
                                tokio::select! {
                                    _ = tokio::time::sleep(poll) => {}
                                    _ = engine.work_queued.notified() => {}
                                    _ = stop.changed() => return,
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "claiming executions failed");
                                tokio::time::sleep(poll * 5).await;
                            }
                        }
                    }
                })
            })
            .collect()
    }
}
