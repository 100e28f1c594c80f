//! `/v1/keys`: issue (secret shown once), list, read and revoke API keys.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use sluice_engine::keys::{KeyRequest, KeyView};
use sluice_engine::list::List;

use crate::error::HttpResult;
use crate::extract::{Auth, Json, Query};
use crate::AppState;

#[derive(Deserialize)]
pub struct ListParams {
    limit: Option<String>,
    after: Option<String>,
    account_id: Option<String>,
}

pub async fn create(
    State(engine): State<AppState>,
    Auth(by): Auth,
    Json(body): Json<KeyRequest>,
) -> HttpResult<(StatusCode, axum::Json<KeyView>)> {
    let key = engine.create_key(&by, body).await?;
    Ok((StatusCode::CREATED, axum::Json(key)))
}

pub async fn list(
    State(engine): State<AppState>,
    Auth(by): Auth,
    Query(q): Query<ListParams>,
) -> HttpResult<axum::Json<List<KeyView>>> {
    let list = engine
        .list_keys(
            &by,
            q.account_id.as_deref(),
            q.limit.as_deref(),
            q.after.as_deref(),
        )
        .await?;
    Ok(axum::Json(list))
}

pub async fn get(
    State(engine): State<AppState>,
    Auth(by): Auth,
    Path(id): Path<String>,
) -> HttpResult<axum::Json<KeyView>> {
    Ok(axum::Json(engine.get_key(&by, &id).await?))
}

pub async fn revoke(
    State(engine): State<AppState>,
    Auth(by): Auth,
    Path(id): Path<String>,
) -> HttpResult<axum::Json<KeyView>> {
    Ok(axum::Json(engine.revoke_key(&by, &id).await?))
}
