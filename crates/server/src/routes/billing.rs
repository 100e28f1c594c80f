//! `/v1/accounts/{id}/credits`, `/v1/credits`, `/v1/usage`.

use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::Value;
use sluice_engine::billing::{CreditsView, TopUpRequest, UsageQuery};

use crate::error::HttpResult;
use crate::extract::{Auth, Json, Query};
use crate::AppState;

#[derive(Deserialize)]
pub struct AccountParam {
    account_id: Option<String>,
}

pub async fn top_up(
    State(engine): State<AppState>,
    Auth(by): Auth,
    Path(id): Path<String>,
    Json(body): Json<TopUpRequest>,
) -> HttpResult<axum::Json<CreditsView>> {
    Ok(axum::Json(engine.top_up(&by, &id, body).await?))
}

pub async fn credits(
    State(engine): State<AppState>,
    Auth(by): Auth,
    Query(q): Query<AccountParam>,
) -> HttpResult<axum::Json<CreditsView>> {
    Ok(axum::Json(
        engine.credits(&by, q.account_id.as_deref()).await?,
    ))
}

pub async fn usage(
    State(engine): State<AppState>,
    Auth(by): Auth,
    Query(q): Query<UsageQuery>,
) -> HttpResult<axum::Json<Value>> {
    Ok(axum::Json(engine.usage_report(&by, q).await?))
}
