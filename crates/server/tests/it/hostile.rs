//! Hostile workflows against the real binary: runaway templates, unbounded outputs and bodies.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_testkit::process::SluiceProcess;

const ADMIN: &str = "sk-hostile-test-admin-0123456789";
const MIB: u64 = 1024 * 1024;

async fn start(extra_config: &str) -> (SluiceProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sluice.toml");
    std::fs::write(
        &cfg,
        format!("[executions]\nallow_private_networks = true\n{extra_config}"),
    )
    .unwrap();
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let env = [
        ("SLUICE_DATABASE_URL", db.as_str()),
        ("SLUICE_ADMIN_KEY", ADMIN),
    ];
    let p = SluiceProcess::spawn(
        crate::binary::bin(),
        &["--config", cfg.to_str().unwrap()],
        &env,
    )
    .await;
    (p, dir)
}

async fn workflow(p: &SluiceProcess, def: Value) -> String {
    let res = reqwest::Client::new()
        .post(p.url("/v1/workflows"))
        .bearer_auth(ADMIN)
        .json(&def)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let v: Value = res.json().await.unwrap();
    assert_eq!(status, 201, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

/// Starts an execution and waits for its end (`?wait=true`); returns (status, body, elapsed).
async fn run(p: &SluiceProcess, wf: &str) -> (u16, Value, Duration) {
    let t = Instant::now();
    let res = reqwest::Client::new()
        .post(p.url(&format!("/v1/workflows/{wf}/executions?wait=true")))
        .bearer_auth(ADMIN)
        .json(&json!({"input": {}}))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap(), t.elapsed())
}

/// Resident memory once start-up work (tokenizer tables) is done and one execution has run.
async fn warmed_up_rss(p: &SluiceProcess) -> u64 {
    let wf = workflow(
        p,
        json!({"name": "warm-up", "nodes": [
            {"id": "t", "type": "transform", "params": {"template": "{{ 1 + 1 }}"}}
        ]}),
    )
    .await;
    let (status, body, _) = run(p, &wf).await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.rss_bytes()
}

#[tokio::test]
async fn a_runaway_template_fails_at_its_timeout_without_stalling_the_server_or_growing_it() {
    let (p, _dir) = start("").await;
    let wf = workflow(&p, json!({"name": "runaway", "timeout_seconds": 5, "nodes": [{
        "id": "spin", "type": "transform", "timeout_seconds": 1,
        "params": {"template": "{% for i in range(250) %}{{ ('x' * (100000000 - i))|length }}{% endfor %}"}
    }]}))
    .await;
    let rss_before = warmed_up_rss(&p).await;
    let probe = async {
        let client = reqwest::Client::new();
        let (mut worst, mut rss) = (Duration::ZERO, 0u64);
        for _ in 0..60 {
            let t = Instant::now();
            let res = client.get(p.url("/healthz")).send().await.unwrap();
            assert_eq!(res.status(), 200);
            worst = worst.max(t.elapsed());
            rss = rss.max(p.rss_bytes());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        (worst, rss)
    };
    let ((status, body, elapsed), (worst, rss)) = tokio::join!(run(&p, &wf), probe);
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "execution_failed");
    let what = body["error"]["details"]["node_error"].as_str().unwrap();
    assert!(what.starts_with("Node timed out after 1s"), "{what}");
    // The node's own timeout (1 s) plus claiming and answering; never the template's 16 s.
    assert!(elapsed < Duration::from_millis(2_000), "{elapsed:?}");
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(
        worst < Duration::from_millis(100),
        "/healthz took {worst:?}"
    );
    // Caps: 1 MiB output + 8 MiB context; the 100 MB strings live in the worker, not here.
    assert!(
        rss < rss_before + 9 * MIB + 50 * MIB,
        "server grew from {} to {} MiB",
        rss_before / MIB,
        rss / MIB
    );
    p.terminate().await;
}

#[tokio::test]
async fn outputs_and_response_bodies_are_capped_by_the_operator_not_the_workflow() {
    let (url, recv) = crate::executions::receiver().await;
    let (p, _dir) = start("max_output_bytes = 1048576\n").await;
    let rss_before = warmed_up_rss(&p).await;
    let big = workflow(
        &p,
        json!({"name": "big", "nodes": [
            {"id": "huge", "type": "transform", "params": {"template": "{{ 'x' * 30000000 }}"}}
        ]}),
    )
    .await;
    let (status, body, _) = run(&p, &big).await;
    assert_eq!(status, 502, "{body}");
    let what = body["error"]["details"]["node_error"].as_str().unwrap();
    assert!(what.contains("1048576-byte output limit"), "{what}");

    let grow = workflow(&p, json!({"name": "grow", "nodes": [{"id": "g", "type": "transform",
        "params": {"template": "{% set s = 'x' * 1000000 %}{{ s|replace('x', 'xxxxxxxxxx')|replace('x', 'xxxxxxxxxx') }}"}}
    ]}))
    .await;
    let (status, body, _) = run(&p, &grow).await;
    assert_eq!(status, 502, "{body}");

    // Doubling strings past the worker's memory limit ends the worker, not the server.
    let double = workflow(&p, json!({"name": "double", "nodes": [{"id": "d", "type": "transform",
        "params": {"template": "{% set a = 'x' * 100000000 %}{% set b = a ~ a %}{% set c = b ~ b %}{{ c|length }}"}}
    ]}))
    .await;
    let (status, body, _) = run(&p, &double).await;
    assert_eq!(status, 502, "{body}");
    let what = body["error"]["details"]["node_error"].as_str().unwrap();
    assert!(what.contains("memory limit (512 MiB)"), "{what}");

    let body_cap = workflow(
        &p,
        json!({"name": "body", "nodes": [{"id": "get", "type": "http_request",
            "params": {"url": format!("{url}/item/big"), "max_response_bytes": 1e18}}
        ]}),
    )
    .await;
    let (status, body, _) = run(&p, &body_cap).await;
    assert_eq!(status, 502, "{body}");
    let what = body["error"]["details"]["node_error"].as_str().unwrap();
    assert_eq!(what, "response larger than 1048576 bytes");
    assert_eq!(recv.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    let rss = p.rss_bytes();
    assert!(
        rss < rss_before + 50 * MIB,
        "server grew from {} to {} MiB",
        rss_before / MIB,
        rss / MIB
    );
    p.terminate().await;
}

#[tokio::test]
async fn cancelling_an_execution_kills_the_template_it_was_evaluating() {
    let (p, _dir) = start("template_workers = 1\n").await;
    let wf = workflow(&p, json!({"name": "spin", "nodes": [{
        "id": "spin", "type": "transform", "timeout_seconds": 60,
        "params": {"template": "{% for i in range(250) %}{{ ('x' * (100000000 - i))|length }}{% endfor %}"}
    }]}))
    .await;
    let client = reqwest::Client::new();
    let x: Value = crate::post_json(
        &client,
        &p.url(&format!("/v1/workflows/{wf}/executions")),
        ADMIN,
        &json!({}),
    )
    .await;
    let exec = x["id"].as_str().unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let v: Value = client
            .get(p.url(&format!("/v1/executions/{exec}")))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["nodes"][0]["status"] == "running" {
            break;
        }
        assert!(Instant::now() < until, "the node never started: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // With one worker slot, the one worker there is is the one evaluating the template.
    let busy = p.children();
    assert_eq!(busy.len(), 1, "{busy:?}");
    let res = client
        .post(p.url(&format!("/v1/executions/{exec}/cancel")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cancelled = Instant::now();
    while p.children().contains(&busy[0]) {
        assert!(
            cancelled.elapsed() < Duration::from_millis(1_500),
            "the worker still runs after cancel"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.terminate().await;
}

#[tokio::test]
async fn parsing_a_template_that_folds_to_gigabytes_happens_in_the_sandbox() {
    let (p, _dir) = start("").await;
    let rss_before = warmed_up_rss(&p).await;
    let bomb =
        "{{ (('x' * 100000000) ~ ('x' * 100000000)) ~ (('x' * 100000000) ~ ('x' * 100000000)) }}";
    let res = reqwest::Client::new()
        .post(p.url("/v1/workflows"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "bomb", "nodes": [
            {"id": "t", "type": "transform", "params": {"template": bomb}}
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "validation_error");
    assert_eq!(
        body["error"]["details"]["errors"][0]["field"],
        "nodes[0].params.template"
    );
    let msg = body["error"]["details"]["errors"][0]["message"]
        .as_str()
        .unwrap();
    assert!(msg.contains("could not be checked"), "{msg}");
    let rss = p.rss_bytes();
    assert!(
        rss < rss_before + 50 * MIB,
        "server grew from {} to {} MiB",
        rss_before / MIB,
        rss / MIB
    );
    p.terminate().await;
}
