//! Streaming responses as Server-Sent Events: each chunk goes out as soon as the provider sent
//! it; an error after the first byte becomes one `event: error` frame, then the end.
//!
//! Three framings: OpenAI chat/completions (`data:` frames, `data: [DONE]`, the envelope in the
//! error frame), and the named-event streams of the Anthropic Messages and OpenAI Responses
//! APIs (`event: <type>` before each `data:`, no `[DONE]`, the error in each API's own shape).

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::response::Response;
use futures_util::StreamExt;
use serde_json::{json, Value};
use sluice_gateway::ChunkStream;
use sluice_types::{ApiError, Dialect};

use crate::error::render;

/// How a stream's frames are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `data: {chunk}` … `data: [DONE]`.
    OpenAi(Dialect),
    /// `event: {type}` + `data:`; errors as `{"type":"error","error":{…}}`.
    Anthropic,
    /// `event: {type}` + `data:`; errors as `{"type":"error","code",…,"error":{envelope}}`.
    Responses,
}

/// The SSE frame for an error: `event: error` + the envelope, as CONTRACT §2 says.
pub fn error_event(err: &ApiError, dialect: Dialect, request_id: &str) -> Bytes {
    frame_bytes("error", &render(err, dialect, request_id))
}

fn frame_bytes(event: &str, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + event.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

fn error_frame(err: &ApiError, framing: Framing, request_id: &str) -> Bytes {
    match framing {
        Framing::OpenAi(dialect) => error_event(err, dialect, request_id),
        Framing::Anthropic => {
            frame_bytes("error", &crate::error::render_anthropic(err, request_id))
        }
        Framing::Responses => {
            let envelope: Value =
                serde_json::from_slice(&render(err, Dialect::Gateway, request_id))
                    .unwrap_or(Value::Null);
            let body = json!({"type": "error", "code": err.kind.code(Dialect::Gateway),
                "message": err.message, "param": err.param, "error": envelope["error"]});
            frame_bytes("error", body.to_string().as_bytes())
        }
    }
}

fn chunk_frame(v: &Value, framing: Framing) -> Option<Bytes> {
    let mut frame = Vec::with_capacity(256);
    if !matches!(framing, Framing::OpenAi(_)) {
        frame.extend_from_slice(b"event: ");
        frame.extend_from_slice(v["type"].as_str().unwrap_or("message").as_bytes());
        frame.push(b'\n');
    }
    frame.extend_from_slice(b"data: ");
    serde_json::to_writer(&mut frame, v).ok()?;
    frame.extend_from_slice(b"\n\n");
    Some(Bytes::from(frame))
}

/// A `text/event-stream` response over `chunks`, in the OpenAI framing.
pub fn response(chunks: ChunkStream, dialect: Dialect, request_id: String) -> Response {
    framed(chunks, Framing::OpenAi(dialect), request_id)
}

/// A `text/event-stream` response over `chunks` in the given framing.
pub fn framed(chunks: ChunkStream, framing: Framing, request_id: String) -> Response {
    let body = futures_util::stream::unfold(Some(chunks), move |state| {
        let request_id = request_id.clone();
        async move {
            let mut chunks = state?;
            match chunks.next().await {
                Some(Ok(v)) => {
                    let frame = chunk_frame(&v, framing)?;
                    Some((Ok::<_, Infallible>(frame), Some(chunks)))
                }
                Some(Err(e)) => {
                    tracing::warn!(
                        request_id = request_id.as_str(),
                        code = e.kind.code(Dialect::Gateway),
                        cause = e.internal.as_deref().unwrap_or(""),
                        "stream failed after the first byte"
                    );
                    Some((Ok(error_frame(&e, framing, &request_id)), None))
                }
                None if matches!(framing, Framing::OpenAi(_)) => {
                    Some((Ok(Bytes::from_static(b"data: [DONE]\n\n")), None))
                }
                None => None,
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
