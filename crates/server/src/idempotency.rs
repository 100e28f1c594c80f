//! `Idempotency-Key` on creates (CONTRACT §7): the first result is stored for 24 h and replayed
//! with `Idempotent-Replayed: true`; the same key with another body is 422; while the first is
//! still running, 409 with `Retry-After`. Keys are per account and per route.

use std::future::Future;

use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use sluice_engine::Engine;
use sluice_store::IdemState;
use sluice_types::{ApiError, ErrorKind, Principal, Scope};

use crate::error::HttpError;

const TTL_SECONDS: i64 = 24 * 3600;
/// A stored response is at most this big (creates answer with one object).
const MAX_STORED: usize = 1024 * 1024;

fn bad_key(message: &str) -> Response {
    HttpError(ApiError::new(ErrorKind::MalformedRequest, message).with_param("Idempotency-Key"))
        .into_response()
}

/// Runs `create` at most once per (account, route, key).
pub async fn idempotent<F, Fut>(
    engine: &Engine,
    who: &Principal,
    scope: Scope,
    headers: &HeaderMap,
    route: &str,
    body: &Value,
    create: F,
) -> Response
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Response>,
{
    // A replay hands out the stored object: only to a caller who could have created it.
    if let Err(e) = who.require(scope) {
        return HttpError(e).into_response();
    }
    let Some(key) = headers.get("idempotency-key") else {
        return create().await;
    };
    let Ok(key) = key.to_str() else {
        return bad_key("Idempotency-Key must be printable ASCII.");
    };
    if key.is_empty() || key.len() > 255 {
        return bad_key("Idempotency-Key must be 1 to 255 characters.");
    }
    // serde_json's maps are ordered, so equal JSON bodies hash equally whatever their spacing.
    let canonical = serde_json::to_vec(body).unwrap_or_default();
    let hash = sluice_engine::auth::to_hex(&sluice_engine::auth::sha256(&canonical));
    let store = &engine.store;
    let state = match store
        .idem_begin(
            &who.account_id,
            route,
            key,
            &hash,
            sluice_types::now_unix(),
            TTL_SECONDS,
        )
        .await
    {
        Ok(s) => s,
        Err(e) => return HttpError(sluice_engine::store_error(e)).into_response(),
    };
    let mismatch = || {
        HttpError(
            ApiError::new(
                ErrorKind::IdempotencyMismatch,
                "This Idempotency-Key was used with a different request body. Use a new key for a new request.",
            )
            .with_param("Idempotency-Key"),
        )
        .into_response()
    };
    match state {
        IdemState::InFlight { request_hash } if request_hash != hash => mismatch(),
        IdemState::Done { request_hash, .. } if request_hash != hash => mismatch(),
        IdemState::InFlight { .. } => HttpError(
            ApiError::new(
                ErrorKind::IdempotencyInFlight,
                "A request with this Idempotency-Key is still being processed. Retry shortly.",
            )
            .with_param("Idempotency-Key")
            .with_detail("field", "Idempotency-Key")
            .with_retry_after(1),
        )
        .into_response(),
        IdemState::Done {
            status, response, ..
        } => {
            let mut res = Response::new(Body::from(response));
            *res.status_mut() = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
            let h = res.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            h.insert("idempotent-replayed", HeaderValue::from_static("true"));
            res
        }
        IdemState::Started => {
            let res = create().await;
            let status = res.status();
            if !status.is_success() {
                // Only successes are kept: a failed create may be retried with the same key.
                let _ = store.idem_abandon(&who.account_id, route, key).await;
                return res;
            }
            let (parts, body) = res.into_parts();
            let bytes = match axum::body::to_bytes(body, MAX_STORED).await {
                Ok(b) => b,
                Err(e) => {
                    let _ = store.idem_abandon(&who.account_id, route, key).await;
                    return HttpError(ApiError::internal(format!("idempotent response: {e}")))
                        .into_response();
                }
            };
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if let Err(e) = store
                .idem_finish(
                    &who.account_id,
                    route,
                    key,
                    i64::from(status.as_u16()),
                    &text,
                )
                .await
            {
                tracing::warn!(error = %e, "idempotency result not stored");
            }
            Response::from_parts(parts, Body::from(bytes))
        }
    }
}
