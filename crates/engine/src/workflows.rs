//! Workflow resources: validated definitions (see `workflow_def`), versioned on every update,
//! per-account names, plan limits, scopes. Executions pin the version they start on.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sluice_store::{CreateRefusal, WorkflowRecord};
use sluice_types::validation::{invalid_fields, Errors};
use sluice_types::{id, now_unix, ApiError, ErrorKind, Principal, Scope};

use crate::agents::{plan_index, plan_limit};
use crate::list::{self, List};
use crate::workflow_def::{self, Definition};
use crate::{store_error, Engine};

/// What is stored for one version.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct WorkflowSpec {
    pub description: Option<String>,
    #[serde(flatten)]
    pub definition: Definition,
}

/// A workflow as the API shows it.
#[derive(Serialize, Debug)]
pub struct WorkflowView {
    pub id: String,
    pub object: &'static str,
    pub name: String,
    pub version: i64,
    #[serde(flatten)]
    pub spec: WorkflowSpec,
    pub created_at: i64,
    pub updated_at: i64,
}

const FIELDS: &[&str] = &[
    "name",
    "description",
    "nodes",
    "edges",
    "timeout_seconds",
    "input_schema",
];
const DEFINITION: &[&str] = &["nodes", "edges", "timeout_seconds", "input_schema"];

pub fn spec_of(r: &WorkflowRecord) -> Result<WorkflowSpec, ApiError> {
    serde_json::from_str(&r.spec)
        .map_err(|e| ApiError::internal(format!("workflow {} spec: {e}", r.id)))
}

fn view(r: WorkflowRecord) -> Result<WorkflowView, ApiError> {
    let spec = spec_of(&r)?;
    Ok(WorkflowView {
        id: r.id,
        object: "workflow",
        name: r.name,
        version: r.version,
        spec,
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

/// How long parsing a definition's templates may take.
const SYNTAX_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn name_taken(name: &str) -> ApiError {
    ApiError::new(
        ErrorKind::Conflict,
        "A workflow with this name already exists",
    )
    .with_param("name")
    .with_detail("field", "name")
    .with_detail("value", name)
}

impl Engine {
    /// Parses the definition's templates in the sandbox (parsing folds constants, so it can be
    /// as costly as running them). What could not be checked counts as not parsing.
    async fn check_syntax(&self, raw: &Map<String, Value>) -> workflow_def::Syntax {
        let (templates, expressions) = workflow_def::sources(raw);
        if templates.is_empty() && expressions.is_empty() {
            return workflow_def::Syntax::default();
        }
        let job = crate::executor::sandbox::Job::Check {
            templates,
            expressions,
        };
        match self.sandbox.run(job, SYNTAX_CHECK_TIMEOUT).await {
            Ok(v) => serde_json::from_value(v).unwrap_or_default(),
            Err(e) => {
                tracing::info!(error = e, "workflow templates could not be checked");
                workflow_def::Syntax::default()
            }
        }
    }

    /// Validates a body into (name, spec); with `base` (PATCH) absent fields keep their value.
    async fn validate_workflow(
        &self,
        body: &Value,
        base: Option<(&str, &WorkflowSpec)>,
    ) -> Result<(String, WorkflowSpec), ApiError> {
        let Value::Object(o) = body else {
            return Err(ApiError::new(
                ErrorKind::InvalidFields,
                "The request body must be a JSON object",
            ));
        };
        let mut e = Errors::new();
        for k in o.keys().filter(|k| !FIELDS.contains(&k.as_str())) {
            e.add(
                k.clone(),
                "invalid_format",
                format!("Unknown field '{k}'. Allowed: {}", FIELDS.join(", ")),
            );
        }
        let mut name = base.map(|(n, _)| n.to_owned()).unwrap_or_default();
        match o.get("name") {
            None | Some(Value::Null) if base.is_none() => {
                e.add("name", "required", "Name is required")
            }
            None => {}
            Some(Value::String(s)) if s.trim().is_empty() => {
                e.add("name", "min_length", "Name must not be empty")
            }
            Some(Value::String(s)) if s.chars().count() > 100 => {
                e.add("name", "max_length", "Name must be at most 100 characters")
            }
            Some(Value::String(s)) => name = s.clone(),
            Some(_) => e.add("name", "invalid_type", "Name must be a string"),
        }
        let mut description = base.and_then(|(_, s)| s.description.clone());
        match o.get("description") {
            None => {}
            Some(Value::Null) => description = None,
            Some(Value::String(s)) if s.chars().count() > 1_000 => e.add(
                "description",
                "max_length",
                "Description must be at most 1000 characters",
            ),
            Some(Value::String(s)) => description = Some(s.clone()),
            Some(_) => e.add(
                "description",
                "invalid_type",
                "Description must be a string",
            ),
        }
        // The definition is validated as a whole: a PATCH's fields are laid over the current one.
        let mut raw: Map<String, Value> = match base {
            Some((_, s)) => match serde_json::to_value(&s.definition) {
                Ok(Value::Object(m)) => m,
                _ => Map::new(),
            },
            None => Map::new(),
        };
        for k in DEFINITION {
            if let Some(v) = o.get(*k) {
                raw.insert((*k).to_owned(), v.clone());
            }
        }
        let limits = &self.settings.workflow_limits;
        let syntax = self.check_syntax(&raw).await;
        let definition = match workflow_def::validate(&raw, limits, &syntax) {
            Ok(d) => Some(d),
            Err(list) => {
                for fe in list {
                    e.push(fe);
                }
                None
            }
        };
        let mut list = e.into_vec();
        // Report in field order of the body: name first, as the seed's example does.
        list.sort_by_key(|fe| if fe.field == "name" { 0 } else { 1 });
        if !list.is_empty() {
            return Err(invalid_fields(list));
        }
        match definition {
            Some(definition) => Ok((
                name,
                WorkflowSpec {
                    description,
                    definition,
                },
            )),
            None => Err(ApiError::internal(
                "workflow validation passed without a definition",
            )),
        }
    }

    pub async fn create_workflow(
        &self,
        who: &Principal,
        body: Value,
    ) -> Result<WorkflowView, ApiError> {
        who.require(Scope::WorkflowsWrite)?;
        let (name, spec) = self.validate_workflow(&body, None).await?;
        let plan = self.plan_of(who).await?;
        let limit = self.settings.plans.workflows[plan_index(plan)];
        let now = now_unix();
        let record = WorkflowRecord {
            id: id::new_id("wf"),
            account_id: who.account_id.clone(),
            name,
            version: 1,
            spec: serde_json::to_string(&spec).map_err(|e| ApiError::internal(e.to_string()))?,
            created_at: now,
            updated_at: now,
        };
        match self
            .store
            .create_workflow(&record, limit)
            .await
            .map_err(store_error)?
        {
            Ok(()) => view(record),
            Err(CreateRefusal::NameTaken) => Err(name_taken(&record.name)),
            Err(CreateRefusal::PlanLimit { current }) => {
                Err(plan_limit("workflows", limit.unwrap_or(0), current, plan))
            }
        }
    }

    pub(crate) async fn workflow(
        &self,
        who: &Principal,
        id: &str,
    ) -> Result<WorkflowRecord, ApiError> {
        self.store
            .get_workflow(&who.account_id, id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| ApiError::not_found("workflow", id))
    }

    pub async fn get_workflow(&self, who: &Principal, id: &str) -> Result<WorkflowView, ApiError> {
        who.require(Scope::WorkflowsRead)?;
        view(self.workflow(who, id).await?)
    }

    pub async fn list_workflows(
        &self,
        who: &Principal,
        limit: Option<&str>,
        after: Option<&str>,
    ) -> Result<List<WorkflowView>, ApiError> {
        who.require(Scope::WorkflowsRead)?;
        let (page, limit) = list::page(limit, after)?;
        let rows = self
            .store
            .list_workflows(&who.account_id, &page)
            .await
            .map_err(store_error)?;
        let views = rows.into_iter().map(view).collect::<Result<Vec<_>, _>>()?;
        Ok(list::finish(views, limit, |w: &WorkflowView| &w.id))
    }

    /// Saves the change as a new version; executions already started keep theirs.
    pub async fn update_workflow(
        &self,
        who: &Principal,
        id: &str,
        body: Value,
    ) -> Result<WorkflowView, ApiError> {
        who.require(Scope::WorkflowsWrite)?;
        let current = self.workflow(who, id).await?;
        let old = spec_of(&current)?;
        let (name, spec) = self
            .validate_workflow(&body, Some((&current.name, &old)))
            .await?;
        let record = WorkflowRecord {
            name,
            version: current.version + 1,
            spec: serde_json::to_string(&spec).map_err(|e| ApiError::internal(e.to_string()))?,
            updated_at: now_unix(),
            ..current
        };
        match self
            .store
            .update_workflow(&record)
            .await
            .map_err(store_error)?
        {
            Ok(Some(saved)) => view(saved),
            // Changed by another request since it was read: the caller should re-read and retry.
            Ok(None) => Err(ApiError::new(
                ErrorKind::Conflict,
                "The workflow was changed by another request; fetch it again and retry",
            )
            .with_detail("field", "version")
            .with_detail("value", current.version)),
            Err(_) => Err(name_taken(&record.name)),
        }
    }

    pub async fn delete_workflow(&self, who: &Principal, id: &str) -> Result<(), ApiError> {
        who.require(Scope::WorkflowsWrite)?;
        if self
            .store
            .delete_workflow(&who.account_id, id)
            .await
            .map_err(store_error)?
        {
            Ok(())
        } else {
            Err(ApiError::not_found("workflow", id))
        }
    }
}
