//! A Redis of the test's own (own port) stopped and frozen under the real binary: no request
//! waits past the deadline, the configured policy applies, and sharing resumes when it answers.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_testkit::process::SluiceProcess;

const ADMIN: &str = "sk-redis-faults-admin-0123456789";
/// The configured deadline of Redis calls.
const DEADLINE_MS: u64 = 50;

struct OwnRedis {
    child: Child,
    port: u16,
}

impl OwnRedis {
    fn start() -> OwnRedis {
        OwnRedis::on(crate::free_port())
    }

    fn on(port: u16) -> OwnRedis {
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (installed by .ci/run)");
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "redis did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        OwnRedis { child, port }
    }

    fn signal(&self, sig: &str) {
        Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn sluice(port: u16, policy: &str) -> (Option<SluiceProcess>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sluice.toml");
    std::fs::write(
        &cfg,
        format!(
            "[rate_limits]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:{port}\"\n\
             redis_timeout_ms = {DEADLINE_MS}\non_redis_error = \"{policy}\"\nflows_requests = 5\n"
        ),
    )
    .unwrap();
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let env = [
        ("SLUICE_DATABASE_URL", db.as_str()),
        ("SLUICE_ADMIN_KEY", ADMIN),
    ];
    if policy == "fail_closed_no_redis" {
        return (None, dir);
    }
    let p = SluiceProcess::spawn(
        crate::binary::bin(),
        &["--config", cfg.to_str().unwrap()],
        &env,
    )
    .await;
    (Some(p), dir)
}

async fn key(p: &SluiceProcess) -> String {
    let client = reqwest::Client::new();
    let acct: Value = crate::post_json(
        &client,
        &p.url("/v1/accounts"),
        ADMIN,
        &json!({"name": "acme", "tier": "unlimited"}),
    )
    .await;
    let key: Value = crate::post_json(
        &client,
        &p.url("/v1/keys"),
        ADMIN,
        &json!({"name": "k", "account_id": acct["id"], "scopes": ["agents:read"]}),
    )
    .await;
    key["secret"].as_str().unwrap().to_owned()
}

/// `n` flows requests (limited at 5 per minute per account); their statuses and the slowest.
async fn burst(p: &SluiceProcess, key: &str, n: usize) -> (Vec<u16>, Duration) {
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    let mut worst = Duration::ZERO;
    for _ in 0..n {
        let t = Instant::now();
        let res = client
            .get(p.url("/v1/agents"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        worst = worst.max(t.elapsed());
        statuses.push(res.status().as_u16());
    }
    (statuses, worst)
}

async fn limiter_status(p: &SluiceProcess) -> (u16, Value) {
    let res = reqwest::get(p.url("/readyz")).await.unwrap();
    let status = res.status().as_u16();
    let v: Value = res.json().await.unwrap();
    let checks = if status == 200 {
        v["checks"].clone()
    } else {
        v["error"]["details"]["checks"].clone()
    };
    (status, checks["rate_limiter"].clone())
}

#[tokio::test]
async fn a_frozen_redis_fails_open_onto_per_instance_limits_within_the_deadline_and_recovers() {
    let redis = OwnRedis::start();
    let (p, _dir) = sluice(redis.port, "fail_open").await;
    let p = p.unwrap();
    let key = key(&p).await;
    let (statuses, _) = burst(&p, &key, 2).await;
    assert_eq!(statuses, [200, 200]);

    // Frozen: the first request waits the deadline, the rest do not wait on Redis at all; the
    // instance's own limit (5 per minute, counted afresh) applies.
    redis.signal("-STOP");
    let (statuses, worst) = burst(&p, &key, 7).await;
    assert!(
        worst < Duration::from_millis(DEADLINE_MS + 100),
        "a request waited {worst:?}"
    );
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);
    assert_eq!(
        limiter_status(&p).await,
        (
            200,
            json!({"status": "down", "backend": "redis", "policy": "fail_open"})
        )
    );

    // Back: within a second the shared limit (2 of 5 used before the freeze) applies again.
    redis.signal("-CONT");
    let back = Instant::now();
    while limiter_status(&p).await.1["status"] != "ok" {
        assert!(
            back.elapsed() < Duration::from_secs(1),
            "still degraded after {:?}",
            back.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The fallback's bucket is full (5 of 5), so any 200 here comes from the shared one: 3 left,
    // or 2 if Redis ran the request that timed out when it froze once it woke up.
    let (statuses, _) = burst(&p, &key, 4).await;
    let allowed = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        (2..=3).contains(&allowed) && statuses[0] == 200 && statuses[3] == 429,
        "the shared bucket, not the fallback's: {statuses:?}"
    );
    p.terminate().await;
}

#[tokio::test]
async fn with_fail_closed_a_stopped_redis_is_503_and_start_up_without_it_fails_fast() {
    let redis = OwnRedis::start();
    let (p, dir) = sluice(redis.port, "fail_closed").await;
    let p = p.unwrap();
    let key = key(&p).await;
    drop(redis);
    let t = Instant::now();
    let res = reqwest::Client::new()
        .get(p.url("/v1/agents"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(DEADLINE_MS + 100 + 500),
        "{:?}",
        t.elapsed()
    );
    let e = crate::assert_error(res, 503, "service_unavailable", "server_error", None, true).await;
    assert_eq!(e["details"]["reason"], "rate_limiter_unavailable");
    let (status, limiter) = limiter_status(&p).await;
    assert_eq!((status, limiter["status"].as_str()), (503, Some("down")));
    p.terminate().await;

    // Starting with no Redis at all: a clear error, at once.
    let cfg = dir.path().join("sluice.toml");
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let t = Instant::now();
    let out = tokio::process::Command::new(crate::binary::bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            cfg.to_str().unwrap(),
        ])
        .env("SLUICE_DATABASE_URL", &db)
        .env("SLUICE_ADMIN_KEY", ADMIN)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rate limits (on_redis_error = fail_closed): cannot connect to Redis"),
        "{stderr}"
    );
}

#[tokio::test]
async fn with_fail_open_an_instance_starts_without_redis_and_shares_limits_once_it_appears() {
    // A port with no Redis behind it yet.
    let port = crate::free_port();
    let (p, _dir) = sluice(port, "fail_open").await;
    let p = p.unwrap();
    let (status, limiter) = limiter_status(&p).await;
    assert_eq!((status, limiter["status"].as_str()), (200, Some("down")));
    let key = key(&p).await;
    let (statuses, worst) = burst(&p, &key, 6).await;
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 200, 429],
        "this instance's own limit applies"
    );
    assert!(
        worst < Duration::from_millis(DEADLINE_MS + 100),
        "{worst:?}"
    );
    let redis = OwnRedis::on(port);
    let until = Instant::now() + Duration::from_secs(5);
    while limiter_status(&p).await.1["status"] != "ok" {
        assert!(Instant::now() < until, "Redis never picked up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (statuses, _) = burst(&p, &key, 1).await;
    assert_eq!(statuses, [200], "the shared bucket is fresh");
    drop(redis);
    p.terminate().await;
}
