//! The mock provider: a real HTTP server speaking OpenAI (`/v1/chat/completions`,
//! `/v1/embeddings`, `/v1/models`) and Anthropic (`/v1/messages`), JSON and SSE, with realistic
//! usage and scriptable faults. Used by tests, the `--demo` mode and the load benchmark.
//!
//! Faults are scripted in-process (`MockProvider::push`), over HTTP (`POST /_mock/behaviors`),
//! or by the upstream model name (`fault:status=503,delay_ms=100`), so a catalog entry can be a
//! model that always fails.

mod anthropic;
mod behavior;
mod openai;
mod stream;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;

pub use behavior::Behavior;

/// Counters a test can assert on.
#[derive(Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub completed: AtomicU64,
    /// Streams whose client went away before the end.
    pub cancelled: AtomicU64,
    pub in_flight: AtomicU64,
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Stats {
    pub requests: u64,
    pub completed: u64,
    pub cancelled: u64,
    pub in_flight: u64,
}

/// Shared state of one mock server.
#[derive(Default)]
pub struct MockState {
    pub counters: Counters,
    script: Mutex<VecDeque<(Behavior, u64)>>,
    bodies: Mutex<VecDeque<Value>>,
    headers: Mutex<VecDeque<Vec<(String, String)>>>,
}

impl MockState {
    /// The behaviour for the next request: a fault named by the model, else the script, else normal.
    pub(crate) fn next_behavior(&self, model: &str) -> Behavior {
        if let Some(b) = Behavior::from_model_name(model) {
            return b;
        }
        let Ok(mut script) = self.script.lock() else {
            return Behavior::default();
        };
        let Some((front, left)) = script.front_mut() else {
            return Behavior::default();
        };
        let b = front.clone();
        *left = left.saturating_sub(1);
        if *left == 0 {
            script.pop_front();
        }
        b
    }

    pub(crate) fn record(&self, body: &Value, headers: &axum::http::HeaderMap) {
        self.counters.requests.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut bodies) = self.bodies.lock() {
            if bodies.len() >= 64 {
                bodies.pop_front();
            }
            bodies.push_back(body.clone());
        }
        if let Ok(mut hs) = self.headers.lock() {
            if hs.len() >= 64 {
                hs.pop_front();
            }
            hs.push_back(
                headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                    .collect(),
            );
        }
    }
}

/// A running mock server on `127.0.0.1:0` (or a given address).
pub struct MockProvider {
    pub addr: SocketAddr,
    pub state: Arc<MockState>,
    task: tokio::task::JoinHandle<()>,
}

impl MockProvider {
    pub async fn start() -> std::io::Result<MockProvider> {
        Self::start_on("127.0.0.1:0".parse().map_err(std::io::Error::other)?).await
    }

    pub async fn start_on(addr: SocketAddr) -> std::io::Result<MockProvider> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(MockState::default());
        let app = router(state.clone());
        let task = tokio::spawn(async move {
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let _ = axum::serve(listener, app).await;
        });
        Ok(MockProvider { addr, state, task })
    }

    /// The OpenAI-style base URL, e.g. `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The next `times` requests behave as `b` (after any already scripted).
    pub fn push(&self, b: Behavior, times: u64) {
        if let Ok(mut s) = self.state.script.lock() {
            s.push_back((b, times.max(1)));
        }
    }

    pub fn stats(&self) -> Stats {
        stats(&self.state)
    }

    /// The request bodies received, oldest first (the last 64).
    pub fn bodies(&self) -> Vec<Value> {
        self.state
            .bodies
            .lock()
            .map(|b| b.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The request headers received, oldest first (the last 64).
    pub fn headers(&self) -> Vec<Vec<(String, String)>> {
        self.state
            .headers
            .lock()
            .map(|b| b.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn stats(state: &MockState) -> Stats {
    let c = &state.counters;
    Stats {
        requests: c.requests.load(Ordering::SeqCst),
        completed: c.completed.load(Ordering::SeqCst),
        cancelled: c.cancelled.load(Ordering::SeqCst),
        in_flight: c.in_flight.load(Ordering::SeqCst),
    }
}

/// The mock's routes, for embedding in another server.
pub fn router(state: Arc<MockState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(openai::chat))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/models", get(openai::models))
        .route("/v1/messages", post(anthropic::messages))
        .route("/_mock/behaviors", post(push_behavior))
        .route("/_mock/stats", get(get_stats))
        .with_state(state)
}

#[derive(serde::Deserialize)]
struct PushBody {
    behavior: Behavior,
    #[serde(default = "one")]
    times: u64,
}

fn one() -> u64 {
    1
}

async fn push_behavior(
    State(state): State<Arc<MockState>>,
    Json(body): Json<PushBody>,
) -> Json<Value> {
    if let Ok(mut s) = state.script.lock() {
        s.push_back((body.behavior, body.times.max(1)));
    }
    Json(serde_json::json!({"ok": true}))
}

async fn get_stats(State(state): State<Arc<MockState>>) -> Json<Stats> {
    Json(stats(&state))
}

/// Rough token count the way a real tokenizer lands on English: ~4 characters a token.
pub(crate) fn approx_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// The words the mock "generates"; one word is one completion token.
pub(crate) fn word(i: u64) -> &'static str {
    const WORDS: [&str; 8] = [
        " lorem",
        " ipsum",
        " dolor",
        " sit",
        " amet",
        " consectetur",
        " adipiscing",
        " elit",
    ];
    WORDS[(i % 8) as usize]
}
