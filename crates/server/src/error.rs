//! `HttpError`: an `ApiError` on its way out. The body is rendered later by the envelope
//! middleware, which knows the request id and the route's dialect.

use std::any::Any;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use sluice_types::{ApiError, Dialect};

/// Wraps `ApiError` so handlers can return it (`?` converts).
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        HttpError(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        // The status is provisional: the dialect (and so the final status) is decided by the
        // envelope middleware. The error rides along in the extensions.
        let mut res = StatusCode::INTERNAL_SERVER_ERROR.into_response();
        res.extensions_mut().insert(self.0);
        res
    }
}

/// Handler result type.
pub type HttpResult<T> = Result<T, HttpError>;

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'static str,
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a Map<String, Value>>,
    request_id: &'a str,
}

/// The envelope (CONTRACT §2) as JSON bytes. Also used for SSE `event: error` payloads.
pub fn render(err: &ApiError, dialect: Dialect, request_id: &str) -> Vec<u8> {
    let body = Body {
        error: Inner {
            code: err.kind.code(dialect),
            message: &err.message,
            kind: err.kind.error_type().as_str(),
            param: err.param.as_deref(),
            details: err.details.as_ref().filter(|d| !d.is_empty()),
            request_id,
        },
    };
    serde_json::to_vec(&body).unwrap_or_else(|_| {
        br#"{"error":{"code":"internal_error","message":"An unexpected error occurred.","type":"server_error","param":null}}"#.to_vec()
    })
}

/// Anthropic's name for an error class, by status (what its SDKs and Claude Code expect).
fn anthropic_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 => "overloaded_error",
        504 | 408 => "timeout_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

/// The Anthropic error shape for Messages routes: `{"type":"error","error":{"type","message"}}`,
/// with the envelope's own fields (`code`, `param`, `details`, `request_id`) inside `error` too,
/// so nothing the contract promises is lost.
pub fn render_anthropic(err: &ApiError, request_id: &str) -> Vec<u8> {
    let status = err.kind.status(Dialect::Gateway);
    let mut inner = serde_json::json!({
        "type": anthropic_type(status),
        "message": err.message,
        "code": err.kind.code(Dialect::Gateway),
        "param": err.param,
        "request_id": request_id,
    });
    if let Some(d) = err.details.as_ref().filter(|d| !d.is_empty()) {
        inner["details"] = Value::Object(d.clone());
    }
    let body = serde_json::json!({"type": "error", "error": inner, "request_id": request_id});
    serde_json::to_vec(&body).unwrap_or_else(|_| {
        br#"{"type":"error","error":{"type":"api_error","message":"An unexpected error occurred."}}"#.to_vec()
    })
}

/// A handler panicked: 500 `internal_error`; the panic text goes to the log only.
pub fn panic_response(payload: Box<dyn Any + Send + 'static>) -> Response {
    let text = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    HttpError(ApiError::internal(format!("handler panicked: {text}"))).into_response()
}
