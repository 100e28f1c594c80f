//! The OpenAI wire format: requests pass through untouched but for the model name; responses and
//! stream chunks come back with our model id, and the stream always carries usage upstream-side.

use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use serde_json::{Map, Value};
use sluice_types::ApiError;

use crate::catalog::Model;
use crate::sse;
use crate::upstream::provider_error;
use crate::{ChunkStream, Usage, UsageCell};

/// Request fields that belong to Sluice (routing) and are never sent upstream.
pub const SLUICE_FIELDS: &[&str] = &["fallbacks", "allow_fallbacks", "fallback_on"];

/// The upstream body: the client's, with the upstream model name, our own fields removed and,
/// for streams, usage requested so metering never depends on the client asking for it.
pub fn prepare(body: &Map<String, Value>, model: &Model, stream: bool) -> Value {
    let mut b = body.clone();
    b.insert("model".to_owned(), Value::String(model.upstream.clone()));
    for k in SLUICE_FIELDS {
        b.remove(*k);
    }
    // A fallback may have a smaller output limit than the model the request was admitted for.
    crate::chat::clamp_max_tokens(&mut b, u64::from(model.max_output_tokens));
    if stream {
        let opts = b
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(o) = opts {
            o.insert("include_usage".to_owned(), Value::Bool(true));
        }
    }
    Value::Object(b)
}

/// Checks a JSON answer has the shape of its kind (`choices` or `data`) and names our model.
pub fn finish_json(mut v: Value, model: &Model, expect: &str) -> Result<Value, ApiError> {
    if !v[expect].is_array() {
        return Err(provider_error(
            model,
            format!("the provider's answer has no `{expect}`"),
        ));
    }
    v["model"] = Value::String(model.id.clone());
    Ok(v)
}

struct State<S> {
    events: S,
    usage: Arc<UsageCell>,
    model: Arc<Model>,
    client_wants_usage: bool,
    saw_finish: bool,
    done: bool,
}

/// Chat completion chunks from an OpenAI-compatible SSE stream.
pub fn chunk_stream<S>(
    events: S,
    model: Arc<Model>,
    client_wants_usage: bool,
    usage: Arc<UsageCell>,
) -> ChunkStream
where
    S: Stream<Item = Result<sse::Event, ApiError>> + Send + Unpin + 'static,
{
    let st = State {
        events,
        usage,
        model,
        client_wants_usage,
        saw_finish: false,
        done: false,
    };
    Box::pin(futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            let ev = match st.events.next().await {
                None => {
                    st.done = true;
                    if st.saw_finish {
                        return None;
                    }
                    let e = provider_error(
                        &st.model,
                        "the stream ended before the response was complete",
                    );
                    return Some((Err(e), st));
                }
                Some(Err(e)) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
                Some(Ok(ev)) => ev,
            };
            if ev.data == "[DONE]" {
                return None;
            }
            let mut v: Value = match serde_json::from_str(&ev.data) {
                Ok(v) => v,
                Err(_) => {
                    st.done = true;
                    let e = provider_error(&st.model, "the provider sent an invalid stream event");
                    return Some((Err(e), st));
                }
            };
            if let Some(msg) = v
                .get("error")
                .map(|e| e["message"].as_str().unwrap_or("error").to_owned())
            {
                st.done = true;
                return Some((Err(provider_error(&st.model, msg)), st));
            }
            if let Some(u) = Usage::from_openai(&v["usage"]) {
                st.usage.set(u);
            }
            let choices = v["choices"].as_array();
            if let Some(text) = choices
                .and_then(|c| c.first())
                .and_then(|c| c["delta"]["content"].as_str())
            {
                st.usage.add_generated(text);
            }
            if choices.is_some_and(|c| c.iter().any(|c| !c["finish_reason"].is_null())) {
                st.saw_finish = true;
            }
            let usage_only = choices.is_none_or(|c| c.is_empty()) && v["usage"].is_object();
            if usage_only && !st.client_wants_usage {
                continue;
            }
            if !usage_only && !v["usage"].is_null() && !st.client_wants_usage {
                // Some servers attach usage to the last content chunk; keep the chunk, drop usage.
                if let Some(o) = v.as_object_mut() {
                    o.remove("usage");
                }
            }
            v["model"] = Value::String(st.model.id.clone());
            return Some((Ok(v), st));
        }
    }))
}
