//! The Responses API with accounting: `previous_response_id` is resolved in the caller's
//! account, the request runs through `Engine::chat` (admission, limits, credits, routing), and
//! a response created with `store: true` (the API's default) is kept before the client sees it
//! complete, so a continuation sent right after always finds it — on any instance.

use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::{json, Value};
use sluice_gateway::ingress::{responses, responses_events, ResponseMeta};
use sluice_gateway::{ChatReply, ChunkStream};
use sluice_store::{ResponseRecord, Store};
use sluice_types::{ApiError, ErrorKind, Principal};

use crate::llm::{ChatResponse, Failed, RequestCtx};
use crate::{store_error, Engine};

/// What a stored response keeps besides its body: the conversation a continuation replays.
fn record(
    who: &Principal,
    meta: &ResponseMeta,
    body: &Value,
    conversation: &[Value],
) -> ResponseRecord {
    let mut convo = conversation.to_vec();
    convo.extend(responses::output_messages(&body["output"]));
    ResponseRecord {
        id: meta.id.clone(),
        account_id: who.account_id.clone(),
        body: body.to_string(),
        conversation: Value::Array(convo).to_string(),
        created_at: meta.created_at,
    }
}

/// Saves a finished response within the store deadline; a failure is logged (the answer was
/// generated and charged; only a later continuation of it will not be found).
async fn save(store: &dyn Store, deadline: std::time::Duration, rec: ResponseRecord) {
    match tokio::time::timeout(deadline, store.save_response(&rec)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(response_id = rec.id.as_str(), error = %e, "storing a response failed")
        }
        Err(_) => tracing::error!(
            response_id = rec.id.as_str(),
            "storing a response timed out"
        ),
    }
}

/// Response events that store the response when its final event passes.
fn storing(
    events: ChunkStream,
    store: Arc<dyn Store>,
    deadline: std::time::Duration,
    who: Principal,
    meta: ResponseMeta,
    conversation: Vec<Value>,
) -> ChunkStream {
    Box::pin(events.then(move |item| {
        let (store, who, meta, conversation) = (
            store.clone(),
            who.clone(),
            meta.clone(),
            conversation.clone(),
        );
        async move {
            if let Ok(ev) = &item {
                let kind = ev["type"].as_str().unwrap_or_default();
                if kind == "response.completed" || kind == "response.incomplete" {
                    let rec = record(&who, &meta, &ev["response"], &conversation);
                    save(&*store, deadline, rec).await;
                }
            }
            item
        }
    }))
}

impl Engine {
    async fn stored(&self, who: &Principal, id: &str) -> Result<ResponseRecord, ApiError> {
        let found = tokio::time::timeout(
            self.settings.store_deadline,
            self.store.get_response(&who.account_id, id),
        )
        .await
        .map_err(|_| {
            store_error(sluice_store::StoreError::Backend(
                "response lookup timed out".into(),
            ))
        })?
        .map_err(store_error)?;
        found.ok_or_else(|| responses::not_found(id))
    }

    /// `POST /v1/responses`: the reply is a Response object or its event stream.
    pub async fn responses(
        &self,
        who: &Principal,
        body: Value,
        ctx: RequestCtx,
    ) -> Result<ChatResponse, Failed> {
        let Value::Object(body) = body else {
            return Err(ApiError::new(
                ErrorKind::MalformedRequest,
                "The request body must be a JSON object.",
            )
            .into());
        };
        let history = match body.get("previous_response_id").and_then(Value::as_str) {
            Some(id) => {
                let rec = self.stored(who, id).await?;
                serde_json::from_str::<Vec<Value>>(&rec.conversation).map_err(|e| {
                    ApiError::internal(format!("stored conversation of {id} is unreadable: {e}"))
                })?
            }
            None => Vec::new(),
        };
        let prepared = responses::prepare(body, history)?;
        let (meta, conversation) = (prepared.meta, prepared.conversation);
        let mut res = self.chat(who, prepared.request, ctx).await?;
        let model = res.model.id.clone();
        res.reply = match res.reply {
            ChatReply::Json(v) => {
                let r = responses::from_chat(&v, &meta, &model);
                if meta.store {
                    let rec = record(who, &meta, &r, &conversation);
                    save(&*self.store, self.settings.store_deadline, rec).await;
                }
                ChatReply::Json(r)
            }
            ChatReply::Stream(chunks) => {
                let store = meta.store;
                let events = responses_events(chunks, meta.clone(), model, res.prompt_estimate);
                ChatReply::Stream(if store {
                    storing(
                        events,
                        self.store.clone(),
                        self.settings.store_deadline,
                        who.clone(),
                        meta,
                        conversation,
                    )
                } else {
                    events
                })
            }
        };
        Ok(res)
    }

    /// `GET /v1/responses/{id}`.
    pub async fn get_response(&self, who: &Principal, id: &str) -> Result<Value, ApiError> {
        let rec = self.stored(who, id).await.map_err(without_param)?;
        serde_json::from_str(&rec.body)
            .map_err(|e| ApiError::internal(format!("stored response {id} is unreadable: {e}")))
    }

    /// `DELETE /v1/responses/{id}`.
    pub async fn delete_response(&self, who: &Principal, id: &str) -> Result<Value, ApiError> {
        let deleted = tokio::time::timeout(
            self.settings.store_deadline,
            self.store.delete_response(&who.account_id, id),
        )
        .await
        .map_err(|_| {
            store_error(sluice_store::StoreError::Backend(
                "response delete timed out".into(),
            ))
        })?
        .map_err(store_error)?;
        if !deleted {
            return Err(without_param(responses::not_found(id)));
        }
        Ok(json!({"id": id, "object": "response.deleted", "deleted": true}))
    }
}

/// A 404 on a path, not on a body field.
fn without_param(mut e: ApiError) -> ApiError {
    e.param = None;
    e
}
