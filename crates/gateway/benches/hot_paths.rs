//! Microbenchmarks of the gateway's per-request pure work: SSE parsing, prompt token counting,
//! admission. Run: cargo bench -p sluice-gateway
//!
//! Each group has a baseline measured in the same run (e.g. serde_json parsing of the same bytes),
//! so results read as ratios rather than absolute times on a shared machine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use divan::{black_box, Bencher};
use serde_json::{json, Value};
use sluice_gateway::catalog::{Catalog, RawModel, RawProvider, Tokenizer};
use sluice_gateway::{sse, tokens, Gateway};
use sluice_types::{Principal, Scope};

fn main() {
    tokens::warm_up();
    divan::main();
}

/// A realistic OpenAI stream: 64 content chunks and a usage chunk, as bytes on the wire.
fn stream_bytes() -> Vec<u8> {
    let mut out = String::new();
    for i in 0..64 {
        let c = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {"content": format!(" word{i}")}, "finish_reason": null}]});
        out.push_str(&format!("data: {c}\n\n"));
    }
    out.push_str("data: [DONE]\n\n");
    out.into_bytes()
}

#[divan::bench]
fn sse_parse_stream_in_1k_pieces(b: Bencher) {
    let bytes = stream_bytes();
    b.bench(|| {
        let mut p = sse::Parser::new();
        let mut out = Vec::new();
        for piece in bytes.chunks(1024) {
            p.feed(black_box(piece), &mut out);
        }
        out.len()
    });
}

/// Baseline: parsing every chunk's JSON, which the gateway does anyway.
#[divan::bench]
fn baseline_json_parse_of_the_same_chunks(b: Bencher) {
    let bytes = stream_bytes();
    let text = String::from_utf8(bytes).unwrap();
    let datas: Vec<&str> = text
        .split("\n\n")
        .filter_map(|f| f.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .collect();
    b.bench(|| {
        datas
            .iter()
            .map(|d| serde_json::from_str::<Value>(black_box(d)).unwrap())
            .count()
    });
}

fn chat_messages(words: usize) -> Vec<Value> {
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(words / 9 + 1);
    vec![
        json!({"role": "system", "content": "You are terse."}),
        json!({"role": "user", "content": text}),
    ]
}

#[divan::bench(args = [100, 1_000, 10_000])]
fn count_prompt_tokens_cl100k(b: Bencher, words: usize) {
    let msgs = chat_messages(words);
    b.bench(|| tokens::count_chat(Tokenizer::Cl100k, black_box(&msgs), None));
}

#[divan::bench(args = [100, 1_000, 10_000])]
fn prompt_upper_bound(b: Bencher, words: usize) {
    let msgs = chat_messages(words);
    b.bench(|| tokens::chat_upper_bound(black_box(&msgs), None));
}

/// Baseline: serialising the same messages to JSON (the upstream request costs at least this).
#[divan::bench(args = [100, 1_000, 10_000])]
fn baseline_serialize_prompt(b: Bencher, words: usize) {
    let msgs = Value::Array(chat_messages(words));
    b.bench(|| serde_json::to_vec(black_box(&msgs)).unwrap().len());
}

fn gateway() -> Gateway {
    let p = RawProvider {
        id: "p".into(),
        kind: "openai".into(),
        base_url: Some("http://127.0.0.1:9/v1".into()),
        api_key_env: None,
        api_key_file: None,
        connect_timeout_ms: None,
        first_byte_timeout_ms: None,
        idle_timeout_ms: None,
        max_response_bytes: None,
    };
    let models: Vec<RawModel> = (0..50)
        .map(|i| RawModel {
            id: format!("p/m{i}"),
            upstream: None,
            aliases: vec![format!("m{i}")],
            mode: None,
            context_window: Some(128_000),
            max_output_tokens: Some(4096),
            input_price: 1,
            output_price: 1,
            capabilities: vec![],
            priority: i,
            tokenizer: None,
            strict_max_tokens: None,
        })
        .collect();
    Gateway::new(Catalog::build(&[p], &models, &|_| None, None).unwrap().0).unwrap()
}

/// Everything `/v1/chat/completions` does before the upstream call, for a short prompt.
#[divan::bench]
fn admit_chat_short_prompt(b: Bencher) {
    let gw = gateway();
    let who = Principal {
        key_id: "k".into(),
        account_id: "a".into(),
        scopes: vec![Scope::ChatWrite],
        models: None,
        spend_limited: false,
        tier: Default::default(),
        key_limits: Default::default(),
        ancestors: Vec::new(),
    };
    let body = json!({"model": "m42", "messages": chat_messages(20), "max_tokens": 64, "temperature": 0.2});
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    b.bench(|| {
        rt.block_on(gw.admit_chat(&who, black_box(body.clone())))
            .unwrap()
            .prompt_tokens_max
    });
}

/// Baseline for the above: only the clone of the body it consumes.
#[divan::bench]
fn baseline_clone_request_body(b: Bencher) {
    let body = json!({"model": "m42", "messages": chat_messages(20), "max_tokens": 64, "temperature": 0.2});
    b.bench(|| black_box(body.clone()));
}

/// The routing decision for `auto` over 50 models (filter by allowlist, capability and context,
/// order by health and priority), as part of admission.
#[divan::bench]
fn admit_chat_auto_over_50_models(b: Bencher) {
    let gw = gateway();
    let who = Principal {
        key_id: "k".into(),
        account_id: "a".into(),
        scopes: vec![Scope::ChatWrite],
        models: None,
        spend_limited: false,
        tier: Default::default(),
        key_limits: Default::default(),
        ancestors: Vec::new(),
    };
    let body = json!({"model": "auto", "messages": chat_messages(20), "max_tokens": 64});
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    b.bench(|| {
        rt.block_on(gw.admit_chat(&who, black_box(body.clone())))
            .unwrap()
            .candidates
            .len()
    });
}

/// One circuit-breaker check (what every candidate costs at dispatch).
#[divan::bench]
fn health_check_one_target(b: Bencher) {
    let gw = gateway();
    let m = gw.catalog.get("m7").unwrap().clone();
    b.bench(|| gw.health.check(black_box(&m)));
}
