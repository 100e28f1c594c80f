//! What the gateway does when the shared limiter (Redis) does not answer: every call has a
//! deadline; after a failure requests stop waiting on Redis at once and follow the configured
//! policy — fail open onto a per-instance in-process limiter (so a dead Redis cannot remove all
//! limits), or fail closed with 503 — until a background probe sees Redis answer again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::ratelimit::{Decision, InProcess, LimitSpec, RateLimiter};
use crate::ratelimit_redis::Redis;

/// `[rate_limits] on_redis_error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Admit under this instance's own in-process limits (the default).
    FailOpen,
    /// Refuse with `503 service_unavailable` and `Retry-After: 1`.
    FailClosed,
}

impl OnError {
    /// As written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::FailOpen => "fail_open",
            OnError::FailClosed => "fail_closed",
        }
    }
}

/// The message a fail-closed refusal carries (the engine maps it to 503).
pub const UNAVAILABLE: &str = "rate limiter unavailable";

/// How often a down Redis is probed.
const PROBE_EVERY: Duration = Duration::from_millis(200);

pub struct Resilient {
    redis: Arc<tokio::sync::RwLock<Option<Redis>>>,
    up: Arc<AtomicBool>,
    fallback: InProcess,
    policy: OnError,
    deadline: Duration,
}

impl Resilient {
    /// Connects within `deadline × 20` (at least 1 s). When that fails: with `FailClosed` the
    /// error is returned (the server refuses to start); with `FailOpen` it starts degraded, keeps
    /// trying in the background, and returns what to log once the server listens.
    pub async fn start(
        url: &str,
        policy: OnError,
        deadline: Duration,
    ) -> Result<(Resilient, Option<String>), String> {
        let connect_within = (deadline * 20).max(Duration::from_secs(1));
        let first = match tokio::time::timeout(connect_within, Redis::connect(url, deadline)).await
        {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!(
                "cannot connect to Redis within {} ms",
                connect_within.as_millis()
            )),
        };
        let (redis, up, warning) = match first {
            Ok(r) => (Some(r), true, None),
            Err(e) if policy == OnError::FailClosed => return Err(e),
            Err(e) => (
                None,
                false,
                Some(format!(
                    "Redis unreachable at start ({e}); limits are per instance until it answers"
                )),
            ),
        };
        let me = Resilient {
            redis: Arc::new(tokio::sync::RwLock::new(redis)),
            up: Arc::new(AtomicBool::new(up)),
            fallback: InProcess::default(),
            policy,
            deadline,
        };
        me.spawn_probe(url.to_owned());
        Ok((me, warning))
    }

    /// While Redis is marked down, pings it (connecting first if it never was) and marks it up
    /// as soon as it answers. Stops when the limiter is dropped.
    fn spawn_probe(&self, url: String) {
        let redis = Arc::downgrade(&self.redis);
        let up = Arc::downgrade(&self.up);
        let deadline = self.deadline;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                let (Some(redis), Some(up)) = (redis.upgrade(), up.upgrade()) else {
                    return;
                };
                if up.load(Ordering::Relaxed) {
                    continue;
                }
                let missing = redis.read().await.is_none();
                if missing {
                    let connect = Redis::connect(&url, deadline);
                    if let Ok(Ok(r)) = tokio::time::timeout(deadline * 20, connect).await {
                        *redis.write().await = Some(r);
                    } else {
                        continue;
                    }
                }
                let ok = match redis.read().await.as_ref() {
                    Some(r) => tokio::time::timeout(deadline * 4, r.ping())
                        .await
                        .is_ok_and(|r| r.is_ok()),
                    None => false,
                };
                if ok {
                    tracing::warn!("Redis answers again; limits are shared again");
                    up.store(true, Ordering::Relaxed);
                }
            }
        });
    }

    fn mark_down(&self, why: &str) {
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::error!(
                error = why,
                policy = ?self.policy,
                "Redis did not answer; limits follow on_redis_error until it does"
            );
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    async fn degraded_check(&self, specs: &[LimitSpec]) -> Result<Decision, String> {
        match self.policy {
            OnError::FailOpen => self.fallback.check(specs).await,
            OnError::FailClosed => Err(UNAVAILABLE.to_owned()),
        }
    }
}

#[async_trait]
impl RateLimiter for Resilient {
    async fn check(&self, specs: &[LimitSpec]) -> Result<Decision, String> {
        if !self.is_up() {
            return self.degraded_check(specs).await;
        }
        let guard = self.redis.read().await;
        let Some(redis) = guard.as_ref() else {
            drop(guard);
            return self.degraded_check(specs).await;
        };
        match tokio::time::timeout(self.deadline, redis.check(specs)).await {
            Ok(Ok(d)) => Ok(d),
            Ok(Err(e)) => {
                drop(guard);
                self.mark_down(&e);
                self.degraded_check(specs).await
            }
            Err(_) => {
                drop(guard);
                self.mark_down("timed out");
                self.degraded_check(specs).await
            }
        }
    }

    async fn adjust(&self, specs: &[LimitSpec], delta: i64) -> Result<(), String> {
        if !self.is_up() {
            return self.fallback.adjust(specs, delta).await;
        }
        let guard = self.redis.read().await;
        let Some(redis) = guard.as_ref() else {
            return Ok(());
        };
        match tokio::time::timeout(self.deadline, redis.adjust(specs, delta)).await {
            Ok(r) => r,
            Err(_) => {
                drop(guard);
                self.mark_down("timed out");
                Ok(())
            }
        }
    }

    fn health(&self) -> Option<bool> {
        Some(self.is_up())
    }
}
