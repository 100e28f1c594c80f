//! A real PostgreSQL stop under the real binary: a cluster of the test's own (own port, own
//! directory), stopped while executions run. `/readyz` says 503 within a second, and no node's
//! side effect happens twice.

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_testkit::process::SluiceProcess;

struct OwnPostgres {
    bin: std::path::PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl OwnPostgres {
    /// `None` where PostgreSQL's binaries or `runuser` are missing (not a CI machine).
    fn start() -> Option<OwnPostgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .map(|d| d.path().join("bin"))
            .find(|p| p.join("initdb").exists())?;
        let dir = tempfile::tempdir().ok()?;
        let data = dir.path().join("pg");
        std::fs::create_dir(&data).ok()?;
        let _ = Command::new("chmod").arg("755").arg(dir.path()).status();
        Command::new("chown")
            .arg("postgres")
            .arg(&data)
            .status()
            .ok()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let ok = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data)
            .stdout(std::process::Stdio::null())
            .status()
            .ok()?
            .success();
        let pg = OwnPostgres { bin, dir, port };
        (ok && pg.ctl("start")).then_some(pg)
    }

    fn ctl(&self, what: &str) -> bool {
        let data = self.dir.path().join("pg");
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data);
        match what {
            "start" => cmd.args([
                "-o",
                &format!(
                    "-p {} -k {} -c listen_addresses=127.0.0.1",
                    self.port,
                    data.display()
                ),
                "-l",
                &data.join("server.log").display().to_string(),
                "-w",
                "start",
            ]),
            _ => cmd.args(["-m", "fast", "-w", "stop"]),
        };
        cmd.stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.ctl("stop");
    }
}

#[tokio::test]
async fn a_postgres_stop_is_503_at_readyz_within_a_second_and_repeats_no_side_effect() {
    let Some(pg) = OwnPostgres::start() else {
        panic!("PostgreSQL binaries and runuser are needed (CI has them)");
    };
    let (url, recv) = crate::executions::receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sluice.toml");
    std::fs::write(
        &cfg,
        "[executions]\nallow_private_networks = true\n[rate_limits]\nper_instance = true\n",
    )
    .unwrap();
    let admin = "sk-pg-outage-admin-0123456789";
    let db = pg.url();
    let env = [
        ("SLUICE_DATABASE_URL", db.as_str()),
        ("SLUICE_ADMIN_KEY", admin),
    ];
    let p = SluiceProcess::spawn(
        crate::binary::bin(),
        &["--config", cfg.to_str().unwrap()],
        &env,
    )
    .await;
    let client = reqwest::Client::new();
    let wf: Value = crate::post_json(
        &client,
        &p.url("/v1/workflows"),
        admin,
        &json!({"name": "outage", "nodes": [
            {"id": "a", "type": "http_request", "params": {"url": format!("{url}/item/a")}},
            {"id": "b", "type": "http_request", "params": {"url": format!("{url}/item/slow")}}
        ], "edges": [{"from": "a", "to": "b"}]}),
    )
    .await;
    let mut execs = Vec::new();
    for _ in 0..8 {
        let x: Value = crate::post_json(
            &client,
            &p.url(&format!(
                "/v1/workflows/{}/executions",
                wf["id"].as_str().unwrap()
            )),
            admin,
            &json!({}),
        )
        .await;
        execs.push(x["id"].as_str().unwrap().to_owned());
    }
    // Stop while the slow nodes are in flight at the receiver.
    let until = Instant::now() + Duration::from_secs(10);
    while !recv.keys.lock().unwrap().iter().any(|k| k.contains(":b:")) {
        assert!(Instant::now() < until, "no node b started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(pg.ctl("stop"));
    let t = Instant::now();
    let res = client.get(p.url("/readyz")).send().await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let e = crate::assert_error(res, 503, "service_unavailable", "server_error", None, true).await;
    assert_eq!(e["details"]["checks"]["store"]["status"], "down");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(pg.ctl("start"));

    for x in &execs {
        let url = p.url(&format!("/v1/executions/{x}"));
        let v = crate::until_ended(&client, &url, admin, Duration::from_secs(30)).await;
        assert_eq!(v["status"], "succeeded", "{v}");
    }
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for k in recv.keys.lock().unwrap().iter() {
        let node: Vec<&str> = k.split(':').take(2).collect();
        *per_node.entry(node.join(":")).or_default() += 1;
    }
    assert_eq!(per_node.len(), 16, "{per_node:?}");
    assert!(
        per_node.values().all(|n| *n == 1),
        "a side effect repeated: {per_node:?}"
    );
    assert_eq!(recv.calls.load(Ordering::SeqCst), 16);
    p.terminate().await;
}

#[tokio::test]
async fn an_unreachable_database_at_start_is_a_clear_error_at_once() {
    let port = crate::free_port();
    let t = Instant::now();
    let out = tokio::process::Command::new(crate::binary::bin())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env(
            "SLUICE_DATABASE_URL",
            format!("postgres://postgres:hunter2@127.0.0.1:{port}/x"),
        )
        .env("SLUICE_REDIS_URL", format!("redis://127.0.0.1:{port}"))
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot open database"), "{stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "the password is masked: {stderr}"
    );
}
