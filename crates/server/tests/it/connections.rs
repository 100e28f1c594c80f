//! Connection exhaustion against the real binary: idle, slow and half-sent connections are
//! capped per client address and closed at their deadlines; others keep being served.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sluice_testkit::process::SluiceProcess;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const ADMIN: &str = "sk-connections-test-admin-0123456789";

async fn start(server_config: &str) -> (SluiceProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sluice.toml");
    std::fs::write(&cfg, format!("[server]\n{server_config}")).unwrap();
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let env = [
        ("SLUICE_DATABASE_URL", db.as_str()),
        ("SLUICE_ADMIN_KEY", ADMIN),
    ];
    let p = SluiceProcess::spawn(
        crate::binary::bin(),
        &["--config", cfg.to_str().unwrap()],
        &env,
    )
    .await;
    (p, dir)
}

/// Reads until the peer closes (or `limit` passes); returns what arrived and when it closed.
async fn read_to_close(tcp: &mut TcpStream, limit: Duration) -> (Vec<u8>, Option<Instant>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let until = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(until.into(), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, Some(Instant::now())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, None),
        }
    }
}

#[tokio::test]
async fn five_thousand_idle_or_slow_connections_do_not_starve_other_clients() {
    let (p, _dir) = start("header_timeout_ms = 2000\nmax_connections_per_client = 200\n").await;
    let addr: SocketAddr = p.addr;
    // 5,000 connections from 127.0.0.1: half stay silent, half send an unfinished request head.
    let mut conns = Vec::with_capacity(5_000);
    for chunk in 0..10 {
        let batch = futures_util::future::join_all((0..500).map(|i| async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            if (chunk * 500 + i) % 2 == 1 {
                let _ = tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
            }
            (tcp, Instant::now())
        }))
        .await;
        conns.extend(batch);
    }

    // Another client (127.0.0.2 is loopback too) is served at once.
    let client = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let t = Instant::now();
    let res = client.get(p.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());

    // Past the per-address cap, a connection is answered 503 in the envelope and closed.
    let (refused, closed) = read_to_close(&mut conns[4_999].0, Duration::from_secs(1)).await;
    let text = String::from_utf8_lossy(&refused);
    assert!(
        text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{text}"
    );
    assert!(text.contains("retry-after: 1\r\n"), "{text}");
    assert!(
        text.contains("\"reason\":\"too_many_connections_from_client\""),
        "{text}"
    );
    assert!(closed.is_some());

    // Idle and half-sent connections are closed at the header timeout (2 s); these two come
    // from a third address, so the cap does not decide their fate.
    for head in [&b""[..], b"GET /healthz HTTP/1.1\r\nHost: x\r\n"] {
        let sock = TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.3:0".parse().unwrap()).unwrap();
        let mut tcp = sock.connect(addr).await.unwrap();
        tcp.write_all(head).await.unwrap();
        let opened = Instant::now();
        let (_, closed) = read_to_close(&mut tcp, Duration::from_secs(5)).await;
        let at = closed.expect("closed by the server").duration_since(opened);
        assert!(
            at > Duration::from_millis(1_500) && at < Duration::from_millis(3_000),
            "closed after {at:?}"
        );
    }
    drop(conns);
    // And the instance serves its first client's address again.
    let res = reqwest::get(p.url("/healthz")).await.unwrap();
    assert_eq!(res.status(), 200);
    p.terminate().await;
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_answered_408_at_the_body_timeout() {
    let (p, _dir) = start("body_timeout_ms = 1000\n").await;
    let mut tcp = TcpStream::connect(p.addr).await.unwrap();
    let head = format!(
        "POST /v1/accounts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\": "
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let t = Instant::now();
    let (got, _) = read_to_close(&mut tcp, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{text}"
    );
    assert!(text.contains("\"code\":\"request_timeout\""), "{text}");
    assert!(text.contains("x-request-id: req_"), "{text}");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2_500),
        "{took:?}"
    );
    p.terminate().await;
}
