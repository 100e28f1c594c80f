//! The other ingress formats: Anthropic Messages (`/v1/messages`, `/v1/messages/count_tokens`),
//! OpenAI Responses (`/v1/responses`, read and delete by id) and legacy `/v1/completions`.
//! All of them need `chat:write`, like chat completions.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use serde_json::Value;
use sluice_engine::llm::RequestCtx;
use sluice_types::{Dialect, Scope};

use super::gateway::respond;
use crate::envelope::RequestId;
use crate::error::HttpResult;
use crate::extract::{Auth, Json};
use crate::sse::Framing;
use crate::AppState;

fn ctx(rid: &RequestId) -> RequestCtx {
    RequestCtx {
        request_id: rid.0.clone(),
        started: rid.1,
    }
}

pub async fn messages(
    State(engine): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Auth(who): Auth,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> HttpResult<Response> {
    who.require(Scope::ChatWrite)?;
    // Passed on to Anthropic-format providers (betas such as context management need it).
    let beta = headers
        .get("anthropic-beta")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let result = engine.messages(&who, body, beta, ctx(&rid)).await;
    Ok(respond(result, Framing::Anthropic, rid.0))
}

pub async fn count_tokens(
    State(engine): State<AppState>,
    Auth(who): Auth,
    Json(body): Json<Value>,
) -> HttpResult<axum::Json<Value>> {
    who.require(Scope::ChatWrite)?;
    Ok(axum::Json(engine.count_message_tokens(&who, body)?))
}

pub async fn responses(
    State(engine): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Auth(who): Auth,
    Json(body): Json<Value>,
) -> HttpResult<Response> {
    who.require(Scope::ChatWrite)?;
    let result = engine.responses(&who, body, ctx(&rid)).await;
    Ok(respond(result, Framing::Responses, rid.0))
}

pub async fn get_response(
    State(engine): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> HttpResult<axum::Json<Value>> {
    who.require(Scope::ChatWrite)?;
    Ok(axum::Json(engine.get_response(&who, &id).await?))
}

pub async fn delete_response(
    State(engine): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> HttpResult<axum::Json<Value>> {
    who.require(Scope::ChatWrite)?;
    Ok(axum::Json(engine.delete_response(&who, &id).await?))
}

pub async fn completions(
    State(engine): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Auth(who): Auth,
    Json(body): Json<Value>,
) -> HttpResult<Response> {
    who.require(Scope::ChatWrite)?;
    let result = engine.completions(&who, body, ctx(&rid)).await;
    Ok(respond(result, Framing::OpenAi(Dialect::Gateway), rid.0))
}
