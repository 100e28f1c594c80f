//! Sending a response the way a real provider does: after a delay, as SSE events (optionally
//! dripped, slowed, corrupted or cut), while counting completions and cancellations.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::{Behavior, MockState};

/// Counts a request as in flight until dropped; a request dropped before `finish` was cancelled.
pub(crate) struct Guard {
    state: Arc<MockState>,
    done: bool,
}

impl Guard {
    pub(crate) fn new(state: &Arc<MockState>) -> Guard {
        state.counters.in_flight.fetch_add(1, Ordering::SeqCst);
        Guard {
            state: state.clone(),
            done: false,
        }
    }

    pub(crate) fn finish(mut self) {
        self.done = true;
        self.state.counters.completed.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.state.counters.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !self.done {
            self.state.counters.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A provider-style JSON error answer.
pub(crate) fn error_response(guard: Guard, b: &Behavior, anthropic: bool) -> Response {
    let code = b.status.unwrap_or(500);
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = format!("mock provider error {code}");
    let body = if anthropic {
        serde_json::json!({"type": "error", "error": {"type": "api_error", "message": message}})
    } else {
        serde_json::json!({"error": {"message": message, "type": "server_error", "code": code.to_string()}})
    };
    let mut res = (status, axum::Json(body)).into_response();
    if let Some(s) = b
        .retry_after
        .and_then(|s| HeaderValue::from_str(&s.to_string()).ok())
    {
        res.headers_mut().insert("retry-after", s);
    }
    guard.finish();
    res
}

/// A JSON answer, or garbage / a cut body when the behaviour says so.
pub(crate) fn json_response(guard: Guard, b: &Behavior, body: &Value) -> Response {
    if b.malformed {
        guard.finish();
        return (
            StatusCode::OK,
            [("content-type", "application/json")],
            "{\"id\": \"x\", \"choices\": [tru",
        )
            .into_response();
    }
    if b.reset_after_chunks.is_some() {
        // Declares a length, sends half, then fails the body: the client sees a broken response.
        let text = body.to_string();
        let half = Bytes::from(text.as_bytes()[..text.len() / 2].to_vec());
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
        tokio::spawn(async move {
            let _ = tx.send(Ok(half)).await;
            let _ = tx.send(Err(std::io::Error::other("mock reset"))).await;
            guard.finish();
        });
        return sse_like_body(rx, "application/json");
    }
    guard.finish();
    (StatusCode::OK, axum::Json(body.clone())).into_response()
}

fn sse_like_body(
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    content_type: &'static str,
) -> Response {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut res = Response::new(Body::from_stream(stream));
    res.headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    res
}

/// Streams `events` (each a complete SSE event, `data: …\n\n` or with `event:`) per the behaviour.
pub(crate) fn sse_response(guard: Guard, b: &Behavior, events: Vec<String>) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let b = b.clone();
    tokio::spawn(async move {
        for (i, event) in events.into_iter().enumerate() {
            if b.reset_after_chunks.is_some_and(|n| i as u64 >= n) {
                // Let what was sent reach the wire first, as it would before a real reset.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = tx.send(Err(std::io::Error::other("mock reset"))).await;
                // The connection is cut on purpose: the request ended, it was not cancelled.
                guard.finish();
                return;
            }
            if i > 0 && b.chunk_delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(b.chunk_delay_ms)).await;
            }
            let event = if b.malformed && i > 0 {
                "data: {\"choices\": [{\"delta\": {\"content\": \"x\"\n\n".to_owned()
            } else {
                event
            };
            if b.drip {
                for byte in event.into_bytes() {
                    if tx.send(Ok(Bytes::from(vec![byte]))).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            } else if tx.send(Ok(Bytes::from(event))).await.is_err() {
                return;
            }
        }
        drop(tx);
        guard.finish();
    });
    let mut res = sse_like_body(rx, "text/event-stream");
    res.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    res
}
