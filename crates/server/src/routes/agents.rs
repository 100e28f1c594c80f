//! `/v1/agents`: CRUD, and runs through the gateway (JSON or SSE).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use serde_json::Value;
use sluice_engine::agents::{run_view, AgentView};
use sluice_engine::list::List;
use sluice_engine::llm::{Failed, RequestCtx};
use sluice_gateway::ChatReply;
use sluice_types::Dialect;

use crate::envelope::RequestId;
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
    let e = engine.clone();
    let w = who.clone();
    let b = body.clone();
    crate::idempotency::idempotent(
        &engine,
        &who,
        sluice_types::Scope::AgentsWrite,
        &headers,
        "POST /v1/agents",
        &body,
        || async move {
            match e.create_agent(&w, b).await {
                Ok(a) => (StatusCode::CREATED, axum::Json(a)).into_response(),
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
) -> HttpResult<axum::Json<List<AgentView>>> {
    Ok(axum::Json(
        engine
            .list_agents(&who, q.limit.as_deref(), q.after.as_deref())
            .await?,
    ))
}

pub async fn get(
    State(engine): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> HttpResult<axum::Json<AgentView>> {
    Ok(axum::Json(engine.get_agent(&who, &id).await?))
}

pub async fn update(
    State(engine): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> HttpResult<axum::Json<AgentView>> {
    Ok(axum::Json(engine.update_agent(&who, &id, body).await?))
}

pub async fn delete(
    State(engine): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> HttpResult<StatusCode> {
    engine.delete_agent(&who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn run(
    State(engine): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let started = rid.1;
    let ctx = RequestCtx {
        request_id: rid.0.clone(),
        started,
    };
    let (agent, res) = match engine.run_agent(&who, &id, body, ctx).await {
        Ok(x) => x,
        Err(Failed { error, model }) => {
            let mut r = HttpError(error).into_response();
            if let Some(m) = model.and_then(|m| axum::http::HeaderValue::from_str(&m).ok()) {
                r.headers_mut()
                    .insert(crate::routes::gateway::X_RESOLVED_MODEL, m);
            }
            return r;
        }
    };
    let mut out = match res.reply {
        ChatReply::Json(v) => axum::Json(run_view(&agent, &v, started)).into_response(),
        ChatReply::Stream(chunks) => crate::sse::response(chunks, Dialect::Flows, rid.0),
    };
    out.extensions_mut().insert(res.rate_limit);
    if let Ok(m) = axum::http::HeaderValue::from_str(&res.model.id) {
        out.headers_mut()
            .insert(crate::routes::gateway::X_RESOLVED_MODEL, m);
    }
    out
}
