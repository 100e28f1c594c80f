//! Sluice's shared vocabulary: the public error table, ids, scopes, plans and tiers.
//!
//! Nothing here knows HTTP or storage; every other crate speaks in these types.

pub mod account;
pub mod error;
pub mod id;
pub mod principal;
pub mod ratelimit;
pub mod scope;
pub mod secret;
pub mod validation;

pub use account::{Plan, Tier};
pub use error::{ApiError, Dialect, ErrorKind, ErrorType};
pub use principal::{Ancestor, Principal};
pub use scope::Scope;
pub use validation::FieldError;

/// Seconds since the Unix epoch, the one time unit the public API and the stores use.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
