//! The executions API: start (202, or wait for the end), read with per-node detail, list,
//! cancel. The work itself is done by the executor's workers.

use std::time::Duration;

use serde_json::{json, Value};
use sluice_store::{ExecutionRecord, NodeRun};
use sluice_types::validation::Errors;
use sluice_types::{id, ApiError, ErrorKind, Principal, Scope};

use crate::executor::{now_ms, timed_out};
use crate::list;
use crate::workflows::spec_of;
use crate::{store_error, Engine};

pub const TERMINAL: &[&str] = &["succeeded", "failed", "timed_out", "cancelled"];
const STATUSES: &[&str] = &[
    "queued",
    "running",
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
];

fn parse(s: &Option<String>) -> Value {
    s.as_deref()
        .and_then(|x| serde_json::from_str(x).ok())
        .unwrap_or(Value::Null)
}

fn secs(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |m| json!(m / 1000))
}

impl Engine {
    /// An execution as the API shows it, with every node's state.
    pub async fn execution_view(&self, x: &ExecutionRecord) -> Result<Value, ApiError> {
        let runs = self.store.node_runs(&x.id).await.map_err(store_error)?;
        let spec = match self
            .store
            .workflow_version(&x.workflow_id, x.version)
            .await
            .map_err(store_error)?
        {
            Some(s) => serde_json::from_str::<crate::workflows::WorkflowSpec>(&s).ok(),
            None => None,
        };
        let nodes: Vec<Value> = spec
            .as_ref()
            .map(|s| s.definition.nodes.as_slice())
            .unwrap_or(&[])
            .iter()
            .map(|n| {
                let r = runs.iter().find(|r| r.node_id == n.id).cloned().unwrap_or_else(|| NodeRun { status: "pending".into(), ..Default::default() });
                json!({"id": n.id, "type": n.kind, "status": r.status, "attempts": r.attempts, "output": parse(&r.output),
                       "error": r.error, "started_at": secs(r.started_at), "finished_at": secs(r.finished_at)})
            })
            .collect();
        let error = parse(&x.error);
        Ok(json!({
            "id": x.id, "object": "execution", "workflow_id": x.workflow_id, "version": x.version, "status": x.status,
            "input": parse(&Some(x.input.clone())), "output": parse(&x.output),
            "error": if error.is_null() { Value::Null } else { error["error"].clone() },
            "nodes": nodes,
            "timeout_seconds": spec.as_ref().map(|s| s.definition.timeout_seconds),
            "created_at": x.created_at / 1000, "started_at": secs(x.started_at), "finished_at": secs(x.finished_at),
            "duration_ms": x.finished_at.map(|f| f - x.started_at.unwrap_or(x.created_at)),
        }))
    }

    /// Queues an execution of the workflow's current version.
    pub async fn start_execution(
        &self,
        who: &Principal,
        workflow_id: &str,
        body: &Value,
    ) -> Result<ExecutionRecord, ApiError> {
        who.require(Scope::ExecutionsWrite)?;
        let wf = self.workflow(who, workflow_id).await?;
        let spec = spec_of(&wf)?;
        let mut e = Errors::new();
        let Value::Object(fields) = body else {
            e.add(
                "body",
                "invalid_type",
                "The body must be a JSON object: {\"input\": {…}}",
            );
            e.finish()?;
            return Err(ApiError::internal(
                "unreachable: a non-object body passed validation",
            ));
        };
        for k in fields.keys().filter(|k| k.as_str() != "input") {
            e.add(
                k.clone(),
                "invalid_format",
                format!("Unknown field '{k}'. Allowed: input"),
            );
        }
        let cap = self.settings.executor.max_context_bytes;
        if body.get("input").is_some_and(|v| v.to_string().len() > cap) {
            e.add(
                "input",
                "max_length",
                format!("input must be at most {cap} bytes ([executions] max_context_bytes)"),
            );
        }
        let input = match body.get("input") {
            None | Some(Value::Null) => json!({}),
            Some(v @ Value::Object(_)) => v.clone(),
            Some(_) => {
                e.add("input", "invalid_type", "input must be an object");
                Value::Null
            }
        };
        if let (Some(schema), Value::Object(given)) = (&spec.definition.input_schema, &input) {
            // The subset of JSON Schema most workflows need: required keys and their types.
            for k in schema["required"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[])
                .iter()
                .filter_map(Value::as_str)
            {
                if !given.contains_key(k) {
                    e.add(
                        format!("input.{k}"),
                        "required",
                        format!("{k} is required by the workflow's input_schema"),
                    );
                }
            }
            if let Some(props) = schema["properties"].as_object() {
                for (k, p) in props {
                    let (Some(v), Some(t)) = (given.get(k), p["type"].as_str()) else {
                        continue;
                    };
                    let ok = match t {
                        "string" => v.is_string(),
                        "number" => v.is_number(),
                        "integer" => v.is_i64() || v.is_u64(),
                        "boolean" => v.is_boolean(),
                        "object" => v.is_object(),
                        "array" => v.is_array(),
                        _ => true,
                    };
                    if !ok {
                        e.add(
                            format!("input.{k}"),
                            "invalid_type",
                            format!("{k} must be of type {t}"),
                        );
                    }
                }
            }
        }
        e.finish()?;
        let now = now_ms();
        let x = ExecutionRecord {
            id: id::new_id("exec"),
            account_id: who.account_id.clone(),
            workflow_id: wf.id.clone(),
            version: wf.version,
            key_id: who.key_id.clone(),
            status: "queued".into(),
            input: input.to_string(),
            timeout_at: now + spec.definition.timeout_seconds as i64 * 1000,
            created_at: now,
            run_after: now,
            ..Default::default()
        };
        self.store.create_execution(&x).await.map_err(store_error)?;
        // A permit is kept if every worker is busy: the next one to go idle claims at once.
        self.work_queued.notify_one();
        Ok(x)
    }

    pub async fn execution(&self, who: &Principal, id: &str) -> Result<ExecutionRecord, ApiError> {
        self.store
            .get_execution(&who.account_id, id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| ApiError::not_found("execution", id))
    }

    pub async fn get_execution(&self, who: &Principal, id: &str) -> Result<Value, ApiError> {
        who.require(Scope::ExecutionsRead)?;
        let x = self.execution(who, id).await?;
        self.execution_view(&x).await
    }

    pub async fn list_executions(
        &self,
        who: &Principal,
        workflow_id: Option<&str>,
        status: Option<&str>,
        limit: Option<&str>,
        after: Option<&str>,
    ) -> Result<Value, ApiError> {
        who.require(Scope::ExecutionsRead)?;
        if let Some(s) = status.filter(|s| !STATUSES.contains(s)) {
            return Err(ApiError::new(
                ErrorKind::InvalidFields,
                format!("Invalid status: '{s}'. Allowed: {}", STATUSES.join(", ")),
            )
            .with_param("status"));
        }
        let (page, limit) = list::page(limit, after)?;
        let rows = self
            .store
            .list_executions(&who.account_id, workflow_id, status, &page)
            .await
            .map_err(store_error)?;
        let mut views = Vec::new();
        for r in &rows {
            views.push(self.execution_view(r).await?);
        }
        let l = list::finish(views, limit, |v: &Value| {
            v["id"].as_str().unwrap_or_default()
        });
        serde_json::to_value(l).map_err(|e| ApiError::internal(e.to_string()))
    }

    /// Cancels an execution that has not ended; its worker stops at its next heartbeat.
    pub async fn cancel_execution(&self, who: &Principal, id: &str) -> Result<Value, ApiError> {
        who.require(Scope::ExecutionsWrite)?;
        let x = self.execution(who, id).await?;
        let conflict = |status: &str| {
            ApiError::new(
                ErrorKind::Conflict,
                format!("This execution has already ended ({status}); there is nothing to cancel."),
            )
            .with_detail("field", "status")
            .with_detail("value", status)
        };
        if TERMINAL.contains(&x.status.as_str()) {
            return Err(conflict(&x.status));
        }
        if self
            .store
            .finish_execution(&x.id, "cancelled", None, None, now_ms())
            .await
            .map_err(store_error)?
        {
            self.close_open_nodes(&x.id, "cancelled").await;
            let _ = self
                .store
                .append_event(
                    &x.id,
                    "execution_finished",
                    &json!({"status": "cancelled"}).to_string(),
                    now_ms(),
                )
                .await;
        }
        let x = self.execution(who, id).await?;
        if x.status != "cancelled" {
            // It ended on its own between the read and the cancel.
            return Err(conflict(&x.status));
        }
        self.execution_view(&x).await
    }

    /// Waits for the execution to end (or its timeout plus a grace second), then reports it the
    /// way a synchronous run must: the execution, or `execution_failed` / `execution_timeout`.
    pub async fn wait_execution(&self, who: &Principal, id: &str) -> Result<Value, ApiError> {
        loop {
            // Registered before the read, so an end between the read and the wait still wakes it.
            let ended = self.work_ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            let x = self.execution(who, id).await?;
            let now = now_ms();
            if TERMINAL.contains(&x.status.as_str()) || now > x.timeout_at + 2_000 {
                let timeout_s = ((x.timeout_at - x.created_at) / 1000).max(0) as u64;
                return match x.status.as_str() {
                    "failed" => {
                        let err: Value = x
                            .error
                            .as_deref()
                            .and_then(|e| serde_json::from_str(e).ok())
                            .unwrap_or(Value::Null);
                        let d = &err["error"]["details"];
                        Err(
                            ApiError::new(ErrorKind::ExecutionFailed, "Workflow execution failed")
                                .with_detail("execution_id", x.id.as_str())
                                .with_detail("node_id", d["node_id"].clone())
                                .with_detail("node_error", d["node_error"].clone()),
                        )
                    }
                    "timed_out" | "queued" | "running" => {
                        Err(timed_out(&x, timeout_s, now.min(x.timeout_at)))
                    }
                    _ => self.execution_view(&x).await,
                };
            }
            tokio::select! {
                _ = ended => {}
                _ = tokio::time::sleep(Duration::from_millis(25)) => {}
            }
        }
    }
}
