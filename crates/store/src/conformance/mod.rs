//! The storage conformance suite: every backend must pass each of these unchanged.
//! Accounts and keys here; credits and usage in `credits`; agents, idempotency, workflows and
//! executions in `flows`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sluice_types::{Plan, Scope, Tier};

use crate::{Account, ApiKey, Page, Store, StoreError};

pub fn account(id: &str, name: &str) -> Account {
    Account {
        id: id.to_owned(),
        name: name.to_owned(),
        plan: Plan::Pro,
        tier: Tier::T3,
        created_at: 1_700_000_000,
    }
}

pub fn key(id: &str, account_id: &str, lookup: &str) -> ApiKey {
    ApiKey {
        id: id.to_owned(),
        account_id: account_id.to_owned(),
        name: format!("key {id}"),
        lookup: lookup.to_owned(),
        secret_hash: "ab".repeat(32),
        scopes: vec![Scope::ChatWrite, Scope::ModelsRead],
        models: Some(vec!["mock/small".to_owned(), "openai/gpt-4o".to_owned()]),
        expires_at: Some(1_900_000_000),
        revoked_at: None,
        created_at: 1_700_000_001,
        max_spend: None,
        limits: sluice_types::ratelimit::Limits {
            rpm: 5,
            rps: 0,
            tpm: 1000,
            tps: 0,
        },
        lineage: vec![sluice_types::Ancestor {
            key_id: "key_issuer".to_owned(),
            spend_capped: true,
            limits: sluice_types::ratelimit::Limits {
                rpm: 9,
                ..Default::default()
            },
        }],
    }
}

pub(crate) fn page(after: Option<&str>, limit: u32) -> Page {
    Page {
        after: after.map(str::to_owned),
        limit,
    }
}

pub async fn accounts_round_trip(store: &dyn Store) {
    let a = account("acct_a", "alpha");
    store.create_account(&a).await.unwrap();
    assert_eq!(store.get_account("acct_a").await.unwrap(), Some(a));
    assert_eq!(store.get_account("acct_missing").await.unwrap(), None);
}

pub async fn account_names_are_unique(store: &dyn Store) {
    store
        .create_account(&account("acct_a", "same"))
        .await
        .unwrap();
    let err = store
        .create_account(&account("acct_b", "same"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { field: "name" }),
        "{err:?}"
    );
}

pub async fn accounts_list_newest_first_with_cursor(store: &dyn Store) {
    for i in 0..5 {
        store
            .create_account(&account(&format!("acct_{i}"), &format!("n{i}")))
            .await
            .unwrap();
    }
    let first = store.list_accounts(&page(None, 2)).await.unwrap();
    let ids: Vec<_> = first.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["acct_4", "acct_3"]);
    let next = store
        .list_accounts(&page(Some("acct_3"), 10))
        .await
        .unwrap();
    let ids: Vec<_> = next.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["acct_2", "acct_1", "acct_0"]);
}

pub async fn keys_round_trip_every_field(store: &dyn Store) {
    store.create_account(&account("acct_a", "a")).await.unwrap();
    let k = key("key_1", "acct_a", "LOOKUP000001");
    store.create_key(&k).await.unwrap();
    assert_eq!(store.get_key("key_1").await.unwrap(), Some(k.clone()));
    assert_eq!(
        store.find_key_by_lookup("LOOKUP000001").await.unwrap(),
        Some(k)
    );
    assert_eq!(
        store.find_key_by_lookup("LOOKUP000002").await.unwrap(),
        None
    );

    let mut open = key("key_2", "acct_a", "LOOKUP000002");
    open.models = None;
    open.expires_at = None;
    store.create_key(&open).await.unwrap();
    assert_eq!(store.get_key("key_2").await.unwrap(), Some(open));

    let mut none_allowed = key("key_3", "acct_a", "LOOKUP000003");
    none_allowed.models = Some(vec![]);
    store.create_key(&none_allowed).await.unwrap();
    assert_eq!(store.get_key("key_3").await.unwrap(), Some(none_allowed));
    assert_eq!(store.count_keys().await.unwrap(), 3);
}

pub async fn key_needs_an_existing_account(store: &dyn Store) {
    let err = store
        .create_key(&key("key_1", "acct_nobody", "LOOKUP000001"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::MissingReference {
                field: "account_id"
            }
        ),
        "{err:?}"
    );
}

pub async fn key_lookup_is_unique(store: &dyn Store) {
    store.create_account(&account("acct_a", "a")).await.unwrap();
    store
        .create_key(&key("key_1", "acct_a", "LOOKUP000001"))
        .await
        .unwrap();
    let err = store
        .create_key(&key("key_2", "acct_a", "LOOKUP000001"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
}

pub async fn keys_list_by_account_with_cursor(store: &dyn Store) {
    store.create_account(&account("acct_a", "a")).await.unwrap();
    store.create_account(&account("acct_b", "b")).await.unwrap();
    for i in 0..4 {
        let acct = if i % 2 == 0 { "acct_a" } else { "acct_b" };
        store
            .create_key(&key(&format!("key_{i}"), acct, &format!("LOOKUP00000{i}")))
            .await
            .unwrap();
    }
    let all = store.list_keys(None, &page(None, 10)).await.unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[0].id, "key_3");
    let a = store
        .list_keys(Some("acct_a"), &page(None, 10))
        .await
        .unwrap();
    let ids: Vec<_> = a.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(ids, ["key_2", "key_0"]);
    let after = store
        .list_keys(Some("acct_a"), &page(Some("key_2"), 10))
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].id, "key_0");
}

pub async fn revoking_keeps_the_first_time(store: &dyn Store) {
    store.create_account(&account("acct_a", "a")).await.unwrap();
    store
        .create_key(&key("key_1", "acct_a", "LOOKUP000001"))
        .await
        .unwrap();
    let k = store.revoke_key("key_1", 100).await.unwrap().unwrap();
    assert_eq!(k.revoked_at, Some(100));
    let again = store.revoke_key("key_1", 200).await.unwrap().unwrap();
    assert_eq!(again.revoked_at, Some(100));
    assert_eq!(store.revoke_key("key_missing", 1).await.unwrap(), None);
    let found = store
        .find_key_by_lookup("LOOKUP000001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.revoked_at, Some(100));
}

pub async fn keys_are_found_with_their_accounts_tier(store: &dyn Store) {
    store.create_account(&account("acct_a", "a")).await.unwrap();
    let k = key("key_1", "acct_a", "LOOKUP000001");
    store.create_key(&k).await.unwrap();
    assert_eq!(
        store.find_key_with_tier("LOOKUP000001").await.unwrap(),
        Some((k.clone(), Tier::T3))
    );
    let updated = store
        .update_account("acct_a", None, Some(Tier::Unlimited))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((updated.plan, updated.tier), (Plan::Pro, Tier::Unlimited));
    assert_eq!(
        store
            .find_key_with_tier("LOOKUP000001")
            .await
            .unwrap()
            .unwrap()
            .1,
        Tier::Unlimited
    );
    assert_eq!(
        store
            .update_account("acct_none", Some(Plan::Free), None)
            .await
            .unwrap(),
        None
    );
}

pub async fn ping_answers(store: &dyn Store) {
    store.ping().await.unwrap();
}

mod credits;
mod flows;

pub use credits::*;
pub use flows::*;

/// Stored responses are per account: another account neither reads nor deletes them.
pub async fn responses_are_kept_per_account(store: &dyn Store) {
    let r = crate::ResponseRecord {
        id: "resp_1".into(),
        account_id: "acct_a".into(),
        body: "{\"id\":\"resp_1\"}".into(),
        conversation: "[]".into(),
        created_at: 5,
    };
    store.save_response(&r).await.unwrap();
    assert_eq!(
        store.get_response("acct_a", "resp_1").await.unwrap(),
        Some(r)
    );
    assert_eq!(store.get_response("acct_b", "resp_1").await.unwrap(), None);
    assert!(!store.delete_response("acct_b", "resp_1").await.unwrap());
    assert!(store.delete_response("acct_a", "resp_1").await.unwrap());
    assert_eq!(store.get_response("acct_a", "resp_1").await.unwrap(), None);
    assert!(!store.delete_response("acct_a", "resp_1").await.unwrap());
}
