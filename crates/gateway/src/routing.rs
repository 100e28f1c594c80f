//! Routing: provider health (circuit breakers, latency), routing modes (`auto`, `fast`) and the
//! ordered list of candidates a request may be served by (deployments, then fallbacks).
//!
//! Decisions only read small per-target states behind short, never-awaited locks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_types::{ApiError, ErrorKind};

use crate::catalog::{Catalog, Model};

/// Why an attempt failed, as `fallback_on` and `X-Arena-Fallback-Reason` name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureClass {
    RateLimit,
    ProviderError,
    Timeout,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::RateLimit => "rate_limit",
            FailureClass::ProviderError => "provider_error",
            FailureClass::Timeout => "timeout",
        }
    }

    pub fn parse(s: &str) -> Option<FailureClass> {
        match s {
            "rate_limit" => Some(FailureClass::RateLimit),
            "provider_error" => Some(FailureClass::ProviderError),
            "timeout" => Some(FailureClass::Timeout),
            _ => None,
        }
    }

    /// The class of an upstream error, or `None` for errors that are the request's own fault
    /// (a fallback would not help and the provider is healthy).
    pub fn of(e: &ApiError) -> Option<FailureClass> {
        match e.kind {
            ErrorKind::UpstreamTimeout => Some(FailureClass::Timeout),
            ErrorKind::UpstreamError => Some(FailureClass::ProviderError),
            ErrorKind::ProviderUnavailable => {
                let reason = e
                    .details
                    .as_ref()
                    .and_then(|d| d.get("reason"))
                    .and_then(Value::as_str);
                if reason == Some("upstream_rate_limited") {
                    Some(FailureClass::RateLimit)
                } else {
                    Some(FailureClass::ProviderError)
                }
            }
            _ => None,
        }
    }
}

/// Circuit-breaker tunables (`[routing]`).
#[derive(Clone, Debug)]
pub struct BreakerSettings {
    /// Consecutive failures that open the circuit.
    pub failures: u32,
    pub cooldown: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failures: 3,
            cooldown: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Default)]
struct TargetState {
    failures: u32,
    open_until: Option<Instant>,
    open_reason: &'static str,
    probing: bool,
    ewma_ttfb_ms: Option<f64>,
}

/// Whether a target may be tried now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Available,
    /// The circuit was open and its cool-down is over: this request is the single probe.
    Probe,
    Unavailable {
        until: Instant,
        reason: &'static str,
    },
}

/// Health of every model (each model entry is one provider + upstream model).
pub struct Health {
    settings: BreakerSettings,
    targets: HashMap<String, Mutex<TargetState>>,
}

const EWMA_ALPHA: f64 = 0.3;

impl Health {
    pub fn new(catalog: &Catalog, settings: BreakerSettings) -> Health {
        let targets = catalog
            .models
            .iter()
            .map(|m| (m.id.clone(), Mutex::new(TargetState::default())))
            .collect();
        Health { settings, targets }
    }

    fn with<R>(&self, m: &Model, f: impl FnOnce(&mut TargetState) -> R) -> Option<R> {
        let t = self.targets.get(&m.id)?;
        let mut g = t.lock().unwrap_or_else(|p| p.into_inner());
        Some(f(&mut g))
    }

    pub fn check(&self, m: &Model) -> Verdict {
        let now = Instant::now();
        self.with(m, |s| match s.open_until {
            None => Verdict::Available,
            Some(until) if now < until => Verdict::Unavailable {
                until,
                reason: s.open_reason,
            },
            Some(_) if s.probing => Verdict::Unavailable {
                until: now + Duration::from_secs(1),
                reason: s.open_reason,
            },
            Some(_) => {
                s.probing = true;
                Verdict::Probe
            }
        })
        .unwrap_or(Verdict::Available)
    }

    /// Model ids whose circuit is open right now (for `/readyz`), sorted.
    pub fn open_circuits(&self) -> Vec<String> {
        let now = Instant::now();
        let mut open: Vec<String> = self
            .targets
            .iter()
            .filter(|(_, t)| {
                let s = t.lock().unwrap_or_else(|p| p.into_inner());
                s.open_until.is_some_and(|u| now < u)
            })
            .map(|(id, _)| id.clone())
            .collect();
        open.sort();
        open
    }

    /// How many models the breakers watch.
    pub fn watched(&self) -> usize {
        self.targets.len()
    }

    /// True when the target would be tried (without claiming a probe).
    pub fn is_open(&self, m: &Model) -> bool {
        let now = Instant::now();
        self.with(m, |s| {
            s.open_until.is_some_and(|u| now < u) || (s.open_until.is_some() && s.probing)
        })
        .unwrap_or(false)
    }

    pub fn success(&self, m: &Model, ttfb: Duration) {
        let ms = ttfb.as_secs_f64() * 1000.0;
        self.with(m, |s| {
            s.failures = 0;
            s.open_until = None;
            s.probing = false;
            s.ewma_ttfb_ms = Some(match s.ewma_ttfb_ms {
                Some(e) => e + EWMA_ALPHA * (ms - e),
                None => ms,
            });
        });
    }

    /// Records a failed attempt. An upstream 429 opens the circuit for its `Retry-After`; other
    /// failures open it after `failures` in a row (or at once when it was a probe).
    pub fn failure(&self, m: &Model, class: FailureClass, retry_after: Option<Duration>) {
        let now = Instant::now();
        let settings = &self.settings;
        self.with(m, |s| {
            let was_probe = s.probing;
            s.probing = false;
            s.failures += 1;
            if class == FailureClass::RateLimit {
                s.open_until = Some(now + retry_after.unwrap_or(Duration::from_secs(1)));
                s.open_reason = "upstream_rate_limited";
            } else if was_probe || s.failures >= settings.failures {
                s.open_until = Some(now + settings.cooldown);
                s.open_reason = "circuit_open";
            }
        });
    }

    /// Releases a probe claim that was not used (the request failed before reaching the target).
    pub fn release_probe(&self, m: &Model) {
        self.with(m, |s| s.probing = false);
    }

    pub fn ewma_ttfb_ms(&self, m: &Model) -> Option<f64> {
        self.with(m, |s| s.ewma_ttfb_ms).flatten()
    }
}

/// What the request asks of a candidate: a context window and, for routing modes, capabilities.
pub struct Needs {
    pub prompt_tokens: u64,
    pub output_tokens: u64,
    pub tools: bool,
}

impl Needs {
    pub fn fits(&self, m: &Model) -> bool {
        self.prompt_tokens
            + self
                .output_tokens
                .min(u64::from(m.max_output_tokens))
                .max(1)
            <= u64::from(m.context_window)
    }
}

/// Orders the candidates of a routing mode: `auto` by priority (highest first), `fast` by the
/// lowest observed time to first byte (unmeasured models after measured ones, by priority).
/// Models whose circuit is open go last (they are skipped at dispatch, but still reported).
pub fn order_mode(mode: &str, mut models: Vec<Arc<Model>>, health: &Health) -> Vec<Arc<Model>> {
    let key = |m: &Arc<Model>| -> (bool, i64, i64) {
        let open = health.is_open(m);
        let latency = if mode == "fast" {
            health
                .ewma_ttfb_ms(m)
                .map_or(i64::MAX, |v| (v * 1000.0) as i64)
        } else {
            0
        };
        (open, latency, -i64::from(m.priority))
    };
    models.sort_by_cached_key(key);
    models
}
