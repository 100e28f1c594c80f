//! Usage records: one per gateway request, queued without waiting and written by a background
//! task in batches. `flush` waits until everything queued before it is stored, which is how a
//! graceful shutdown loses none.

use std::sync::Arc;
use std::time::Duration;

use sluice_store::{Store, UsageRecord};
use tokio::sync::{mpsc, oneshot};

enum Msg {
    Record(Box<UsageRecord>),
    Flush(oneshot::Sender<()>),
}

/// Hands records to the writer task. Sending never blocks the request.
#[derive(Clone)]
pub struct UsageRecorder {
    tx: mpsc::UnboundedSender<Msg>,
}

const BATCH: usize = 500;
/// How long the writer gathers records before a write.
const WINDOW: Duration = Duration::from_millis(100);

impl UsageRecorder {
    /// Starts the writer task on the current runtime.
    pub fn start(store: Arc<dyn Store>) -> UsageRecorder {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(store, rx));
        UsageRecorder { tx }
    }

    pub fn record(&self, r: UsageRecord) {
        if self.tx.send(Msg::Record(Box::new(r))).is_err() {
            tracing::error!("usage writer is gone; a usage record was dropped");
        }
    }

    /// Resolves when every record queued before this call is stored.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

async fn write_loop(store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let mut msgs = Vec::with_capacity(BATCH);
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        // Wait for one message, then gather for a short window so that each transaction carries
        // many records (a commit per request would cost more than the request's own work).
        if rx.recv_many(&mut msgs, BATCH).await == 0 {
            break;
        }
        let window = tokio::time::Instant::now() + WINDOW;
        while msgs.len() < BATCH && !msgs.iter().any(|m| matches!(m, Msg::Flush(_))) {
            let room = BATCH - msgs.len();
            match tokio::time::timeout_at(window, rx.recv_many(&mut msgs, room)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let mut waiters = Vec::new();
        for m in msgs.drain(..) {
            match m {
                Msg::Record(r) => batch.push(*r),
                Msg::Flush(w) => waiters.push(w),
            }
        }
        let mut delay = Duration::from_millis(50);
        // A failed batch is retried until it is stored: usage is billing data.
        while let Err(e) = store.insert_usage(&batch).await {
            tracing::warn!(error = %e, records = batch.len(), "usage batch not stored; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        batch.clear();
        for w in waiters {
            let _ = w.send(());
        }
    }
}
