//! Rate-limit headers, and the flows API's per-account request limit applied to every flows route.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sluice_types::ratelimit::RateLimitStatus;
use sluice_types::Dialect;

use crate::envelope::dialect_for;
use crate::error::HttpError;
use crate::extract::presented_key;
use crate::AppState;

fn set(h: &mut HeaderMap, name: &'static str, v: String) {
    if let Ok(v) = HeaderValue::from_str(&v) {
        h.insert(name, v);
    }
}

/// `X-RateLimit-*` for the tightest (or refusing) dimension, the IETF `RateLimit-Policy` and
/// `RateLimit` fields for all of them, and on a 429 `X-Arena-Rate-Limit-Dimension`.
pub fn write_headers(h: &mut HeaderMap, st: &RateLimitStatus) {
    let Some(t) = st.tightest() else {
        return;
    };
    set(h, "x-ratelimit-limit", t.limit.to_string());
    set(h, "x-ratelimit-remaining", t.remaining.to_string());
    set(h, "x-ratelimit-reset", t.reset_seconds.to_string());
    if let Some(r) = &st.refused {
        set(h, "x-arena-rate-limit-dimension", r.name.to_owned());
    }
    let policies: Vec<String> = st
        .dimensions
        .iter()
        .map(|d| {
            format!(
                "\"{}\";q={};w={}",
                d.policy_name(),
                d.limit,
                d.window_seconds
            )
        })
        .collect();
    set(h, "ratelimit-policy", policies.join(", "));
    set(
        h,
        "ratelimit",
        format!(
            "\"{}\";r={};t={}",
            t.policy_name(),
            t.remaining,
            t.reset_seconds
        ),
    );
}

/// Every flows request is authenticated here and counted against the account's flows limit;
/// the principal is handed to the handler's `Auth` extractor so the key is looked up once.
pub async fn flows_gate(State(engine): State<AppState>, mut req: Request, next: Next) -> Response {
    if dialect_for(req.uri().path()) != Dialect::Flows {
        return next.run(req).await;
    }
    let presented = match presented_key(req.headers()) {
        Ok(p) => p,
        Err(e) => return HttpError(e).into_response(),
    };
    let who = match engine.authenticate(presented).await {
        Ok(w) => w,
        Err(e) => return HttpError(e).into_response(),
    };
    let st = match engine.admit_flows(&who).await {
        Ok(st) => st,
        Err(e) => return HttpError(e).into_response(),
    };
    req.extensions_mut().insert(who);
    let mut res = next.run(req).await;
    res.extensions_mut().insert(st);
    res
}
