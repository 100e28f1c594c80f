//! A node's outcome is durable before anything depends on it: a failing store is retried, a
//! worker that lost its lease writes nothing, and an interrupted attempt counts.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use sluice_testkit::process::SluiceProcess;
use sluice_testkit::TestApp;

/// Makes the database refuse to record any node as succeeded until `heal` runs: a store fault
/// below the store trait, on either backend.
async fn break_success_writes(url: &str) {
    if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        for q in [
            "CREATE TABLE IF NOT EXISTS injected_faults (on_until INTEGER)",
            "INSERT INTO injected_faults VALUES (1)",
            "CREATE TRIGGER IF NOT EXISTS refuse_success BEFORE UPDATE ON node_runs \
             WHEN NEW.status = 'succeeded' AND EXISTS (SELECT 1 FROM injected_faults) \
             BEGIN SELECT RAISE(ABORT, 'injected fault'); END",
        ] {
            sqlx::query(q).execute(&pool).await.unwrap();
        }
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        for q in [
            "CREATE TABLE IF NOT EXISTS injected_faults (on_until BIGINT)",
            "INSERT INTO injected_faults VALUES (1)",
            "CREATE OR REPLACE FUNCTION refuse_success() RETURNS trigger AS $$ BEGIN \
               IF NEW.status = 'succeeded' AND EXISTS (SELECT 1 FROM injected_faults) THEN \
                 RAISE EXCEPTION 'injected fault'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_success BEFORE UPDATE ON node_runs FOR EACH ROW EXECUTE FUNCTION refuse_success()",
        ] {
            sqlx::query(q).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
}

async fn heal(url: &str) {
    let q = "DELETE FROM injected_faults";
    if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query(q).execute(&pool).await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query(q).execute(&pool).await.unwrap();
        pool.close().await;
    }
}

#[tokio::test]
async fn a_node_whose_success_cannot_be_recorded_is_retried_to_the_store_not_run_again() {
    let (url, recv) = crate::executions::receiver().await;
    let app = TestApp::start().await;
    let acct = app
        .create_account_with(
            json!({"name": "d", "plan": "pro", "tier": "unlimited"}),
            1_000_000,
        )
        .await;
    let (_, k) = app
        .create_key(
            &acct,
            &["workflows:write", "executions:write", "executions:read"],
        )
        .await;
    let wf: Value = app
        .req(Method::POST, "/v1/workflows", &k)
        .json(&json!({"name": "once", "nodes": [
            {"id": "call", "type": "http_request", "params": {"url": format!("{url}/item/one")},
             "retry": {"max_attempts": 3, "backoff_seconds": 0}}
        ]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    break_success_writes(&app.db.url).await;
    let x: Value = app
        .req(
            Method::POST,
            &format!("/v1/workflows/{}/executions", wf["id"].as_str().unwrap()),
            &k,
        )
        .json(&json!({"input": {}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let exec = x["id"].as_str().unwrap().to_owned();
    let until = Instant::now() + Duration::from_secs(10);
    while recv.calls.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < until, "the node never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The receiver answered; recording that keeps failing for a while, then the store heals.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    heal(&app.db.url).await;
    let url = app.url(&format!("/v1/executions/{exec}"));
    let done = crate::until_ended(&app.client, &url, &k, Duration::from_secs(15)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["nodes"][0]["attempts"], 1);
    assert_eq!(
        recv.calls.load(Ordering::SeqCst),
        1,
        "the side effect happened once"
    );
}

#[tokio::test]
async fn an_interrupted_node_with_no_attempts_left_fails_instead_of_running_again() {
    let (url, recv) = crate::executions::receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sluice.toml");
    std::fs::write(&cfg, "[executions]\nallow_private_networks = true\n").unwrap();
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let admin = "sk-interrupt-test-admin-0123456789";
    let env = [
        ("SLUICE_DATABASE_URL", db.as_str()),
        ("SLUICE_ADMIN_KEY", admin),
    ];
    let args = ["--config", cfg.to_str().unwrap()];
    let bin = crate::binary::bin();
    let a = SluiceProcess::spawn(bin, &args, &env).await;
    let client = reqwest::Client::new();
    let wf: Value = crate::post_json(
        &client,
        &a.url("/v1/workflows"),
        admin,
        &json!({"name": "once", "nodes": [
            {"id": "slow", "type": "http_request", "params": {"url": format!("{url}/item/slow")},
             "retry": {"max_attempts": 1}}
        ]}),
    )
    .await;
    let x: Value = crate::post_json(
        &client,
        &a.url(&format!(
            "/v1/workflows/{}/executions",
            wf["id"].as_str().unwrap()
        )),
        admin,
        &json!({}),
    )
    .await;
    let exec = x["id"].as_str().unwrap().to_owned();
    let until = Instant::now() + Duration::from_secs(10);
    while recv.calls.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < until, "the node never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.kill9().await;
    let b = SluiceProcess::spawn(bin, &args, &env).await;
    let url = b.url(&format!("/v1/executions/{exec}"));
    let done = crate::until_ended(&client, &url, admin, Duration::from_secs(20)).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["details"]["node_id"], "slow");
    let what = done["error"]["details"]["node_error"].as_str().unwrap();
    assert!(what.starts_with("The node was interrupted"), "{what}");
    assert_eq!(recv.calls.load(Ordering::SeqCst), 1, "no second call");
    b.terminate().await;
}
