//! The agents API: seed 004's examples field for field, plan limits, idempotency, and runs that
//! are charged and limited exactly like gateway calls.

use reqwest::{Method, Response};
use serde_json::{json, Value};
use sluice_testkit::TestApp;

use crate::assert_error;

async fn account(app: &TestApp, plan: &str, scopes: &[&str], extra: Value) -> (String, String) {
    let name = format!("acct-{}", sluice_types::id::random_base62(6));
    let acct = app
        .create_account_with(
            json!({"name": name, "plan": plan, "tier": "unlimited"}),
            1_000_000,
        )
        .await;
    let mut fields = json!({"scopes": scopes});
    if let (Some(f), Some(e)) = (fields.as_object_mut(), extra.as_object()) {
        f.extend(e.clone());
    }
    let (_, key) = app.create_key_with(&acct, fields).await;
    (acct, key)
}

async fn post(app: &TestApp, key: &str, path: &str, body: Value) -> Response {
    app.req(Method::POST, path, key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

const RW: &[&str] = &["agents:read", "agents:write", "usage:read"];

#[tokio::test]
async fn validation_reports_every_problem_as_in_the_seed() {
    let app = TestApp::start().await;
    let (_, key) = account(
        &app,
        "pro",
        RW,
        json!({"models": ["mock/small", "anth/claude"]}),
    )
    .await;
    let res = post(&app, &key, "/v1/agents", json!({"model": "gpt-5"})).await;
    let e = assert_error(
        res,
        422,
        "validation_error",
        "invalid_request_error",
        Some("name"),
        false,
    )
    .await;
    assert_eq!(
        e["message"],
        "Validation failed: Name is required (and 1 more)"
    );
    assert_eq!(
        e["details"],
        json!({"errors": [
            {"field": "name", "message": "Name is required", "code": "required"},
            {"field": "model", "message": "Invalid model: 'gpt-5'. Allowed: mock/small, anth/claude, auto, fast", "code": "invalid_enum"}
        ]})
    );
    let res = post(&app, &key, "/v1/agents", json!({"name": "x".repeat(101), "model": "mock/small", "temperature": 3, "max_tokens": "many", "tools": [{"type": "web"}], "metadata": {"k": 1}})).await;
    let e = assert_error(
        res,
        422,
        "validation_error",
        "invalid_request_error",
        Some("name"),
        false,
    )
    .await;
    let codes: Vec<String> = e["details"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            format!(
                "{}:{}",
                x["field"].as_str().unwrap(),
                x["code"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        codes,
        [
            "name:max_length",
            "temperature:max_value",
            "max_tokens:invalid_type",
            "tools[0].type:invalid_enum",
            "tools[0].workflow_id:required",
            "metadata.k:invalid_type"
        ]
    );
    // Malformed JSON stays 400 invalid_request with the parse position.
    let res = app
        .req(Method::POST, "/v1/agents", &key)
        .header("content-type", "application/json")
        .body("{\"name\": ")
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
    assert!(e["details"]["parse_error"].as_str().is_some());
}

#[tokio::test]
async fn crud_with_conflict_not_found_and_scopes() {
    let app = TestApp::start().await;
    let (_, key) = account(&app, "pro", RW, json!({})).await;
    let body = json!({"name": "Support Bot", "model": "mock/small", "instructions": "Be kind.", "temperature": 0.2, "metadata": {"team": "cx"}});
    let res = post(&app, &key, "/v1/agents", body.clone()).await;
    assert_eq!(res.status(), 201);
    let agent: Value = res.json().await.unwrap();
    let id = agent["id"].as_str().unwrap().to_owned();
    assert!(sluice_types::id::is_id("agent", &id));
    assert_eq!(
        (
            agent["object"].as_str(),
            agent["name"].as_str(),
            agent["temperature"].as_f64()
        ),
        (Some("agent"), Some("Support Bot"), Some(0.2))
    );

    let e = assert_error(
        post(&app, &key, "/v1/agents", body).await,
        409,
        "conflict",
        "invalid_request_error",
        Some("name"),
        false,
    )
    .await;
    assert_eq!(e["message"], "An agent with this name already exists");
    assert_eq!(
        e["details"],
        json!({"field": "name", "value": "Support Bot"})
    );

    let res = app
        .req(Method::PATCH, &format!("/v1/agents/{id}"), &key)
        .json(&json!({"description": "Answers tickets", "temperature": 1.5}))
        .send()
        .await
        .unwrap();
    let patched: Value = res.json().await.unwrap();
    assert_eq!(
        (
            patched["description"].as_str(),
            patched["temperature"].as_f64(),
            patched["instructions"].as_str()
        ),
        (Some("Answers tickets"), Some(1.5), Some("Be kind."))
    );
    let res = app
        .req(Method::PATCH, &format!("/v1/agents/{id}"), &key)
        .json(&json!({"temperature": -1}))
        .send()
        .await
        .unwrap();
    assert_error(
        res,
        422,
        "validation_error",
        "invalid_request_error",
        Some("temperature"),
        false,
    )
    .await;

    // Another account's agent does not exist for this key.
    let (_, other) = account(&app, "pro", RW, json!({})).await;
    let res = app
        .req(Method::GET, &format!("/v1/agents/{id}"), &other)
        .send()
        .await
        .unwrap();
    let e = assert_error(res, 404, "not_found", "invalid_request_error", None, false).await;
    assert_eq!(e["message"], "Agent not found");
    assert_eq!(
        e["details"],
        json!({"resource_type": "agent", "resource_id": id})
    );

    let (_, reader) = account(&app, "pro", &["agents:read"], json!({})).await;
    let res = post(
        &app,
        &reader,
        "/v1/agents",
        json!({"name": "n", "model": "mock/small"}),
    )
    .await;
    let e = assert_error(res, 403, "forbidden", "permission_error", None, false).await;
    assert_eq!(
        e["details"],
        json!({"required_scope": "agents:write", "available_scopes": ["agents:read"]})
    );

    let list: Value = app
        .req(Method::GET, "/v1/agents?limit=1", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (list["object"].as_str(), list["has_more"].as_bool()),
        (Some("list"), Some(false))
    );
    assert_eq!(list["data"][0]["id"], id.as_str());
    let res = app
        .req(Method::DELETE, &format!("/v1/agents/{id}"), &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = app
        .req(Method::GET, &format!("/v1/agents/{id}"), &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn the_plan_limit_reads_like_the_seed_and_is_exact_under_concurrent_creates() {
    let app = TestApp::start().await;
    let (_, key) = account(&app, "pro", RW, json!({})).await;
    for i in 0..10 {
        assert_eq!(
            post(
                &app,
                &key,
                "/v1/agents",
                json!({"name": format!("a{i}"), "model": "mock/small"})
            )
            .await
            .status(),
            201
        );
    }
    let res = post(
        &app,
        &key,
        "/v1/agents",
        json!({"name": "one too many", "model": "mock/small"}),
    )
    .await;
    let e = assert_error(
        res,
        403,
        "resource_exhausted",
        "permission_error",
        None,
        false,
    )
    .await;
    assert_eq!(e["message"], "Agent limit reached for your plan");
    assert_eq!(
        e["details"],
        json!({"resource": "agents", "limit": 10, "current": 10, "plan": "pro"})
    );

    let (_, free) = account(&app, "free", RW, json!({})).await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (client, url, key) = (app.client.clone(), app.url("/v1/agents"), free.clone());
            tokio::spawn(async move {
                client
                    .post(url)
                    .bearer_auth(key)
                    .json(&json!({"name": format!("c{i}"), "model": "mock/small"}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            201 => created += 1,
            403 => {}
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!(created, 3, "the free plan's 3 agents, never 4");
    let list: Value = app
        .req(Method::GET, "/v1/agents", &free)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn idempotency_replays_refuses_a_different_body_and_reports_in_flight() {
    let app = TestApp::start().await;
    let (acct, key) = account(&app, "pro", RW, json!({})).await;
    let body = json!({"name": "Idem", "model": "mock/small"});
    let send = |b: Value, k: &str| {
        app.req(Method::POST, "/v1/agents", &key)
            .header("idempotency-key", k)
            .json(&b)
            .send()
    };
    let first = send(body.clone(), "k-1").await.unwrap();
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let again = send(json!({"model": "mock/small", "name": "Idem"}), "k-1")
        .await
        .unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(
        again.json::<Value>().await.unwrap(),
        first,
        "the same object, not a second agent"
    );

    let res = send(json!({"name": "Other", "model": "mock/small"}), "k-1")
        .await
        .unwrap();
    assert_error(
        res,
        422,
        "validation_error",
        "invalid_request_error",
        Some("Idempotency-Key"),
        false,
    )
    .await;

    // Another request holds the key right now.
    let hash = sluice_engine::auth::to_hex(&sluice_engine::auth::sha256(
        &serde_json::to_vec(&json!({"name": "Busy", "model": "mock/small"})).unwrap(),
    ));
    app.engine
        .store
        .idem_begin(
            &acct,
            "POST /v1/agents",
            "k-2",
            &hash,
            sluice_types::now_unix(),
            86_400,
        )
        .await
        .unwrap();
    let res = send(json!({"name": "Busy", "model": "mock/small"}), "k-2")
        .await
        .unwrap();
    assert_eq!(res.headers()["retry-after"], "1");
    let e = assert_error(
        res,
        409,
        "conflict",
        "invalid_request_error",
        Some("Idempotency-Key"),
        true,
    )
    .await;
    assert_eq!(e["details"]["field"], "Idempotency-Key");

    // A failed create does not burn its key.
    let res = send(json!({"name": "Idem", "model": "mock/small"}), "k-3")
        .await
        .unwrap();
    assert_eq!(res.status(), 409, "name taken");
    let res = send(json!({"name": "Idem", "model": "mock/small"}), "k-3")
        .await
        .unwrap();
    assert_eq!(res.status(), 409, "evaluated again, not replayed");
    assert!(res.headers().get("idempotent-replayed").is_none());
    let list: Value = app
        .req(Method::GET, "/v1/agents", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

async fn make_agent(app: &TestApp, key: &str, model: &str) -> String {
    let res = post(app, key, "/v1/agents", json!({"name": format!("agent-{}", sluice_types::id::random_base62(5)), "model": model, "instructions": "Be brief.", "max_tokens": 5})).await;
    assert_eq!(res.status(), 201);
    res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_run_goes_through_the_gateway_and_is_charged_like_a_chat_call() {
    let app = TestApp::start().await;
    let (acct, key) = account(&app, "pro", RW, json!({})).await;
    let id = make_agent(&app, &key, "mock/small").await;
    let res = post(
        &app,
        &key,
        &format!("/v1/agents/{id}/runs"),
        json!({"input": "Say hello"}),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-arena-resolved-model"], "mock/small");
    let run: Value = res.json().await.unwrap();
    assert!(sluice_types::id::is_id("run", run["id"].as_str().unwrap()));
    assert_eq!(
        (
            run["object"].as_str(),
            run["agent_id"].as_str(),
            run["model"].as_str()
        ),
        (Some("agent.run"), Some(id.as_str()), Some("mock/small"))
    );
    assert_eq!(run["output"], "lorem ipsum dolor sit amet");
    assert_eq!(run["usage"]["completion_tokens"], 5);
    let sent = app.mock.bodies().pop().unwrap();
    assert_eq!(
        sent["messages"],
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}])
    );
    assert_eq!(sent["max_tokens"], 5);
    app.engine.credits.flush(true).await.unwrap();
    app.engine.usage.flush().await;
    let f = sluice_store::UsageFilter {
        account_id: Some(acct.clone()),
        ..Default::default()
    };
    let records = app.engine.store.list_usage(&f, 10).await.unwrap();
    assert_eq!(records.len(), 1);
    let cost = records[0].cost;
    assert!(cost > 0);
    let w = app.engine.store.wallet(&acct).await.unwrap().unwrap();
    assert_eq!(w.balance, 1_000_000 - cost);

    let res = post(
        &app,
        &key,
        &format!("/v1/agents/{id}/runs"),
        json!({"input": [{"role": "user", "content": "Hi"}], "stream": true}),
    )
    .await;
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let text = res.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let res = post(&app, &key, &format!("/v1/agents/{id}/runs"), json!({})).await;
    let e = assert_error(
        res,
        422,
        "validation_error",
        "invalid_request_error",
        Some("input"),
        false,
    )
    .await;
    assert_eq!(e["details"]["errors"][0]["code"], "required");
}

#[tokio::test]
async fn run_errors_speak_the_flows_dialect() {
    let app = TestApp::start().await;
    let (_, key) = account(&app, "pro", RW, json!({})).await;
    // Upstream failure: 502 model_error.
    let broken = make_agent(&app, &key, "mock/broken").await;
    let res = post(
        &app,
        &key,
        &format!("/v1/agents/{broken}/runs"),
        json!({"input": "hi"}),
    )
    .await;
    let e = assert_error(res, 502, "model_error", "provider_error", None, true).await;
    assert_eq!(
        e["details"],
        json!({"provider": "mock", "model": "mock/broken", "provider_error": "HTTP 503: mock provider error 503"})
    );
    // Input over the model's context.
    let tiny = make_agent(&app, &key, "mock/tiny").await;
    let res = post(
        &app,
        &key,
        &format!("/v1/agents/{tiny}/runs"),
        json!({"input": "word ".repeat(100).trim_end()}),
    )
    .await;
    let e = assert_error(
        res,
        400,
        "context_length_exceeded",
        "invalid_request_error",
        Some("messages"),
        false,
    )
    .await;
    assert_eq!(e["details"]["model"], "mock/tiny");
    assert_eq!(e["details"]["max_tokens"], 64);
    assert!(e["details"]["input_tokens"].as_u64().unwrap() > 64);
    // Credits: 402.
    let poor = app
        .create_account_with(
            json!({"name": "poor", "plan": "pro", "tier": "unlimited"}),
            0,
        )
        .await;
    let (_, poor_key) = app.create_key(&poor, RW).await;
    let id = make_agent(&app, &poor_key, "mock/small").await;
    let res = post(
        &app,
        &poor_key,
        &format!("/v1/agents/{id}/runs"),
        json!({"input": "hi"}),
    )
    .await;
    assert_error(
        res,
        402,
        "insufficient_credits",
        "billing_error",
        None,
        false,
    )
    .await;
    // Limits: the key's rpm applies to runs as to chat, in the flows dialect.
    let (_, limited) = account(&app, "pro", RW, json!({"rate_limits": {"rpm": 1}})).await;
    let id = make_agent(&app, &limited, "mock/small").await;
    assert_eq!(
        post(
            &app,
            &limited,
            &format!("/v1/agents/{id}/runs"),
            json!({"input": "hi"})
        )
        .await
        .status(),
        200
    );
    let res = post(
        &app,
        &limited,
        &format!("/v1/agents/{id}/runs"),
        json!({"input": "hi"}),
    )
    .await;
    let e = assert_error(
        res,
        429,
        "rate_limited",
        "invalid_request_error",
        None,
        true,
    )
    .await;
    assert_eq!(e["details"]["limit"], 1);
    assert_eq!(e["details"]["window_seconds"], 60);
    assert!(e["details"]["retry_after"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn an_idempotent_replay_needs_the_routes_scope() {
    let app = TestApp::start().await;
    let (acct, key) = account(&app, "pro", RW, json!({})).await;
    let body = json!({"name": "Idem", "model": "mock/small"});
    let res = app
        .req(Method::POST, "/v1/agents", &key)
        .header("idempotency-key", "k-scope")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    // A key of the same account without agents:write learns nothing from the stored answer.
    let (_, reader) = app.create_key(&acct, &["agents:read"]).await;
    let res = app
        .req(Method::POST, "/v1/agents", &reader)
        .header("idempotency-key", "k-scope")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("idempotent-replayed").is_none());
    let e = assert_error(res, 403, "forbidden", "permission_error", None, false).await;
    assert_eq!(e["details"]["required_scope"], "agents:write");
}

#[tokio::test]
async fn agent_tools_must_name_an_existing_workflow_and_runs_refuse_unknown_fields() {
    let app = TestApp::start().await;
    let (_, key) = account(
        &app,
        "pro",
        &["agents:read", "agents:write", "workflows:write"],
        json!({}),
    )
    .await;
    let missing = format!("wf_{}", sluice_types::id::random_base62(22));
    let res = app
        .req(Method::POST, "/v1/agents", &key)
        .json(&json!({"name": "tooled", "model": "mock/small", "tools": [{"type": "workflow", "workflow_id": missing}]}))
        .send()
        .await
        .unwrap();
    let e = assert_error(
        res,
        422,
        "validation_error",
        "invalid_request_error",
        Some("tools[0].workflow_id"),
        false,
    )
    .await;
    assert_eq!(e["details"]["errors"][0]["code"], "invalid_enum");

    let wf: Value = app
        .req(Method::POST, "/v1/workflows", &key)
        .json(&json!({"name": "tool", "nodes": [{"id": "t", "type": "transform", "params": {"template": 1}}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let res = app
        .req(Method::POST, "/v1/agents", &key)
        .json(&json!({"name": "tooled", "model": "mock/small", "tools": [{"type": "workflow", "workflow_id": wf["id"]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let agent: Value = res.json().await.unwrap();
    let res = app
        .req(
            Method::POST,
            &format!("/v1/agents/{}/runs", agent["id"].as_str().unwrap()),
            &key,
        )
        .json(&json!({"input": "hi", "temperature": 2}))
        .send()
        .await
        .unwrap();
    assert_error(
        res,
        422,
        "validation_error",
        "invalid_request_error",
        Some("temperature"),
        false,
    )
    .await;
}
