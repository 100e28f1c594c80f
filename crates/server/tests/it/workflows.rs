//! The workflows API: versioned definitions validated with every problem at once.

use reqwest::Method;
use serde_json::{json, Value};
use sluice_testkit::TestApp;

use crate::assert_error;

const RW: &[&str] = &["workflows:read", "workflows:write"];

async fn key(app: &TestApp, plan: &str, scopes: &[&str]) -> String {
    let name = format!("acct-{}", sluice_types::id::random_base62(6));
    let acct = app
        .create_account_with(
            json!({"name": name, "plan": plan, "tier": "unlimited"}),
            1_000_000,
        )
        .await;
    app.create_key(&acct, scopes).await.1
}

fn three_nodes(name: &str) -> Value {
    json!({
        "name": name,
        "description": "fetch, check, shape",
        "nodes": [
            {"id": "http_request_1", "type": "http_request", "params": {"url": "https://example.com/items/{{ input.id }}"},
             "retry": {"max_attempts": 3, "backoff_seconds": 0.5}, "timeout_seconds": 30},
            {"id": "ok", "type": "condition", "params": {"expression": "nodes.http_request_1.output.status == 200"}},
            {"id": "shape", "type": "transform", "params": {"template": {"id": "{{ input.id }}", "body": "{{ nodes.http_request_1.output.body }}"}}}
        ],
        "edges": [{"from": "http_request_1", "to": "ok"}, {"from": "ok", "to": "shape", "when": true}],
        "input_schema": {"type": "object", "required": ["id"]}
    })
}

#[tokio::test]
async fn a_workflow_is_created_versioned_on_update_and_deleted() {
    let app = TestApp::start().await;
    let k = key(&app, "pro", RW).await;
    let res = app
        .req(Method::POST, "/v1/workflows", &k)
        .json(&three_nodes("etl"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let wf: Value = res.json().await.unwrap();
    let id = wf["id"].as_str().unwrap().to_owned();
    assert!(sluice_types::id::is_id("wf", &id));
    assert_eq!(
        (
            wf["object"].as_str(),
            wf["version"].as_i64(),
            wf["timeout_seconds"].as_i64()
        ),
        (Some("workflow"), Some(1), Some(300))
    );
    assert_eq!(
        wf["nodes"][0]["retry"],
        json!({"max_attempts": 3, "backoff_seconds": 0.5})
    );
    assert_eq!(
        wf["nodes"][1]["retry"],
        json!({"max_attempts": 1, "backoff_seconds": 1.0}),
        "defaults are explicit"
    );

    let res = app
        .req(Method::PATCH, &format!("/v1/workflows/{id}"), &k)
        .json(&json!({"timeout_seconds": 60}))
        .send()
        .await
        .unwrap();
    let v2: Value = res.json().await.unwrap();
    assert_eq!(
        (v2["version"].as_i64(), v2["timeout_seconds"].as_i64()),
        (Some(2), Some(60))
    );
    assert_eq!(
        v2["nodes"], wf["nodes"],
        "a PATCH keeps what it does not name"
    );
    let v1 = app
        .engine
        .store
        .workflow_version(&id, 1)
        .await
        .unwrap()
        .unwrap();
    assert!(
        v1.contains("\"timeout_seconds\":300"),
        "version 1 is kept for executions that pinned it"
    );

    let list: Value = app
        .req(Method::GET, "/v1/workflows", &k)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"][0]["id"], id.as_str());
    let other = key(&app, "pro", RW).await;
    let res = app
        .req(Method::GET, &format!("/v1/workflows/{id}"), &other)
        .send()
        .await
        .unwrap();
    let e = assert_error(res, 404, "not_found", "invalid_request_error", None, false).await;
    assert_eq!(
        e["details"],
        json!({"resource_type": "workflow", "resource_id": id})
    );
    assert_eq!(
        app.req(Method::DELETE, &format!("/v1/workflows/{id}"), &k)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        app.req(Method::GET, &format!("/v1/workflows/{id}"), &k)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn every_definition_problem_is_reported_at_once_with_its_path() {
    let app = TestApp::start().await;
    let k = key(&app, "pro", RW).await;
    let body = json!({
        "nodes": [
            {"id": "a", "type": "transform", "params": {"template": 1}},
            {"id": "a", "type": "teleport"},
            {"id": "c", "type": "http_request", "params": {"url": "https://x/{{ input.id"}},
            {"id": "d", "type": "llm", "params": {}},
            {"id": "e", "type": "transform", "params": {"template": 1}}
        ],
        "edges": [{"from": "a", "to": "ghost"}, {"from": "c", "to": "e"}, {"from": "e", "to": "c"}]
    });
    let res = app
        .req(Method::POST, "/v1/workflows", &k)
        .json(&body)
        .send()
        .await
        .unwrap();
    let e = assert_error(
        res,
        422,
        "validation_error",
        "invalid_request_error",
        Some("name"),
        false,
    )
    .await;
    let got: Vec<String> = e["details"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            format!(
                "{} {}",
                x["field"].as_str().unwrap(),
                x["code"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            "name required",
            "nodes[1].id invalid_format",
            "nodes[1].type invalid_enum",
            "nodes[2].params.url invalid_format",
            "nodes[3].params.model required",
            "nodes[3].params.prompt required",
            "edges[0].to invalid_enum",
            "edges invalid_format",
        ]
    );
    let cycle = e["details"]["errors"][7]["message"].as_str().unwrap();
    assert!(
        cycle.contains("c → e → c") || cycle.contains("e → c → e"),
        "{cycle}"
    );
}

#[tokio::test]
async fn names_plan_limits_scopes_and_idempotency() {
    let app = TestApp::start().await;
    let k = key(&app, "free", RW).await;
    for i in 0..5 {
        let res = app
            .req(Method::POST, "/v1/workflows", &k)
            .header("idempotency-key", format!("wf-{i}"))
            .json(&three_nodes(&format!("w{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
    }
    // A replay does not count against the plan.
    let res = app
        .req(Method::POST, "/v1/workflows", &k)
        .header("idempotency-key", "wf-0")
        .json(&three_nodes("w0"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            res.status().as_u16(),
            res.headers()["idempotent-replayed"].to_str().unwrap()
        ),
        (201, "true")
    );
    let res = app
        .req(Method::POST, "/v1/workflows", &k)
        .json(&three_nodes("w5"))
        .send()
        .await
        .unwrap();
    let e = assert_error(
        res,
        403,
        "resource_exhausted",
        "permission_error",
        None,
        false,
    )
    .await;
    assert_eq!(e["message"], "Workflow limit reached for your plan");
    assert_eq!(
        e["details"],
        json!({"resource": "workflows", "limit": 5, "current": 5, "plan": "free"})
    );

    let p = key(&app, "pro", RW).await;
    assert_eq!(
        app.req(Method::POST, "/v1/workflows", &p)
            .json(&three_nodes("dup"))
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    let res = app
        .req(Method::POST, "/v1/workflows", &p)
        .json(&three_nodes("dup"))
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
    assert_eq!(e["details"], json!({"field": "name", "value": "dup"}));

    let reader = key(&app, "pro", &["workflows:read"]).await;
    let res = app
        .req(Method::POST, "/v1/workflows", &reader)
        .json(&three_nodes("nope"))
        .send()
        .await
        .unwrap();
    let e = assert_error(res, 403, "forbidden", "permission_error", None, false).await;
    assert_eq!(
        e["details"],
        json!({"required_scope": "workflows:write", "available_scopes": ["workflows:read"]})
    );
}
