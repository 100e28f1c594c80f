//! Credits that never overspend, settlement of every kind of ending, and usage records.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use sluice_testkit::{admin_key, Behavior, TestApp, TestServer};

use crate::assert_error;
use crate::gateway::wait_until;

/// "Say hello" costs 9 prompt tokens at the mock; 5 completion tokens. Prices in the test
/// catalog: 1 micro-credit per prompt token, 2 per completion token → 19 per request.
pub const COST: i64 = 9 + 5 * 2;

pub fn hello(stream: bool) -> Value {
    json!({"model": "mock/small", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 5, "stream": stream})
}

async fn credits(app: &TestServer, key: &str) -> Value {
    app.req(Method::GET, "/v1/credits", key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Writes pending charges and usage records, as the periodic flush would.
async fn settle_all(server: &TestServer) {
    server.engine.credits.flush(true).await.unwrap();
    server.engine.usage.flush().await;
}

/// Waits until `n` usage records of `account` are stored (streams settle as they end, which may
/// be just after the client read the last byte), then settles everything.
pub async fn settled(
    server: &TestServer,
    account: &str,
    n: usize,
) -> Vec<sluice_store::UsageRecord> {
    let f = sluice_store::UsageFilter {
        account_id: Some(account.to_owned()),
        ..Default::default()
    };
    for _ in 0..500 {
        server.engine.usage.flush().await;
        let records = server.engine.store.list_usage(&f, 10_000).await.unwrap();
        if records.len() >= n {
            settle_all(server).await;
            return records;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("fewer than {n} usage records for {account}");
}

/// Σ cost of the account's usage records.
pub fn charged(records: &[sluice_store::UsageRecord]) -> i64 {
    records.iter().map(|r| r.cost).sum()
}

/// The wallet equals what its ledger adds up to, and nothing is left reserved.
pub async fn assert_reconciles(server: &TestServer, account: &str) -> i64 {
    let store = &server.engine.store;
    let wallet = store.wallet(account).await.unwrap().unwrap();
    assert_eq!(
        store.recompute(account).await.unwrap(),
        wallet,
        "ledger reconciles to the wallet"
    );
    assert_eq!(wallet.reserved, 0, "nothing stays reserved");
    assert!(wallet.balance >= 0);
    wallet.balance
}

pub async fn key_for(app: &TestApp, balance: i64) -> (String, String) {
    let acct = app.create_account_with_balance("acme", balance).await;
    let (_, key) = app.create_key(&acct, &["chat:write", "usage:read"]).await;
    (acct, key)
}

/// Fires `n` concurrent chat requests spread over `servers`; returns (successes, statuses).
async fn storm(servers: &[&TestServer], key: &str, n: usize) -> (i64, Vec<u16>) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(2_000)
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let url = servers[i % servers.len()].url("/v1/chat/completions");
            let (client, key) = (client.clone(), key.to_owned());
            tokio::spawn(async move {
                let res = client
                    .post(url)
                    .bearer_auth(key)
                    .json(&hello(false))
                    .send()
                    .await
                    .unwrap();
                let status = res.status().as_u16();
                let body: Value = res.json().await.unwrap();
                if status == 402 {
                    assert_eq!(body["error"]["code"], "insufficient_credits");
                    assert_eq!(body["error"]["type"], "billing_error");
                    assert!(body["error"]["details"]["required"].as_i64().unwrap() > 0);
                    assert!(body["error"]["details"]["balance"].as_i64().unwrap() >= 0);
                }
                status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let ok = statuses.iter().filter(|s| **s == 200).count() as i64;
    (ok, statuses)
}

#[tokio::test]
async fn a_thousand_concurrent_requests_never_overspend_credit_for_a_hundred() {
    let app = TestApp::start().await;
    let (acct, key) = key_for(&app, 100 * COST).await;
    let (ok, statuses) = storm(&[&app.server], &key, 1_000).await;
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 402),
        "{statuses:?}"
    );
    assert!(ok <= 100, "{ok} succeeded");
    assert!(
        ok >= 50,
        "most of the credit is usable under contention: {ok}"
    );
    assert_eq!(
        app.mock.stats().requests as i64,
        ok,
        "a refused request never reaches the upstream"
    );
    let records = settled(&app.server, &acct, 1_000).await;
    let balance = assert_reconciles(&app.server, &acct).await;
    assert_eq!(
        balance,
        100 * COST - charged(&records),
        "balance = top-up − Σ settled costs"
    );
    assert_eq!(
        records.iter().filter(|r| r.status == 200).count() as i64,
        ok
    );
    assert!(records
        .iter()
        .all(|r| r.status == 200 || (r.status == 402 && r.cost == 0)));
}

#[tokio::test]
async fn two_instances_sharing_the_store_never_overspend() {
    let app = TestApp::start().await;
    let second = app.another_instance().await;
    let (acct, key) = key_for(&app, 100 * COST).await;
    let (ok, _) = storm(&[&app.server, &second], &key, 1_000).await;
    second.engine.usage.flush().await;
    settle_all(&second).await;
    let records = settled(&app.server, &acct, 1_000).await;
    assert!(ok <= 100, "{ok} succeeded");
    let balance = assert_reconciles(&app.server, &acct).await;
    assert_eq!(balance, 100 * COST - charged(&records));
}

#[tokio::test]
async fn a_json_response_is_charged_its_actual_cost() {
    let app = TestApp::start().await;
    let (acct, key) = key_for(&app, 10_000).await;
    let res = app
        .req(Method::POST, "/v1/chat/completions", &key)
        .json(&hello(false))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let rid = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    settle_all(&app.server).await;
    assert_eq!(assert_reconciles(&app.server, &acct).await, 10_000 - COST);
    let c = credits(&app.server, &key).await;
    assert_eq!(
        (c["balance"].as_i64(), c["reserved"].as_i64()),
        (Some(10_000 - COST), Some(0))
    );
    let kinds: Vec<&str> = c["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"settlement") && kinds.contains(&"topup"),
        "{kinds:?}"
    );
    let usage: Value = app
        .req(Method::GET, "/v1/usage", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = &usage["data"][0];
    assert_eq!(r["request_id"], rid.as_str());
    assert_eq!(
        (
            r["prompt_tokens"].as_i64(),
            r["completion_tokens"].as_i64(),
            r["cost"].as_i64()
        ),
        (Some(9), Some(5), Some(COST))
    );
    assert_eq!(
        (
            r["status"].as_i64(),
            r["model"].as_str(),
            r["provider"].as_str()
        ),
        (Some(200), Some("mock/small"), Some("mock"))
    );
}

#[tokio::test]
async fn a_stream_is_charged_at_its_end() {
    let app = TestApp::start().await;
    let (acct, key) = key_for(&app, 10_000).await;
    let res = app
        .req(Method::POST, "/v1/chat/completions", &key)
        .json(&hello(true))
        .send()
        .await
        .unwrap();
    let text = res.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"));
    let records = settled(&app.server, &acct, 1).await;
    assert_eq!(assert_reconciles(&app.server, &acct).await, 10_000 - COST);
    assert_eq!(records[0].cost, COST);
    assert!(records[0].ttfb_ms.is_some());
    let _ = key;
}

#[tokio::test]
async fn a_stream_cut_by_the_client_is_charged_for_what_was_generated() {
    let app = TestApp::start().await;
    let (acct, key) = key_for(&app, 100_000).await;
    app.mock.push(
        Behavior {
            chunk_delay_ms: 50,
            completion_tokens: Some(400),
            ..Default::default()
        },
        1,
    );
    let mut body = hello(true);
    body["max_tokens"] = json!(1000);
    let res = app
        .req(Method::POST, "/v1/chat/completions", &key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut stream = res.bytes_stream();
    let mut seen = 0;
    while seen < 4 {
        seen += String::from_utf8_lossy(&stream.next().await.unwrap().unwrap())
            .matches("data: ")
            .count();
    }
    drop(stream);
    let mock = &app.mock;
    wait_until("the upstream request is cancelled", || {
        mock.stats().cancelled == 1
    })
    .await;
    // The usage record is written by the settlement of the dropped stream.
    let r = settled(&app.server, &acct, 1).await.remove(0);
    assert_eq!(
        (r.status, r.error_code.as_deref()),
        (499, Some("client_closed_request"))
    );
    assert!(
        r.completion_tokens >= 3 && r.completion_tokens < 400,
        "{r:?}"
    );
    assert_eq!(
        r.prompt_tokens, 8,
        "no upstream usage: the prompt is counted with the tokenizer"
    );
    assert_eq!(r.cost, r.prompt_tokens + 2 * r.completion_tokens);
    settle_all(&app.server).await;
    assert_eq!(
        assert_reconciles(&app.server, &acct).await,
        100_000 - r.cost
    );
}

#[tokio::test]
async fn a_stream_cut_by_the_upstream_is_charged_for_what_was_generated() {
    let app = TestApp::start().await;
    let (acct, key) = key_for(&app, 100_000).await;
    app.mock.push(
        Behavior {
            reset_after_chunks: Some(4),
            ..Default::default()
        },
        1,
    );
    let text = app
        .req(Method::POST, "/v1/chat/completions", &key)
        .json(&hello(true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("event: error"));
    let records = settled(&app.server, &acct, 1).await;
    let r = &records[0];
    assert_eq!(r.error_code.as_deref(), Some("provider_unavailable"));
    // The role chunk and three words arrived before the reset.
    assert_eq!(r.completion_tokens, 3, "{r:?}");
    assert_eq!(r.cost, r.prompt_tokens + 2 * 3);
    assert_eq!(
        assert_reconciles(&app.server, &acct).await,
        100_000 - r.cost
    );
}

#[tokio::test]
async fn an_upstream_error_charges_nothing() {
    let app = TestApp::start().await;
    let (acct, key) = key_for(&app, 10_000).await;
    app.mock.push(Behavior::status(500), 1);
    let res = app
        .req(Method::POST, "/v1/chat/completions", &key)
        .json(&hello(false))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 502);
    settle_all(&app.server).await;
    assert_eq!(assert_reconciles(&app.server, &acct).await, 10_000);
    let usage: Value = app
        .req(Method::GET, "/v1/usage", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = &usage["data"][0];
    assert_eq!(
        (
            r["status"].as_i64(),
            r["error_code"].as_str(),
            r["cost"].as_i64()
        ),
        (Some(502), Some("provider_unavailable"), Some(0))
    );
}

#[tokio::test]
async fn an_empty_balance_is_402_before_any_upstream_call() {
    let app = TestApp::start().await;
    let (_, key) = key_for(&app, 0).await;
    let res = app
        .req(Method::POST, "/v1/chat/completions", &key)
        .json(&hello(false))
        .send()
        .await
        .unwrap();
    let e = assert_error(
        res,
        402,
        "insufficient_credits",
        "billing_error",
        None,
        false,
    )
    .await;
    // The prompt is reserved at its byte bound (15 tokens), never below the true count.
    assert_eq!(
        e["details"],
        json!({"balance": 0, "required": 15 + 5 * 2, "reserved": 0})
    );
    assert_eq!(app.mock.stats().requests, 0);
}

#[tokio::test]
async fn a_balance_below_the_maximum_cost_is_refused_even_if_the_actual_cost_would_fit() {
    let app = TestApp::start().await;
    // The maximum is 15 (prompt bound) + 5 × 2 = 25; the actual cost would be 19.
    let (_, key) = key_for(&app, 24).await;
    let res = app
        .req(Method::POST, "/v1/chat/completions", &key)
        .json(&hello(false))
        .send()
        .await
        .unwrap();
    let e = assert_error(
        res,
        402,
        "insufficient_credits",
        "billing_error",
        None,
        false,
    )
    .await;
    assert_eq!(
        e["details"],
        json!({"balance": 24, "required": 25, "reserved": 0})
    );
    let acct = app.create_account_with_balance("exact", 25).await;
    let (_, key) = app.create_key(&acct, &["chat:write"]).await;
    let res = app
        .req(Method::POST, "/v1/chat/completions", &key)
        .json(&hello(false))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn usage_above_the_reservation_is_charged_from_the_leased_slice() {
    let app = TestApp::start().await;
    let (acct, key) = key_for(&app, 100_000).await;
    // The provider reports 100 prompt tokens where the byte bound reserved 15 (a chat template
    // can do that): the excess is charged from the instance's leased slice.
    app.mock.push(
        Behavior {
            prompt_tokens: Some(100),
            ..Default::default()
        },
        1,
    );
    let res = app
        .req(Method::POST, "/v1/chat/completions", &key)
        .json(&hello(false))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let records = settled(&app.server, &acct, 1).await;
    assert_eq!(records[0].cost, 100 + 5 * 2);
    assert_eq!(assert_reconciles(&app.server, &acct).await, 100_000 - 110);
}

#[tokio::test]
async fn a_key_spend_limit_is_enforced_like_a_balance() {
    let app = TestApp::start().await;
    let acct = app.create_account("acme").await;
    let (_, key) = app
        .create_key_with(
            &acct,
            json!({"scopes": ["chat:write"], "max_spend": 2 * COST + 10}),
        )
        .await;
    for _ in 0..2 {
        let res = app
            .req(Method::POST, "/v1/chat/completions", &key)
            .json(&hello(false))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let res = app
        .req(Method::POST, "/v1/chat/completions", &key)
        .json(&hello(false))
        .send()
        .await
        .unwrap();
    let e = assert_error(
        res,
        402,
        "insufficient_credits",
        "billing_error",
        None,
        false,
    )
    .await;
    assert_eq!(e["details"]["reason"], "key_spend_limit");
    assert_eq!(e["details"]["balance"], 10);
}

#[tokio::test]
async fn top_ups_are_admin_only_and_validated() {
    let app = TestApp::start().await;
    let (acct, key) = key_for(&app, 0).await;
    let res = app
        .req(Method::POST, &format!("/v1/accounts/{acct}/credits"), &key)
        .json(&json!({"amount": 5}))
        .send()
        .await
        .unwrap();
    let e = assert_error(res, 403, "forbidden", "permission_error", None, false).await;
    assert_eq!(e["details"]["required_scope"], "admin");
    let res = app
        .req(
            Method::POST,
            &format!("/v1/accounts/{acct}/credits"),
            &admin_key(),
        )
        .json(&json!({"amount": -5}))
        .send()
        .await
        .unwrap();
    assert_error(
        res,
        400,
        "invalid_request",
        "invalid_request_error",
        Some("amount"),
        false,
    )
    .await;
    let res = app
        .req(Method::POST, "/v1/accounts/acct_nope/credits", &admin_key())
        .json(&json!({"amount": 5}))
        .send()
        .await
        .unwrap();
    assert_error(res, 404, "not_found", "invalid_request_error", None, false).await;
    let res = app
        .req(
            Method::POST,
            &format!("/v1/accounts/{acct}/credits"),
            &admin_key(),
        )
        .json(&json!({"amount": 1234, "reason": "invoice 42"}))
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!(
        (v["balance"].as_i64(), v["available"].as_i64()),
        (Some(1234), Some(1234))
    );
    assert_eq!(v["entries"][0]["reason"], "invoice 42");
}

#[tokio::test]
async fn usage_can_be_filtered_and_grouped() {
    let app = TestApp::start().await;
    let (acct, key) = key_for(&app, 1_000_000).await;
    let (_, other) = app.create_key(&acct, &["chat:write"]).await;
    for k in [&key, &key, &other] {
        app.req(Method::POST, "/v1/chat/completions", k)
            .json(&hello(false))
            .send()
            .await
            .unwrap();
    }
    app.req(Method::POST, "/v1/embeddings", &key)
        .json(&json!({"model": "mock/embed", "input": "hi"}))
        .send()
        .await
        .unwrap();
    settle_all(&app.server).await;
    let v: Value = app
        .req(Method::GET, "/v1/usage?group_by=model", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["totals"]["requests"], 4);
    let groups: Vec<(String, i64)> = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["group"].as_str().unwrap().to_owned(),
                g["requests"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        groups,
        [("mock/embed".to_owned(), 1), ("mock/small".to_owned(), 3)]
    );
    let v: Value = app
        .req(Method::GET, "/v1/usage?model=mock/small&group_by=key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["groups"].as_array().unwrap().len(), 2);
    let v: Value = app
        .req(
            Method::GET,
            "/v1/usage?group_by=day&from=2000-01-01T00:00:00Z",
            &key,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let today = v["groups"][0]["group"].as_str().unwrap().to_owned();
    assert_eq!(today.len(), 10, "{today}");
    let v: Value = app
        .req(Method::GET, "/v1/usage?to=1", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["totals"]["requests"], 0);
    let res = app
        .req(Method::GET, "/v1/usage?group_by=week&from=yesterday", &key)
        .send()
        .await
        .unwrap();
    let e = assert_error(
        res,
        400,
        "invalid_request",
        "invalid_request_error",
        Some("from"),
        false,
    )
    .await;
    assert_eq!(e["details"]["errors"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn no_usage_record_is_lost_across_a_graceful_shutdown_under_load() {
    let app = TestApp::start().await;
    let server = app.another_instance().await;
    let (acct, key) = key_for(&app, 1_000_000_000).await;
    app.mock.push(Behavior::delay(300), 10_000);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1_000)
        .build()
        .unwrap();
    let url = server.url("/v1/chat/completions");
    let tasks: Vec<_> = (0..300)
        .map(|_| {
            let (client, url, key) = (client.clone(), url.clone(), key.clone());
            tokio::spawn(async move {
                match client
                    .post(url)
                    .bearer_auth(key)
                    .json(&hello(false))
                    .send()
                    .await
                {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                }
            })
        })
        .collect();
    // Stop while the requests are in flight at the upstream.
    let m = &app.mock;
    wait_until("requests reach the upstream", || m.stats().in_flight >= 50).await;
    server.stop().await;
    let mut answered = 0;
    for t in tasks {
        if t.await.unwrap() == 200 {
            answered += 1;
        }
    }
    assert!(answered >= 50, "{answered}");
    let f = sluice_store::UsageFilter {
        account_id: Some(acct.clone()),
        ..Default::default()
    };
    let stored = app.engine.store.list_usage(&f, 1_000).await.unwrap();
    assert_eq!(
        stored.iter().filter(|r| r.status == 200).count(),
        answered,
        "one record per answered request"
    );
    assert_eq!(
        assert_reconciles(&app.server, &acct).await,
        1_000_000_000 - answered as i64 * COST
    );
}
