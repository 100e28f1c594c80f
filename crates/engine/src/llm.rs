//! The gateway path with accounting: admission, credits reserved before any upstream call,
//! dispatch, settlement at the actual cost (also for streams that end early), and one usage
//! record per request. The HTTP handlers and the agents engine both call this.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::Stream;
use serde_json::Value;
use sluice_gateway::chat::{Admitted, ChatRequest};
use sluice_gateway::{tokens, ChatReply, ChunkStream, Model, Usage, UsageCell, Wire};
use sluice_store::UsageRecord;
use sluice_types::{now_unix, ApiError, Dialect, Principal};

use crate::credits::{cost, refusal_error, Reservation};
use crate::limits::TokenHold;
use crate::usage::UsageRecorder;
use crate::Engine;
use sluice_types::ratelimit::RateLimitStatus;

/// What a request is, for its usage record.
pub struct RequestCtx {
    pub request_id: String,
    pub started: Instant,
}

/// A failure, and the model it reached (for `X-Arena-Resolved-Model`), if any.
#[derive(Debug)]
pub struct Failed {
    pub error: ApiError,
    pub model: Option<String>,
}

impl From<ApiError> for Failed {
    fn from(error: ApiError) -> Self {
        Failed { error, model: None }
    }
}

/// A chat answer with its accounting attached.
pub struct ChatResponse {
    /// The model that answered.
    pub model: Arc<Model>,
    /// When a fallback answered: its 1-based position after the first candidate, and why the
    /// attempt before it failed.
    pub fallback: Option<(usize, &'static str)>,
    pub reply: ChatReply,
    /// The format of `reply` (Anthropic only when a Messages request was passed through).
    pub wire: Wire,
    /// The prompt's size as admission measured it (exact, or a quarter of its byte bound), for
    /// stream translations that must announce it before the provider reports usage.
    pub prompt_estimate: u64,
    /// For the `X-RateLimit-*` headers.
    pub rate_limit: RateLimitStatus,
}

/// Errors after the rate-limit check still report the limits' state.
fn with_rate(mut e: ApiError, st: &RateLimitStatus) -> ApiError {
    if e.rate_limit.is_none() && !st.dimensions.is_empty() {
        e.rate_limit = Some(Box::new(st.clone()));
    }
    e
}

/// Tokens a request is charged against token limits at admission: the prompt (exact if counted,
/// else a quarter of its byte bound — roughly what BPE tokenizers yield for English) plus the
/// maximum output of every choice. Corrected to actual usage when the request ends.
fn token_estimate(a: &Admitted) -> u64 {
    a.prompt_tokens_exact
        .unwrap_or(a.prompt_tokens_max.div_ceil(4))
        .saturating_add(a.max_tokens.saturating_mul(a.choices))
}

/// Writes the usage record once, however the request ends.
struct Meter {
    recorder: UsageRecorder,
    record: UsageRecord,
    started: Instant,
}

impl Meter {
    fn new(engine: &Engine, who: &Principal, ctx: &RequestCtx) -> Meter {
        Meter {
            recorder: engine.usage.clone(),
            record: UsageRecord {
                request_id: ctx.request_id.clone(),
                account_id: who.account_id.clone(),
                key_id: who.key_id.clone(),
                created_at: now_unix(),
                ..Default::default()
            },
            started: ctx.started,
        }
    }

    fn model(&mut self, m: &Model) {
        self.record.model = Some(m.id.clone());
        self.record.provider = Some(m.provider.id.clone());
    }

    fn done(mut self, status: u16, error_code: Option<String>, usage: Usage, charged: i64) {
        self.record.status = i64::from(status);
        self.record.error_code = error_code;
        self.record.prompt_tokens = usage.prompt_tokens as i64;
        self.record.completion_tokens = usage.completion_tokens as i64;
        self.record.cost = charged;
        self.record.latency_ms = self.started.elapsed().as_millis() as i64;
        self.recorder.record(self.record);
    }

    fn fail(self, e: ApiError, model: Option<&Model>) -> Failed {
        let status = e.kind.status(Dialect::Gateway);
        self.done(
            status,
            Some(e.kind.code(Dialect::Gateway).to_owned()),
            Usage::default(),
            0,
        );
        Failed {
            error: e,
            model: model.map(|m| m.id.clone()),
        }
    }
}

/// Usage as the provider reported it, or counted from the prompt and the generated text when
/// it reported none (a stream cut short).
fn usage_of(admitted: &Admitted, cell: &UsageCell) -> Usage {
    if let Some(u) = cell.reported() {
        return u;
    }
    let t = admitted.model.tokenizer;
    let prompt = admitted.prompt_tokens_exact.unwrap_or_else(|| {
        let messages = admitted
            .body
            .get("messages")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        tokens::count_chat(t, messages, admitted.body.get("tools")) as u64
    });
    Usage {
        prompt_tokens: prompt,
        completion_tokens: tokens::count_text(t, &cell.generated()) as u64,
    }
}

fn price(m: &Model, u: Usage) -> i64 {
    cost(
        m.input_price,
        m.output_price,
        u.prompt_tokens,
        u.completion_tokens,
    )
}

/// The wallets a request draws from: the account's, the key's if it has a spend limit, and
/// those of the spend-capped keys it was issued through.
fn wallets(who: &Principal) -> Vec<&str> {
    let mut w = vec![who.account_id.as_str()];
    w.extend(
        who.ancestors
            .iter()
            .filter(|a| a.spend_capped)
            .map(|a| a.key_id.as_str()),
    );
    if who.spend_limited {
        w.push(who.key_id.as_str());
    }
    w
}

impl Engine {
    /// Reserves the request's maximum cost. The prompt is priced at its byte bound (never below
    /// the tokenizer's count): an exact count could be lower than what the provider reports (chat
    /// templates add tokens), and a reservation below the real cost would let an account spend
    /// more than its balance allows.
    async fn reserve_chat(&self, who: &Principal, a: &Admitted) -> Result<Reservation, ApiError> {
        // Any candidate may answer: reserve for the most expensive; settle at the one that did.
        let max = a
            .candidates
            .iter()
            .map(|m| {
                let out = a
                    .max_tokens
                    .min(u64::from(m.max_output_tokens))
                    .saturating_mul(a.choices);
                cost(m.input_price, m.output_price, a.prompt_tokens_max, out)
            })
            .max()
            .unwrap_or(0);
        self.credits
            .reserve(&wallets(who), max)
            .await
            .map_err(|r| refusal_error(r, &who.key_id))
    }

    /// A chat request (from any ingress) with credits and usage.
    pub async fn chat(
        &self,
        who: &Principal,
        req: impl Into<ChatRequest>,
        ctx: RequestCtx,
    ) -> Result<ChatResponse, Failed> {
        let mut meter = Meter::new(self, who, &ctx);
        let admitted = match self.gateway.admit_chat(who, req).await {
            Ok(a) => a,
            Err(e) => return Err(meter.fail(e, None)),
        };
        let model = admitted.model.clone();
        meter.model(&model);
        // Limits before credits: a refused request consumes nothing and reserves nothing.
        let (rate, tokens) = match self.admit_rate(who, token_estimate(&admitted)).await {
            Ok(x) => x,
            Err(e) => return Err(meter.fail(e, None)),
        };
        let reservation = match self.reserve_chat(who, &admitted).await {
            Ok(r) => r,
            Err(e) => {
                tokens.correct(0);
                return Err(meter.fail(with_rate(e, &rate), None));
            }
        };
        let routed = match self.route(&admitted).await {
            Ok(r) => r,
            // Dropping the reservation releases it: a failed call costs nothing.
            Err(e) => {
                tokens.correct(0);
                return Err(meter.fail(with_rate(e, &rate), Some(&model)));
            }
        };
        let (outcome, fallback) = (routed.outcome, routed.fallback);
        let wire = outcome.wire;
        let prompt_estimate = admitted
            .prompt_tokens_exact
            .unwrap_or(admitted.prompt_tokens_max.div_ceil(4));
        let model = outcome.model.clone();
        meter.model(&model);
        let reply = match outcome.reply {
            ChatReply::Json(v) => {
                let usage = usage_of(&admitted, &outcome.usage);
                tokens.correct(usage.prompt_tokens + usage.completion_tokens);
                let charged = reservation.settle(price(&model, usage));
                meter.done(200, None, usage, charged);
                ChatReply::Json(v)
            }
            ChatReply::Stream(inner) => ChatReply::Stream(Box::pin(Metered {
                inner,
                settle: Some(Settle {
                    reservation,
                    meter,
                    admitted,
                    model: model.clone(),
                    usage: outcome.usage,
                    tokens,
                }),
                error: None,
                first_chunk: None,
            })),
        };
        Ok(ChatResponse {
            model,
            fallback,
            reply,
            wire,
            prompt_estimate,
            rate_limit: rate,
        })
    }

    /// `/v1/embeddings` with credits and usage.
    pub async fn embeddings(
        &self,
        who: &Principal,
        body: Value,
        ctx: RequestCtx,
    ) -> Result<
        (
            sluice_gateway::embeddings::EmbeddingsOutcome,
            RateLimitStatus,
        ),
        Failed,
    > {
        let mut meter = Meter::new(self, who, &ctx);
        let name = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        // Input bytes bound the input tokens, so this is a safe maximum before the call.
        let bytes = match body.get("input") {
            Some(Value::String(s)) => s.len() as u64,
            Some(v) => v.to_string().len() as u64,
            None => 0,
        };
        let model = self.gateway.catalog.get(&name).cloned();
        let (rate, tokens) = match self.admit_rate(who, bytes.div_ceil(4)).await {
            Ok(x) => x,
            Err(e) => return Err(meter.fail(e, None)),
        };
        let reservation = match &model {
            Some(m) => {
                meter.model(m);
                let max = cost(m.input_price, 0, bytes, 0);
                match self.credits.reserve(&wallets(who), max).await {
                    Ok(r) => Some(r),
                    Err(r) => {
                        tokens.correct(0);
                        return Err(
                            meter.fail(with_rate(refusal_error(r, &who.key_id), &rate), None)
                        );
                    }
                }
            }
            None => None,
        };
        match self.gateway.embeddings(who, body).await {
            Ok(out) => {
                let usage = out.usage.unwrap_or_default();
                tokens.correct(usage.prompt_tokens);
                let charged = reservation.map_or(0, |r| r.settle(price(&out.model, usage)));
                meter.done(200, None, usage, charged);
                Ok((out, rate))
            }
            Err(e) => {
                tokens.correct(0);
                Err(meter.fail(with_rate(e, &rate), model.as_deref()))
            }
        }
    }
}

/// What a stream settles when it ends.
struct Settle {
    reservation: Reservation,
    meter: Meter,
    admitted: Admitted,
    /// The model that answered (its price is charged).
    model: Arc<Model>,
    usage: Arc<UsageCell>,
    tokens: TokenHold,
}

impl Settle {
    /// `status` 499 marks a client that went away (nginx's convention).
    fn run(self, status: u16, error_code: Option<String>, ttfb_ms: Option<i64>) {
        let Settle {
            reservation,
            mut meter,
            admitted,
            model,
            usage,
            tokens,
        } = self;
        meter.record.ttfb_ms = ttfb_ms;
        let reported = usage.reported().is_some();
        let finish = move || {
            let u = usage_of(&admitted, &usage);
            tokens.correct(u.prompt_tokens + u.completion_tokens);
            let charged = reservation.settle(price(&model, u));
            meter.done(status, error_code, u, charged);
        };
        // Counting the tokens of a stream the provider did not report on is CPU work: keep it
        // off the async workers. With reported usage, settling is a few memory operations.
        match tokio::runtime::Handle::try_current() {
            Ok(h) if !reported => {
                h.spawn_blocking(finish);
            }
            _ => finish(),
        }
    }
}

/// A chunk stream that settles credits and writes the usage record when it ends — normally,
/// with an upstream error, or because the client went away and the body was dropped.
struct Metered {
    inner: ChunkStream,
    settle: Option<Settle>,
    error: Option<String>,
    first_chunk: Option<i64>,
}

impl Stream for Metered {
    type Item = Result<Value, ApiError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = self.inner.as_mut().poll_next(cx);
        match &item {
            Poll::Ready(Some(Ok(_))) if self.first_chunk.is_none() => {
                let ms = self
                    .settle
                    .as_ref()
                    .map_or(0, |s| s.meter.started.elapsed().as_millis() as i64);
                self.first_chunk = Some(ms);
            }
            Poll::Ready(Some(Err(e))) => {
                self.error = Some(e.kind.code(Dialect::Gateway).to_owned())
            }
            Poll::Ready(None) => {
                let (error, ttfb) = (self.error.take(), self.first_chunk);
                if let Some(s) = self.settle.take() {
                    s.run(200, error, ttfb);
                }
            }
            _ => {}
        }
        item
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        if let Some(s) = self.settle.take() {
            // Ended without reaching its end: the client went away (or the error was its last item).
            match self.error.take() {
                Some(code) => s.run(200, Some(code), self.first_chunk),
                None => s.run(
                    499,
                    Some("client_closed_request".to_owned()),
                    self.first_chunk,
                ),
            }
        }
    }
}
