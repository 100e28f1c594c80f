//! One conformance suite for every rate-limiter backend: in-process and Redis.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use sluice_engine::ratelimit::{InProcess, LimitSpec, RateLimiter};
use sluice_engine::ratelimit_redis::Redis;

fn spec(prefix: &str, name: &'static str, limit: u64, window_ms: u64, cost: u64) -> LimitSpec {
    LimitSpec {
        key: format!("{prefix}{name}"),
        name,
        limit,
        window_ms,
        cost,
    }
}

fn prefix() -> String {
    format!("sluice:test:{}:", sluice_types::id::random_base62(12))
}

async fn redis() -> Arc<dyn RateLimiter> {
    let url = std::env::var("SLUICE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    Arc::new(
        Redis::connect(&url, std::time::Duration::from_millis(500))
            .await
            .expect("Redis must be running for the limiter suite"),
    )
}

async fn a_full_window_then_refusal_with_an_exact_wait(l: Arc<dyn RateLimiter>) {
    let p = prefix();
    let s = [spec(&p, "rpm", 3, 60_000, 1)];
    for left in [2, 1, 0] {
        let d = l.check(&s).await.unwrap();
        assert!(d.allowed);
        assert_eq!(d.dims[0].remaining, left);
    }
    let d = l.check(&s).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.dims[0].remaining, 0);
    // One request's worth of the window is 20 s; a little of it has already passed.
    assert!(
        (19_000..=20_000).contains(&d.dims[0].retry_ms),
        "{:?}",
        d.dims[0]
    );
}

async fn a_retry_after_the_wait_succeeds(l: Arc<dyn RateLimiter>) {
    let p = prefix();
    let s = [spec(&p, "rps", 4, 1_000, 1)];
    for _ in 0..4 {
        assert!(l.check(&s).await.unwrap().allowed);
    }
    let d = l.check(&s).await.unwrap();
    assert!(!d.allowed);
    tokio::time::sleep(std::time::Duration::from_millis(d.dims[0].retry_ms)).await;
    assert!(
        l.check(&s).await.unwrap().allowed,
        "waiting retry_ms is enough"
    );
}

async fn all_dimensions_or_none(l: Arc<dyn RateLimiter>) {
    let p = prefix();
    let rpm = spec(&p, "rpm", 10, 60_000, 1);
    let tpm = spec(&p, "tpm", 100, 60_000, 80);
    assert!(l.check(&[rpm.clone(), tpm.clone()]).await.unwrap().allowed);
    // tpm refuses the second 80: rpm must not be consumed either.
    let d = l.check(&[rpm.clone(), tpm.clone()]).await.unwrap();
    assert!(!d.allowed);
    assert!(d.dims[0].allowed && !d.dims[1].allowed);
    let small = LimitSpec { cost: 20, ..tpm };
    let d = l.check(&[rpm, small]).await.unwrap();
    assert!(d.allowed);
    assert_eq!(
        d.dims[0].remaining, 8,
        "the refused request took nothing from rpm"
    );
    assert_eq!(d.dims[1].remaining, 0);
}

async fn corrections_give_tokens_back(l: Arc<dyn RateLimiter>) {
    let p = prefix();
    let tpm = spec(&p, "tpm", 100, 60_000, 90);
    assert!(l.check(std::slice::from_ref(&tpm)).await.unwrap().allowed);
    assert!(!l.check(std::slice::from_ref(&tpm)).await.unwrap().allowed);
    l.adjust(std::slice::from_ref(&tpm), -80).await.unwrap();
    let d = l.check(&[LimitSpec { cost: 80, ..tpm }]).await.unwrap();
    assert!(d.allowed, "{d:?}");
}

async fn a_cost_above_the_limit_never_fits(l: Arc<dyn RateLimiter>) {
    let p = prefix();
    let d = l.check(&[spec(&p, "tpm", 100, 60_000, 101)]).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.dims[0].retry_ms, 60_000);
}

async fn concurrent_checks_admit_exactly_the_limit(l: Arc<dyn RateLimiter>) {
    let p = prefix();
    let s = vec![spec(&p, "rpm", 25, 60_000, 1)];
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (l, s) = (l.clone(), s.clone());
            tokio::spawn(async move { l.check(&s).await.unwrap().allowed })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap());
    }
    assert_eq!(ok, 25);
}

macro_rules! suite {
    ($make:expr => $($case:ident),*) => {
        $(
            #[tokio::test]
            async fn $case() {
                super::$case($make).await;
            }
        )*
    };
}

macro_rules! all_cases {
    ($make:expr) => {
        suite!($make =>
            a_full_window_then_refusal_with_an_exact_wait,
            a_retry_after_the_wait_succeeds,
            all_dimensions_or_none,
            corrections_give_tokens_back,
            a_cost_above_the_limit_never_fits,
            concurrent_checks_admit_exactly_the_limit
        );
    };
}

mod in_process {
    use super::*;
    all_cases!(Arc::new(InProcess::default()));
}

mod redis_backend {
    use super::*;
    all_cases!(redis().await);
}
