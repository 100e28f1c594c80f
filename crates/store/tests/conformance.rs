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
            keys_are_found_with_their_accounts_tier,
            agents_round_trip_with_unique_names,
            responses_are_kept_per_account,
            idempotency_keys_claim_replay_and_expire,
            workflows_keep_every_version_and_refuse_lost_updates,
            executions_are_claimed_once_and_reclaimed_after_a_lapsed_lease,
            node_runs_and_events_are_kept_in_order,
            only_the_lease_holder_writes_node_runs,
            accounts_get_an_empty_wallet_and_top_ups_add_to_it,
            leases_grant_what_is_available_and_never_more,
            settling_charges_spend_and_refunds_the_rest,
            expired_leases_return_their_unused_part,
            keys_with_a_spend_limit_get_a_wallet,
            usage_records_filter_and_total,
        );
        #[tokio::test]
        async fn the_agent_plan_limit_is_exact_under_concurrency() {
            let db = TestDatabase::new($backend).await.expect("test database");
            let store = db.open().await.expect("open store");
            sluice_store::conformance::the_agent_plan_limit_is_exact_under_concurrency(store.clone()).await;
            store.close().await;
        }
        #[tokio::test]
        async fn concurrent_claims_hand_each_execution_to_one_worker() {
            let db = TestDatabase::new($backend).await.expect("test database");
            let store = db.open().await.expect("open store");
            sluice_store::conformance::concurrent_claims_hand_each_execution_to_one_worker(store.clone()).await;
            store.close().await;
        }
        #[tokio::test]
        async fn concurrent_leases_never_overdraw() {
            let db = TestDatabase::new($backend).await.expect("test database");
            let store = db.open().await.expect("open store");
            sluice_store::conformance::concurrent_leases_never_overdraw(store.clone()).await;
            store.close().await;
        }
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
