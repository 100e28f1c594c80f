//! Rate limits: GCRA (the generic cell rate algorithm — a token bucket kept as one timestamp per
//! key), checked for every dimension of a request at once and committed only if all allow it.
//!
//! Two backends behind `RateLimiter`: in-process (the embedded default) and Redis (one Lua script
//! per decision, so several instances share one limit). `gcra` is the math both use.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;

/// One dimension of one decision: the bucket `key`, its ceiling per window, and what this
/// request costs in it (1 for request counts, tokens for token counts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitSpec {
    pub key: String,
    pub name: &'static str,
    pub limit: u64,
    pub window_ms: u64,
    pub cost: u64,
}

/// A dimension's state after the decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DimResult {
    /// This dimension alone would allow the request.
    pub allowed: bool,
    pub remaining: u64,
    /// Milliseconds until the bucket is full again.
    pub reset_ms: u64,
    /// Milliseconds until this request would fit (0 when allowed).
    pub retry_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub dims: Vec<DimResult>,
}

#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Checks every spec; consumes from all of them only if all allow.
    async fn check(&self, specs: &[LimitSpec]) -> Result<Decision, String>;
    /// Corrects what a past request consumed by `delta` units (negative gives back), e.g. tokens
    /// reserved at admission versus tokens actually used.
    async fn adjust(&self, specs: &[LimitSpec], delta: i64) -> Result<(), String>;
    /// Whether a shared backend answers (`None`: there is none, limits are in-process).
    fn health(&self) -> Option<bool> {
        None
    }
}

/// GCRA for one bucket. `tat` is the theoretical arrival time (ms) stored for the key, if any.
/// Returns the new TAT to store if the request is allowed, and the dimension's state.
pub fn gcra(tat: Option<f64>, now: f64, spec: &LimitSpec) -> (f64, DimResult) {
    let window = spec.window_ms as f64;
    let interval = window / spec.limit.max(1) as f64;
    let base = tat.unwrap_or(now).max(now);
    let new_tat = base + spec.cost as f64 * interval;
    let allow_at = new_tat - window;
    let allowed = allow_at <= now + 1e-6;
    let after = if allowed { new_tat } else { base };
    let used = (after - now).max(0.0);
    let remaining = ((window - used) / interval + 1e-6).floor().max(0.0) as u64;
    let retry_ms = if allowed {
        0
    } else if spec.cost > spec.limit {
        // Can never fit: the honest wait is "a whole window", and the caller says so.
        spec.window_ms
    } else {
        (allow_at - now).ceil().max(1.0) as u64
    };
    let dim = DimResult {
        allowed,
        remaining: remaining.min(spec.limit),
        reset_ms: used.ceil() as u64,
        retry_ms,
    };
    (new_tat, dim)
}

/// The embedded limiter: TATs in memory, one lock for a whole decision.
pub struct InProcess {
    epoch: Instant,
    tats: Mutex<HashMap<String, f64>>,
}

impl Default for InProcess {
    fn default() -> Self {
        InProcess {
            epoch: Instant::now(),
            tats: Mutex::new(HashMap::new()),
        }
    }
}

impl InProcess {
    fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64() * 1000.0
    }
}

#[async_trait]
impl RateLimiter for InProcess {
    async fn check(&self, specs: &[LimitSpec]) -> Result<Decision, String> {
        let now = self.now();
        let mut tats = self.tats.lock().unwrap_or_else(|p| p.into_inner());
        if tats.len() > 100_000 {
            // Buckets whose TAT has passed are full again: forgetting them changes nothing.
            tats.retain(|_, t| *t > now);
        }
        let results: Vec<(f64, DimResult)> = specs
            .iter()
            .map(|s| gcra(tats.get(&s.key).copied(), now, s))
            .collect();
        let allowed = results.iter().all(|(_, d)| d.allowed);
        if allowed {
            for (s, (t, _)) in specs.iter().zip(&results) {
                tats.insert(s.key.clone(), *t);
            }
        }
        Ok(Decision {
            allowed,
            dims: results.into_iter().map(|(_, d)| d).collect(),
        })
    }

    async fn adjust(&self, specs: &[LimitSpec], delta: i64) -> Result<(), String> {
        let now = self.now();
        let mut tats = self.tats.lock().unwrap_or_else(|p| p.into_inner());
        for s in specs {
            if let Some(t) = tats.get_mut(&s.key) {
                let interval = s.window_ms as f64 / s.limit.max(1) as f64;
                *t = (*t + delta as f64 * interval).max(now);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(limit: u64, cost: u64) -> LimitSpec {
        LimitSpec {
            key: "k".into(),
            name: "rpm",
            limit,
            window_ms: 60_000,
            cost,
        }
    }

    #[test]
    fn a_full_window_is_allowed_at_once_and_the_next_waits_one_interval() {
        let s = spec(3, 1);
        let mut tat = None;
        for left in [2, 1, 0] {
            let (t, d) = gcra(tat, 0.0, &s);
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
            tat = Some(t);
        }
        let (_, d) = gcra(tat, 0.0, &s);
        assert!(!d.allowed);
        assert_eq!(d.retry_ms, 20_000, "one request's worth of the window");
        let (_, d) = gcra(tat, 20_000.0, &s);
        assert!(d.allowed, "a retry after Retry-After succeeds");
    }

    #[test]
    fn a_cost_over_the_limit_can_never_fit() {
        let (_, d) = gcra(None, 0.0, &spec(10, 11));
        assert!(!d.allowed);
        assert_eq!(d.retry_ms, 60_000);
    }
}
