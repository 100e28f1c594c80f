//! Chat completion chunks → Anthropic Messages SSE events: `message_start`, `ping`, one
//! `content_block_start`/`_delta`/`_stop` run per thinking, text or tool-use block,
//! `message_delta` with the stop reason and usage, `message_stop`. Each item names its event
//! in `type`. An upstream error passes through as the stream's last item.

use std::collections::VecDeque;

use futures_util::StreamExt;
use serde_json::{json, Value};
use sluice_types::ApiError;

use super::messages::{stop_reason, usage};
use super::{cached_tokens, prefixed, reasoning_of};
use crate::catalog::Tokenizer;
use crate::{tokens, ChunkStream};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    Thinking,
    Text,
    /// A tool call, by its chat `index`.
    Tool(u64),
}

struct State {
    chunks: ChunkStream,
    model: String,
    prompt_estimate: u64,
    started: bool,
    open: Option<Block>,
    next_index: u64,
    stop: Option<&'static str>,
    /// prompt, completion, cached — as the provider reported them.
    usage: Option<(u64, u64, u64)>,
    generated: String,
    out: VecDeque<Value>,
    finished: bool,
}

impl State {
    fn start(&mut self, id: &str) {
        self.started = true;
        self.out
            .push_back(json!({"type": "message_start", "message": {
            "id": prefixed("msg_", id), "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": usage(self.prompt_estimate, 0, 0)}}));
        self.out.push_back(json!({"type": "ping"}));
    }

    fn close(&mut self) {
        if self.open.take().is_some() {
            let index = self.next_index - 1;
            self.out
                .push_back(json!({"type": "content_block_stop", "index": index}));
        }
    }

    /// Opens `block` unless it is the one open; returns its index.
    fn open(&mut self, block: Block, start: Value) -> u64 {
        if self.open != Some(block) {
            self.close();
            self.open = Some(block);
            let index = self.next_index;
            self.next_index += 1;
            self.out.push_back(
                json!({"type": "content_block_start", "index": index, "content_block": start}),
            );
        }
        self.next_index - 1
    }

    fn delta(&mut self, index: u64, delta: Value) {
        self.out
            .push_back(json!({"type": "content_block_delta", "index": index, "delta": delta}));
    }

    fn chunk(&mut self, c: &Value) {
        if !self.started {
            self.start(c["id"].as_str().unwrap_or_default());
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
            self.generated.push_str(r);
            let i = self.open(
                Block::Thinking,
                json!({"type": "thinking", "thinking": "", "signature": ""}),
            );
            self.delta(i, json!({"type": "thinking_delta", "thinking": r}));
        }
        if let Some(t) = d["content"].as_str().filter(|t| !t.is_empty()) {
            self.generated.push_str(t);
            let i = self.open(Block::Text, json!({"type": "text", "text": ""}));
            self.delta(i, json!({"type": "text_delta", "text": t}));
        }
        for call in d["tool_calls"].as_array().into_iter().flatten() {
            let k = call["index"].as_u64().unwrap_or(0);
            let start = json!({"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": {}});
            if call["id"].is_string() && self.open == Some(Block::Tool(k)) {
                // A second call reusing an index: a new block.
                self.close();
            }
            let i = self.open(Block::Tool(k), start);
            if let Some(args) = call["function"]["arguments"]
                .as_str()
                .filter(|a| !a.is_empty())
            {
                self.generated.push_str(args);
                self.delta(i, json!({"type": "input_json_delta", "partial_json": args}));
            }
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            self.stop = Some(stop_reason(f));
        }
    }

    fn finish(&mut self) {
        if !self.started {
            self.start("");
        }
        self.close();
        let (prompt, completion, cached) = self.usage.unwrap_or_else(|| {
            let out = tokens::count_text(Tokenizer::Cl100k, &self.generated) as u64;
            (self.prompt_estimate, out, 0)
        });
        self.out.push_back(json!({"type": "message_delta",
            "delta": {"stop_reason": self.stop.unwrap_or("end_turn"), "stop_sequence": null},
            "usage": usage(prompt, completion, cached)}));
        self.out.push_back(json!({"type": "message_stop"}));
        self.finished = true;
    }
}

/// Messages events for a chat chunk stream. `prompt_estimate` fills `message_start`'s input
/// count; `message_delta` carries the provider's final numbers.
pub fn events(chunks: ChunkStream, model: String, prompt_estimate: u64) -> ChunkStream {
    let st = State {
        chunks,
        model,
        prompt_estimate,
        started: false,
        open: None,
        next_index: 0,
        stop: None,
        usage: None,
        generated: String::new(),
        out: VecDeque::new(),
        finished: false,
    };
    Box::pin(futures_util::stream::unfold(
        (st, false),
        |(mut st, failed)| async move {
            loop {
                if let Some(v) = st.out.pop_front() {
                    return Some((Ok::<_, ApiError>(v), (st, failed)));
                }
                if st.finished || failed {
                    // Drain what is left (the end of the provider's stream), so the accounting
                    // below sees a stream that ended, not one the client abandoned.
                    if !failed {
                        while st.chunks.next().await.is_some() {}
                    }
                    return None;
                }
                match st.chunks.next().await {
                    Some(Ok(c)) => {
                        st.chunk(&c);
                        // Usage after the finish reason is the provider's last word.
                        if st.stop.is_some() && st.usage.is_some() {
                            st.finish();
                        }
                    }
                    Some(Err(e)) => return Some((Err(e), (st, true))),
                    None => st.finish(),
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: Vec<Value>) -> Vec<Value> {
        let s: ChunkStream = Box::pin(futures_util::stream::iter(chunks.into_iter().map(Ok)));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(events(s, "mock/m".into(), 7).map(|r| r.unwrap()).collect())
    }

    #[test]
    fn text_and_tool_calls_become_blocks_in_order() {
        let evs = run(vec![
            json!({"id": "c1", "choices": [{"delta": {"role": "assistant", "content": ""}}]}),
            json!({"id": "c1", "choices": [{"delta": {"reasoning_content": "hm"}}]}),
            json!({"id": "c1", "choices": [{"delta": {"content": "Hi"}}]}),
            json!({"id": "c1", "choices": [{"delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]}}]}),
            json!({"id": "c1", "choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":"}}]}}]}),
            json!({"id": "c1", "choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}}]}),
            json!({"id": "c1", "choices": [{"delta": {}, "finish_reason": "tool_calls"}]}),
            json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 5}}),
        ]);
        let types: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(evs[0]["message"]["id"], "msg_c1");
        assert_eq!(evs[2]["content_block"]["type"], "thinking");
        assert_eq!(evs[6]["delta"], json!({"type": "text_delta", "text": "Hi"}));
        assert_eq!(evs[8]["index"], 2);
        assert_eq!(
            evs[8]["content_block"],
            json!({"type": "tool_use", "id": "call_1", "name": "f", "input": {}})
        );
        assert_eq!(evs[10]["delta"]["partial_json"], "1}");
        assert_eq!(evs[12]["delta"]["stop_reason"], "tool_use");
        assert_eq!(evs[12]["usage"]["input_tokens"], 9);
        assert_eq!(evs[12]["usage"]["output_tokens"], 5);
    }

    #[test]
    fn a_stream_without_usage_still_ends_with_counted_output() {
        let evs = run(vec![
            json!({"id": "c1", "choices": [{"delta": {"content": "hello world"}, "finish_reason": "stop"}]}),
        ]);
        let delta = &evs[evs.len() - 2];
        assert_eq!(delta["delta"]["stop_reason"], "end_turn");
        assert_eq!(delta["usage"]["input_tokens"], 7);
        assert_eq!(delta["usage"]["output_tokens"], 2);
        assert_eq!(evs.last().unwrap()["type"], "message_stop");
    }
}
