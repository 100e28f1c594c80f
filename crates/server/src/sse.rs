//! Streaming responses as Server-Sent Events: each chunk goes out as soon as the provider sent
//! it; an error after the first byte becomes one `event: error` with the envelope, then the end.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::response::Response;
use futures_util::StreamExt;
use sluice_gateway::ChunkStream;
use sluice_types::Dialect;

use crate::error::render;

/// The SSE frame for an error: `event: error` + the envelope, as CONTRACT §2 says.
pub fn error_event(err: &sluice_types::ApiError, dialect: Dialect, request_id: &str) -> Bytes {
    let mut out = b"event: error\ndata: ".to_vec();
    out.extend_from_slice(&render(err, dialect, request_id));
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// A `text/event-stream` response over `chunks`, ending with `data: [DONE]` on success.
pub fn response(chunks: ChunkStream, dialect: Dialect, request_id: String) -> Response {
    let body = futures_util::stream::unfold(Some(chunks), move |state| {
        let request_id = request_id.clone();
        async move {
            let mut chunks = state?;
            match chunks.next().await {
                Some(Ok(v)) => {
                    let mut frame = Vec::with_capacity(256);
                    frame.extend_from_slice(b"data: ");
                    if serde_json::to_writer(&mut frame, &v).is_err() {
                        return None;
                    }
                    frame.extend_from_slice(b"\n\n");
                    Some((Ok::<_, Infallible>(Bytes::from(frame)), Some(chunks)))
                }
                Some(Err(e)) => {
                    tracing::warn!(
                        request_id = request_id.as_str(),
                        code = e.kind.code(dialect),
                        cause = e.internal.as_deref().unwrap_or(""),
                        "stream failed after the first byte"
                    );
                    Some((Ok(error_event(&e, dialect, &request_id)), None))
                }
                None => Some((Ok(Bytes::from_static(b"data: [DONE]\n\n")), None)),
            }
        }
    });
    let mut res = Response::new(Body::from_stream(body));
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}
