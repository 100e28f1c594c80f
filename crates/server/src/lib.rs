//! Sluice's HTTP layer: routes, extractors, and the middleware that turns every `ApiError`
//! (and every response the framework makes on its own) into the contract's envelope.
//!
//! Handlers are thin: extract, call the engine, map the result. No domain rules live here.

pub mod conn;
pub mod envelope;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod limits;
pub mod ratelimit;
pub mod routes;
pub mod serve;
pub mod sse;

use std::sync::Arc;

use axum::Router;
use sluice_engine::Engine;

/// What every handler can reach.
pub type AppState = Arc<Engine>;

/// The complete application: routes plus the contract's middleware.
///
/// `extra` lets tests mount routes (e.g. one that panics) under the same middleware.
pub fn app(engine: Arc<Engine>, extra: Option<Router<AppState>>) -> Router {
    let mut routes = routes::router();
    if let Some(extra) = extra {
        routes = routes.merge(extra);
    }
    let inner = routes
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            error::panic_response,
        ))
        .layer(axum::middleware::from_fn(limits::refuse_oversized))
        .with_state(engine.clone());
    // The flows gate wraps the whole router too, so every flows path is counted, routed or not.
    let inner = Router::new()
        .fallback_service(inner)
        .layer(axum::middleware::from_fn_with_state(
            engine,
            ratelimit::flows_gate,
        ));
    // The contract middleware wraps the whole router as one service (not each route, which is
    // what `Router::layer` does), so it sees responses after axum has finished them — e.g. the
    // `Allow` header of a 405 is only added around the per-route layers.
    Router::new()
        .fallback_service(inner)
        .layer(axum::middleware::from_fn(envelope::contract))
}
