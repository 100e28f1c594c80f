//! The load harness: N concurrent clients drive the mock provider directly and through Sluice in
//! the same run (alternating rounds, so drift hits both paths alike), and print throughput and
//! latency percentiles with the gateway/direct ratios.
//!
//! The mock and Sluice run as separate processes of the real release binary, as in production.
//!
//! cargo build --release -p sluice-server -p sluice-testkit
//! target/release/sluice-load [--clients 16] [--seconds 5] [--rounds 3] [--stream] [--bin PATH]

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_testkit::process::SluiceProcess;
use tokio::io::{AsyncBufReadExt, BufReader};

struct Args {
    clients: usize,
    seconds: u64,
    rounds: usize,
    stream: bool,
    bin: PathBuf,
}

fn args() -> Args {
    let exe = std::env::current_exe().expect("own path");
    let mut a = Args {
        clients: 16,
        seconds: 5,
        rounds: 3,
        stream: false,
        bin: exe.with_file_name("sluice"),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        let num = || value.parse::<u64>().expect("a number");
        match argv[i].as_str() {
            "--clients" => a.clients = num() as usize,
            "--seconds" => a.seconds = num(),
            "--rounds" => a.rounds = num() as usize,
            "--bin" => a.bin = PathBuf::from(&value),
            "--stream" => {
                a.stream = true;
                i -= 1;
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

#[derive(Default)]
struct Sample {
    latencies_us: Vec<u64>,
    errors: u64,
    elapsed: Duration,
}

/// Runs `clients` loops for `seconds` against `url`; latency is until the whole body is read.
async fn drive(
    client: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    body: &Value,
    clients: usize,
    seconds: u64,
) -> Sample {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, url, key, body) = (
            client.clone(),
            url.to_owned(),
            key.map(str::to_owned),
            body.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                let mut req = client.post(&url).json(&body);
                if let Some(k) = &key {
                    req = req.bearer_auth(k);
                }
                let ok = match req.send().await {
                    Ok(res) if res.status().is_success() => res.bytes().await.is_ok(),
                    _ => false,
                };
                if ok {
                    lat.push(t.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut s = Sample::default();
    for t in tasks {
        let (lat, errors) = t.await.unwrap();
        s.latencies_us.extend(lat);
        s.errors += errors;
    }
    s.elapsed = started.elapsed();
    s
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Summary {
    rps: f64,
    p50: u64,
    p99: u64,
    n: usize,
    errors: u64,
}

fn summarise(samples: &[Sample]) -> Summary {
    let mut all: Vec<u64> = samples
        .iter()
        .flat_map(|s| s.latencies_us.iter().copied())
        .collect();
    all.sort_unstable();
    let secs: f64 = samples.iter().map(|s| s.elapsed.as_secs_f64()).sum();
    Summary {
        rps: all.len() as f64 / secs,
        p50: pct(&all, 0.50),
        p99: pct(&all, 0.99),
        n: all.len(),
        errors: samples.iter().map(|s| s.errors).sum(),
    }
}

/// Starts `sluice mock-provider --port 0` and returns it with its address.
async fn start_mock(bin: &PathBuf) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(bin)
        .args(["mock-provider", "--port", "0"])
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn mock provider");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = lines
        .next_line()
        .await
        .unwrap()
        .expect("mock printed nothing");
    let addr = line
        .split("listening on http://")
        .nth(1)
        .expect("listening line")
        .trim()
        .to_owned();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

/// Starts `sluice serve` with `extra` config appended, creates an account on `tier` with ample
/// credit and a key; returns the process and the key.
async fn start_sluice(
    bin: &PathBuf,
    mock_addr: &str,
    extra: &str,
    tier: Value,
    client: &reqwest::Client,
) -> (SluiceProcess, String) {
    let dir = tempfile_dir();
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[[providers]]\nid = \"mock\"\ntype = \"openai\"\nbase_url = \"http://{mock_addr}/v1\"\n\n\
             [[models]]\nid = \"mock/free\"\nupstream = \"small\"\ncontext_window = 8192\nmax_output_tokens = 1024\n\n\
             [[models]]\nid = \"mock/priced\"\nupstream = \"small\"\ncontext_window = 8192\nmax_output_tokens = 1024\n\
             input_price = 150000\noutput_price = 600000\n\n\
             # Limits high enough never to refuse: they are checked on every request all the same.\n\
             [rate_limits.tiers.\"5\"]\nrpm = 1000000000\nrps = 100000000\ntpm = 1000000000000\ntps = 100000000000\n{extra}"
        ),
    )
    .unwrap();
    let db = format!("sqlite://{}", dir.join("sluice.db").display());
    let admin = "sk-load-admin-0123456789abcdef";
    let sluice = SluiceProcess::spawn(
        bin,
        &["--config", config.to_str().unwrap()],
        &[
            ("SLUICE_DATABASE_URL", &db),
            ("SLUICE_ADMIN_KEY", admin),
            ("SLUICE_LOG", "info"),
        ],
    )
    .await;
    let post = |path: String, body: Value| {
        client
            .post(sluice.url(&path))
            .bearer_auth(admin)
            .json(&body)
            .send()
    };
    let acct: Value = post("/v1/accounts".into(), json!({"name": "load", "tier": tier}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = acct["id"].as_str().unwrap().to_owned();
    let res = post(
        format!("/v1/accounts/{id}/credits"),
        json!({"amount": 1_000_000_000_000_i64}),
    )
    .await
    .unwrap();
    assert!(res.status().is_success(), "top-up failed");
    let key: Value = post(
        "/v1/keys".into(),
        json!({"name": "load", "account_id": id, "scopes": ["chat:write"]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    (sluice, key["secret"].as_str().unwrap().to_owned())
}

#[tokio::main]
async fn main() {
    let a = args();
    assert!(
        a.bin.exists(),
        "{} not found; build it with cargo build --release -p sluice-server",
        a.bin.display()
    );
    let (_mock, mock_addr) = start_mock(&a.bin).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let (plain, plain_key) =
        start_sluice(&a.bin, &mock_addr, "", json!("unlimited"), &client).await;
    let (limited, limited_key) = start_sluice(&a.bin, &mock_addr, "", json!(5), &client).await;
    let redis_cfg = format!(
        "\n[rate_limits]\nbackend = \"redis\"\nkey_prefix = \"sluice:load:{}:\"\n",
        std::process::id()
    );
    let (shared, shared_key) =
        start_sluice(&a.bin, &mock_addr, &redis_cfg, json!(5), &client).await;

    let mut body = json!({"messages": [{"role": "user", "content": "Write one short sentence about rivers."}], "max_tokens": 16});
    if a.stream {
        body["stream"] = json!(true);
    }
    let with_model = |m: &str| {
        let mut b = body.clone();
        b["model"] = json!(m);
        b
    };
    let direct_url = format!("http://{mock_addr}/v1/chat/completions");
    let (free_b, priced_b, direct_b) = (
        with_model("mock/free"),
        with_model("mock/priced"),
        with_model("small"),
    );
    let (plain_url, limited_url, shared_url) = (
        plain.url("/v1/chat/completions"),
        limited.url("/v1/chat/completions"),
        shared.url("/v1/chat/completions"),
    );
    let paths: [(&str, &str, Option<&str>, &Value); 5] = [
        ("direct to mock", &direct_url, None, &direct_b),
        (
            "sluice: no credits, no limits",
            &plain_url,
            Some(&plain_key),
            &free_b,
        ),
        ("sluice: credits", &plain_url, Some(&plain_key), &priced_b),
        (
            "sluice: credits + limits (in-process)",
            &limited_url,
            Some(&limited_key),
            &priced_b,
        ),
        (
            "sluice: credits + limits (Redis)",
            &shared_url,
            Some(&shared_key),
            &priced_b,
        ),
    ];
    // Warm every path (connections, tokenizer, leases, page cache) before measuring.
    for (_, url, k, b) in &paths {
        drive(&client, url, *k, b, a.clients, 1).await;
    }
    let mut samples: Vec<Vec<Sample>> = paths.iter().map(|_| Vec::new()).collect();
    for _ in 0..a.rounds {
        for (i, (_, url, k, b)) in paths.iter().enumerate() {
            samples[i].push(drive(&client, url, *k, b, a.clients, a.seconds).await);
        }
    }
    let sums: Vec<Summary> = samples.iter().map(|s| summarise(s)).collect();
    let mode = if a.stream {
        "stream (16 chunks)"
    } else {
        "json"
    };
    println!(
        "sluice-load: {} clients, {} rounds x {} s per path, {mode}, 16 output tokens",
        a.clients, a.rounds, a.seconds
    );
    println!("| path | requests | errors | req/s | p50 ms | p99 ms | throughput / direct | throughput / previous row | added p50 ms |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (i, ((name, ..), s)) in paths.iter().zip(&sums).enumerate() {
        let prev = if i > 1 {
            format!("{:.2}", s.rps / sums[i - 1].rps)
        } else {
            "".to_owned()
        };
        println!(
            "| {name} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {prev} | {:.2} |",
            s.n,
            s.errors,
            s.rps,
            s.p50 as f64 / 1000.0,
            s.p99 as f64 / 1000.0,
            s.rps / sums[0].rps,
            (s.p50 as f64 - sums[0].p50 as f64) / 1000.0
        );
    }
    for p in [plain, limited, shared] {
        p.terminate().await;
    }
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sluice-load-{}-{}",
        std::process::id(),
        sluice_types::id::random_base62(6)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
