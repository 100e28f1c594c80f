//! `/v1/accounts`: admins create and list accounts; owners may read their own.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use sluice_engine::accounts::{AccountRequest, AccountView};
use sluice_engine::list::List;

use crate::error::HttpResult;
use crate::extract::{Auth, Json, Query};
use crate::AppState;

#[derive(Deserialize)]
pub struct ListParams {
    limit: Option<String>,
    after: Option<String>,
}

pub async fn create(
    State(engine): State<AppState>,
    Auth(by): Auth,
    Json(body): Json<AccountRequest>,
) -> HttpResult<(StatusCode, axum::Json<AccountView>)> {
    let account = engine.create_account(&by, body).await?;
    Ok((StatusCode::CREATED, axum::Json(account)))
}

pub async fn list(
    State(engine): State<AppState>,
    Auth(by): Auth,
    Query(q): Query<ListParams>,
) -> HttpResult<axum::Json<List<AccountView>>> {
    let list = engine
        .list_accounts(&by, q.limit.as_deref(), q.after.as_deref())
        .await?;
    Ok(axum::Json(list))
}

pub async fn get(
    State(engine): State<AppState>,
    Auth(by): Auth,
    Path(id): Path<String>,
) -> HttpResult<axum::Json<AccountView>> {
    Ok(axum::Json(engine.get_account(&by, &id).await?))
}

pub async fn update(
    State(engine): State<AppState>,
    Auth(by): Auth,
    Path(id): Path<String>,
    Json(body): Json<AccountRequest>,
) -> HttpResult<axum::Json<AccountView>> {
    Ok(axum::Json(engine.update_account(&by, &id, body).await?))
}
