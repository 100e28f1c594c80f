//! `/v1/workflows/{id}/executions` and `/v1/executions…`: start (202 + Location, or `?wait=true`),
//! read, list, cancel, and the SSE event log (resumable with `Last-Event-ID`).

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use sluice_engine::executions::TERMINAL;
use sluice_types::Scope;

use crate::error::{HttpError, HttpResult};
use crate::extract::{Auth, Json, Query};
use crate::AppState;

#[derive(Deserialize)]
pub struct StartParams {
    wait: Option<String>,
}

pub async fn start(
    State(engine): State<AppState>,
    Auth(who): Auth,
    Path(workflow_id): Path<String>,
    Query(q): Query<StartParams>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let wait = matches!(q.wait.as_deref(), Some("true") | Some("1"));
    let route = format!("POST /v1/workflows/{workflow_id}/executions");
    let (e, w, b) = (engine.clone(), who.clone(), body.clone());
    // One execution per key: the stored answer is the 202 (a waiting caller replays it and
    // then reads the execution).
    let res = crate::idempotency::idempotent(
        &engine,
        &who,
        sluice_types::Scope::ExecutionsWrite,
        &headers,
        &route,
        &body,
        || async move {
            match e.start_execution(&w, &workflow_id, &b).await {
                Ok(x) => match e.execution_view(&x).await {
                    Ok(v) => {
                        let mut r = (StatusCode::ACCEPTED, axum::Json(v)).into_response();
                        if let Ok(l) = HeaderValue::from_str(&format!("/v1/executions/{}", x.id)) {
                            r.headers_mut().insert(LOCATION, l);
                        }
                        r
                    }
                    Err(err) => HttpError(err).into_response(),
                },
                Err(err) => HttpError(err).into_response(),
            }
        },
    )
    .await;
    if !wait || res.status() != StatusCode::ACCEPTED {
        return res;
    }
    let (parts, body) = res.into_parts();
    let id = parts
        .headers
        .get(LOCATION)
        .and_then(|l| l.to_str().ok())
        .and_then(|l| l.rsplit('/').next())
        .map(str::to_owned);
    drop(body);
    let Some(id) = id else {
        return HttpError(sluice_types::ApiError::internal(
            "execution without a location",
        ))
        .into_response();
    };
    match engine.wait_execution(&who, &id).await {
        Ok(v) => {
            let mut r = axum::Json(v).into_response();
            if let Some(l) = parts.headers.get(LOCATION) {
                r.headers_mut().insert(LOCATION, l.clone());
            }
            r
        }
        Err(e) => HttpError(e).into_response(),
    }
}

#[derive(Deserialize)]
pub struct ListParams {
    workflow_id: Option<String>,
    status: Option<String>,
    limit: Option<String>,
    after: Option<String>,
}

pub async fn list(
    State(engine): State<AppState>,
    Auth(who): Auth,
    Query(q): Query<ListParams>,
) -> HttpResult<axum::Json<Value>> {
    let v = engine
        .list_executions(
            &who,
            q.workflow_id.as_deref(),
            q.status.as_deref(),
            q.limit.as_deref(),
            q.after.as_deref(),
        )
        .await?;
    Ok(axum::Json(v))
}

pub async fn get(
    State(engine): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> HttpResult<axum::Json<Value>> {
    Ok(axum::Json(engine.get_execution(&who, &id).await?))
}

pub async fn cancel(
    State(engine): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> HttpResult<axum::Json<Value>> {
    Ok(axum::Json(engine.cancel_execution(&who, &id).await?))
}

/// The event log as SSE: `id:` is the event number, so a client reconnects with `Last-Event-ID`
/// and gets only what it missed. The stream ends after `execution_finished`.
pub async fn events(
    State(engine): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> HttpResult<Response> {
    who.require(Scope::ExecutionsRead)?;
    let x = engine.execution(&who, &id).await?;
    let after: i64 = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let state = (engine, x.id, x.account_id, after, false);
    let stream =
        futures_util::stream::unfold(state, |(engine, id, account, mut after, done)| async move {
            if done {
                return None;
            }
            loop {
                let events = engine
                    .store
                    .events_after(&id, after)
                    .await
                    .unwrap_or_default();
                if !events.is_empty() {
                    let mut out = String::new();
                    let mut finished = false;
                    for ev in events {
                        after = ev.n;
                        finished |= ev.kind == "execution_finished";
                        out.push_str(&format!(
                            "id: {}\nevent: {}\ndata: {}\n\n",
                            ev.n, ev.kind, ev.data
                        ));
                    }
                    return Some((
                        Ok::<_, Infallible>(Bytes::from(out)),
                        (engine, id, account, after, finished),
                    ));
                }
                // Nothing new: stop if the execution ended (its last event was sent), else wait.
                let status = engine
                    .store
                    .get_execution(&account, &id)
                    .await
                    .ok()
                    .flatten()
                    .map(|x| x.status);
                let ended = status.is_none_or(|s| TERMINAL.contains(&s.as_str()));
                if ended
                    && engine
                        .store
                        .events_after(&id, after)
                        .await
                        .map(|e| e.is_empty())
                        .unwrap_or(true)
                {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    let mut res = Response::new(Body::from_stream(stream));
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    res.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(res)
}
