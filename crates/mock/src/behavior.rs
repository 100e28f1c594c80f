//! What the mock does for one request: answer normally, or one of the scripted faults.

use serde::{Deserialize, Serialize};

/// One request's behaviour. Every field is optional; the default is a normal answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Behavior {
    /// Answer with this HTTP status and a provider-style error body.
    pub status: Option<u16>,
    /// `Retry-After` header (seconds) on an error answer.
    pub retry_after: Option<u64>,
    /// Wait this long before the response headers.
    pub delay_ms: u64,
    /// Wait this long between stream chunks.
    pub chunk_delay_ms: u64,
    /// Reset the connection after this many stream chunks (or, for JSON, mid-body).
    pub reset_after_chunks: Option<u64>,
    /// Send a body that is not JSON (or SSE events whose data is not JSON).
    pub malformed: bool,
    /// Send the stream one byte at a time.
    pub drip: bool,
    /// Completion length in tokens (capped by the request's `max_tokens`).
    pub completion_tokens: Option<u64>,
    /// Send no usage in the stream even if asked.
    pub omit_usage: bool,
    /// Answer with a tool call to this function instead of text.
    pub tool_call: Option<String>,
    /// Report this many prompt tokens instead of the estimate (a provider that counts more).
    pub prompt_tokens: Option<u64>,
    /// Think first: this text as `reasoning_content` (OpenAI) or a `thinking` block (Anthropic).
    pub reasoning: Option<String>,
}

impl Behavior {
    pub fn status(code: u16) -> Behavior {
        Behavior {
            status: Some(code),
            ..Default::default()
        }
    }

    pub fn delay(ms: u64) -> Behavior {
        Behavior {
            delay_ms: ms,
            ..Default::default()
        }
    }

    /// Parses `fault:status=503,delay_ms=50,...` from an upstream model name.
    pub fn from_model_name(model: &str) -> Option<Behavior> {
        let spec = model.strip_prefix("fault:")?;
        let mut b = Behavior::default();
        for pair in spec.split(',') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
            let num = v.parse::<u64>().ok();
            match k.trim() {
                "status" => b.status = num.and_then(|n| u16::try_from(n).ok()),
                "retry_after" => b.retry_after = num,
                "delay_ms" => b.delay_ms = num.unwrap_or(0),
                "chunk_delay_ms" => b.chunk_delay_ms = num.unwrap_or(0),
                "reset_after_chunks" => b.reset_after_chunks = num,
                "malformed" => b.malformed = v == "true",
                "drip" => b.drip = v == "true",
                "completion_tokens" => b.completion_tokens = num,
                "omit_usage" => b.omit_usage = v == "true",
                "tool_call" => b.tool_call = Some(v.to_owned()),
                "reasoning" => b.reasoning = Some(v.to_owned()),
                _ => {}
            }
        }
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_can_be_named_in_the_model() {
        let b = Behavior::from_model_name("fault:status=503,retry_after=7,drip").unwrap();
        assert_eq!(b.status, Some(503));
        assert_eq!(b.retry_after, Some(7));
        assert!(b.drip);
        assert_eq!(Behavior::from_model_name("gpt-4o"), None);
    }
}
