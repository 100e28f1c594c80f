//! Conformance: wallets, leases, the ledger and usage records.

use super::{account, key, page};
use crate::Store;

use crate::{LeaseGrant, UsageFilter, UsageRecord, Wallet};

pub async fn accounts_get_an_empty_wallet_and_top_ups_add_to_it(store: &dyn Store) {
    store.create_account(&account("acct_a", "a")).await.unwrap();
    assert_eq!(
        store.wallet("acct_a").await.unwrap(),
        Some(Wallet {
            balance: 0,
            reserved: 0
        })
    );
    let w = store
        .top_up("acct_a", 500, "initial", 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        w,
        Wallet {
            balance: 500,
            reserved: 0
        }
    );
    assert_eq!(store.top_up("acct_missing", 5, "x", 1).await.unwrap(), None);
    assert_eq!(store.recompute("acct_a").await.unwrap(), w);
}

pub async fn leases_grant_what_is_available_and_never_more(store: &dyn Store) {
    store.create_wallet("w", 100, "grant", 1).await.unwrap();
    // At most half of what is available, so other instances still find some.
    assert_eq!(
        store
            .acquire_lease("w", 60, 10, "l1", "i1", 100, 1)
            .await
            .unwrap(),
        LeaseGrant::Granted(50)
    );
    assert_eq!(
        store
            .acquire_lease("w", 60, 10, "l2", "i1", 100, 1)
            .await
            .unwrap(),
        LeaseGrant::Granted(25)
    );
    // …unless the minimum needs more.
    assert_eq!(
        store
            .acquire_lease("w", 60, 20, "l3", "i1", 100, 1)
            .await
            .unwrap(),
        LeaseGrant::Granted(20)
    );
    assert_eq!(
        store
            .acquire_lease("w", 4, 4, "l4", "i1", 100, 1)
            .await
            .unwrap(),
        LeaseGrant::Granted(4)
    );
    assert_eq!(
        store
            .acquire_lease("w", 60, 10, "l5", "i1", 100, 1)
            .await
            .unwrap(),
        LeaseGrant::Insufficient(Wallet {
            balance: 100,
            reserved: 99
        })
    );
    assert_eq!(
        store
            .acquire_lease("nope", 1, 1, "l6", "i1", 100, 1)
            .await
            .unwrap(),
        LeaseGrant::NoWallet
    );
    assert_eq!(
        store.recompute("w").await.unwrap(),
        store.wallet("w").await.unwrap().unwrap()
    );
}

pub async fn settling_charges_spend_and_refunds_the_rest(store: &dyn Store) {
    store.create_wallet("w", 100, "grant", 1).await.unwrap();
    store
        .acquire_lease("w", 50, 50, "l1", "i1", 100, 1)
        .await
        .unwrap();
    assert!(store
        .settle_lease("l1", 20, 0, false, Some(200), 2)
        .await
        .unwrap());
    assert_eq!(
        store.wallet("w").await.unwrap().unwrap(),
        Wallet {
            balance: 80,
            reserved: 30
        }
    );
    // Give back 10 of the 30 still held, keep the lease open.
    assert!(store
        .settle_lease("l1", 0, 10, false, None, 3)
        .await
        .unwrap());
    assert_eq!(
        store.wallet("w").await.unwrap().unwrap(),
        Wallet {
            balance: 80,
            reserved: 20
        }
    );
    // Spend 5 more and close: the last 15 come back.
    assert!(store.settle_lease("l1", 5, 0, true, None, 4).await.unwrap());
    assert_eq!(
        store.wallet("w").await.unwrap().unwrap(),
        Wallet {
            balance: 75,
            reserved: 0
        }
    );
    assert!(
        !store
            .settle_lease("l1", 1, 0, false, None, 5)
            .await
            .unwrap(),
        "a closed lease takes nothing"
    );
    // A lease cannot pay out more than it holds.
    store
        .acquire_lease("w", 10, 10, "l2", "i1", 100, 6)
        .await
        .unwrap();
    assert!(!store
        .settle_lease("l2", 11, 0, false, None, 7)
        .await
        .unwrap());
    assert_eq!(
        store.recompute("w").await.unwrap(),
        store.wallet("w").await.unwrap().unwrap()
    );
    let kinds: Vec<String> = store
        .ledger("w", &page(None, 100))
        .await
        .unwrap()
        .into_iter()
        .rev()
        .map(|e| format!("{}:{}", e.kind, e.amount))
        .collect();
    assert_eq!(
        kinds,
        [
            "topup:100",
            "reservation:50",
            "settlement:20",
            "refund:10",
            "settlement:5",
            "refund:15",
            "reservation:10"
        ]
    );
}

pub async fn expired_leases_return_their_unused_part(store: &dyn Store) {
    store.create_wallet("w", 100, "grant", 1).await.unwrap();
    store
        .acquire_lease("w", 40, 40, "old", "crashed", 10, 1)
        .await
        .unwrap();
    store
        .acquire_lease("w", 40, 40, "live", "alive", 1_000, 1)
        .await
        .unwrap();
    store
        .settle_lease("old", 15, 0, false, None, 5)
        .await
        .unwrap();
    assert_eq!(store.expire_leases(11).await.unwrap(), 1);
    assert_eq!(
        store.wallet("w").await.unwrap().unwrap(),
        Wallet {
            balance: 85,
            reserved: 40
        }
    );
    assert_eq!(store.expire_leases(11).await.unwrap(), 0);
    assert_eq!(
        store.recompute("w").await.unwrap(),
        Wallet {
            balance: 85,
            reserved: 40
        }
    );
}

pub async fn concurrent_leases_never_overdraw(store: std::sync::Arc<dyn Store>) {
    store.create_wallet("w", 100, "grant", 1).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.acquire_lease("w", 7, 7, &format!("l{i}"), "i", 100, 1)
                .await
                .unwrap()
        }));
    }
    let mut granted = 0;
    for t in tasks {
        if let LeaseGrant::Granted(n) = t.await.unwrap() {
            assert_eq!(n, 7);
            granted += n;
        }
    }
    assert_eq!(granted, 98, "14 leases of 7 fit in 100");
    let w = store.wallet("w").await.unwrap().unwrap();
    assert_eq!(
        w,
        Wallet {
            balance: 100,
            reserved: 98
        }
    );
    assert_eq!(store.recompute("w").await.unwrap(), w);
}

pub async fn keys_with_a_spend_limit_get_a_wallet(store: &dyn Store) {
    store.create_account(&account("acct_a", "a")).await.unwrap();
    let mut k = key("key_1", "acct_a", "LOOKUP000001");
    k.max_spend = Some(250);
    store.create_key(&k).await.unwrap();
    assert_eq!(
        store.get_key("key_1").await.unwrap().unwrap().max_spend,
        Some(250)
    );
    assert_eq!(
        store.wallet("key_1").await.unwrap(),
        Some(Wallet {
            balance: 250,
            reserved: 0
        })
    );
}

fn usage(id: &str, key: &str, model: &str, cost: i64, at: i64) -> UsageRecord {
    UsageRecord {
        request_id: id.into(),
        account_id: "acct_a".into(),
        key_id: key.into(),
        model: Some(model.into()),
        provider: Some("mock".into()),
        prompt_tokens: 10,
        completion_tokens: 5,
        cost,
        latency_ms: 12,
        ttfb_ms: Some(3),
        status: 200,
        error_code: None,
        created_at: at,
    }
}

pub async fn usage_records_filter_and_total(store: &dyn Store) {
    let day = 86_400;
    let recs = vec![
        usage("req_1", "key_1", "m/a", 100, day),
        usage("req_2", "key_1", "m/b", 200, day + 5),
        usage("req_3", "key_2", "m/a", 300, 2 * day),
    ];
    store.insert_usage(&recs).await.unwrap();
    store.insert_usage(&recs[..1]).await.unwrap();
    let all = UsageFilter {
        account_id: Some("acct_a".into()),
        ..Default::default()
    };
    let listed = store.list_usage(&all, 10).await.unwrap();
    assert_eq!(listed.len(), 3, "a request id is stored once");
    assert_eq!(listed[0], recs[2]);
    let by_model = store.usage_totals(&all, "model").await.unwrap();
    assert_eq!(
        by_model
            .iter()
            .map(|t| (t.group.as_str(), t.requests, t.cost))
            .collect::<Vec<_>>(),
        [("m/a", 2, 400), ("m/b", 1, 200)]
    );
    let by_day = store.usage_totals(&all, "day").await.unwrap();
    assert_eq!(
        by_day
            .iter()
            .map(|t| (t.group.as_str(), t.cost))
            .collect::<Vec<_>>(),
        [("1", 300), ("2", 300)]
    );
    let narrow = UsageFilter {
        key_id: Some("key_1".into()),
        from: Some(day + 1),
        ..all.clone()
    };
    assert_eq!(
        store.list_usage(&narrow, 10).await.unwrap(),
        vec![recs[1].clone()]
    );
    let by_key = store
        .usage_totals(
            &UsageFilter {
                to: Some(2 * day),
                ..all
            },
            "key",
        )
        .await
        .unwrap();
    assert_eq!(by_key.len(), 1);
    assert_eq!(by_key[0].prompt_tokens, 20);
}
