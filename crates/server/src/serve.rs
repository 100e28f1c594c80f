//! Binding, serving and graceful shutdown; also logging set-up for the binary.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use sluice_engine::config::ServerLimits;
use tokio::net::TcpListener;

use crate::conn::Admission;

/// Binds `addr` with a listen backlog of 4,096 (the default 128 drops SYNs under a burst of
/// connections, and each dropped SYN costs its client a one-second retransmission).
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Raises the open-file soft limit to the hard limit and returns the new soft limit, so the
/// connection cap can be kept below it (running out of descriptors refuses everyone).
pub fn raise_nofile_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets in-flight requests finish
/// for at most `grace` before returning.
///
/// Every connection is admitted against the instance's and its client address's cap (over either,
/// it gets a 503 and is closed); a connection that does not send a complete request head within
/// `header_timeout` — including an idle keep-alive connection — is closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
    limits: &ServerLimits,
) -> std::io::Result<()> {
    crate::extract::set_body_timeout(limits.body_timeout);
    let admission = Admission::new(limits.max_connections, limits.max_connections_per_client);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let http = Arc::new(http);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors (or a connection reset before accept): back off
                    // briefly instead of spinning; open connections keep being served.
                    tracing::warn!(error = %e, open = admission.open(), "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // Without TCP_NODELAY, small SSE frames wait on delayed ACKs (~40 ms each on Linux).
        let _ = tcp.set_nodelay(true);
        let admitted = match admission.admit(peer.ip()) {
            Ok(a) => a,
            Err(why) => {
                tokio::spawn(crate::conn::refuse(tcp, why));
                continue;
            }
        };
        let conn = http.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(admitted);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => Ok(()),
        _ = tokio::time::sleep(grace) => {
            tracing::warn!(grace_seconds = grace.as_secs(), "grace period over; closing remaining connections");
            Ok(())
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; draining");
}

/// Logs to stderr with the given filter: a level (`info`) or `target=level` pairs.
pub fn init_logging(filter: &str) -> Result<(), String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // sqlx logs every Postgres NOTICE at info (e.g. "relation already exists, skipping");
    // they are noise for operators unless asked for explicitly.
    let filter = if filter.contains("sqlx") {
        filter.to_owned()
    } else {
        format!("{filter},sqlx=warn")
    };
    let targets: tracing_subscriber::filter::Targets = filter
        .parse()
        .map_err(|e| format!("log: `{filter}` is not a valid filter: {e}"))?;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(false),
        )
        .with(targets)
        .try_init()
        .map_err(|e| e.to_string())
}
