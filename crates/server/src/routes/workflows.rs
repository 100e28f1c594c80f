//! `/v1/workflows`: CRUD of versioned workflow definitions.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use sluice_engine::list::List;
use sluice_engine::workflows::WorkflowView;

use crate::error::{HttpError, HttpResult};
use crate::extract::{Auth, Json, Query};
use crate::AppState;

#[derive(Deserialize)]
pub struct ListParams {
    limit: Option<String>,
    after: Option<String>,
}

pub async fn create(
    State(engine): State<AppState>,
    Auth(who): Auth,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let (e, w, b) = (engine.clone(), who.clone(), body.clone());
    crate::idempotency::idempotent(
        &engine,
        &who,
        sluice_types::Scope::WorkflowsWrite,
        &headers,
        "POST /v1/workflows",
        &body,
        || async move {
            match e.create_workflow(&w, b).await {
                Ok(v) => (StatusCode::CREATED, axum::Json(v)).into_response(),
                Err(err) => HttpError(err).into_response(),
            }
        },
    )
    .await
}

pub async fn list(
    State(engine): State<AppState>,
    Auth(who): Auth,
    Query(q): Query<ListParams>,
) -> HttpResult<axum::Json<List<WorkflowView>>> {
    Ok(axum::Json(
        engine
            .list_workflows(&who, q.limit.as_deref(), q.after.as_deref())
            .await?,
    ))
}

pub async fn get(
    State(engine): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> HttpResult<axum::Json<WorkflowView>> {
    Ok(axum::Json(engine.get_workflow(&who, &id).await?))
}

pub async fn update(
    State(engine): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> HttpResult<axum::Json<WorkflowView>> {
    Ok(axum::Json(engine.update_workflow(&who, &id, body).await?))
}

pub async fn delete(
    State(engine): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> HttpResult<StatusCode> {
    engine.delete_workflow(&who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
