//! The OpenAI-compatible surface: `/v1/models`, `/v1/chat/completions`, `/v1/embeddings`.

use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::Value;
use sluice_gateway::ChatReply;
use sluice_types::{Dialect, Scope};

use crate::envelope::RequestId;
use crate::error::{HttpError, HttpResult};
use crate::extract::{Auth, Json};
use crate::AppState;

pub const X_RESOLVED_MODEL: &str = "x-arena-resolved-model";

/// Adds `X-Arena-Resolved-Model` to a response (success or error) that reached a model.
fn with_model(mut res: Response, model: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(model) {
        res.headers_mut().insert(X_RESOLVED_MODEL, v);
    }
    res
}

pub async fn models(
    State(engine): State<AppState>,
    Auth(who): Auth,
) -> HttpResult<axum::Json<Value>> {
    who.require(Scope::ModelsRead)?;
    Ok(axum::Json(engine.gateway.list_models(&who)))
}

pub async fn model(
    State(engine): State<AppState>,
    Auth(who): Auth,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> HttpResult<axum::Json<Value>> {
    who.require(Scope::ModelsRead)?;
    Ok(axum::Json(engine.gateway.get_model(&who, &id)?))
}

pub async fn chat(
    State(engine): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Auth(who): Auth,
    Json(body): Json<Value>,
) -> HttpResult<Response> {
    who.require(Scope::ChatWrite)?;
    let admitted = engine.gateway.admit_chat(&who, body).await?;
    let model = admitted.model.id.clone();
    let outcome = match engine.gateway.dispatch_chat(admitted).await {
        Ok(o) => o,
        Err(e) => return Ok(with_model(HttpError(e).into_response(), &model)),
    };
    let res = match outcome.reply {
        ChatReply::Json(v) => axum::Json(v).into_response(),
        ChatReply::Stream(chunks) => crate::sse::response(chunks, Dialect::Gateway, rid.0),
    };
    Ok(with_model(res, &model))
}

pub async fn embeddings(
    State(engine): State<AppState>,
    Auth(who): Auth,
    Json(body): Json<Value>,
) -> HttpResult<Response> {
    who.require(Scope::ChatWrite)?;
    let outcome = engine.gateway.embeddings(&who, body).await?;
    Ok(with_model(
        axum::Json(outcome.body).into_response(),
        &outcome.model.id,
    ))
}
