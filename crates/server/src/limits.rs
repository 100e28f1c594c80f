//! The 10 MB request body limit: refused from `Content-Length` before any byte is read, and
//! enforced while reading for bodies without one (chunked).

use axum::extract::Request;
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sluice_types::{ApiError, ErrorKind};

use crate::error::HttpError;

/// CONTRACT §3: "body over 10 MB". Binary megabytes, as most HTTP servers count them.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

pub fn too_large() -> ApiError {
    ApiError::new(
        ErrorKind::RequestTooLarge,
        format!("Request body exceeds the {MAX_BODY_BYTES}-byte (10 MB) limit."),
    )
    .with_detail("limit_bytes", MAX_BODY_BYTES)
}

/// Answers 413 at once when the declared length is over the limit.
pub async fn refuse_oversized(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        let mut res = HttpError(too_large()).into_response();
        // The body was not read; tell the client we will not keep the connection for it.
        res.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        return res;
    }
    next.run(req).await
}
