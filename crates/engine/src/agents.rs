//! Agents: validated resources (every problem reported at once, in seed 004's codes), an exact
//! plan limit, per-account names, and runs that go through the gateway's own admission path.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sluice_gateway::catalog::Mode;
use sluice_store::{AgentRecord, CreateRefusal};
use sluice_types::validation::{invalid_fields, Errors, FieldError};
use sluice_types::{id, now_unix, ApiError, ErrorKind, Plan, Principal, Scope};

use crate::list::{self, List};
use crate::llm::{ChatResponse, Failed, RequestCtx};
use crate::{store_error, Engine};

/// What an agent is, beyond its name (stored as one JSON document).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct AgentSpec {
    pub description: Option<String>,
    pub model: String,
    pub instructions: Option<String>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub tools: Vec<Value>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

/// An agent as the API shows it.
#[derive(Serialize, Debug)]
pub struct AgentView {
    pub id: String,
    pub object: &'static str,
    pub name: String,
    #[serde(flatten)]
    pub spec: AgentSpec,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Plan bounds on what an account may own (`None`: unbounded). CONTRACT §5.
#[derive(Clone, Debug)]
pub struct PlanLimits {
    pub agents: [Option<i64>; 3],
    pub workflows: [Option<i64>; 3],
    /// Executions of one account worked on at once, across all instances.
    pub concurrent_executions: [Option<i64>; 3],
}

impl Default for PlanLimits {
    fn default() -> Self {
        PlanLimits {
            agents: [Some(3), Some(10), None],
            workflows: [Some(5), Some(50), None],
            concurrent_executions: [Some(2), Some(10), Some(50)],
        }
    }
}

pub fn plan_index(p: Plan) -> usize {
    match p {
        Plan::Free => 0,
        Plan::Pro => 1,
        Plan::Enterprise => 2,
    }
}

const FIELDS: &[&str] = &[
    "name",
    "description",
    "model",
    "instructions",
    "temperature",
    "max_tokens",
    "tools",
    "metadata",
];

fn view(r: AgentRecord) -> Result<AgentView, ApiError> {
    let spec: AgentSpec = serde_json::from_str(&r.spec)
        .map_err(|e| ApiError::internal(format!("agent {} spec: {e}", r.id)))?;
    Ok(AgentView {
        id: r.id,
        object: "agent",
        name: r.name,
        spec,
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

/// The plan-limit error, as seed 004 shows it.
pub fn plan_limit(resource: &str, limit: i64, current: i64, plan: Plan) -> ApiError {
    let what = if resource == "agents" {
        "Agent"
    } else {
        "Workflow"
    };
    ApiError::new(
        ErrorKind::PlanLimit,
        format!("{what} limit reached for your plan"),
    )
    .with_detail("resource", resource)
    .with_detail("limit", limit)
    .with_detail("current", current)
    .with_detail("plan", plan.as_str())
}

fn name_taken(name: &str) -> ApiError {
    ApiError::new(
        ErrorKind::Conflict,
        "An agent with this name already exists",
    )
    .with_param("name")
    .with_detail("field", "name")
    .with_detail("value", name)
}

impl Engine {
    /// The caller's account's plan (what plan limits apply).
    pub(crate) async fn plan_of(&self, who: &Principal) -> Result<Plan, ApiError> {
        self.store
            .get_account(&who.account_id)
            .await
            .map_err(store_error)?
            .map(|a| a.plan)
            .ok_or_else(|| ApiError::not_found("account", &who.account_id))
    }

    /// Model ids this key may use for chat (what `model` may be), for the `invalid_enum` message.
    fn allowed_models(&self, who: &Principal) -> Vec<String> {
        self.gateway
            .catalog
            .models
            .iter()
            .filter(|m| {
                m.mode == Mode::Chat
                    && who
                        .models
                        .as_ref()
                        .is_none_or(|a| a.iter().any(|x| m.is_named(x)))
            })
            .map(|m| m.id.clone())
            .chain(["auto".to_owned(), "fast".to_owned()])
            .collect()
    }

    /// Validates `body` into (name, spec). With `base` (a PATCH), absent fields keep their value.
    fn validate_agent(
        &self,
        who: &Principal,
        body: &Value,
        base: Option<(&str, &AgentSpec)>,
    ) -> Result<(String, AgentSpec), ApiError> {
        let Value::Object(o) = body else {
            return Err(invalid_fields(vec![FieldError::new(
                "",
                "invalid_type",
                "The request body must be a JSON object",
            )]));
        };
        let mut e = Errors::new();
        for k in o.keys().filter(|k| !FIELDS.contains(&k.as_str())) {
            e.add(
                k.clone(),
                "invalid_format",
                format!("Unknown field '{k}'. Allowed: {}", FIELDS.join(", ")),
            );
        }
        let mut spec = base.map(|(_, s)| s.clone()).unwrap_or_default();
        let mut name = base.map(|(n, _)| n.to_owned()).unwrap_or_default();
        let patch = base.is_some();
        let text = |e: &mut Errors, field: &str, v: &Value, max: usize| -> Option<String> {
            match v {
                Value::String(s) if s.chars().count() > max => {
                    e.add(
                        field,
                        "max_length",
                        format!("{} must be at most {max} characters", title(field)),
                    );
                    None
                }
                Value::String(s) => Some(s.clone()),
                _ => {
                    e.add(
                        field,
                        "invalid_type",
                        format!("{} must be a string", title(field)),
                    );
                    None
                }
            }
        };
        match o.get("name") {
            None | Some(Value::Null) if !patch => e.add("name", "required", "Name is required"),
            None => {}
            Some(Value::String(s)) if s.trim().is_empty() => {
                e.add("name", "min_length", "Name must not be empty")
            }
            Some(v) => {
                if let Some(s) = text(&mut e, "name", v, 100) {
                    name = s;
                }
            }
        }
        match o.get("model") {
            None | Some(Value::Null) if !patch => e.add("model", "required", "Model is required"),
            None => {}
            Some(Value::String(m)) => {
                let allowed = self.allowed_models(who);
                if allowed.iter().any(|a| a == m)
                    || self
                        .gateway
                        .catalog
                        .get(m)
                        .is_some_and(|x| allowed.contains(&x.id))
                {
                    spec.model = m.clone();
                } else {
                    e.add(
                        "model",
                        "invalid_enum",
                        format!("Invalid model: '{m}'. Allowed: {}", allowed.join(", ")),
                    );
                }
            }
            Some(_) => e.add("model", "invalid_type", "Model must be a string"),
        }
        if let Some(v) = o.get("description") {
            spec.description = if v.is_null() {
                None
            } else {
                text(&mut e, "description", v, 1_000)
            };
        }
        if let Some(v) = o.get("instructions") {
            spec.instructions = if v.is_null() {
                None
            } else {
                text(&mut e, "instructions", v, 100_000)
            };
        }
        match o.get("temperature") {
            None => {}
            Some(Value::Null) => spec.temperature = None,
            Some(Value::Number(n)) => match n.as_f64() {
                Some(t) if t < 0.0 => {
                    e.add("temperature", "min_value", "Temperature must be at least 0")
                }
                Some(t) if t > 2.0 => {
                    e.add("temperature", "max_value", "Temperature must be at most 2")
                }
                t => spec.temperature = t,
            },
            Some(_) => e.add(
                "temperature",
                "invalid_type",
                "Temperature must be a number",
            ),
        }
        match o.get("max_tokens") {
            None => {}
            Some(Value::Null) => spec.max_tokens = None,
            Some(v) => match v.as_u64() {
                Some(0) => e.add("max_tokens", "min_value", "Max tokens must be at least 1"),
                Some(n) if n > 1_000_000 => e.add(
                    "max_tokens",
                    "max_value",
                    "Max tokens must be at most 1000000",
                ),
                Some(n) => spec.max_tokens = Some(n),
                None => e.add(
                    "max_tokens",
                    "invalid_type",
                    "Max tokens must be a positive integer",
                ),
            },
        }
        match o.get("tools") {
            None => {}
            Some(Value::Null) => spec.tools.clear(),
            Some(Value::Array(tools)) => {
                if tools.len() > 64 {
                    e.add("tools", "max_length", "At most 64 tools");
                }
                for (i, t) in tools.iter().enumerate() {
                    let at = format!("tools[{i}]");
                    match t.get("type").and_then(Value::as_str) {
                        Some("workflow") => {}
                        Some(other) => e.add(
                            format!("{at}.type"),
                            "invalid_enum",
                            format!("Invalid tool type: '{other}'. Allowed: workflow"),
                        ),
                        None => e.add(format!("{at}.type"), "required", "Tool type is required"),
                    }
                    match t.get("workflow_id") {
                        Some(Value::String(w)) if id::is_id("wf", w) => {}
                        Some(Value::String(_)) => e.add(
                            format!("{at}.workflow_id"),
                            "invalid_format",
                            "Workflow id must look like wf_…",
                        ),
                        None | Some(Value::Null) => e.add(
                            format!("{at}.workflow_id"),
                            "required",
                            "Workflow id is required",
                        ),
                        Some(_) => e.add(
                            format!("{at}.workflow_id"),
                            "invalid_type",
                            "Workflow id must be a string",
                        ),
                    }
                }
                spec.tools = tools.clone();
            }
            Some(_) => e.add("tools", "invalid_type", "Tools must be an array"),
        }
        match o.get("metadata") {
            None => {}
            Some(Value::Null) => spec.metadata.clear(),
            Some(Value::Object(m)) => {
                if m.len() > 16 {
                    e.add("metadata", "max_length", "Metadata holds at most 16 keys");
                }
                for (k, v) in m {
                    if k.chars().count() > 64 {
                        e.add(
                            format!("metadata.{k}"),
                            "max_length",
                            "Metadata keys are at most 64 characters",
                        );
                    }
                    match v {
                        Value::String(s) if s.chars().count() > 512 => e.add(
                            format!("metadata.{k}"),
                            "max_length",
                            "Metadata values are at most 512 characters",
                        ),
                        Value::String(_) => {}
                        _ => e.add(
                            format!("metadata.{k}"),
                            "invalid_type",
                            "Metadata values must be strings",
                        ),
                    }
                }
                spec.metadata = m.clone();
            }
            Some(_) => e.add(
                "metadata",
                "invalid_type",
                "Metadata must be an object of strings",
            ),
        }
        e.finish()?;
        Ok((name, spec))
    }

    pub async fn create_agent(&self, who: &Principal, body: Value) -> Result<AgentView, ApiError> {
        who.require(Scope::AgentsWrite)?;
        let (name, spec) = self.validate_agent(who, &body, None)?;
        self.check_tool_workflows(who, &spec).await?;
        let plan = self.plan_of(who).await?;
        let limit = self.settings.plans.agents[plan_index(plan)];
        let now = now_unix();
        let record = AgentRecord {
            id: id::new_id("agent"),
            account_id: who.account_id.clone(),
            name,
            spec: serde_json::to_string(&spec).map_err(|e| ApiError::internal(e.to_string()))?,
            created_at: now,
            updated_at: now,
        };
        match self
            .store
            .create_agent(&record, limit)
            .await
            .map_err(store_error)?
        {
            Ok(()) => view(record),
            Err(CreateRefusal::NameTaken) => Err(name_taken(&record.name)),
            Err(CreateRefusal::PlanLimit { current }) => {
                Err(plan_limit("agents", limit.unwrap_or(0), current, plan))
            }
        }
    }

    async fn agent(&self, who: &Principal, id: &str) -> Result<AgentRecord, ApiError> {
        // Another account's agent does not exist for this caller.
        self.store
            .get_agent(&who.account_id, id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| ApiError::not_found("agent", id))
    }

    pub async fn get_agent(&self, who: &Principal, id: &str) -> Result<AgentView, ApiError> {
        who.require(Scope::AgentsRead)?;
        view(self.agent(who, id).await?)
    }

    pub async fn list_agents(
        &self,
        who: &Principal,
        limit: Option<&str>,
        after: Option<&str>,
    ) -> Result<List<AgentView>, ApiError> {
        who.require(Scope::AgentsRead)?;
        let (page, limit) = list::page(limit, after)?;
        let rows = self
            .store
            .list_agents(&who.account_id, &page)
            .await
            .map_err(store_error)?;
        let views = rows.into_iter().map(view).collect::<Result<Vec<_>, _>>()?;
        Ok(list::finish(views, limit, |a: &AgentView| &a.id))
    }

    pub async fn update_agent(
        &self,
        who: &Principal,
        id: &str,
        body: Value,
    ) -> Result<AgentView, ApiError> {
        who.require(Scope::AgentsWrite)?;
        let current = self.agent(who, id).await?;
        let old = view(current.clone())?;
        let (name, spec) = self.validate_agent(who, &body, Some((&old.name, &old.spec)))?;
        self.check_tool_workflows(who, &spec).await?;
        let record = AgentRecord {
            name,
            spec: serde_json::to_string(&spec).map_err(|e| ApiError::internal(e.to_string()))?,
            updated_at: now_unix(),
            ..current
        };
        match self
            .store
            .update_agent(&record)
            .await
            .map_err(store_error)?
        {
            Ok(Some(r)) => view(r),
            Ok(None) => Err(ApiError::not_found("agent", id)),
            Err(_) => Err(name_taken(&record.name)),
        }
    }

    pub async fn delete_agent(&self, who: &Principal, id: &str) -> Result<(), ApiError> {
        who.require(Scope::AgentsWrite)?;
        if self
            .store
            .delete_agent(&who.account_id, id)
            .await
            .map_err(store_error)?
        {
            Ok(())
        } else {
            Err(ApiError::not_found("agent", id))
        }
    }

    /// Every tool names a workflow of the caller's account (others' are as absent as missing ones).
    async fn check_tool_workflows(
        &self,
        who: &Principal,
        spec: &AgentSpec,
    ) -> Result<(), ApiError> {
        let mut e = Errors::new();
        for (i, t) in spec.tools.iter().enumerate() {
            let Some(wf) = t.get("workflow_id").and_then(Value::as_str) else {
                continue;
            };
            match self.workflow(who, wf).await {
                Ok(_) => {}
                Err(err) if err.kind == ErrorKind::NotFound => e.add(
                    format!("tools[{i}].workflow_id"),
                    "invalid_enum",
                    format!("No workflow '{wf}' in this account"),
                ),
                Err(err) => return Err(err),
            }
        }
        e.finish()
    }

    /// The chat request an agent run makes: instructions as the system message, then the input.
    pub fn run_request(spec: &AgentSpec, body: &Value) -> Result<Value, ApiError> {
        let mut e = Errors::new();
        if let Value::Object(fields) = body {
            for k in fields
                .keys()
                .filter(|k| !matches!(k.as_str(), "input" | "stream"))
            {
                e.add(
                    k.clone(),
                    "invalid_format",
                    format!("Unknown field '{k}'. Allowed: input, stream"),
                );
            }
        }
        let mut messages = Vec::new();
        if let Some(i) = spec.instructions.as_deref().filter(|i| !i.is_empty()) {
            messages.push(json!({"role": "system", "content": i}));
        }
        match body.get("input") {
            Some(Value::String(s)) if !s.is_empty() => {
                messages.push(json!({"role": "user", "content": s}))
            }
            Some(Value::String(_)) => e.add("input", "min_length", "Input must not be empty"),
            Some(Value::Array(items)) if !items.is_empty() => {
                for (i, m) in items.iter().enumerate() {
                    let role_ok = m
                        .get("role")
                        .and_then(Value::as_str)
                        .is_some_and(|r| ["user", "assistant", "system", "tool"].contains(&r));
                    if !role_ok {
                        e.add(
                            format!("input[{i}].role"),
                            "invalid_enum",
                            "Invalid role. Allowed: user, assistant, system, tool",
                        );
                    }
                    if m.get("content").is_none() {
                        e.add(
                            format!("input[{i}].content"),
                            "required",
                            "Content is required",
                        );
                    }
                    messages.push(m.clone());
                }
            }
            Some(Value::Array(_)) => e.add("input", "min_length", "Input must not be empty"),
            None | Some(Value::Null) => e.add("input", "required", "Input is required"),
            Some(_) => e.add(
                "input",
                "invalid_type",
                "Input must be a string or an array of messages",
            ),
        }
        let stream = match body.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                e.add("stream", "invalid_type", "Stream must be a boolean");
                false
            }
        };
        e.finish()?;
        let mut req = json!({"model": spec.model, "messages": messages, "stream": stream});
        if let Some(t) = spec.temperature {
            req["temperature"] = json!(t);
        }
        if let Some(m) = spec.max_tokens {
            req["max_tokens"] = json!(m);
        }
        if stream {
            req["stream_options"] = json!({"include_usage": true});
        }
        Ok(req)
    }

    /// Runs an agent through the gateway path: the key's allowlist, limits, credits and routing
    /// apply exactly as for `/v1/chat/completions`.
    pub async fn run_agent(
        &self,
        who: &Principal,
        id: &str,
        body: Value,
        ctx: RequestCtx,
    ) -> Result<(AgentView, ChatResponse), Failed> {
        who.require(Scope::AgentsWrite)?;
        let agent = view(self.agent(who, id).await?)?;
        let req = Self::run_request(&agent.spec, &body)?;
        let res = self.chat(who, req, ctx).await?;
        Ok((agent, res))
    }
}

fn title(field: &str) -> String {
    let mut c = field.chars();
    c.next()
        .map(|f| {
            f.to_uppercase()
                .chain(c)
                .collect::<String>()
                .replace('_', " ")
        })
        .unwrap_or_default()
}

/// The run object returned by a non-streamed run.
pub fn run_view(agent: &AgentView, completion: &Value, started: Instant) -> Value {
    json!({
        "id": id::new_id("run"),
        "object": "agent.run",
        "agent_id": agent.id,
        "status": "completed",
        "model": completion["model"],
        "output": completion["choices"][0]["message"]["content"],
        "tool_calls": completion["choices"][0]["message"].get("tool_calls").cloned().unwrap_or(Value::Null),
        "finish_reason": completion["choices"][0]["finish_reason"],
        "usage": completion["usage"],
        "latency_ms": started.elapsed().as_millis() as u64,
        "created_at": now_unix(),
    })
}
