//! Rate-limit vocabulary shared by the engine (decisions) and the server (headers).

use serde::{Deserialize, Serialize};

/// Per-window ceilings; 0 means unlimited (CONTRACT §4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default)]
    pub rpm: u64,
    #[serde(default)]
    pub rps: u64,
    #[serde(default)]
    pub tpm: u64,
    #[serde(default)]
    pub tps: u64,
}

/// One dimension's state after a decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DimensionState {
    /// `rpm`, `rps`, `tpm`, `tps`, or `requests` for the flows API.
    pub name: &'static str,
    /// `account` or `key`: whose limit this is.
    pub scope: &'static str,
    pub limit: u64,
    pub window_seconds: u64,
    pub remaining: u64,
    /// Seconds until the dimension is fully replenished (rounded up).
    pub reset_seconds: u64,
}

/// What a rate-limited response reports: every dimension checked; the tightest one drives the
/// `X-RateLimit-*` headers.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RateLimitStatus {
    pub dimensions: Vec<DimensionState>,
    /// On a 429: the dimension that refused (the one with the longest wait).
    pub refused: Option<DimensionState>,
}

impl DimensionState {
    /// The policy name in the IETF `RateLimit-Policy` / `RateLimit` fields.
    pub fn policy_name(&self) -> String {
        if self.scope == "key" {
            format!("key-{}", self.name)
        } else {
            self.name.to_owned()
        }
    }
}

impl RateLimitStatus {
    /// The dimension the `X-RateLimit-*` headers describe: the refusing one on a 429, otherwise
    /// the one with the least room left relative to its limit.
    pub fn tightest(&self) -> Option<&DimensionState> {
        if let Some(r) = &self.refused {
            return Some(r);
        }
        self.dimensions.iter().min_by(|a, b| {
            // remaining/limit compared without floats: a.r * b.l vs b.r * a.l
            (u128::from(a.remaining) * u128::from(b.limit))
                .cmp(&(u128::from(b.remaining) * u128::from(a.limit)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(name: &'static str, limit: u64, remaining: u64) -> DimensionState {
        DimensionState {
            name,
            scope: "account",
            limit,
            window_seconds: 60,
            remaining,
            reset_seconds: 0,
        }
    }

    #[test]
    fn the_tightest_dimension_has_the_least_room_relative_to_its_limit() {
        let s = RateLimitStatus {
            dimensions: vec![d("rpm", 1200, 600), d("tpm", 1_000_000, 100_000)],
            refused: None,
        };
        assert_eq!(s.tightest().unwrap().name, "tpm");
    }
}
