//! Executions benchmark: N executions of a 3-node transform workflow on SQLite, in-process.
//! Prints executions per second and the per-node scheduling overhead (time from a node's
//! predecessor finishing — or the execution being created — to the node starting), p50/p99.
//! Same-run baseline: the rate of plain authenticated reads (`GET /v1/models`, not counted
//! against the flows API limit of 300 requests a minute, which also caps `executions` here).
//!
//! cargo run --release -p sluice-testkit --bin sluice-flowbench -- [executions]

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::Instant;

use serde_json::{json, Value};
use sluice_testkit::TestApp;

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(250)
        .min(290);
    let app = TestApp::start().await;
    let acct = app
        .create_account_with(
            json!({"name": "bench", "plan": "enterprise", "tier": "unlimited"}),
            0,
        )
        .await;
    let (_, k) = app
        .create_key(
            &acct,
            &[
                "workflows:read",
                "workflows:write",
                "executions:read",
                "executions:write",
                "models:read",
            ],
        )
        .await;
    let wf: Value = app
        .req(reqwest::Method::POST, "/v1/workflows", &k)
        .json(&json!({"name": "three", "nodes": [
            {"id": "a", "type": "transform", "params": {"template": {"n": "{{ input.n + 1 }}"}}},
            {"id": "b", "type": "transform", "params": {"template": {"n": "{{ nodes.a.output.n * 2 }}"}}},
            {"id": "c", "type": "transform", "params": {"template": "{{ nodes.b.output.n }}"}}
        ], "edges": [{"from": "a", "to": "b"}, {"from": "b", "to": "c"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = wf["id"].as_str().unwrap().to_owned();

    // Baseline: authenticated reads of the workflow, same concurrency, same run.
    let t = Instant::now();
    let reads: Vec<_> = (0..n)
        .map(|_| {
            let (c, url, k) = (app.client.clone(), app.url("/v1/models"), k.clone());
            tokio::spawn(async move { c.get(url).bearer_auth(k).send().await.unwrap().status() })
        })
        .collect();
    for r in reads {
        r.await.unwrap();
    }
    let read_rate = n as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut ids = Vec::new();
    for i in 0..n {
        let x: Value = app
            .req(
                reqwest::Method::POST,
                &format!("/v1/workflows/{id}/executions"),
                &k,
            )
            .json(&json!({"input": {"n": i}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(x["id"].as_str().unwrap().to_owned());
    }
    let store = app.engine.store.clone();
    loop {
        let done = store
            .list_executions(
                &acct,
                Some(&id),
                Some("succeeded"),
                &sluice_store::Page {
                    after: None,
                    limit: 100_000,
                },
            )
            .await
            .unwrap()
            .len();
        if done == n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    let mut gaps = Vec::new();
    let mut queued = Vec::new();
    for x in &ids {
        let exec = store.get_execution(&acct, x).await.unwrap().unwrap();
        let runs = store.node_runs(x).await.unwrap();
        let at = |id: &str| runs.iter().find(|r| r.node_id == id).unwrap();
        queued.push(at("a").started_at.unwrap() - exec.created_at);
        gaps.push(at("b").started_at.unwrap() - at("a").finished_at.unwrap());
        gaps.push(at("c").started_at.unwrap() - at("b").finished_at.unwrap());
    }
    gaps.sort_unstable();
    queued.sort_unstable();
    let pct = |v: &[i64], p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    println!("sluice-flowbench: {n} executions of a 3-node transform workflow, SQLite, 4 workers, in-process");
    println!("| measure | value |");
    println!("|---|---|");
    println!("| executions per second (create → all succeeded) | {rate:.0} |");
    println!("| baseline: authenticated reads per second | {read_rate:.0} |");
    println!("| ratio executions / reads | {:.3} |", rate / read_rate);
    println!("| per-node scheduling overhead (predecessor finished → node started) p50 / p99 (ms) | {} / {} |", pct(&gaps, 0.5), pct(&gaps, 0.99));
    println!(
        "| queue wait (created → first node started) p50 / p99 (ms) | {} / {} |",
        pct(&queued, 0.5),
        pct(&queued, 0.99)
    );
}
