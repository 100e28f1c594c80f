//! Trying an admitted request's candidates in order: skip open circuits, fall back on the
//! failures the request allows, record health, and stop at the first answer. A stream counts as
//! answered once its first chunk arrived — after that no fallback happens (the client has bytes).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use sluice_gateway::chat::Admitted;
use sluice_gateway::routing::{FailureClass, Verdict};
use sluice_gateway::upstream::provider_error;
use sluice_gateway::{ChatOutcome, ChatReply};
use sluice_types::{ApiError, Dialect, ErrorKind};

use crate::Engine;

/// The answer and, if a fallback gave it, its position and the reason for falling back.
pub struct Routed {
    pub outcome: ChatOutcome,
    pub fallback: Option<(usize, &'static str)>,
}

/// Waits for a stream's first chunk, so a failure before it can still fall back.
async fn first_chunk(mut o: ChatOutcome) -> Result<ChatOutcome, ApiError> {
    let ChatReply::Stream(mut s) = o.reply else {
        return Ok(o);
    };
    match s.next().await {
        Some(Ok(first)) => {
            o.reply = ChatReply::Stream(Box::pin(
                futures_util::stream::once(async move { Ok(first) }).chain(s),
            ));
            Ok(o)
        }
        Some(Err(e)) => Err(e),
        None => Err(provider_error(
            &o.model,
            "the stream ended before its first chunk",
        )),
    }
}

impl Engine {
    pub async fn route(&self, a: &Admitted) -> Result<Routed, ApiError> {
        let health = &self.gateway.health;
        let mut attempts: Vec<Value> = Vec::new();
        let mut last: Option<(ApiError, FailureClass)> = None;
        let mut soonest: Option<Instant> = None;
        let mut tried = 0;
        for (i, m) in a.candidates.iter().enumerate() {
            if i > 0 && !a.allow_fallbacks {
                break;
            }
            if let Verdict::Unavailable { until, reason } = health.check(m) {
                attempts.push(json!({"model": m.id, "provider": m.provider.id, "reason": reason}));
                soonest = Some(soonest.map_or(until, |s| s.min(until)));
                continue;
            }
            tried += 1;
            let started = Instant::now();
            let result = match self.gateway.dispatch_chat_to(a, m).await {
                Ok(o) => first_chunk(o).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(outcome) => {
                    health.success(m, started.elapsed());
                    let fallback = (i > 0).then(|| {
                        (
                            i,
                            last.as_ref().map_or("provider_error", |(_, c)| c.as_str()),
                        )
                    });
                    return Ok(Routed { outcome, fallback });
                }
                Err(e) => {
                    let Some(class) = FailureClass::of(&e) else {
                        // The request's own fault (e.g. the provider rejected a parameter): the
                        // provider is fine and another model would say the same.
                        health.release_probe(m);
                        return Err(e);
                    };
                    let retry = e.retry_after.map(Duration::from_secs);
                    health.failure(m, class, retry);
                    attempts.push(json!({
                        "model": m.id, "provider": m.provider.id, "reason": class.as_str(),
                        "error": e.kind.code(Dialect::Gateway),
                    }));
                    if let Some(r) = retry {
                        let until = Instant::now() + r;
                        soonest = Some(soonest.map_or(until, |s| s.min(until)));
                    }
                    if !a.allow_fallbacks || !a.fallback_on.contains(&class) {
                        return Err(e);
                    }
                    last = Some((e, class));
                }
            }
        }
        // Nothing answered. One plain attempt keeps its own error; otherwise say what was tried.
        if tried == 1 && attempts.len() == 1 {
            if let Some((e, _)) = last {
                return Err(e);
            }
        }
        let retry_after = soonest
            .map(|s| {
                s.saturating_duration_since(Instant::now())
                    .as_secs_f64()
                    .ceil() as u64
            })
            .unwrap_or(1)
            .max(1);
        let only = attempts.len() == 1;
        let reason = if only {
            attempts[0]["reason"]
                .as_str()
                .unwrap_or("circuit_open")
                .to_owned()
        } else {
            "all_candidates_unavailable".to_owned()
        };
        let message = if only {
            format!(
                "The model '{}' is temporarily unavailable ({}). Retry after {retry_after} s, or use a routing mode.",
                a.model.id,
                reason.replace('_', " ")
            )
        } else {
            format!("Every model that could serve this request failed or is unavailable. Retry after {retry_after} s.")
        };
        Err(ApiError::new(ErrorKind::ProviderUnavailable, message)
            .with_detail("provider", a.model.provider.id.as_str())
            .with_detail("model", a.model.id.as_str())
            .with_detail("reason", reason)
            .with_detail("retry_after", retry_after)
            .with_detail("attempts", attempts)
            .with_retry_after(retry_after))
    }
}
