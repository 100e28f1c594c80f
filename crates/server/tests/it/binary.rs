//! The real `sluice` binary: zero-config start, the bootstrap key, offline key creation,
//! strict config, graceful shutdown.

use std::path::Path;

use serde_json::Value;
use sluice_testkit::process::SluiceProcess;

fn bin() -> &'static Path {
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
