//! Chat completion chunks → Responses API SSE events, numbered by `sequence_number`:
//! `response.created`, `response.in_progress`, per output item `response.output_item.added`,
//! its deltas (`response.output_text.delta`, `response.function_call_arguments.delta`,
//! `response.reasoning_text.delta`) and `….done` events, then `response.completed` (or
//! `response.incomplete`) with the whole Response. An upstream error becomes `response.failed`,
//! then passes through as the stream's last item.

use std::collections::VecDeque;

use futures_util::StreamExt;
use serde_json::{json, Value};
use sluice_types::{ApiError, Dialect};

use super::responses::{
    call_item, message_item, reasoning_item, response, status_for, usage, ResponseMeta,
};
use super::{cached_tokens, reasoning_of};
use crate::catalog::Tokenizer;
use crate::{tokens, ChunkStream};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Reasoning,
    Text,
    Call(u64),
}

/// One output item being built.
struct Item {
    kind: Kind,
    value: Value,
    /// The text, arguments or reasoning so far.
    acc: String,
}

struct State {
    chunks: ChunkStream,
    meta: ResponseMeta,
    model: String,
    prompt_estimate: u64,
    seq: u64,
    started: bool,
    items: Vec<Item>,
    open: Option<usize>,
    finish: Option<String>,
    usage: Option<(u64, u64, u64)>,
    out: VecDeque<Value>,
    finished: bool,
}

impl State {
    fn emit(&mut self, mut ev: Value) {
        ev["sequence_number"] = json!(self.seq);
        self.seq += 1;
        self.out.push_back(ev);
    }

    fn snapshot(&self, status: &str, usage: Value, incomplete: Value) -> Value {
        let output = self.items.iter().map(|i| i.value.clone()).collect();
        response(&self.meta, &self.model, status, output, usage, incomplete)
    }

    fn start(&mut self) {
        self.started = true;
        let r = self.snapshot("in_progress", Value::Null, Value::Null);
        self.emit(json!({"type": "response.created", "response": r}));
        let r = self.snapshot("in_progress", Value::Null, Value::Null);
        self.emit(json!({"type": "response.in_progress", "response": r}));
    }

    /// Closes the open item: its `….done` events with the final value.
    fn close(&mut self) {
        let Some(idx) = self.open.take() else { return };
        let (kind, acc, id) = {
            let it = &mut self.items[idx];
            let acc = it.acc.clone();
            match it.kind {
                Kind::Text => it.value["content"][0]["text"] = json!(acc),
                Kind::Call(_) => it.value["arguments"] = json!(acc),
                Kind::Reasoning => it.value["content"][0]["text"] = json!(acc),
            }
            if it.kind != Kind::Reasoning {
                it.value["status"] = json!("completed");
            }
            (it.kind, acc, it.value["id"].clone())
        };
        match kind {
            Kind::Text => {
                let part = self.items[idx].value["content"][0].clone();
                self.emit(
                    json!({"type": "response.output_text.done", "item_id": id, "output_index": idx,
                    "content_index": 0, "text": acc, "logprobs": []}),
                );
                self.emit(
                    json!({"type": "response.content_part.done", "item_id": id, "output_index": idx,
                    "content_index": 0, "part": part}),
                );
            }
            Kind::Call(_) => {
                let name = self.items[idx].value["name"].clone();
                self.emit(
                    json!({"type": "response.function_call_arguments.done", "item_id": id,
                    "output_index": idx, "name": name, "arguments": acc}),
                );
            }
            Kind::Reasoning => {
                self.emit(
                    json!({"type": "response.reasoning_text.done", "item_id": id,
                    "output_index": idx, "content_index": 0, "text": acc}),
                );
            }
        }
        let item = self.items[idx].value.clone();
        self.emit(json!({"type": "response.output_item.done", "output_index": idx, "item": item}));
    }

    /// The open item of this kind, or a new one (closing the previous).
    fn item(&mut self, kind: Kind, new: impl FnOnce() -> Value) -> usize {
        if let Some(i) = self.open.filter(|&i| self.items[i].kind == kind) {
            return i;
        }
        self.close();
        let value = new();
        let idx = self.items.len();
        let mut added = value.clone();
        if kind == Kind::Text {
            added["content"] = json!([]);
        }
        self.items.push(Item {
            kind,
            value,
            acc: String::new(),
        });
        self.open = Some(idx);
        self.emit(
            json!({"type": "response.output_item.added", "output_index": idx, "item": added}),
        );
        if kind == Kind::Text {
            let id = self.items[idx].value["id"].clone();
            self.emit(json!({"type": "response.content_part.added", "item_id": id, "output_index": idx,
                "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}));
        }
        idx
    }

    fn chunk(&mut self, c: &Value) {
        if !self.started {
            self.start();
        }
        if let Some(u) = c.get("usage").filter(|u| u.is_object()) {
            self.usage = Some((
                u["prompt_tokens"].as_u64().unwrap_or(0),
                u["completion_tokens"].as_u64().unwrap_or(0),
                cached_tokens(u),
            ));
        }
        let Some(choice) = c["choices"].as_array().and_then(|c| c.first()) else {
            return;
        };
        let d = &choice["delta"];
        if let Some(r) = reasoning_of(d) {
            let i = self.item(Kind::Reasoning, || reasoning_item(""));
            self.items[i].acc.push_str(r);
            let id = self.items[i].value["id"].clone();
            self.emit(
                json!({"type": "response.reasoning_text.delta", "item_id": id, "output_index": i,
                "content_index": 0, "delta": r}),
            );
        }
        if let Some(t) = d["content"].as_str().filter(|t| !t.is_empty()) {
            let i = self.item(Kind::Text, || message_item("", "in_progress"));
            self.items[i].acc.push_str(t);
            let id = self.items[i].value["id"].clone();
            self.emit(
                json!({"type": "response.output_text.delta", "item_id": id, "output_index": i,
                "content_index": 0, "delta": t, "logprobs": []}),
            );
        }
        for call in d["tool_calls"].as_array().into_iter().flatten() {
            let k = call["index"].as_u64().unwrap_or(0);
            if call["id"].is_string()
                && self
                    .open
                    .is_some_and(|i| self.items[i].kind == Kind::Call(k))
            {
                self.close();
            }
            let f = &call["function"];
            let i = self.item(Kind::Call(k), || {
                call_item(&call["id"], &f["name"], "", "in_progress")
            });
            if let Some(a) = f["arguments"].as_str().filter(|a| !a.is_empty()) {
                self.items[i].acc.push_str(a);
                let id = self.items[i].value["id"].clone();
                self.emit(
                    json!({"type": "response.function_call_arguments.delta", "item_id": id,
                    "output_index": i, "delta": a}),
                );
            }
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            self.finish = Some(f.to_owned());
        }
    }

    fn finish(&mut self) {
        if !self.started {
            self.start();
        }
        self.close();
        let (prompt, completion, cached) = self.usage.unwrap_or_else(|| {
            let text: String = self.items.iter().map(|i| i.acc.as_str()).collect();
            let out = tokens::count_text(Tokenizer::Cl100k, &text) as u64;
            (self.prompt_estimate, out, 0)
        });
        let (status, incomplete) = status_for(self.finish.as_deref());
        let r = self.snapshot(status, usage(prompt, completion, cached), incomplete);
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.emit(json!({"type": kind, "response": r}));
        self.finished = true;
    }

    fn fail(&mut self, e: &ApiError) {
        if !self.started {
            self.start();
        }
        let mut r = self.snapshot("failed", Value::Null, Value::Null);
        r["error"] = json!({"code": e.kind.code(Dialect::Gateway), "message": e.message});
        self.emit(json!({"type": "response.failed", "response": r}));
    }
}

/// Responses events for a chat chunk stream; the final event carries the whole Response.
pub fn events(
    chunks: ChunkStream,
    meta: ResponseMeta,
    model: String,
    prompt_estimate: u64,
) -> ChunkStream {
    let st = State {
        chunks,
        meta,
        model,
        prompt_estimate,
        seq: 0,
        started: false,
        items: Vec::new(),
        open: None,
        finish: None,
        usage: None,
        out: VecDeque::new(),
        finished: false,
    };
    Box::pin(futures_util::stream::unfold(
        (st, None::<ApiError>),
        |(mut st, mut failed)| async move {
            loop {
                if let Some(v) = st.out.pop_front() {
                    return Some((Ok::<_, ApiError>(v), (st, failed)));
                }
                if let Some(e) = failed.take() {
                    st.finished = true;
                    return Some((Err(e), (st, None)));
                }
                if st.finished {
                    // Drain what is left (the end of the provider's stream), so the accounting
                    // below sees a stream that ended, not one the client abandoned.
                    while st.chunks.next().await.is_some() {}
                    return None;
                }
                match st.chunks.next().await {
                    Some(Ok(c)) => {
                        st.chunk(&c);
                        if st.finish.is_some() && st.usage.is_some() {
                            st.finish();
                        }
                    }
                    Some(Err(e)) => {
                        st.fail(&e);
                        failed = Some(e);
                    }
                    None => st.finish(),
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::responses::prepare;

    fn run(chunks: Vec<Result<Value, ApiError>>) -> Vec<Result<Value, ApiError>> {
        let s: ChunkStream = Box::pin(futures_util::stream::iter(chunks));
        let meta = prepare(
            json!({"model": "m", "input": "hi"})
                .as_object()
                .unwrap()
                .clone(),
            vec![],
        )
        .ok()
        .unwrap()
        .meta;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(events(s, meta, "mock/m".into(), 3).collect())
    }

    #[test]
    fn text_then_a_function_call_streams_every_event_in_order() {
        let evs: Vec<Value> = run(vec![
            Ok(json!({"choices": [{"delta": {"role": "assistant", "content": "Hi"}}]})),
            Ok(json!({"choices": [{"delta": {"content": " there"}}]})),
            Ok(json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": "{}"}}]}}]})),
            Ok(json!({"choices": [{"delta": {}, "finish_reason": "tool_calls"}]})),
            Ok(json!({"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 6}})),
        ])
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
        let types: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let seqs: Vec<u64> = evs
            .iter()
            .map(|e| e["sequence_number"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (0..evs.len() as u64).collect::<Vec<_>>());
        let done = &evs[13]["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"][0]["content"][0]["text"], "Hi there");
        assert_eq!(done["output"][1]["call_id"], "call_1");
        assert_eq!(done["output"][1]["status"], "completed");
        assert_eq!(done["usage"]["total_tokens"], 10);
    }

    #[test]
    fn an_upstream_error_becomes_response_failed_then_ends_the_stream() {
        let err = ApiError::new(sluice_types::ErrorKind::UpstreamError, "provider failed");
        let evs = run(vec![
            Ok(json!({"choices": [{"delta": {"content": "Hi"}}]})),
            Err(err.clone()),
        ]);
        let last_ok = evs[evs.len() - 2].as_ref().unwrap();
        assert_eq!(last_ok["type"], "response.failed");
        assert_eq!(last_ok["response"]["error"]["code"], "provider_unavailable");
        assert_eq!(evs.last().unwrap().as_ref().unwrap_err(), &err);
    }
}
