//! The OpenAI-compatible surface: `/v1/models`, `/v1/chat/completions`, `/v1/embeddings`
//! (the other ingress formats are in `ingress.rs`).

use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::Value;
use sluice_engine::llm::{ChatResponse, Failed, RequestCtx};
use sluice_gateway::ChatReply;
use sluice_types::{Dialect, Scope};

use crate::envelope::RequestId;
use crate::error::{HttpError, HttpResult};
use crate::extract::{Auth, Json};
use crate::sse::Framing;
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
    let ctx = RequestCtx {
        request_id: rid.0.clone(),
        started: rid.1,
    };
    Ok(respond(
        engine.chat(&who, body, ctx).await,
        Framing::OpenAi(Dialect::Gateway),
        rid.0,
    ))
}

/// The HTTP response for a chat-path result (any ingress): JSON or SSE in `framing`, with the
/// rate-limit, resolved-model and fallback headers.
pub(crate) fn respond(
    result: Result<ChatResponse, Failed>,
    framing: Framing,
    request_id: String,
) -> Response {
    let res = match result {
        Ok(r) => r,
        Err(Failed { error, model }) => return failed(error, model),
    };
    let mut out = match res.reply {
        ChatReply::Json(v) => axum::Json(v).into_response(),
        ChatReply::Stream(chunks) => crate::sse::framed(chunks, framing, request_id),
    };
    out.extensions_mut().insert(res.rate_limit);
    if let Some((index, reason)) = res.fallback {
        let h = out.headers_mut();
        h.insert("x-arena-fallback-index", HeaderValue::from(index as u64));
        h.insert("x-arena-fallback-reason", HeaderValue::from_static(reason));
    }
    with_model(out, &res.model.id)
}

/// An error response, naming the model when the request reached one.
pub(crate) fn failed(error: sluice_types::ApiError, model: Option<String>) -> Response {
    let res = HttpError(error).into_response();
    match model {
        Some(m) => with_model(res, &m),
        None => res,
    }
}

pub async fn embeddings(
    State(engine): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Auth(who): Auth,
    Json(body): Json<Value>,
) -> HttpResult<Response> {
    who.require(Scope::ChatWrite)?;
    let ctx = RequestCtx {
        request_id: rid.0,
        started: rid.1,
    };
    match engine.embeddings(&who, body, ctx).await {
        Ok((out, rate)) => {
            let mut res = axum::Json(out.body).into_response();
            res.extensions_mut().insert(rate);
            Ok(with_model(res, &out.model.id))
        }
        Err(Failed { error, model }) => Ok(failed(error, model)),
    }
}
