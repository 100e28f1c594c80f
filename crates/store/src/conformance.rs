//! The storage conformance suite: every backend must pass each of these unchanged.

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
    }
}

fn page(after: Option<&str>, limit: u32) -> Page {
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

// ---- credits ----

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

// ---- agents and idempotency ----

use crate::{AgentRecord, CreateRefusal, IdemState};

fn agent(id: &str, name: &str) -> AgentRecord {
    AgentRecord {
        id: id.into(),
        account_id: "acct_a".into(),
        name: name.into(),
        spec: "{\"model\":\"m\"}".into(),
        created_at: 1,
        updated_at: 1,
    }
}

pub async fn agents_round_trip_with_unique_names(store: &dyn Store) {
    store.create_account(&account("acct_a", "a")).await.unwrap();
    store
        .create_agent(&agent("agent_1", "Support Bot"), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .create_agent(&agent("agent_2", "Support Bot"), None)
            .await
            .unwrap(),
        Err(CreateRefusal::NameTaken)
    );
    assert_eq!(
        store.get_agent("acct_a", "agent_1").await.unwrap(),
        Some(agent("agent_1", "Support Bot"))
    );
    assert_eq!(
        store.get_agent("acct_other", "agent_1").await.unwrap(),
        None,
        "another account's agent is not found"
    );
    store
        .create_agent(&agent("agent_3", "Other"), None)
        .await
        .unwrap()
        .unwrap();
    let mut renamed = agent("agent_3", "Support Bot");
    renamed.updated_at = 2;
    assert_eq!(
        store.update_agent(&renamed).await.unwrap(),
        Err(CreateRefusal::NameTaken)
    );
    renamed.name = "Third".into();
    assert_eq!(
        store
            .update_agent(&renamed)
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .updated_at,
        2
    );
    let listed: Vec<String> = store
        .list_agents("acct_a", &page(None, 10))
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(listed, ["agent_3", "agent_1"]);
    assert!(store.delete_agent("acct_a", "agent_1").await.unwrap());
    assert!(!store.delete_agent("acct_a", "agent_1").await.unwrap());
}

pub async fn the_agent_plan_limit_is_exact_under_concurrency(store: std::sync::Arc<dyn Store>) {
    store.create_account(&account("acct_a", "a")).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move {
                s.create_agent(&agent(&format!("agent_{i}"), &format!("n{i}")), Some(5))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(CreateRefusal::PlanLimit { current }) => assert_eq!(current, 5),
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(ok, 5);
    assert_eq!(
        store
            .list_agents("acct_a", &page(None, 100))
            .await
            .unwrap()
            .len(),
        5
    );
    // A delete frees a slot.
    assert!(
        store.delete_agent("acct_a", "agent_0").await.unwrap()
            || store
                .delete_agent(
                    "acct_a",
                    &store.list_agents("acct_a", &page(None, 1)).await.unwrap()[0].id
                )
                .await
                .unwrap()
    );
    store
        .create_agent(&agent("agent_new", "new"), Some(5))
        .await
        .unwrap()
        .unwrap();
}

pub async fn idempotency_keys_claim_replay_and_expire(store: &dyn Store) {
    assert_eq!(
        store
            .idem_begin("a", "POST /x", "k1", "h1", 100, 10)
            .await
            .unwrap(),
        IdemState::Started
    );
    assert_eq!(
        store
            .idem_begin("a", "POST /x", "k1", "h1", 101, 10)
            .await
            .unwrap(),
        IdemState::InFlight {
            request_hash: "h1".into()
        }
    );
    store
        .idem_finish("a", "POST /x", "k1", 201, "{}")
        .await
        .unwrap();
    assert_eq!(
        store
            .idem_begin("a", "POST /x", "k1", "h2", 102, 10)
            .await
            .unwrap(),
        IdemState::Done {
            request_hash: "h1".into(),
            status: 201,
            response: "{}".into()
        }
    );
    assert_eq!(
        store
            .idem_begin("b", "POST /x", "k1", "h1", 102, 10)
            .await
            .unwrap(),
        IdemState::Started,
        "keys are per account"
    );
    assert_eq!(
        store
            .idem_begin("a", "POST /x", "k1", "h3", 200, 10)
            .await
            .unwrap(),
        IdemState::Started,
        "expired keys start over"
    );
    store.idem_abandon("a", "POST /x", "k1").await.unwrap();
    assert_eq!(
        store
            .idem_begin("a", "POST /x", "k1", "h4", 201, 10)
            .await
            .unwrap(),
        IdemState::Started
    );
}

// ---- workflows ----

use crate::WorkflowRecord;

fn workflow(id: &str, name: &str, version: i64) -> WorkflowRecord {
    WorkflowRecord {
        id: id.into(),
        account_id: "acct_a".into(),
        name: name.into(),
        version,
        spec: format!("{{\"v\":{version}}}"),
        created_at: 1,
        updated_at: version,
    }
}

pub async fn workflows_keep_every_version_and_refuse_lost_updates(store: &dyn Store) {
    store.create_account(&account("acct_a", "a")).await.unwrap();
    store
        .create_workflow(&workflow("wf_1", "etl", 1), Some(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .create_workflow(&workflow("wf_2", "etl", 1), Some(2))
            .await
            .unwrap(),
        Err(CreateRefusal::NameTaken)
    );
    store
        .create_workflow(&workflow("wf_3", "other", 1), Some(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .create_workflow(&workflow("wf_4", "third", 1), Some(2))
            .await
            .unwrap(),
        Err(CreateRefusal::PlanLimit { current: 2 })
    );
    let v2 = store
        .update_workflow(&workflow("wf_1", "etl", 2))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(
        store
            .update_workflow(&workflow("wf_1", "etl", 2))
            .await
            .unwrap(),
        Ok(None),
        "a stale version is refused"
    );
    assert_eq!(
        store
            .update_workflow(&workflow("wf_1", "other", 3))
            .await
            .unwrap(),
        Err(CreateRefusal::NameTaken)
    );
    assert_eq!(
        store.workflow_version("wf_1", 1).await.unwrap().as_deref(),
        Some("{\"v\":1}")
    );
    assert_eq!(
        store.workflow_version("wf_1", 2).await.unwrap().as_deref(),
        Some("{\"v\":2}")
    );
    assert_eq!(
        store
            .get_workflow("acct_a", "wf_1")
            .await
            .unwrap()
            .unwrap()
            .version,
        2
    );
    assert_eq!(store.get_workflow("acct_b", "wf_1").await.unwrap(), None);
    assert_eq!(
        store
            .list_workflows("acct_a", &page(None, 10))
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(store.delete_workflow("acct_a", "wf_3").await.unwrap());
    store
        .create_workflow(&workflow("wf_5", "fifth", 1), Some(2))
        .await
        .unwrap()
        .unwrap();
    assert!(
        store.workflow_version("wf_1", 1).await.unwrap().is_some(),
        "versions outlive edits"
    );
}

// ---- executions ----

use crate::{ExecutionRecord, NodeRun};

fn execution(id: &str, run_after: i64) -> ExecutionRecord {
    ExecutionRecord {
        id: id.into(),
        account_id: "acct_a".into(),
        workflow_id: "wf_1".into(),
        version: 1,
        key_id: "key_1".into(),
        status: "queued".into(),
        input: "{}".into(),
        timeout_at: 1_000_000,
        created_at: 1,
        run_after,
        ..Default::default()
    }
}

pub async fn executions_are_claimed_once_and_reclaimed_after_a_lapsed_lease(store: &dyn Store) {
    store
        .create_execution(&execution("exec_1", 100))
        .await
        .unwrap();
    store
        .create_execution(&execution("exec_2", 500))
        .await
        .unwrap();
    assert_eq!(
        store.claim_execution("w1", 50, 1_000).await.unwrap(),
        None,
        "nothing due yet"
    );
    let got = store
        .claim_execution("w1", 100, 1_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.id.as_str(), got.status.as_str(), got.started_at),
        ("exec_1", "running", Some(100))
    );
    assert_eq!(
        store.claim_execution("w2", 200, 1_000).await.unwrap(),
        None,
        "exec_1 is leased, exec_2 not due"
    );
    assert!(store.renew_lease("exec_1", "w1", 2_000).await.unwrap());
    assert!(
        !store.renew_lease("exec_1", "w2", 2_000).await.unwrap(),
        "only the owner renews"
    );
    // The owner dies: once its lease lapses another worker takes the execution over.
    let got = store
        .claim_execution("w2", 2_001, 1_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.id, "exec_1");
    assert_eq!(got.started_at, Some(100));
    store
        .release_execution("exec_1", "w2", 5_000)
        .await
        .unwrap();
    assert_eq!(
        store
            .claim_execution("w3", 3_000, 1_000)
            .await
            .unwrap()
            .unwrap()
            .id,
        "exec_2"
    );
    assert!(store
        .finish_execution("exec_2", "succeeded", Some("{}"), None, 3_001)
        .await
        .unwrap());
    assert!(
        !store
            .finish_execution("exec_2", "failed", None, None, 3_002)
            .await
            .unwrap(),
        "terminal states stick"
    );
    assert_eq!(
        store
            .get_execution("acct_a", "exec_2")
            .await
            .unwrap()
            .unwrap()
            .status,
        "succeeded"
    );
    assert_eq!(
        store.claim_execution("w3", 3_003, 1_000).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .list_executions("acct_a", Some("wf_1"), Some("running"), &page(None, 10))
            .await
            .unwrap()
            .len(),
        1
    );
}

pub async fn concurrent_claims_hand_each_execution_to_one_worker(store: std::sync::Arc<dyn Store>) {
    for i in 0..10 {
        store
            .create_execution(&execution(&format!("exec_{i}"), 1))
            .await
            .unwrap();
    }
    let tasks: Vec<_> = (0..30)
        .map(|w| {
            let s = store.clone();
            tokio::spawn(async move {
                s.claim_execution(&format!("w{w}"), 10, 60_000)
                    .await
                    .unwrap()
                    .map(|e| e.id)
            })
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        if let Some(id) = t.await.unwrap() {
            got.push(id);
        }
    }
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 10, "ten claims, no execution twice: {got:?}");
}

pub async fn node_runs_and_events_are_kept_in_order(store: &dyn Store) {
    store
        .create_execution(&execution("exec_1", 1))
        .await
        .unwrap();
    let mut run = NodeRun {
        execution_id: "exec_1".into(),
        node_id: "a".into(),
        status: "running".into(),
        attempts: 1,
        started_at: Some(5),
        ..Default::default()
    };
    store.save_node_run(&run).await.unwrap();
    run.status = "succeeded".into();
    run.output = Some("{\"x\":1}".into());
    store.save_node_run(&run).await.unwrap();
    assert_eq!(store.node_runs("exec_1").await.unwrap(), vec![run]);
    for k in ["execution_started", "node_started", "node_finished"] {
        store.append_event("exec_1", k, "{}", 1).await.unwrap();
    }
    let after = store.events_after("exec_1", 1).await.unwrap();
    assert_eq!(
        after
            .iter()
            .map(|e| (e.n, e.kind.as_str()))
            .collect::<Vec<_>>(),
        [(2, "node_started"), (3, "node_finished")]
    );
}
