//! Conformance: agents, idempotency keys, workflows and executions.

use super::{account, page};
use crate::Store;

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
    assert!(store.save_node_run(&run, None).await.unwrap());
    run.status = "succeeded".into();
    run.output = Some("{\"x\":1}".into());
    assert!(store.save_node_run(&run, None).await.unwrap());
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

pub async fn only_the_lease_holder_writes_node_runs(store: &dyn Store) {
    store
        .create_execution(&execution("exec_f", 1))
        .await
        .unwrap();
    assert!(store
        .claim_execution("w1", 10, 1_000)
        .await
        .unwrap()
        .is_some());
    let mut run = NodeRun {
        execution_id: "exec_f".into(),
        node_id: "a".into(),
        status: "running".into(),
        attempts: 1,
        started_at: Some(10),
        ..Default::default()
    };
    assert!(store.save_node_run(&run, Some("w1")).await.unwrap());
    run.status = "succeeded".into();
    assert!(
        !store.save_node_run(&run, Some("w2")).await.unwrap(),
        "a worker without the lease is refused"
    );
    assert_eq!(
        store.node_runs("exec_f").await.unwrap()[0].status,
        "running"
    );
    // w1's lease lapses and w2 takes over: now w1 is the one refused.
    assert!(store
        .claim_execution("w2", 2_000, 1_000)
        .await
        .unwrap()
        .is_some());
    assert!(!store.save_node_run(&run, Some("w1")).await.unwrap());
    assert!(store.save_node_run(&run, Some("w2")).await.unwrap());
    assert_eq!(
        store.node_runs("exec_f").await.unwrap()[0].status,
        "succeeded"
    );
    // Once the execution ended, no worker writes (the API may, to close its nodes).
    assert!(store
        .finish_execution("exec_f", "cancelled", None, None, 2_100)
        .await
        .unwrap());
    run.status = "failed".into();
    assert!(!store.save_node_run(&run, Some("w2")).await.unwrap());
    assert!(store.save_node_run(&run, None).await.unwrap());
}
