//! How credit refusals read: every requested choice reserved, a balance that cannot grow past
//! its maximum, and how much of a wallet requests in flight hold.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use sluice_testkit::{admin_key, Behavior, TestApp};

use crate::assert_error;
use crate::credits::{hello, key_for, COST};

#[tokio::test]
async fn the_reservation_counts_every_requested_choice() {
    let app = TestApp::start().await;
    // Enough for one "Say hello" (prompt bound + 5 × 2), not for twenty completions of 5 tokens.
    let (_, key) = key_for(&app, 150).await;
    let mut body = hello(false);
    body["n"] = json!(20);
    let res = app
        .req(Method::POST, "/v1/chat/completions", &key)
        .json(&body)
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
    let required = e["details"]["required"].as_i64().unwrap();
    assert!(
        required >= 20 * 5 * 2,
        "20 choices × 5 tokens × 2: {required}"
    );
    let res = app
        .req(Method::POST, "/v1/chat/completions", &key)
        .json(&hello(false))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "one choice fits the same balance");
}

#[tokio::test]
async fn a_top_up_past_the_largest_balance_is_a_field_error_not_a_503() {
    let app = TestApp::start().await;
    let acct = app.create_account_with_balance("rich", 1).await;
    let huge = sluice_store::MAX_BALANCE;
    let res = app
        .req(
            Method::POST,
            &format!("/v1/accounts/{acct}/credits"),
            &admin_key(),
        )
        .json(&json!({"amount": huge}))
        .send()
        .await
        .unwrap();
    let e = assert_error(
        res,
        400,
        "invalid_request",
        "invalid_request_error",
        Some("amount"),
        false,
    )
    .await;
    assert_eq!(e["details"]["errors"][0]["code"], "max_value");
    let res = app
        .req(
            Method::GET,
            &format!("/v1/credits?account_id={acct}"),
            &admin_key(),
        )
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["balance"], 1, "nothing was added");
}

#[tokio::test]
async fn a_402_says_how_much_is_held_by_requests_in_flight() {
    let app = TestApp::start().await;
    let (_, key) = key_for(&app, 30).await;
    app.mock.push(Behavior::delay(1_000), 1);
    let first = {
        let (client, url, key) = (
            app.client.clone(),
            app.url("/v1/chat/completions"),
            key.clone(),
        );
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(key)
                .json(&hello(false))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
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
    let reserved = e["details"]["reserved"].as_i64().unwrap();
    assert!(reserved >= COST, "the first request's hold: {e}");
    assert_eq!(e["details"]["balance"], 30 - reserved);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("held by requests in flight"),
        "{e}"
    );
    assert_eq!(first.await.unwrap(), 200);
}
