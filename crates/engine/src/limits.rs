//! What gets rate-limited and how a refusal reads: the gateway's rpm/rps/tpm/tps per account
//! (by tier) and per key, and the flows API's request limit per account (CONTRACT §4).

use std::sync::Arc;

use sluice_types::ratelimit::{DimensionState, Limits, RateLimitStatus};
use sluice_types::{ApiError, ErrorKind, Principal, Tier};

use crate::ratelimit::{Decision, LimitSpec};
use crate::Engine;

/// Limits configuration (`[rate_limits]`).
#[derive(Clone, Debug)]
pub struct RateSettings {
    /// Limits of tiers 1, 3, 5 and unlimited, in that order.
    pub tiers: [Limits; 4],
    pub flows_requests: u64,
    pub flows_window_seconds: u64,
    /// Prefix of every bucket key (lets several deployments share one Redis).
    pub key_prefix: String,
}

impl Default for RateSettings {
    fn default() -> Self {
        let l = |rpm, tpm, rps, tps| Limits { rpm, rps, tpm, tps };
        RateSettings {
            tiers: [
                l(1_200, 1_200_000, 10, 200_000),
                l(4_800, 4_000_000, 40, 500_000),
                l(10_000, 40_000_000, 100, 1_000_000),
                l(0, 0, 0, 0),
            ],
            flows_requests: 300,
            flows_window_seconds: 60,
            key_prefix: "sluice:rl:".to_owned(),
        }
    }
}

impl RateSettings {
    pub fn tier(&self, t: Tier) -> Limits {
        match t {
            Tier::T1 => self.tiers[0],
            Tier::T3 => self.tiers[1],
            Tier::T5 => self.tiers[2],
            Tier::Unlimited => self.tiers[3],
        }
    }
}

/// An admitted request's token reservation, to correct once its usage is known.
pub struct TokenHold {
    limiter: Arc<dyn crate::ratelimit::RateLimiter>,
    specs: Vec<LimitSpec>,
    pub reserved: u64,
}

impl TokenHold {
    /// Gives back (or takes) the difference between reserved and used tokens, off the request path.
    pub fn correct(self, used: u64) {
        let delta = used as i64 - self.reserved as i64;
        if self.specs.is_empty() || delta == 0 {
            return;
        }
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(async move {
                if let Err(e) = self.limiter.adjust(&self.specs, delta).await {
                    tracing::warn!(error = %e, "token limit correction failed");
                }
            });
        }
    }
}

fn specs(prefix: &str, scope: &str, l: Limits, tokens: u64, out: &mut Vec<LimitSpec>) {
    for (name, limit, window_ms, cost) in [
        ("rpm", l.rpm, 60_000, 1),
        ("rps", l.rps, 1_000, 1),
        ("tpm", l.tpm, 60_000, tokens),
        ("tps", l.tps, 1_000, tokens),
    ] {
        if limit > 0 {
            out.push(LimitSpec {
                key: format!("{prefix}{scope}:{name}"),
                name,
                limit,
                window_ms,
                cost,
            });
        }
    }
}

fn status(specs: &[LimitSpec], d: &Decision) -> RateLimitStatus {
    let dims: Vec<DimensionState> = specs
        .iter()
        .zip(&d.dims)
        .map(|(s, r)| DimensionState {
            name: s.name,
            scope: if s.key.contains(":k:") {
                "key"
            } else {
                "account"
            },
            limit: s.limit,
            window_seconds: s.window_ms / 1000,
            remaining: r.remaining,
            reset_seconds: r.reset_ms.div_ceil(1000),
        })
        .collect();
    let refused = (!d.allowed)
        .then(|| {
            d.dims
                .iter()
                .enumerate()
                .filter(|(_, r)| !r.allowed)
                .max_by_key(|(_, r)| r.retry_ms)
                .map(|(i, r)| (i, r.retry_ms))
        })
        .flatten();
    let mut st = RateLimitStatus {
        dimensions: dims,
        refused: None,
    };
    if let Some((i, retry_ms)) = refused {
        let mut r = st.dimensions[i].clone();
        r.remaining = 0;
        r.reset_seconds = retry_ms.div_ceil(1000).max(1);
        st.refused = Some(r);
    }
    st
}

fn refusal(st: RateLimitStatus, retry_ms: u64, whose: &str, flows: bool) -> ApiError {
    let Some(r) = st.refused.clone() else {
        return ApiError::internal("rate limit refusal without a dimension");
    };
    let retry_after = retry_ms.div_ceil(1000).max(1);
    let message = if flows {
        format!(
            "Rate limit exceeded: {} requests per {} s for {whose}. Retry after {retry_after} s.",
            r.limit, r.window_seconds
        )
    } else {
        format!(
            "Rate limit exceeded: {} {} for {whose}. Retry after {retry_after} s.",
            r.limit, r.name
        )
    };
    let mut e = ApiError::new(ErrorKind::RateLimited, message)
        .with_detail("dimension", r.name)
        .with_detail("limit", r.limit)
        .with_detail("window_seconds", r.window_seconds)
        .with_detail("retry_after", retry_after)
        .with_retry_after(retry_after);
    e.rate_limit = Some(Box::new(st));
    e
}

impl Engine {
    async fn decide(
        &self,
        specs: Vec<LimitSpec>,
        key_scope: &str,
        flows: bool,
    ) -> Result<(RateLimitStatus, Vec<LimitSpec>), ApiError> {
        if specs.is_empty() {
            return Ok((RateLimitStatus::default(), specs));
        }
        let d = match self.limiter.check(&specs).await {
            Ok(d) => d,
            // Only a fail-closed limiter errs (a fail-open one falls back to in-process limits).
            Err(e) => {
                return Err(ApiError::new(
                    ErrorKind::ServiceUnavailable,
                    "Rate limits cannot be checked right now; retry shortly.",
                )
                .with_detail("reason", "rate_limiter_unavailable")
                .with_retry_after(1)
                .with_internal(e))
            }
        };
        let st = status(&specs, &d);
        if d.allowed {
            return Ok((st, specs));
        }
        let (i, retry_ms) = d
            .dims
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.allowed)
            .max_by_key(|(_, r)| r.retry_ms)
            .map(|(i, r)| (i, r.retry_ms))
            .unwrap_or((0, 1_000));
        let whose = match specs.get(i) {
            Some(s) if s.key.contains(key_scope) => "this API key",
            Some(s) if s.key.contains(":k:") => "the key that issued this API key",
            _ => "this account",
        };
        Err(refusal(st, retry_ms, whose, flows))
    }

    /// Gateway admission: one request and `tokens` (prompt estimate + maximum output) against the
    /// account's tier and the key's own limits, all at once.
    pub async fn admit_rate(
        &self,
        who: &Principal,
        tokens: u64,
    ) -> Result<(RateLimitStatus, TokenHold), ApiError> {
        let rs = &self.settings.rate_limits;
        let mut v = Vec::new();
        specs(
            &rs.key_prefix,
            &format!("a:{}", who.account_id),
            rs.tier(who.tier),
            tokens,
            &mut v,
        );
        let key_scope = format!("k:{}", who.key_id);
        specs(&rs.key_prefix, &key_scope, who.key_limits, tokens, &mut v);
        // The keys this one was issued through count its requests in their own buckets.
        for a in &who.ancestors {
            specs(
                &rs.key_prefix,
                &format!("k:{}", a.key_id),
                a.limits,
                tokens,
                &mut v,
            );
        }
        let (st, specs) = self.decide(v, &key_scope, false).await?;
        let token_specs = specs
            .into_iter()
            .filter(|s| s.name == "tpm" || s.name == "tps")
            .collect();
        Ok((
            st,
            TokenHold {
                limiter: self.limiter.clone(),
                specs: token_specs,
                reserved: tokens,
            },
        ))
    }

    /// Flows API admission: one request against the account's flows limit.
    pub async fn admit_flows(&self, who: &Principal) -> Result<RateLimitStatus, ApiError> {
        let rs = &self.settings.rate_limits;
        if rs.flows_requests == 0 {
            return Ok(RateLimitStatus::default());
        }
        let spec = LimitSpec {
            key: format!("{}f:{}", rs.key_prefix, who.account_id),
            name: "requests",
            limit: rs.flows_requests,
            window_ms: rs.flows_window_seconds.max(1) * 1000,
            cost: 1,
        };
        self.decide(vec![spec], "\u{0}", true)
            .await
            .map(|(st, _)| st)
    }
}
