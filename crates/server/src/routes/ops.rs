//! Liveness and readiness probes.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use sluice_types::{ApiError, ErrorKind};

use crate::error::HttpResult;
use crate::AppState;

/// The process is up and serving HTTP.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// How long `/readyz` waits for the store before calling it down.
const STORE_PROBE: std::time::Duration = std::time::Duration::from_millis(750);

/// Each dependency, within a bounded time: 200 when the instance can serve, else 503 (in the
/// envelope, with the same report in `details.checks`). A Redis that is down makes the
/// instance not ready only when limits fail closed.
pub async fn readyz(State(engine): State<AppState>) -> HttpResult<Json<Value>> {
    let started = std::time::Instant::now();
    let store = match tokio::time::timeout(STORE_PROBE, engine.store.ping()).await {
        Ok(Ok(())) => json!({"status": "ok", "backend": engine.store.backend(),
                             "latency_ms": started.elapsed().as_millis() as u64}),
        Ok(Err(_)) => json!({"status": "down", "backend": engine.store.backend()}),
        Err(_) => json!({"status": "down", "backend": engine.store.backend(),
                         "reason": "no answer within 750 ms"}),
    };
    let limiter = match engine.limiter.health() {
        None => json!({"status": "ok", "backend": "memory"}),
        Some(true) => json!({"status": "ok", "backend": "redis"}),
        Some(false) => json!({"status": "down", "backend": "redis",
                              "policy": engine.limiter_policy().map(|p| p.as_str())}),
    };
    let fail_closed =
        engine.limiter_policy() == Some(sluice_engine::limiter_policy::OnError::FailClosed);
    let ready = store["status"] == "ok" && (limiter["status"] == "ok" || !fail_closed);
    // Providers inform, never decide: an open circuit is routed around, not a reason to stop.
    let health = &engine.gateway.health;
    let open = health.open_circuits();
    let providers = json!({"status": if open.is_empty() { "ok" } else { "degraded" },
                           "models": health.watched(), "open_circuits": open});
    let checks = json!({"store": store, "rate_limiter": limiter, "providers": providers});
    if !ready {
        return Err(ApiError::new(
            ErrorKind::ServiceUnavailable,
            "This instance cannot serve right now; see details.checks.",
        )
        .with_detail("checks", checks)
        .with_retry_after(1)
        .into());
    }
    Ok(Json(json!({"status": "ready", "checks": checks})))
}
