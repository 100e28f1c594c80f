//! Token counting with the real BPE tokenizers (tiktoken's cl100k and o200k), loaded once.
//!
//! Chat prompts are counted the way OpenAI documents it: 3 tokens per message, 1 more for a
//! `name`, 3 to prime the reply, plus the text of every part and of the tool definitions.

use std::sync::OnceLock;

use serde_json::Value;
use tiktoken_rs::CoreBPE;

use crate::catalog::Tokenizer;

static CL100K: OnceLock<Option<CoreBPE>> = OnceLock::new();
static O200K: OnceLock<Option<CoreBPE>> = OnceLock::new();

/// Tokens an image costs when the detail is unknown: OpenAI's "high" detail for one 512px tile
/// plus the base (85 + 170). A conservative estimate; the upstream's usage settles the truth.
const IMAGE_TOKENS: usize = 255;

fn bpe(t: Tokenizer) -> Option<&'static CoreBPE> {
    match t {
        Tokenizer::Cl100k => CL100K
            .get_or_init(|| tiktoken_rs::cl100k_base().ok())
            .as_ref(),
        Tokenizer::O200k => O200K
            .get_or_init(|| tiktoken_rs::o200k_base().ok())
            .as_ref(),
    }
}

/// Loads the tokenizers now, so the first request does not pay for it.
pub fn warm_up() {
    let _ = bpe(Tokenizer::Cl100k);
    let _ = bpe(Tokenizer::O200k);
}

/// Tokens in `text`. If a tokenizer cannot load, falls back to the byte count, which is never
/// smaller than the true count (every BPE token covers at least one byte).
pub fn count_text(t: Tokenizer, text: &str) -> usize {
    match bpe(t) {
        Some(b) => b.encode_ordinary(text).len(),
        None => text.len(),
    }
}

/// Prompt tokens of an OpenAI-style chat request (`messages`, optional `tools`).
pub fn count_chat(t: Tokenizer, messages: &[Value], tools: Option<&Value>) -> usize {
    size_chat(messages, tools, &|s| count_text(t, s))
}

/// An upper bound on `count_chat` that costs one pass over the bytes: a byte-level BPE token
/// always covers at least one byte, so a text never has more tokens than bytes.
pub fn chat_upper_bound(messages: &[Value], tools: Option<&Value>) -> usize {
    size_chat(messages, tools, &str::len)
}

/// The chat token formula with `text` measuring each piece of text.
fn size_chat(messages: &[Value], tools: Option<&Value>, text: &dyn Fn(&str) -> usize) -> usize {
    let content = |c: &Value| -> usize {
        match c {
            Value::String(s) => text(s),
            Value::Array(parts) => parts
                .iter()
                .map(|p| match p["type"].as_str() {
                    Some("image_url") | Some("image") => IMAGE_TOKENS,
                    _ => p["text"].as_str().map_or(0, text),
                })
                .sum(),
            Value::Null => 0,
            other => text(&other.to_string()),
        }
    };
    let mut n = 3;
    for m in messages {
        n += 3 + content(&m["content"]);
        if let Some(name) = m["name"].as_str() {
            n += 1 + text(name);
        }
        if let Some(calls) = m.get("tool_calls") {
            n += text(&calls.to_string());
        }
    }
    if let Some(tools) = tools.filter(|v| !v.is_null()) {
        n += text(&tools.to_string());
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_real_tokenizer_counts_known_strings() {
        // "hello world" is two tokens in both cl100k and o200k.
        assert_eq!(count_text(Tokenizer::Cl100k, "hello world"), 2);
        assert_eq!(count_text(Tokenizer::O200k, "hello world"), 2);
    }

    #[test]
    fn the_byte_bound_is_never_below_the_count() {
        let msgs =
            vec![json!({"role": "user", "content": "héllo wörld, ünïcode 🎉 and   spaces\n\tend"})];
        for t in [Tokenizer::Cl100k, Tokenizer::O200k] {
            assert!(chat_upper_bound(&msgs, None) >= count_chat(t, &msgs, None));
        }
    }

    #[test]
    fn chat_overhead_follows_the_documented_formula() {
        let msgs = vec![json!({"role": "user", "content": "hello world"})];
        assert_eq!(count_chat(Tokenizer::Cl100k, &msgs, None), 3 + 3 + 2);
        let parts = vec![
            json!({"role": "user", "content": [{"type": "text", "text": "hello world"}, {"type": "image_url", "image_url": {"url": "x"}}]}),
        ];
        assert_eq!(
            count_chat(Tokenizer::Cl100k, &parts, None),
            3 + 3 + 2 + IMAGE_TOKENS
        );
    }
}
