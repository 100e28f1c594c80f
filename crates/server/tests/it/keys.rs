//! Accounts and keys through the API: issue, show once, list, revoke, ownership, delegation.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use sluice_testkit::{admin_key, test_settings, TestApp, TestServer};

use crate::assert_error;

#[tokio::test]
async fn a_key_secret_is_shown_once_and_works_at_once() {
    let app = TestApp::start().await;
    let acct = app.create_account("acme").await;
    let res = app
        .req(Method::POST, "/v1/keys", &admin_key())
        .json(&json!({"name": "ci", "account_id": acct, "scopes": ["keys:read"], "models": ["mock/small"], "expires_at": "2100-01-01T00:00:00Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sk-") && secret.len() == 51, "{secret}");
    assert_eq!(created["object"], "api_key");
    assert_eq!(created["account_id"], acct.as_str());
    assert_eq!(created["scopes"], json!(["keys:read"]));
    assert_eq!(created["models"], json!(["mock/small"]));
    assert_eq!(created["expires_at"], 4_102_444_800_i64);
    assert_eq!(created["prefix"], &secret[..15]);
    assert!(created.get("secret_hash").is_none());

    let id = created["id"].as_str().unwrap();
    let res = app
        .req(Method::GET, &format!("/v1/keys/{id}"), &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let shown: Value = res.json().await.unwrap();
    assert!(
        shown.get("secret").is_none(),
        "the secret is never shown again"
    );
    assert_eq!(shown["id"], id);
}

#[tokio::test]
async fn lists_are_scoped_to_the_callers_account_and_paginate() {
    let app = TestApp::start().await;
    let a = app.create_account("a").await;
    let b = app.create_account("b").await;
    let (_, a_secret) = app.create_key(&a, &["keys:read"]).await;
    for _ in 0..2 {
        app.create_key(&a, &["keys:read"]).await;
    }
    app.create_key(&b, &["keys:read"]).await;

    let res = app
        .req(Method::GET, "/v1/keys?limit=2", &a_secret)
        .send()
        .await
        .unwrap();
    let page: Value = res.json().await.unwrap();
    assert_eq!(page["object"], "list");
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["has_more"], true);
    let cursor = page["next_cursor"].as_str().unwrap();
    let res = app
        .req(
            Method::GET,
            &format!("/v1/keys?limit=2&after={cursor}"),
            &a_secret,
        )
        .send()
        .await
        .unwrap();
    let rest: Value = res.json().await.unwrap();
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert_eq!(rest["has_more"], false);
    assert_eq!(rest["next_cursor"], Value::Null);
    let all: Vec<Value> = [page["data"].clone(), rest["data"].clone()]
        .iter()
        .flat_map(|d| d.as_array().unwrap().clone())
        .collect();
    assert!(all.iter().all(|k| k["account_id"] == a.as_str()));

    let res = app
        .req(Method::GET, &format!("/v1/keys?account_id={b}"), &a_secret)
        .send()
        .await
        .unwrap();
    assert_error(res, 403, "forbidden", "permission_error", None, false).await;

    let res = app
        .req(Method::GET, "/v1/keys?limit=500", &a_secret)
        .send()
        .await
        .unwrap();
    let e = assert_error(
        res,
        400,
        "invalid_request",
        "invalid_request_error",
        Some("limit"),
        false,
    )
    .await;
    assert_eq!(e["details"]["errors"][0]["code"], "max_value");
}

#[tokio::test]
async fn a_key_cannot_create_a_more_powerful_key() {
    let app = TestApp::start().await;
    let a = app.create_account("a").await;
    let (_, secret) = app.create_key(&a, &["keys:read", "keys:write"]).await;
    let res = app
        .req(Method::POST, "/v1/keys", &secret)
        .json(&json!({"name": "escalate", "scopes": ["admin"]}))
        .send()
        .await
        .unwrap();
    let e = assert_error(res, 403, "forbidden", "permission_error", None, false).await;
    assert_eq!(e["details"]["required_scope"], "admin");

    let res = app
        .req(Method::POST, "/v1/keys", &secret)
        .json(&json!({"name": "child", "scopes": ["keys:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let child: Value = res.json().await.unwrap();
    assert_eq!(
        child["account_id"],
        a.as_str(),
        "defaults to the caller's account"
    );
}

#[tokio::test]
async fn accounts_are_admin_only_and_names_unique() {
    let app = TestApp::start().await;
    let a = app.create_account("acme").await;
    let (_, secret) = app.create_key(&a, &["keys:read"]).await;
    let res = app
        .req(Method::POST, "/v1/accounts", &secret)
        .json(&json!({"name": "mine"}))
        .send()
        .await
        .unwrap();
    let e = assert_error(res, 403, "forbidden", "permission_error", None, false).await;
    assert_eq!(e["details"]["required_scope"], "admin");

    let res = app
        .req(Method::POST, "/v1/accounts", &admin_key())
        .json(&json!({"name": "acme"}))
        .send()
        .await
        .unwrap();
    let e = assert_error(
        res,
        409,
        "conflict",
        "invalid_request_error",
        Some("name"),
        false,
    )
    .await;
    assert_eq!(e["details"], json!({"field": "name", "value": "acme"}));

    let res = app
        .req(Method::POST, "/v1/accounts", &admin_key())
        .json(&json!({"plan": "gold", "tier": 2}))
        .send()
        .await
        .unwrap();
    let e = assert_error(
        res,
        400,
        "invalid_request",
        "invalid_request_error",
        Some("name"),
        false,
    )
    .await;
    let codes: Vec<&str> = e["details"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["required", "invalid_enum", "invalid_enum"]);

    let res = app
        .req(Method::POST, "/v1/accounts", &admin_key())
        .json(&json!({"name": "big", "plan": "enterprise", "tier": "unlimited"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    assert_eq!(
        (v["plan"].as_str(), v["tier"].as_str()),
        (Some("enterprise"), Some("unlimited"))
    );

    // An owner can read its own account, not another's.
    let res = app
        .req(Method::GET, &format!("/v1/accounts/{a}"), &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let other = v["id"].as_str().unwrap();
    let res = app
        .req(Method::GET, &format!("/v1/accounts/{other}"), &secret)
        .send()
        .await
        .unwrap();
    assert_error(res, 403, "forbidden", "permission_error", None, false).await;
}

/// Two instances on one store, a key both have just authenticated, and its revocation through
/// the second; returns the first instance, the secret and when the revocation was answered.
async fn revoke_through_the_second(
    settings: sluice_engine::Settings,
) -> (TestApp, TestServer, String, Instant) {
    let app = TestApp::start_with_settings(None, settings.clone()).await;
    let second = app.another_instance_with(settings).await;
    let a = app.create_account("a").await;
    let (key_id, secret) = app.create_key(&a, &["keys:read", "keys:write"]).await;
    for server in [&app.server, &second] {
        let res = server
            .req(Method::GET, "/v1/keys", &secret)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    // Revoked through instance two, by the key itself.
    let res = second
        .req(Method::DELETE, &format!("/v1/keys/{key_id}"), &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let revoked_at = Instant::now();
    let revoked: Value = res.json().await.unwrap();
    assert!(revoked["revoked_at"].as_i64().is_some());
    // Revoking again is harmless and keeps the first time.
    let res = second
        .req(Method::DELETE, &format!("/v1/keys/{key_id}"), &admin_key())
        .send()
        .await
        .unwrap();
    let again: Value = res.json().await.unwrap();
    assert_eq!(again["revoked_at"], revoked["revoked_at"]);
    (app, second, secret, revoked_at)
}

async fn assert_revoked(server: &TestServer, secret: &str) {
    let res = server
        .req(Method::GET, "/v1/keys", secret)
        .send()
        .await
        .unwrap();
    let e = assert_error(
        res,
        401,
        "unauthorized",
        "authentication_error",
        None,
        false,
    )
    .await;
    assert_eq!(e["details"]["reason"], "api_key_revoked");
}

/// Polls `server` with the revoked key until it is refused, which must happen within `within`
/// of `revoked_at`; returns how many requests it still served meanwhile.
async fn until_refused(
    server: &TestServer,
    secret: &str,
    revoked_at: Instant,
    within: Duration,
) -> usize {
    let mut served = 0;
    loop {
        let res = server
            .req(Method::GET, "/v1/keys", secret)
            .send()
            .await
            .unwrap();
        if res.status() == 401 {
            return served;
        }
        assert_eq!(res.status(), 200);
        served += 1;
        assert!(
            revoked_at.elapsed() < within,
            "still accepted {:?} after the revocation",
            revoked_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn with_strict_keys_a_revocation_stops_the_next_request_on_every_instance() {
    let strict = sluice_engine::Settings {
        key_cache: Duration::ZERO,
        ..test_settings()
    };
    let (app, second, secret, _) = revoke_through_the_second(strict).await;
    assert_revoked(&second, &secret).await;
    assert_revoked(&app.server, &secret).await;
    second.stop().await;
}

#[tokio::test]
async fn a_cached_key_is_refused_at_once_here_and_within_the_cache_bound_elsewhere() {
    let settings = test_settings();
    let bound = settings.key_cache;
    assert_eq!(bound, Duration::from_secs(1), "the documented default");
    let (app, second, secret, revoked_at) = revoke_through_the_second(settings).await;
    // The instance that revoked it forgets its cached keys at once.
    assert_revoked(&second, &secret).await;
    // The other one reads the key again once its copy is older than the bound.
    let served_from_cache = until_refused(
        &app.server,
        &secret,
        revoked_at,
        bound + Duration::from_millis(500),
    )
    .await;
    assert_revoked(&app.server, &secret).await;
    eprintln!(
        "refused {:?} after the revocation ({served_from_cache} requests served from the cache)",
        revoked_at.elapsed()
    );
    second.stop().await;
}

#[tokio::test]
async fn on_postgres_a_revocation_elsewhere_is_announced_to_every_key_cache() {
    // A bound long enough that only the announcement can explain a quick refusal.
    let long = sluice_engine::Settings {
        key_cache: Duration::from_secs(60),
        ..test_settings()
    };
    let (app, second, secret, revoked_at) = revoke_through_the_second(long).await;
    assert_revoked(&second, &secret).await;
    match app.db.backend {
        sluice_store::testing::Backend::Postgres => {
            until_refused(&app.server, &secret, revoked_at, Duration::from_secs(2)).await;
        }
        // SQLite announces nothing (one instance per file is the embedded case): the other
        // instance's cached copy serves until the bound, as documented.
        sluice_store::testing::Backend::Sqlite => {
            let res = app
                .req(Method::GET, "/v1/keys", &secret)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
        }
    }
    second.stop().await;
}

/// "Say hello" on `mock/small` costs 19 micro-credits (see `credits.rs`).
const HELLO_COST: i64 = 19;

#[tokio::test]
async fn a_bounded_key_issues_only_keys_within_its_own_spend_cap_limits_and_expiry() {
    let app = TestApp::start().await;
    let acct = app.create_account_with_balance("acme", 1_000_000).await;
    let (parent_id, parent) = app
        .create_key_with(
            &acct,
            json!({"scopes": ["keys:write", "chat:write"], "max_spend": 2 * HELLO_COST + 10,
                   "rate_limits": {"rpm": 100}, "expires_at": 4_102_444_800_i64}),
        )
        .await;

    // Omitted bounds are inherited; the child names the issuer that still bounds it.
    let res = app
        .req(Method::POST, "/v1/keys", &parent)
        .json(&json!({"name": "child", "scopes": ["chat:write"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let child: Value = res.json().await.unwrap();
    assert_eq!(child["expires_at"], 4_102_444_800_i64);
    assert_eq!(child["rate_limits"]["rpm"], 100);
    assert_eq!(child["bounded_by"], json!([parent_id]));
    let child_secret = child["secret"].as_str().unwrap().to_owned();

    // Wider bounds are refused, each naming its field.
    for (body, param) in [
        (json!({"expires_at": 4_102_444_801_i64}), "expires_at"),
        (json!({"max_spend": 2 * HELLO_COST + 11}), "max_spend"),
        (json!({"rate_limits": {"rpm": 101}}), "rate_limits.rpm"),
    ] {
        let mut body = body;
        body["name"] = json!("wider");
        body["scopes"] = json!(["chat:write"]);
        let res = app
            .req(Method::POST, "/v1/keys", &parent)
            .json(&body)
            .send()
            .await
            .unwrap();
        let e = assert_error(
            res,
            403,
            "forbidden",
            "permission_error",
            Some(param),
            false,
        )
        .await;
        assert_eq!(e["details"]["reason"], "exceeds_issuer", "{param}");
    }

    // Spending through the child draws on the issuer's cap: two requests fit, the third does not.
    let hello = json!({"model": "mock/small", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 5});
    for _ in 0..2 {
        let res = app
            .req(Method::POST, "/v1/chat/completions", &child_secret)
            .json(&hello)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let res = app
        .req(Method::POST, "/v1/chat/completions", &child_secret)
        .json(&hello)
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
    assert_eq!(e["details"]["reason"], "issuer_spend_limit");
    assert_eq!(e["details"]["issuer_key_id"], parent_id.as_str());
    assert_eq!(e["details"]["balance"], 10);
}

#[tokio::test]
async fn a_child_key_counts_against_its_issuers_rate_limit() {
    let app = TestApp::start().await;
    let acct = app.create_account_with_balance("acme", 1_000_000).await;
    let (_, parent) = app
        .create_key_with(
            &acct,
            json!({"scopes": ["keys:write", "chat:write"], "rate_limits": {"rpm": 2}}),
        )
        .await;
    let mut children = Vec::new();
    for i in 0..3 {
        let res = app
            .req(Method::POST, "/v1/keys", &parent)
            .json(&json!({"name": format!("c{i}"), "scopes": ["chat:write"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let v: Value = res.json().await.unwrap();
        children.push(v["secret"].as_str().unwrap().to_owned());
    }
    let hello = json!({"model": "mock/small", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5});
    let mut statuses = Vec::new();
    for c in &children {
        let res = app
            .req(Method::POST, "/v1/chat/completions", c)
            .json(&hello)
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
        if res.status() == 429 {
            let e = assert_error(
                res,
                429,
                "rate_limit_exceeded",
                "invalid_request_error",
                None,
                true,
            )
            .await;
            assert!(
                e["message"]
                    .as_str()
                    .unwrap()
                    .contains("the key that issued"),
                "{e}"
            );
        }
    }
    assert_eq!(
        statuses,
        [200, 200, 429],
        "three children share the issuer's rpm 2"
    );
}
