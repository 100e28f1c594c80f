//! The contract middleware: request ids on every response, and the error envelope for every
//! error — whether a handler returned it or the framework produced it (404, 405, 413, panics).
//!
//! Errors are logged here, once, with the request id; handlers never log them.

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{HeaderName, HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use sluice_types::{id, ApiError, Dialect, ErrorKind};

use crate::error::render;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_TRACE_ID: HeaderName = HeaderName::from_static("x-arena-trace-id");
pub const X_CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("x-client-request-id");
pub const X_SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");

/// The server-generated id of the current request (`req_` + 22 base62) and when it arrived.
#[derive(Clone, Debug)]
pub struct RequestId(pub String, pub std::time::Instant);

/// Flows routes speak seed 004's dialect; everything else the gateway's.
pub fn dialect_for(path: &str) -> Dialect {
    const FLOWS: [&str; 3] = ["/v1/agents", "/v1/workflows", "/v1/executions"];
    let is_flows = FLOWS.iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    });
    if is_flows {
        Dialect::Flows
    } else {
        Dialect::Gateway
    }
}

/// Which body shape errors take on a route: the contract's envelope, or Anthropic's on the
/// Messages routes (Anthropic SDKs and Claude Code parse only that).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Envelope,
    Anthropic,
}

pub fn shape_for(path: &str) -> Shape {
    match path.strip_prefix("/v1/messages") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => Shape::Anthropic,
        _ => Shape::Envelope,
    }
}

/// A client's own id is echoed only when it is short printable ASCII; it is never our id.
fn client_request_id(req: &Request) -> Option<HeaderValue> {
    let v = req.headers().get(&X_CLIENT_REQUEST_ID)?;
    let ok =
        !v.is_empty() && v.len() <= 128 && v.as_bytes().iter().all(|b| (0x20..0x7f).contains(b));
    ok.then(|| v.clone())
}

/// An error response the framework made by itself, mapped onto the table.
fn framework_error(status: StatusCode, res: &Response, method: &Method, path: &str) -> ApiError {
    match status {
        StatusCode::NOT_FOUND => ApiError::new(
            ErrorKind::NotFound,
            format!("No route for {method} {path}."),
        )
        .with_detail("resource_type", "route")
        .with_detail("resource_id", path),
        StatusCode::METHOD_NOT_ALLOWED => {
            let allow = res
                .headers()
                .get(ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let mut e = ApiError::new(
                ErrorKind::MethodNotAllowed,
                format!("Method {method} is not allowed on {path}. Allowed: {allow}."),
            );
            if !allow.is_empty() {
                let methods: Vec<&str> = allow.split(',').map(str::trim).collect();
                e = e.with_detail("allowed_methods", methods);
                e.allow = Some(allow);
            }
            e
        }
        StatusCode::PAYLOAD_TOO_LARGE => crate::limits::too_large(),
        s if s.is_client_error() => ApiError::new(
            ErrorKind::MalformedRequest,
            format!("The request could not be processed ({s})."),
        ),
        s => ApiError::internal(format!("framework produced {s}")),
    }
}

fn header(v: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(v).ok()
}

/// Renders `err` into `res` (status, body, headers) in the route's dialect.
fn apply_error(
    res: &mut Response,
    err: &ApiError,
    dialect: Dialect,
    shape: Shape,
    request_id: &str,
) {
    *res.status_mut() =
        StatusCode::from_u16(err.kind.status(dialect)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    *res.body_mut() = Body::from(match shape {
        Shape::Envelope => render(err, dialect, request_id),
        Shape::Anthropic => crate::error::render_anthropic(err, request_id),
    });
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.remove(axum::http::header::CONTENT_LENGTH);
    if let Some(secs) = err.retry_after.and_then(|s| header(&s.to_string())) {
        h.insert(RETRY_AFTER, secs);
    }
    if let Some(allow) = err.allow.as_deref().and_then(header) {
        h.insert(ALLOW, allow);
    }
}

fn log_error(err: &ApiError, dialect: Dialect, request_id: &str, method: &Method, path: &str) {
    let status = err.kind.status(dialect);
    let code = err.kind.code(dialect);
    let cause = err.internal.as_deref().unwrap_or("");
    if status >= 500 {
        tracing::error!(request_id, %method, path, status, code, cause, "request failed");
    } else {
        tracing::debug!(request_id, %method, path, status, code, cause, "request refused");
    }
}

/// The outermost middleware: see the module docs.
pub async fn contract(mut req: Request, next: Next) -> Response {
    let request_id = id::new_id("req");
    let client_id = client_request_id(&req);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let dialect = dialect_for(&path);
    let shape = shape_for(&path);
    req.extensions_mut()
        .insert(RequestId(request_id.clone(), std::time::Instant::now()));

    let mut res = next.run(req).await;

    let status = res.status();
    let err = match res.extensions_mut().remove::<ApiError>() {
        Some(e) => Some(e),
        None if status.is_client_error() || status.is_server_error() => {
            Some(framework_error(status, &res, &method, &path))
        }
        None => None,
    };
    if let Some(err) = &err {
        apply_error(&mut res, err, dialect, shape, &request_id);
        log_error(err, dialect, &request_id, &method, &path);
    }

    let h = res.headers_mut();
    if let Some(v) = header(&request_id) {
        h.insert(X_REQUEST_ID, v.clone());
        if shape == Shape::Anthropic {
            // Where Anthropic's SDKs read the id (`request-id`).
            h.insert(HeaderName::from_static("request-id"), v.clone());
        }
        h.insert(X_TRACE_ID, v);
    }
    if let Some(v) = client_id {
        h.insert(X_CLIENT_REQUEST_ID, v);
    }
    if let Some(err) = &err {
        let retry = if err.kind.retryable() {
            "true"
        } else {
            "false"
        };
        h.insert(X_SHOULD_RETRY, HeaderValue::from_static(retry));
    }
    let limits = err
        .as_ref()
        .and_then(|e| e.rate_limit.as_deref().cloned())
        .or_else(|| {
            res.extensions_mut()
                .remove::<sluice_types::ratelimit::RateLimitStatus>()
        });
    if let Some(st) = limits {
        crate::ratelimit::write_headers(res.headers_mut(), &st);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_routes_are_recognised_by_prefix_segment() {
        assert_eq!(dialect_for("/v1/agents"), Dialect::Flows);
        assert_eq!(dialect_for("/v1/agents/agent_1/runs"), Dialect::Flows);
        assert_eq!(dialect_for("/v1/executions/exec_1"), Dialect::Flows);
        assert_eq!(dialect_for("/v1/agentsx"), Dialect::Gateway);
        assert_eq!(dialect_for("/v1/chat/completions"), Dialect::Gateway);
        assert_eq!(dialect_for("/healthz"), Dialect::Gateway);
    }

    #[test]
    fn messages_routes_use_the_anthropic_error_shape() {
        assert_eq!(shape_for("/v1/messages"), Shape::Anthropic);
        assert_eq!(shape_for("/v1/messages/count_tokens"), Shape::Anthropic);
        assert_eq!(shape_for("/v1/messagesx"), Shape::Envelope);
        assert_eq!(shape_for("/v1/chat/completions"), Shape::Envelope);
    }
}
