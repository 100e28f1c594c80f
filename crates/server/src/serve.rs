//! Binding, serving and graceful shutdown; also logging set-up for the binary.

use std::future::Future;
use std::time::Duration;

use axum::serve::ListenerExt;
use axum::Router;
use tokio::net::TcpListener;

/// Serves `app` on `listener` until `shutdown` resolves, then lets in-flight requests finish
/// for at most `grace` before returning.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    // Without TCP_NODELAY, small SSE frames wait on delayed ACKs (~40 ms each on Linux).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    tokio::select! {
        r = server => r,
        _ = async {
            let _ = rx.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(grace).await;
        } => {
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
