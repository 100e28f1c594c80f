//! The real `sluice` binary: zero-config start, the bootstrap key, offline key creation,
//! strict config, graceful shutdown.

use std::path::Path;

use serde_json::Value;
use sluice_testkit::process::SluiceProcess;

pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sluice"))
}

#[tokio::test]
async fn serve_with_no_config_prints_an_admin_key_once_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let p = SluiceProcess::spawn(bin(), &[], &[("SLUICE_DATABASE_URL", &url)]).await;
    assert!(
        p.first_log_line
            .contains(&format!("listening on http://{}", p.addr)),
        "{}",
        p.first_log_line
    );
    assert_ne!(p.addr.port(), 0);
    let printed = p.stdout_lines.join("\n");
    let secret = printed
        .split_whitespace()
        .find(|w| w.starts_with("sk-"))
        .unwrap_or_else(|| panic!("no key printed: {printed}"))
        .to_owned();
    let client = reqwest::Client::new();
    let res = client
        .get(p.url("/v1/keys"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let status = p.terminate().await;
    assert!(status.success(), "{status:?}");

    // A second start on the same database prints no new key.
    let p = SluiceProcess::spawn(bin(), &[], &[("SLUICE_DATABASE_URL", &url)]).await;
    assert!(
        p.stdout_lines.iter().all(|l| !l.contains("sk-")),
        "{:?}",
        p.stdout_lines
    );
    let res = client.get(p.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    p.terminate().await;
}

#[tokio::test]
async fn keys_create_works_offline_and_the_key_authenticates() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let out = tokio::process::Command::new(bin())
        .args([
            "keys",
            "create",
            "--name",
            "ops",
            "--scopes",
            "keys:read,models:read",
        ])
        .env("SLUICE_DATABASE_URL", &url)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        key["scopes"],
        serde_json::json!(["keys:read", "models:read"])
    );
    let secret = key["secret"].as_str().unwrap();

    let admin = "sk-operator-configured-admin-key-123";
    let p = SluiceProcess::spawn(
        bin(),
        &[],
        &[("SLUICE_DATABASE_URL", &url), ("SLUICE_ADMIN_KEY", admin)],
    )
    .await;
    assert!(
        p.stdout_lines.is_empty(),
        "no bootstrap key when one exists: {:?}",
        p.stdout_lines
    );
    let client = reqwest::Client::new();
    let res = client
        .get(p.url("/v1/keys"))
        .bearer_auth(secret)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = client
        .get(p.url("/v1/accounts"))
        .header("x-api-key", admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    p.terminate().await;
}

#[tokio::test]
async fn an_unknown_config_key_stops_the_start_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sluice.toml");
    std::fs::write(
        &cfg,
        "listen = \"127.0.0.1:0\"\ndatabse_url = \"sqlite://x.db\"\n",
    )
    .unwrap();
    let out = tokio::process::Command::new(bin())
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `databse_url`"), "{err}");
    assert!(err.contains("at `databse_url`"), "{err}");
}

/// Two `sluice serve` processes on one Postgres database: 1,000 concurrent requests against
/// credit for 100 never overspend, and the ledger reconciles after both stop.
#[tokio::test]
async fn two_server_processes_sharing_postgres_never_overspend() {
    use sluice_store::testing::{Backend, TestDatabase};
    let db = TestDatabase::new(Backend::Postgres).await.unwrap();
    let mock = sluice_testkit::MockProvider::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sluice.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[providers]]\nid = \"mock\"\ntype = \"openai\"\nbase_url = \"{}\"\n\n\
             [[models]]\nid = \"mock/small\"\ninput_price = 1000000\noutput_price = 2000000\n\n\
             [credits]\nflush_interval_ms = 50\n\n[rate_limits]\nper_instance = true\n",
            mock.base_url()
        ),
    )
    .unwrap();
    let admin = "sk-two-process-admin-0123456789";
    let env = [
        ("SLUICE_DATABASE_URL", db.url.as_str()),
        ("SLUICE_ADMIN_KEY", admin),
    ];
    let args = ["--config", cfg.to_str().unwrap()];
    let a = SluiceProcess::spawn(bin(), &args, &env).await;
    let b = SluiceProcess::spawn(bin(), &args, &env).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(2_000)
        .build()
        .unwrap();
    let acct: Value = client
        .post(a.url("/v1/accounts"))
        .bearer_auth(admin)
        .json(&serde_json::json!({"name": "acme", "tier": "unlimited"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let acct = acct["id"].as_str().unwrap().to_owned();
    // 9 prompt + 5 × 2 completion micro-credits per request at the mock: credit for exactly 100.
    let res = client
        .post(a.url(&format!("/v1/accounts/{acct}/credits")))
        .bearer_auth(admin)
        .json(&serde_json::json!({"amount": 1_900}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let key: Value = client
        .post(b.url("/v1/keys"))
        .bearer_auth(admin)
        .json(&serde_json::json!({"name": "k", "account_id": acct, "scopes": ["chat:write"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = key["secret"].as_str().unwrap().to_owned();
    let body = serde_json::json!({"model": "mock/small", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 5});
    let tasks: Vec<_> = (0..1_000)
        .map(|i| {
            let url = if i % 2 == 0 {
                a.url("/v1/chat/completions")
            } else {
                b.url("/v1/chat/completions")
            };
            let (client, key, body) = (client.clone(), key.clone(), body.clone());
            tokio::spawn(async move {
                client
                    .post(url)
                    .bearer_auth(key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            402 => {}
            s => panic!("unexpected status {s}"),
        }
    }
    assert!(ok <= 100, "{ok} succeeded");
    assert!(a.terminate().await.success());
    assert!(b.terminate().await.success());
    let store = db.open().await.unwrap();
    let wallet = store.wallet(&acct).await.unwrap().unwrap();
    assert_eq!(store.recompute(&acct).await.unwrap(), wallet);
    assert_eq!(wallet.reserved, 0);
    let f = sluice_store::UsageFilter {
        account_id: Some(acct.clone()),
        ..Default::default()
    };
    let records = store.list_usage(&f, 2_000).await.unwrap();
    assert_eq!(
        records.len(),
        1_000,
        "both processes stored every usage record before exiting"
    );
    let charged: i64 = records.iter().map(|r| r.cost).sum();
    assert_eq!(wallet.balance, 1_900 - charged);
    assert!(wallet.balance >= 0);
    store.close().await;
}

/// Two `sluice serve` processes sharing Redis enforce one limit, not one each.
#[tokio::test]
async fn two_server_processes_sharing_redis_enforce_one_limit() {
    let mock = sluice_testkit::MockProvider::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sluice.toml");
    let prefix = format!("sluice:test:{}:", sluice_types::id::random_base62(10));
    std::fs::write(
        &cfg,
        format!(
            "[[providers]]\nid = \"mock\"\ntype = \"openai\"\nbase_url = \"{}\"\n\n\
             [[models]]\nid = \"mock/small\"\n\n\
             [rate_limits]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:6379\"\nkey_prefix = \"{prefix}\"\n",
            mock.base_url()
        ),
    )
    .unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let admin = "sk-two-process-admin-0123456789";
    let env = [
        ("SLUICE_DATABASE_URL", url.as_str()),
        ("SLUICE_ADMIN_KEY", admin),
    ];
    let args = ["--config", cfg.to_str().unwrap()];
    let a = SluiceProcess::spawn(bin(), &args, &env).await;
    let b = SluiceProcess::spawn(bin(), &args, &env).await;
    let client = reqwest::Client::new();
    let acct: Value = client
        .post(a.url("/v1/accounts"))
        .bearer_auth(admin)
        .json(&serde_json::json!({"name": "acme", "tier": "unlimited"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key: Value = client
        .post(a.url("/v1/keys"))
        .bearer_auth(admin)
        .json(&serde_json::json!({"name": "k", "account_id": acct["id"], "scopes": ["chat:write"], "rate_limits": {"rpm": 20}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = key["secret"].as_str().unwrap().to_owned();
    let body = serde_json::json!({"model": "mock/small", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2});
    let mut statuses = Vec::new();
    for i in 0..60 {
        let url = if i % 2 == 0 {
            a.url("/v1/chat/completions")
        } else {
            b.url("/v1/chat/completions")
        };
        statuses.push(
            client
                .post(url)
                .bearer_auth(&key)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    // 20 per minute; a request every ~5 ms refills nothing meaningful (one per 3 s).
    assert!(
        (20..=21).contains(&ok),
        "{ok} allowed across two instances: {statuses:?}"
    );
    assert_eq!(ok + limited, 60);
    a.terminate().await;
    b.terminate().await;
}

/// kill -9 during an execution's second (slow) node; a restarted server finishes it without
/// running the first node again, and leaves nothing `running`.
#[tokio::test]
async fn an_execution_survives_kill_9_and_completes_without_repeating_finished_nodes() {
    let (url, recv) = crate::executions::receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sluice.toml");
    std::fs::write(&cfg, "[executions]\nallow_private_networks = true\n").unwrap();
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let admin = "sk-crash-test-admin-0123456789";
    let env = [
        ("SLUICE_DATABASE_URL", db.as_str()),
        ("SLUICE_ADMIN_KEY", admin),
    ];
    let args = ["--config", cfg.to_str().unwrap()];
    let a = SluiceProcess::spawn(bin(), &args, &env).await;
    let client = reqwest::Client::new();
    let wf: Value = client
        .post(a.url("/v1/workflows"))
        .bearer_auth(admin)
        .json(&serde_json::json!({"name": "crash", "nodes": [
            {"id": "n1", "type": "http_request", "params": {"url": format!("{url}/item/one")}},
            {"id": "n2", "type": "http_request", "params": {"url": format!("{url}/item/slow")}, "retry": {"max_attempts": 3, "backoff_seconds": 0}}
        ], "edges": [{"from": "n1", "to": "n2"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let x: Value = client
        .post(a.url(&format!(
            "/v1/workflows/{}/executions",
            wf["id"].as_str().unwrap()
        )))
        .bearer_auth(admin)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let exec = x["id"].as_str().unwrap().to_owned();
    // Wait until node 2 is in flight, then crash.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let v: Value = client
            .get(a.url(&format!("/v1/executions/{exec}")))
            .bearer_auth(admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // Node 2's request has reached the receiver (it answers after 1.5 s): crash now.
        let in_flight = recv.keys.lock().unwrap().iter().any(|k| k.contains(":n2:"));
        if v["nodes"][1]["status"] == "running" && in_flight {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node 2 never started: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    a.kill9().await;
    let b = SluiceProcess::spawn(bin(), &args, &env).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let done = loop {
        let v: Value = client
            .get(b.url(&format!("/v1/executions/{exec}")))
            .bearer_auth(admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["status"] != "running" && v["status"] != "queued" {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "not resumed: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        done["nodes"][1]["attempts"], 2,
        "the interrupted attempt counts"
    );
    let keys = recv.keys.lock().unwrap().clone();
    assert_eq!(
        keys.iter().filter(|k| k.contains(":n1:")).count(),
        1,
        "node 1 ran exactly once: {keys:?}"
    );
    assert_eq!(
        keys.iter().filter(|k| k.contains(":n2:")).count(),
        2,
        "{keys:?}"
    );
    let running: Value = client
        .get(b.url("/v1/executions?status=running"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(running["data"], serde_json::json!([]));
    b.terminate().await;
}

#[tokio::test]
async fn postgres_with_in_process_limits_refuses_to_start_unless_per_instance_is_chosen() {
    use sluice_store::testing::{Backend, TestDatabase};
    let db = TestDatabase::new(Backend::Postgres).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &'static str| {
        let cfg = dir.path().join(format!("c{}.toml", extra.len()));
        std::fs::write(&cfg, extra).unwrap();
        let url = db.url.clone();
        async move {
            tokio::process::Command::new(bin())
                .args([
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--config",
                    cfg.to_str().unwrap(),
                ])
                .env("SLUICE_DATABASE_URL", url)
                .env_remove("SLUICE_REDIS_URL")
                .kill_on_drop(true)
                .output()
                .await
                .unwrap()
        }
    };
    let out = run("").await;
    assert_eq!(out.status.code(), Some(2), "a configuration error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rate_limits: the database is PostgreSQL"),
        "{stderr}"
    );
    // Chosen explicitly, it starts (and is stopped here by the listening line).
    let cfg = dir.path().join("ok.toml");
    std::fs::write(&cfg, "[rate_limits]\nper_instance = true\n").unwrap();
    let env = [("SLUICE_DATABASE_URL", db.url.as_str())];
    let p = SluiceProcess::spawn(bin(), &["--config", cfg.to_str().unwrap()], &env).await;
    p.terminate().await;
}
