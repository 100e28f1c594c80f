//! Anthropic Messages requests sent as they came to Anthropic-format providers (only `model`
//! and a clamped `max_tokens` rewritten, the client's `anthropic-beta` passed on), and their
//! answers and SSE events passed back untranslated while usage is read off them.

use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use serde_json::{Map, Value};
use sluice_types::ApiError;

use crate::anthropic::input_tokens;
use crate::catalog::Model;
use crate::chat::Admitted;
use crate::upstream::{self, provider_error};
use crate::{sse, ChatReply, ChunkStream, Usage, UsageCell};

/// The upstream body: the client's own, for the model that was picked.
pub fn prepare(body: &Map<String, Value>, model: &Model, stream: bool) -> Value {
    let mut b = body.clone();
    b.insert("model".to_owned(), Value::String(model.upstream.clone()));
    for k in crate::openai::SLUICE_FIELDS {
        b.remove(*k);
    }
    let max = u64::from(model.max_output_tokens);
    if b.get("max_tokens")
        .and_then(Value::as_u64)
        .is_none_or(|n| n > max)
    {
        b.insert("max_tokens".to_owned(), Value::from(max));
    }
    if stream {
        b.insert("stream".to_owned(), Value::Bool(true));
    } else {
        b.remove("stream");
    }
    Value::Object(b)
}

/// Calls an Anthropic-format provider with the client's Messages body.
pub async fn dispatch(
    client: &reqwest::Client,
    model: &Arc<Model>,
    a: &Admitted,
    usage: Arc<UsageCell>,
) -> Result<ChatReply, ApiError> {
    let Some(native) = &a.native else {
        return Err(ApiError::internal("native dispatch without a native body"));
    };
    let body = prepare(&native.body, model, a.stream);
    let beta = native.beta.as_deref();
    let res = upstream::post_beta(client, model, "/messages", &body, beta).await?;
    if a.stream {
        let events = Box::pin(upstream::events(res, model.clone()));
        return Ok(ChatReply::Stream(passthrough(events, model.clone(), usage)));
    }
    let mut v = upstream::read_json(model, res).await?;
    if !v["content"].is_array() {
        return Err(provider_error(
            model,
            "the provider's answer has no `content`",
        ));
    }
    v["model"] = Value::String(model.id.clone());
    usage.set(Usage {
        prompt_tokens: input_tokens(&v["usage"]),
        completion_tokens: v["usage"]["output_tokens"].as_u64().unwrap_or(0),
    });
    Ok(ChatReply::Json(v))
}

struct State<S> {
    events: S,
    model: Arc<Model>,
    usage: Arc<UsageCell>,
    prompt_tokens: u64,
    completion_tokens: u64,
    done: bool,
}

impl<S> State<S> {
    /// Reads usage and generated text off one event; rewrites the model name.
    fn observe(&mut self, v: &mut Value) -> Result<(), ApiError> {
        match v["type"].as_str().unwrap_or_default() {
            "message_start" => {
                self.prompt_tokens = input_tokens(&v["message"]["usage"]);
                self.completion_tokens =
                    v["message"]["usage"]["output_tokens"].as_u64().unwrap_or(0);
                v["message"]["model"] = Value::String(self.model.id.clone());
            }
            "content_block_delta" => {
                let d = &v["delta"];
                for field in ["text", "partial_json", "thinking"] {
                    if let Some(t) = d[field].as_str() {
                        self.usage.add_generated(t);
                    }
                }
            }
            "message_delta" => {
                let u = &v["usage"];
                if let Some(n) = u["output_tokens"].as_u64() {
                    self.completion_tokens = n;
                }
                // Newer API versions repeat the input counts here; they are final.
                if u["input_tokens"].is_u64() {
                    self.prompt_tokens = input_tokens(u);
                }
            }
            "message_stop" => {
                self.usage.set(Usage {
                    prompt_tokens: self.prompt_tokens,
                    completion_tokens: self.completion_tokens,
                });
                self.done = true;
            }
            "error" => {
                let msg = v["error"]["message"].as_str().unwrap_or("stream error");
                return Err(provider_error(&self.model, msg.to_owned()));
            }
            _ => {}
        }
        Ok(())
    }
}

/// The provider's Messages events as JSON values (each names its event in `type`).
pub fn passthrough<S>(events: S, model: Arc<Model>, usage: Arc<UsageCell>) -> ChunkStream
where
    S: Stream<Item = Result<sse::Event, ApiError>> + Send + Unpin + 'static,
{
    let st = State {
        events,
        model,
        usage,
        prompt_tokens: 0,
        completion_tokens: 0,
        done: false,
    };
    Box::pin(futures_util::stream::unfold(
        (st, false),
        |(mut st, ended)| async move {
            if ended || st.done {
                return None;
            }
            match st.events.next().await {
                None => {
                    let e = provider_error(
                        &st.model,
                        "the stream ended before the response was complete",
                    );
                    Some((Err(e), (st, true)))
                }
                Some(Err(e)) => Some((Err(e), (st, true))),
                Some(Ok(ev)) => {
                    let parsed = serde_json::from_str::<Value>(&ev.data);
                    let mut v = match parsed {
                        Ok(v) if v.is_object() => v,
                        _ => {
                            let e = provider_error(
                                &st.model,
                                "the provider sent an invalid stream event",
                            );
                            return Some((Err(e), (st, true)));
                        }
                    };
                    if v["type"].is_null() && !ev.event.is_empty() {
                        v["type"] = Value::String(ev.event.clone());
                    }
                    match st.observe(&mut v) {
                        Ok(()) => Some((Ok(v), (st, false))),
                        Err(e) => Some((Err(e), (st, true))),
                    }
                }
            }
        },
    ))
}
