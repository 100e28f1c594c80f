//! The route table. Each submodule owns one resource's handlers.

mod accounts;
mod agents;
mod billing;
mod executions;
pub(crate) mod gateway;
mod ingress;
mod keys;
mod ops;
mod workflows;

use axum::http::{Method, Uri};
use axum::routing::{get, post};
use axum::Router;
use sluice_types::ApiError;

use crate::error::HttpError;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/v1/models", get(gateway::models))
        .route("/v1/models/{*id}", get(gateway::model))
        .route("/v1/chat/completions", post(gateway::chat))
        .route("/v1/embeddings", post(gateway::embeddings))
        .route("/v1/completions", post(ingress::completions))
        .route("/v1/messages", post(ingress::messages))
        .route("/v1/messages/count_tokens", post(ingress::count_tokens))
        .route("/v1/responses", post(ingress::responses))
        .route(
            "/v1/responses/{id}",
            get(ingress::get_response).delete(ingress::delete_response),
        )
        .route("/v1/agents", get(agents::list).post(agents::create))
        .route(
            "/v1/agents/{id}",
            get(agents::get)
                .patch(agents::update)
                .delete(agents::delete),
        )
        .route("/v1/agents/{id}/runs", post(agents::run))
        .route(
            "/v1/workflows",
            get(workflows::list).post(workflows::create),
        )
        .route(
            "/v1/workflows/{id}",
            get(workflows::get)
                .patch(workflows::update)
                .delete(workflows::delete),
        )
        .route("/v1/workflows/{id}/executions", post(executions::start))
        .route("/v1/executions", get(executions::list))
        .route("/v1/executions/{id}", get(executions::get))
        .route("/v1/executions/{id}/cancel", post(executions::cancel))
        .route("/v1/executions/{id}/events", get(executions::events))
        .route("/v1/accounts", get(accounts::list).post(accounts::create))
        .route(
            "/v1/accounts/{id}",
            get(accounts::get).patch(accounts::update),
        )
        .route("/v1/accounts/{id}/credits", post(billing::top_up))
        .route("/v1/credits", get(billing::credits))
        .route("/v1/usage", get(billing::usage))
        .route("/v1/keys", get(keys::list).post(keys::create))
        .route("/v1/keys/{id}", get(keys::get).delete(keys::revoke))
        .fallback(unknown_route)
}

async fn unknown_route(method: Method, uri: Uri) -> HttpError {
    let path = uri.path();
    HttpError(
        ApiError::new(
            sluice_types::ErrorKind::NotFound,
            format!("No route for {method} {path}."),
        )
        .with_detail("resource_type", "route")
        .with_detail("resource_id", path),
    )
}
