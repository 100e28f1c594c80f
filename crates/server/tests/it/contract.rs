//! Every error row reachable so far, through a real server: exact status, code, type, param, headers.

use axum::routing::get;
use futures_util::stream;
use reqwest::Method;
use serde_json::json;
use sluice_testkit::{admin_key, TestApp};

use crate::assert_error;

#[tokio::test]
async fn every_response_carries_one_request_id_in_both_headers() {
    let app = TestApp::start().await;
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let rid = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(res.headers()["x-arena-trace-id"], rid.as_str());
    assert!(
        res.headers().get("x-should-retry").is_none(),
        "only errors carry x-should-retry"
    );
    let other = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_ne!(other.headers()["x-request-id"], rid.as_str());
}

#[tokio::test]
async fn a_client_request_id_is_echoed_but_never_used_as_ours() {
    let app = TestApp::start().await;
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("x-client-request-id", "my-trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-client-request-id"], "my-trace-42");
    assert_ne!(res.headers()["x-request-id"], "my-trace-42");
    let long = "x".repeat(129);
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("x-client-request-id", long)
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("x-client-request-id").is_none());
}

#[tokio::test]
async fn malformed_json_is_400_with_line_column_and_byte_position() {
    let app = TestApp::start().await;
    let body = "{\n  \"name\": \"k\",\n  \"scopes\": [\"chat:write\",]\n}";
    let res = app
        .req(Method::POST, "/v1/keys", &admin_key())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let e = assert_error(
        res,
        400,
        "invalid_request",
        "invalid_request_error",
        None,
        false,
    )
    .await;
    let d = &e["details"];
    assert_eq!(d["line"], 3);
    assert_eq!(d["column"], 27);
    let pos = d["position"].as_u64().unwrap() as usize;
    assert_eq!(&body[pos..pos + 1], "]");
    assert_eq!(
        d["parse_error"],
        format!("trailing comma at line 3, column 27 (byte {pos})")
    );
}

#[tokio::test]
async fn wrong_json_types_name_the_field() {
    let app = TestApp::start().await;
    let res = app
        .req(Method::POST, "/v1/keys", &admin_key())
        .json(&json!({"name": ["not", "a", "string"], "scopes": "chat:write"}))
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
    let errors = e["details"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "every problem is reported: {errors:?}");
    assert_eq!(
        errors[0],
        json!({"field": "name", "code": "invalid_type", "message": "name must be a string"})
    );
    assert_eq!(errors[1]["field"], "scopes");
    assert_eq!(errors[1]["code"], "invalid_type");
}

#[tokio::test]
async fn a_non_json_content_type_is_400() {
    let app = TestApp::start().await;
    let res = app
        .req(Method::POST, "/v1/keys", &admin_key())
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_error(
        res,
        400,
        "invalid_request",
        "invalid_request_error",
        None,
        false,
    )
    .await;
}

#[tokio::test]
async fn missing_invalid_revoked_and_expired_keys_are_401_with_their_reason() {
    let app = TestApp::start().await;
    let acct = app.create_account("acme").await;
    let (key_id, secret) = app.create_key(&acct, &["keys:read"]).await;

    let res = app.client.get(app.url("/v1/keys")).send().await.unwrap();
    let e = assert_error(
        res,
        401,
        "unauthorized",
        "authentication_error",
        None,
        false,
    )
    .await;
    assert_eq!(e["details"], json!({"reason": "missing_api_key"}));

    for bad in ["sk-nope", "Basic dXNlcjpwYXNz"] {
        let res = app
            .client
            .get(app.url("/v1/keys"))
            .header(
                "authorization",
                if bad.starts_with("Basic") {
                    bad.to_owned()
                } else {
                    format!("Bearer {bad}")
                },
            )
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
        assert_eq!(e["details"], json!({"reason": "api_key_invalid"}), "{bad}");
    }
    // Right shape and lookup, wrong secret.
    let forged = format!("{}{}", &secret[..15], "A".repeat(secret.len() - 15));
    let res = app
        .req(Method::GET, "/v1/keys", &forged)
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
    assert_eq!(e["details"]["reason"], "api_key_invalid");

    // x-api-key works like Bearer.
    let res = app
        .client
        .get(app.url("/v1/keys"))
        .header("x-api-key", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let res = app
        .req(Method::DELETE, &format!("/v1/keys/{key_id}"), &admin_key())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .req(Method::GET, "/v1/keys", &secret)
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

    // An expired key: issued directly with an expiry in the past (the API refuses those).
    let issued = sluice_engine::keys::issue(
        &*app.engine.store,
        sluice_engine::keys::KeySpec {
            account_id: acct.clone(),
            name: "old".into(),
            scopes: vec![sluice_types::Scope::KeysRead],
            models: None,
            expires_at: Some(sluice_types::now_unix() - 1),
            max_spend: None,
            limits: Default::default(),
            lineage: Vec::new(),
        },
    )
    .await
    .unwrap();
    let res = app
        .req(Method::GET, "/v1/keys", &issued.secret)
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
    assert_eq!(e["details"]["reason"], "api_key_expired");
}

#[tokio::test]
async fn a_missing_scope_is_403_with_both_scope_lists() {
    let app = TestApp::start().await;
    let acct = app.create_account("acme").await;
    let (_, secret) = app.create_key(&acct, &["keys:read", "models:read"]).await;
    let res = app
        .req(Method::POST, "/v1/keys", &secret)
        .json(&json!({"name": "child"}))
        .send()
        .await
        .unwrap();
    let e = assert_error(res, 403, "forbidden", "permission_error", None, false).await;
    assert_eq!(
        e["details"],
        json!({"required_scope": "keys:write", "available_scopes": ["keys:read", "models:read"]})
    );
}

#[tokio::test]
async fn another_accounts_key_is_403_not_owner() {
    let app = TestApp::start().await;
    let a = app.create_account("a").await;
    let b = app.create_account("b").await;
    let (_, a_secret) = app.create_key(&a, &["keys:read", "keys:write"]).await;
    let (b_key, _) = app.create_key(&b, &["keys:read"]).await;
    for method in [Method::GET, Method::DELETE] {
        let res = app
            .req(method, &format!("/v1/keys/{b_key}"), &a_secret)
            .send()
            .await
            .unwrap();
        let e = assert_error(res, 403, "forbidden", "permission_error", None, false).await;
        assert_eq!(e["details"], json!({"reason": "not_owner"}));
    }
    let res = app
        .req(Method::POST, "/v1/keys", &a_secret)
        .json(&json!({"name": "x", "account_id": b, "scopes": ["keys:read"]}))
        .send()
        .await
        .unwrap();
    let e = assert_error(
        res,
        403,
        "forbidden",
        "permission_error",
        Some("account_id"),
        false,
    )
    .await;
    assert_eq!(e["details"]["reason"], "not_owner");
}

#[tokio::test]
async fn unknown_routes_and_objects_are_404() {
    let app = TestApp::start().await;
    let res = app
        .client
        .post(app.url("/v1/nothing/here"))
        .send()
        .await
        .unwrap();
    let e = assert_error(res, 404, "not_found", "invalid_request_error", None, false).await;
    assert_eq!(
        e["details"],
        json!({"resource_type": "route", "resource_id": "/v1/nothing/here"})
    );

    let res = app
        .req(Method::GET, "/v1/keys/key_missing", &admin_key())
        .send()
        .await
        .unwrap();
    let e = assert_error(res, 404, "not_found", "invalid_request_error", None, false).await;
    assert_eq!(
        e["details"],
        json!({"resource_type": "api_key", "resource_id": "key_missing"})
    );
}

#[tokio::test]
async fn a_wrong_method_is_405_with_allow() {
    let app = TestApp::start().await;
    let res = app
        .req(Method::PUT, "/v1/keys", &admin_key())
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["allow"], "GET,HEAD,POST");
    let e = assert_error(
        res,
        405,
        "method_not_allowed",
        "invalid_request_error",
        None,
        false,
    )
    .await;
    assert_eq!(
        e["details"]["allowed_methods"],
        json!(["GET", "HEAD", "POST"])
    );
}

#[tokio::test]
async fn a_declared_body_over_10mb_is_refused_before_reading() {
    let app = TestApp::start().await;
    // Declares 11 MB but sends only a few bytes: the answer must come from the header alone,
    // without waiting for the body (which never arrives).
    let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    conn.write_all(
        format!(
            "POST /v1/keys HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 11000000\r\n\r\n{{",
            admin_key()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), conn.read(&mut buf))
        .await
        .expect("answered without the body")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).to_lowercase();
    assert!(text.starts_with("http/1.1 413"), "{text}");
    assert!(text.contains("\"code\":\"request_too_large\""), "{text}");
    assert!(text.contains("x-should-retry: false"), "{text}");
    assert!(text.contains("\"limit_bytes\":10485760"), "{text}");
}

#[tokio::test]
async fn a_chunked_body_is_cut_off_past_10mb() {
    let app = TestApp::start().await;
    let chunk = vec![b' '; 1024 * 1024];
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..12).map(|_| Ok(chunk.clone())).collect();
    let res = app
        .req(Method::POST, "/v1/keys", &admin_key())
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert!(res
        .headers()
        .get("content-length")
        .is_some_and(|v| v != "0"));
    let e = assert_error(
        res,
        413,
        "request_too_large",
        "invalid_request_error",
        None,
        false,
    )
    .await;
    assert_eq!(e["details"], json!({"limit_bytes": 10485760}));
}

#[tokio::test]
async fn a_panicking_handler_is_500_without_leaking_the_panic() {
    let extra = axum::Router::new().route(
        "/__test/panic",
        get(|| async {
            if std::hint::black_box(true) {
                panic!("secret internal detail: password=hunter2");
            }
            "unreachable"
        }),
    );
    let app = TestApp::start_with(Some(extra)).await;
    let res = app
        .client
        .get(app.url("/__test/panic"))
        .send()
        .await
        .unwrap();
    let e = assert_error(res, 500, "internal_error", "server_error", None, true).await;
    let text = e.to_string();
    assert!(
        !text.contains("hunter2") && !text.contains("panic"),
        "{text}"
    );
    assert!(e.get("details").is_none());
    // The server survives.
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn readiness_reports_the_store() {
    let app = TestApp::start().await;
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["status"], "ready");
    assert_eq!(v["checks"]["store"]["status"], "ok");
    assert_eq!(v["checks"]["store"]["backend"], app.db.backend_name());
    assert_eq!(v["checks"]["rate_limiter"]["backend"], "memory");
}

#[tokio::test]
async fn two_different_credentials_are_refused_as_ambiguous() {
    let app = TestApp::start().await;
    let acct = app.create_account("acme").await;
    let (_, a) = app.create_key(&acct, &["models:read"]).await;
    let (_, b) = app.create_key(&acct, &["models:read"]).await;
    let client = reqwest::Client::new();
    for (h1, v1, h2, v2) in [
        (
            "authorization",
            format!("Bearer {a}"),
            "authorization",
            format!("Bearer {b}"),
        ),
        (
            "authorization",
            format!("Bearer {a}"),
            "x-api-key",
            b.clone(),
        ),
        ("x-api-key", a.clone(), "x-api-key", b.clone()),
    ] {
        let res = client
            .get(app.url("/v1/models"))
            .header(h1, v1)
            .header(h2, v2)
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
        assert_eq!(e["details"]["reason"], "ambiguous_credentials");
    }
    // The same key twice is not ambiguous (some clients send both headers).
    let res = client
        .get(app.url("/v1/models"))
        .header("authorization", format!("Bearer {a}"))
        .header("x-api-key", a.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_bad_query_string_is_explained_without_framework_text() {
    let app = TestApp::start().await;
    let res = app
        .req(Method::GET, "/v1/keys?limit=1&limit=2", &admin_key())
        .send()
        .await
        .unwrap();
    let e = assert_error(
        res,
        400,
        "invalid_request",
        "invalid_request_error",
        None,
        false,
    )
    .await;
    let msg = e["message"].as_str().unwrap();
    assert!(msg.starts_with("Invalid query string:"), "{msg}");
    assert!(
        !msg.contains("Failed to deserialize") && !msg.contains("u32"),
        "{msg}"
    );
}

#[tokio::test]
async fn requests_the_http_parser_refuses_get_its_bare_status_as_documented() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::start().await;
    let mut headers = String::new();
    for i in 0..150 {
        headers.push_str(&format!("x-h{i}: v\r\n"));
    }
    for (raw, status) in [
        (
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{headers}\r\n"),
            "431",
        ),
        (
            "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
                .to_owned(),
            "400",
        ),
    ] {
        let mut tcp = tokio::net::TcpStream::connect(app.server.addr)
            .await
            .unwrap();
        tcp.write_all(raw.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read_to_end(&mut got))
            .await;
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text}");
        // SECURITY.md: these never reach Sluice, so they carry no envelope and no request id.
        assert!(text.contains("content-length: 0"), "{text}");
    }
}
