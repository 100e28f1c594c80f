//! Upstream transport: pooled keep-alive clients per provider, first-byte and idle timeouts,
//! bounded bodies, and the mapping of every upstream failure onto the error table.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use serde_json::Value;
use sluice_types::{ApiError, ErrorKind};

use crate::catalog::{Model, Provider, ProviderKind};
use crate::sse;

/// Builds the pooled HTTP client for one provider.
pub fn client_for(p: &Provider) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(p.timeouts.connect)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("provider `{}`: cannot build HTTP client: {e}", p.id))
}

/// 502: the provider failed, said something we cannot use, or went away.
pub fn provider_error(model: &Model, what: impl Into<String>) -> ApiError {
    ApiError::new(
        ErrorKind::UpstreamError,
        format!("The model provider `{}` failed to answer. Retry, or use a routing mode to let Sluice pick an available model.", model.provider.id),
    )
    .with_detail("provider", model.provider.id.as_str())
    .with_detail("model", model.id.as_str())
    .with_detail("provider_error", what.into())
}

/// 504: the provider did not answer in time.
pub fn timeout_error(model: &Model, after: Duration) -> ApiError {
    let secs = after.as_secs_f64();
    ApiError::new(
        ErrorKind::UpstreamTimeout,
        format!(
            "The model provider `{}` did not answer within {secs} s.",
            model.provider.id
        ),
    )
    .with_detail("provider", model.provider.id.as_str())
    .with_detail("model", model.id.as_str())
    .with_detail("timeout_seconds", secs)
}

/// 503: the provider cannot be used right now (not configured, or it is rate limiting us).
pub fn unavailable(model: &Model, reason: &str, retry_after: u64) -> ApiError {
    ApiError::new(
        ErrorKind::ProviderUnavailable,
        format!("The model provider `{}` is temporarily unavailable ({}). Retry after {retry_after} s, or use a routing mode.", model.provider.id, reason.replace('_', " ")),
    )
    .with_detail("provider", model.provider.id.as_str())
    .with_detail("model", model.id.as_str())
    .with_detail("reason", reason)
    .with_detail("retry_after", retry_after)
    .with_retry_after(retry_after)
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

/// The provider's own explanation, if its error body has one (never the raw body).
fn provider_message(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let msg = v["error"]["message"].as_str().or(v["message"].as_str())?;
    Some(truncate(msg, 300))
}

/// Sends a JSON POST and waits for the response headers.
pub async fn post(
    client: &reqwest::Client,
    model: &Model,
    path: &str,
    body: &Value,
) -> Result<reqwest::Response, ApiError> {
    post_beta(client, model, path, body, None).await
}

/// [`post`], passing an Anthropic client's `anthropic-beta` header on to an Anthropic provider.
pub async fn post_beta(
    client: &reqwest::Client,
    model: &Model,
    path: &str,
    body: &Value,
    beta: Option<&str>,
) -> Result<reqwest::Response, ApiError> {
    let p: &Provider = &model.provider;
    let build = || {
        let mut req = client.post(format!("{}{path}", p.base_url)).json(body);
        match p.kind {
            ProviderKind::Anthropic => {
                req = req.header("anthropic-version", "2023-06-01");
                if let Some(b) = beta {
                    req = req.header("anthropic-beta", b);
                }
                if let Some(k) = &p.api_key {
                    req = req.header("x-api-key", k.expose());
                }
            }
            ProviderKind::OpenAi | ProviderKind::Mock => {
                if let Some(k) = &p.api_key {
                    req = req.bearer_auth(k.expose());
                }
            }
        }
        req
    };
    let deadline = tokio::time::Instant::now() + p.timeouts.first_byte;
    let mut retried = false;
    let res = loop {
        match tokio::time::timeout_at(deadline, build().send()).await {
            Err(_) => return Err(timeout_error(model, p.timeouts.first_byte)),
            Ok(Err(e)) if e.is_timeout() => return Err(timeout_error(model, p.timeouts.connect)),
            // The connection was never made, so the provider cannot be generating for this
            // request: one immediate retry on a fresh connection is safe.
            Ok(Err(e)) if e.is_connect() && !retried => {
                retried = true;
                tracing::debug!(provider = p.id.as_str(), error = %e, "connect failed; retrying once");
            }
            Ok(Err(e)) if e.is_connect() => {
                return Err(provider_error(model, "could not connect to the provider")
                    .with_internal(e.to_string()))
            }
            Ok(Err(e)) => {
                return Err(provider_error(model, "the request to the provider failed")
                    .with_internal(e.to_string()))
            }
            Ok(Ok(res)) => break res,
        }
    };
    if res.status().is_success() {
        return Ok(res);
    }
    Err(status_error(model, res).await)
}

/// Maps a non-2xx upstream answer. Upstream 429s are not the caller's limit: 503.
async fn status_error(model: &Model, res: reqwest::Response) -> ApiError {
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|s| s.ceil().max(1.0) as u64);
    let body = read_limited(model, res, 64 * 1024)
        .await
        .unwrap_or_default();
    let msg = provider_message(&body);
    match status {
        429 => unavailable(model, "upstream_rate_limited", retry_after.unwrap_or(1)),
        400 | 413 | 422 => {
            let m = msg.unwrap_or_else(|| format!("HTTP {status}"));
            ApiError::new(
                ErrorKind::MalformedRequest,
                format!("The provider rejected the request: {m}"),
            )
            .with_detail("provider", model.provider.id.as_str())
            .with_detail("model", model.id.as_str())
            .with_detail("provider_error", m)
        }
        _ => {
            let what = match msg {
                Some(m) => format!("HTTP {status}: {m}"),
                None => format!("HTTP {status}"),
            };
            provider_error(model, what)
        }
    }
}

/// Reads the whole body, at most `limit` bytes, with the idle timeout between chunks.
pub async fn read_limited(
    model: &Model,
    mut res: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let idle = model.provider.timeouts.idle;
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(idle, res.chunk()).await {
            Err(_) => return Err(timeout_error(model, idle)),
            Ok(Err(e)) => {
                return Err(
                    provider_error(model, "the connection to the provider broke")
                        .with_internal(e.to_string()),
                )
            }
            Ok(Ok(None)) => return Ok(out),
            Ok(Ok(Some(chunk))) => {
                if out.len() + chunk.len() > limit {
                    return Err(provider_error(
                        model,
                        format!("the response exceeded {limit} bytes"),
                    ));
                }
                out.extend_from_slice(&chunk);
            }
        }
    }
}

/// Reads and parses a JSON response body.
pub async fn read_json(model: &Model, res: reqwest::Response) -> Result<Value, ApiError> {
    let body = read_limited(model, res, model.provider.max_response_bytes).await?;
    serde_json::from_slice(&body).map_err(|e| {
        provider_error(model, "the provider answered with invalid JSON")
            .with_internal(e.to_string())
    })
}

struct EventState {
    res: reqwest::Response,
    model: Arc<Model>,
    parser: sse::Parser,
    ready: std::collections::VecDeque<sse::Event>,
    total: usize,
    finished: bool,
}

/// The response body as SSE events, each passed on as soon as it is complete. Errors end the
/// stream: a broken connection (502), an idle gap longer than the idle timeout (504), or more
/// than the provider's byte limit (502).
pub fn events(
    res: reqwest::Response,
    model: Arc<Model>,
) -> impl Stream<Item = Result<sse::Event, ApiError>> + Send {
    let state = EventState {
        res,
        model,
        parser: sse::Parser::new(),
        ready: Default::default(),
        total: 0,
        finished: false,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(e) = st.ready.pop_front() {
                return Some((Ok(e), st));
            }
            if st.finished {
                return None;
            }
            let idle = st.model.provider.timeouts.idle;
            let next: Result<Option<Bytes>, ApiError> =
                match tokio::time::timeout(idle, st.res.chunk()).await {
                    Err(_) => Err(timeout_error(&st.model, idle)),
                    Ok(Err(e)) => Err(provider_error(&st.model, "the provider's stream broke off")
                        .with_internal(e.to_string())),
                    Ok(Ok(c)) => Ok(c),
                };
            match next {
                Err(e) => {
                    st.finished = true;
                    return Some((Err(e), st));
                }
                Ok(None) => {
                    // A final event without its blank line still counts.
                    let mut out = Vec::new();
                    st.parser.feed(b"\n\n", &mut out);
                    st.ready.extend(out);
                    st.finished = true;
                }
                Ok(Some(chunk)) => {
                    st.total += chunk.len();
                    if st.total > st.model.provider.max_response_bytes {
                        st.finished = true;
                        let limit = st.model.provider.max_response_bytes;
                        return Some((
                            Err(provider_error(
                                &st.model,
                                format!("the stream exceeded {limit} bytes"),
                            )),
                            st,
                        ));
                    }
                    let mut out = Vec::new();
                    st.parser.feed(&chunk, &mut out);
                    st.ready.extend(out);
                }
            }
        }
    })
}
