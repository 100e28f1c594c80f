//! Our own extractors, so malformed input yields the contract's envelope, never axum's text.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use std::sync::atomic::{AtomicU64, Ordering};

use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;
use sluice_engine::Principal;
use sluice_types::validation::invalid_fields;
use sluice_types::{ApiError, ErrorKind};

use crate::error::HttpError;
use crate::limits::{too_large, MAX_BODY_BYTES};
use crate::AppState;

/// A JSON body, size-limited and parsed with errors that say where the problem is.
pub struct Json<T>(pub T);

/// `Content-Type` must be JSON when given; a missing one is accepted (curl users forget it).
fn check_content_type(req: &Request) -> Result<(), ApiError> {
    let Some(ct) = req.headers().get(CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence == "application/json" || essence.ends_with("+json") {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorKind::MalformedRequest,
            format!("Content-Type must be application/json, not `{essence}`."),
        ))
    }
}

/// How long a request may take to send its body, in milliseconds (`[server] body_timeout_ms`).
static BODY_TIMEOUT_MS: AtomicU64 = AtomicU64::new(60_000);

pub fn set_body_timeout(t: std::time::Duration) {
    BODY_TIMEOUT_MS.store(t.as_millis() as u64, Ordering::Relaxed);
}

/// Reads the whole body, stopping as soon as it passes the limit or the body timeout.
pub async fn read_body(req: Request) -> Result<axum::body::Bytes, ApiError> {
    let timeout = std::time::Duration::from_millis(BODY_TIMEOUT_MS.load(Ordering::Relaxed));
    let read = tokio::time::timeout(
        timeout,
        Limited::new(req.into_body(), MAX_BODY_BYTES).collect(),
    );
    let Ok(read) = read.await else {
        return Err(ApiError::new(
            ErrorKind::RequestTimeout,
            format!(
                "The request body did not arrive within {} s.",
                timeout.as_secs_f64()
            ),
        )
        .with_detail("timeout_seconds", timeout.as_secs_f64()));
    };
    match read {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => Err(ApiError::new(
            ErrorKind::MalformedRequest,
            "The request body could not be read.",
        )
        .with_internal(e.to_string())),
    }
}

/// 0-based byte offset of a 1-based (line, column) position in `bytes`.
fn byte_position(bytes: &[u8], line: usize, column: usize) -> usize {
    let mut start = 0;
    if line > 1 {
        let mut seen = 0;
        for (i, b) in bytes.iter().enumerate() {
            if *b == b'\n' {
                seen += 1;
                if seen == line - 1 {
                    start = i + 1;
                    break;
                }
            }
        }
    }
    (start + column.saturating_sub(1)).min(bytes.len())
}

/// A well-formed body whose values have the wrong type or shape, as a field error.
fn type_error(path: String, inner: &serde_json::Error) -> ApiError {
    invalid_fields(vec![sluice_types::validation::from_serde(
        &path,
        &inner.to_string(),
    )])
}

/// Parses `bytes` as `T`: syntax errors are 400 with `details.parse_error`, line, column and
/// byte position; type errors are field errors naming the JSON path.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            ErrorKind::MalformedRequest,
            "Request body must be valid JSON; it is empty.",
        )
        .with_detail("parse_error", "empty body"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let inner = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => match de.end() {
            Ok(()) => return Ok(v),
            Err(e) => e,
        },
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            if inner.is_data() {
                return Err(type_error(path, &inner));
            }
            inner
        }
    };
    let (line, column) = (inner.line(), inner.column());
    let position = byte_position(bytes, line, column);
    let what = inner.to_string();
    let what = what.split(" at line ").next().unwrap_or("syntax error");
    let parse_error = format!("{what} at line {line}, column {column} (byte {position})");
    Err(ApiError::new(
        ErrorKind::MalformedRequest,
        format!("Request body must be valid JSON: {parse_error}."),
    )
    .with_detail("parse_error", parse_error)
    .with_detail("line", line)
    .with_detail("column", column)
    .with_detail("position", position))
}

impl<S, T> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        check_content_type(&req)?;
        let bytes = read_body(req).await?;
        Ok(Json(parse_json(&bytes)?))
    }
}

/// The authenticated caller.
pub struct Auth(pub Principal);

/// The presented secret: `Authorization: Bearer <key>` or `x-api-key: <key>`.
/// An `Authorization` header of another scheme counts as an invalid key, not a missing one.
/// Several credentials that differ (two `Authorization` headers, or a bearer token and an
/// `x-api-key` that disagree) are refused: which one would win is not the client's to guess.
pub fn presented_key(headers: &axum::http::HeaderMap) -> Result<Option<&str>, ApiError> {
    let invalid = || ApiError::unauthorized("api_key_invalid");
    let mut found: Option<&str> = None;
    for v in headers.get_all(AUTHORIZATION) {
        let v = v.to_str().map_err(|_| invalid())?;
        let (scheme, token) = v.trim().split_once(' ').unwrap_or((v, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(invalid());
        }
        found = one_credential(found, token.trim())?;
    }
    for v in headers.get_all("x-api-key") {
        found = one_credential(found, v.to_str().map_err(|_| invalid())?.trim())?;
    }
    Ok(found)
}

fn one_credential<'a>(seen: Option<&'a str>, next: &'a str) -> Result<Option<&'a str>, ApiError> {
    match seen {
        Some(s) if s != next => {
            let mut e = ApiError::unauthorized("api_key_invalid");
            e.message =
                "More than one different API key was sent; send exactly one (Authorization: Bearer or x-api-key)."
                    .to_owned();
            Err(e.with_detail("reason", "ambiguous_credentials"))
        }
        _ => Ok(Some(next)),
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // Flows routes were authenticated by the flows gate already.
        if let Some(who) = parts.extensions.get::<Principal>() {
            return Ok(Auth(who.clone()));
        }
        let presented = presented_key(&parts.headers)?;
        Ok(Auth(state.authenticate(presented).await?))
    }
}

/// Query parameters, with a malformed query string reported in the envelope.
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(rejection) => {
                // axum's text is "Failed to deserialize query string: <serde message>".
                let text = rejection.body_text();
                let detail = text.split_once(": ").map_or(text.as_str(), |(_, d)| d);
                let fe = sluice_types::validation::from_serde(".", detail);
                let mut e = if fe.field == "body" {
                    // serde_urlencoded does not say which parameter; do not pretend to know.
                    ApiError::new(
                        ErrorKind::MalformedRequest,
                        "Invalid query string: a parameter has a value of the wrong type.",
                    )
                } else {
                    ApiError::new(
                        ErrorKind::MalformedRequest,
                        format!("Invalid query string: {}", fe.message),
                    )
                    .with_param(fe.field)
                };
                e = e.with_internal(text);
                Err(HttpError(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        n: Option<u32>,
    }

    #[test]
    fn syntax_errors_carry_line_column_and_byte_position() {
        let text = b"{\n  \"name\": \"x\",\n  oops\n}";
        let e = parse_json::<Body>(text).unwrap_err();
        let d = e.details.unwrap();
        assert_eq!(d["line"], 3);
        assert_eq!(d["column"], 3);
        assert_eq!(d["position"], 19);
        assert_eq!(text[19], b'o');
    }

    #[test]
    fn type_errors_name_the_field() {
        let e = parse_json::<Body>(br#"{"name": "x", "n": "seven"}"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidFields);
        assert_eq!(e.param.as_deref(), Some("n"));
        let e = parse_json::<Body>(br#"{"n": 1}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("name"));
        assert_eq!(e.details.unwrap()["errors"][0]["code"], "required");
    }

    #[test]
    fn trailing_garbage_and_empty_bodies_are_malformed() {
        let e = parse_json::<Body>(br#"{"name": "x"} x"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::MalformedRequest);
        let e = parse_json::<Body>(b"  ").unwrap_err();
        assert_eq!(e.kind, ErrorKind::MalformedRequest);
    }
}
