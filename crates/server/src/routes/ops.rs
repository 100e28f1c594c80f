//! Liveness and readiness probes.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use sluice_engine::store_error;

use crate::error::HttpResult;
use crate::AppState;

/// The process is up and serving HTTP.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The store answers; a load balancer should send traffic here.
pub async fn readyz(State(engine): State<AppState>) -> HttpResult<Json<Value>> {
    engine.store.ping().await.map_err(store_error)?;
    Ok(Json(
        json!({"status": "ready", "store": engine.store.backend()}),
    ))
}
