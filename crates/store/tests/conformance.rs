//! Runs the one storage conformance suite against every backend.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sluice_store::testing::{Backend, TestDatabase};

macro_rules! suite {
    ($backend:expr => $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let db = TestDatabase::new($backend).await.expect("test database");
                let store = db.open().await.expect("open store");
                sluice_store::conformance::$name(&*store).await;
                store.close().await;
            }
        )*
    };
}

macro_rules! all_cases {
    ($backend:expr) => {
        suite!($backend =>
            accounts_round_trip,
            account_names_are_unique,
            accounts_list_newest_first_with_cursor,
            keys_round_trip_every_field,
            key_needs_an_existing_account,
            key_lookup_is_unique,
            keys_list_by_account_with_cursor,
            revoking_keeps_the_first_time,
            ping_answers,
        );
    };
}

mod sqlite {
    use super::*;
    all_cases!(Backend::Sqlite);
}

mod postgres {
    use super::*;
    all_cases!(Backend::Postgres);
}

/// Two processes starting on a fresh database at once must apply each migration exactly once.
#[tokio::test]
async fn concurrent_opens_migrate_once_on_every_backend() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let db = TestDatabase::new(backend).await.expect("test database");
        let (a, b) = tokio::join!(db.open(), db.open());
        let (a, b) = (a.expect("first open"), b.expect("second open"));
        a.ping().await.expect("ping");
        b.close().await;
        a.close().await;
    }
}
