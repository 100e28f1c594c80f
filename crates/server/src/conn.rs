//! Connection admission: how many connections the instance and each client address may hold,
//! and the answer a connection over either cap gets (a 503 in the envelope, then close).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_types::{ApiError, Dialect, ErrorKind};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Counts open connections, in total and per client address.
#[derive(Default)]
pub struct Admission {
    max_total: usize,
    max_per_client: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Held for as long as an admitted connection is open.
pub struct Admitted {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Ok(mut open) = self.admission.open.lock() {
            open.0 = open.0.saturating_sub(1);
            if let Some(n) = open.1.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    open.1.remove(&self.ip);
                }
            }
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Instance,
    Client,
}

impl Admission {
    /// `max_per_client` 0 turns the per-address cap off (behind a proxy every client shares one).
    pub fn new(max_total: usize, max_per_client: usize) -> Arc<Admission> {
        Arc::new(Admission {
            max_total: max_total.max(1),
            max_per_client,
            open: Mutex::new((0, HashMap::new())),
        })
    }

    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refused> {
        let Ok(mut open) = self.open.lock() else {
            return Err(Refused::Instance);
        };
        if open.0 >= self.max_total {
            return Err(Refused::Instance);
        }
        let mine = open.1.get(&ip).copied().unwrap_or(0);
        if self.max_per_client > 0 && mine >= self.max_per_client {
            return Err(Refused::Client);
        }
        open.0 += 1;
        open.1.insert(ip, mine + 1);
        Ok(Admitted {
            admission: self.clone(),
            ip,
        })
    }

    pub fn open(&self) -> usize {
        self.open.lock().map(|o| o.0).unwrap_or(0)
    }
}

/// The whole HTTP response a refused connection gets before it is closed.
pub fn refusal_response(why: Refused) -> Vec<u8> {
    let message = match why {
        Refused::Instance => "This server has too many open connections; retry shortly.",
        Refused::Client => {
            "Too many open connections from your address; close some or retry shortly."
        }
    };
    let request_id = sluice_types::id::new_id("req");
    let kind = ErrorKind::ServiceUnavailable;
    let err = ApiError::new(kind, message)
        .with_detail(
            "reason",
            match why {
                Refused::Instance => "too_many_connections",
                Refused::Client => "too_many_connections_from_client",
            },
        )
        .with_detail("retry_after", 1);
    let body = serde_json::json!({"error": {
        "code": kind.code(Dialect::Gateway),
        "message": err.message,
        "type": kind.error_type().as_str(),
        "param": null,
        "details": err.details,
        "request_id": request_id,
    }})
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\nretry-after: 1\r\nx-should-retry: true\r\nx-request-id: {request_id}\r\n\
         x-arena-trace-id: {request_id}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Answers a refused connection and closes it; a client that does not read is dropped after 1 s.
pub async fn refuse(mut tcp: TcpStream, why: Refused) {
    let res = refusal_response(why);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = tcp.write_all(&res).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_per_instance_and_per_client_and_free_on_drop() {
        let a = Admission::new(3, 2);
        let x: IpAddr = "127.0.0.1".parse().unwrap();
        let y: IpAddr = "127.0.0.2".parse().unwrap();
        let g1 = a.admit(x).unwrap();
        let _g2 = a.admit(x).unwrap();
        assert_eq!(a.admit(x).err(), Some(Refused::Client));
        let _g3 = a.admit(y).unwrap();
        assert_eq!(a.admit(y).err(), Some(Refused::Instance));
        drop(g1);
        assert_eq!(a.open(), 2);
        assert!(a.admit(x).is_ok());
        let res = String::from_utf8(refusal_response(Refused::Client)).unwrap();
        assert!(
            res.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{res}"
        );
        assert!(res.contains("\"code\":\"service_unavailable\""), "{res}");
    }
}
