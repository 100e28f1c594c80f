//! The one table of public errors (CONTRACT §3) and the `ApiError` every crate returns.
//!
//! Each `ErrorKind` is one row: status and code per dialect, the `type`, and whether a client
//! should retry. The dialect is a column, not a second error type: the server picks it from
//! the route's surface when it renders the envelope.

use serde_json::{Map, Value};

/// Which document's vocabulary an error is rendered in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Seed 000 ("Arena API"): gateway, management and ops routes.
    Gateway,
    /// Seed 004 ("ArcanFlows API"): agents, workflows, executions.
    Flows,
}

/// The envelope's `type` field: a coarse category for grouping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    InvalidRequest,
    Authentication,
    Billing,
    Permission,
    Server,
    Provider,
    Execution,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::InvalidRequest => "invalid_request_error",
            ErrorType::Authentication => "authentication_error",
            ErrorType::Billing => "billing_error",
            ErrorType::Permission => "permission_error",
            ErrorType::Server => "server_error",
            ErrorType::Provider => "provider_error",
            ErrorType::Execution => "execution_error",
        }
    }
}

macro_rules! error_table {
    ($( $(#[$doc:meta])* $kind:ident => gateway($gs:literal, $gc:literal), flows($fs:literal, $fc:literal), $ty:ident, retry: $retry:literal; )*) => {
        /// Every situation the public API can report. One variant, one row of CONTRACT §3.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorKind { $( $(#[$doc])* $kind, )* }

        impl ErrorKind {
            /// Every row, in table order (the snapshot test walks this).
            pub const ALL: &'static [ErrorKind] = &[ $( ErrorKind::$kind, )* ];

            /// HTTP status in the given dialect.
            pub fn status(self, dialect: Dialect) -> u16 {
                match (self, dialect) {
                    $( (ErrorKind::$kind, Dialect::Gateway) => $gs, (ErrorKind::$kind, Dialect::Flows) => $fs, )*
                }
            }

            /// Machine-readable `code` in the given dialect.
            pub fn code(self, dialect: Dialect) -> &'static str {
                match (self, dialect) {
                    $( (ErrorKind::$kind, Dialect::Gateway) => $gc, (ErrorKind::$kind, Dialect::Flows) => $fc, )*
                }
            }

            /// The envelope's `type`.
            pub fn error_type(self) -> ErrorType {
                match self { $( ErrorKind::$kind => ErrorType::$ty, )* }
            }

            /// The `x-should-retry` value.
            pub fn retryable(self) -> bool {
                match self { $( ErrorKind::$kind => $retry, )* }
            }
        }
    };
}

// Where the contract has "—" for a dialect, the row uses the other dialect's code: those
// situations cannot arise on that surface, and one name per situation is least surprising.
error_table! {
    /// Body is not JSON, or the content type is wrong.
    MalformedRequest => gateway(400, "invalid_request"), flows(400, "invalid_request"), InvalidRequest, retry: false;
    /// Field values or types are wrong; flows bodies report every problem as 422.
    InvalidFields => gateway(400, "invalid_request"), flows(422, "validation_error"), InvalidRequest, retry: false;
    /// The prompt does not fit the model's context window.
    ContextLengthExceeded => gateway(400, "context_length_exceeded"), flows(400, "context_length_exceeded"), InvalidRequest, retry: false;
    /// Missing, malformed, unknown, revoked or expired key.
    Unauthorized => gateway(401, "unauthorized"), flows(401, "unauthorized"), Authentication, retry: false;
    /// The account cannot pay for the request.
    InsufficientCredits => gateway(402, "insufficient_credits"), flows(402, "insufficient_credits"), Billing, retry: false;
    /// The key lacks a scope.
    Forbidden => gateway(403, "forbidden"), flows(403, "forbidden"), Permission, retry: false;
    /// A management object belongs to another account.
    NotOwner => gateway(403, "forbidden"), flows(403, "forbidden"), Permission, retry: false;
    /// The account's plan allows no more of a resource.
    PlanLimit => gateway(403, "resource_exhausted"), flows(403, "resource_exhausted"), Permission, retry: false;
    /// Route or object not found.
    NotFound => gateway(404, "not_found"), flows(404, "not_found"), InvalidRequest, retry: false;
    /// The route exists but not with this method.
    MethodNotAllowed => gateway(405, "method_not_allowed"), flows(405, "method_not_allowed"), InvalidRequest, retry: false;
    /// A unique value (a name) is taken.
    Conflict => gateway(409, "conflict"), flows(409, "conflict"), InvalidRequest, retry: false;
    /// The same Idempotency-Key is still being processed.
    IdempotencyInFlight => gateway(409, "conflict"), flows(409, "conflict"), InvalidRequest, retry: true;
    /// The same Idempotency-Key was used with a different body.
    IdempotencyMismatch => gateway(422, "invalid_request"), flows(422, "validation_error"), InvalidRequest, retry: false;
    /// The client did not send its body within the server's body timeout.
    RequestTimeout => gateway(408, "request_timeout"), flows(408, "request_timeout"), InvalidRequest, retry: false;
    /// Body over the size limit.
    RequestTooLarge => gateway(413, "request_too_large"), flows(413, "request_too_large"), InvalidRequest, retry: false;
    /// The key's model allowlist excludes the model.
    ModelNotAllowed => gateway(422, "model_not_allowed"), flows(422, "model_not_allowed"), InvalidRequest, retry: false;
    /// The platform's own rate limit.
    RateLimited => gateway(429, "rate_limit_exceeded"), flows(429, "rate_limited"), InvalidRequest, retry: true;
    /// Anything unexpected; never carries internal text.
    Internal => gateway(500, "internal_error"), flows(500, "internal_error"), Server, retry: true;
    /// Upstream unreachable, answered 5xx or garbage.
    UpstreamError => gateway(502, "provider_unavailable"), flows(502, "model_error"), Provider, retry: true;
    /// A workflow node failed during a synchronous run.
    ExecutionFailed => gateway(502, "execution_failed"), flows(502, "execution_failed"), Execution, retry: false;
    /// Provider not configured, circuit open, every route down.
    ProviderUnavailable => gateway(503, "provider_unavailable"), flows(503, "service_unavailable"), Provider, retry: true;
    /// Sluice itself cannot serve (store unreachable, shutting down). Not in the seeds' tables;
    /// named after the flows document's `service_unavailable` in both dialects.
    ServiceUnavailable => gateway(503, "service_unavailable"), flows(503, "service_unavailable"), Server, retry: true;
    /// Upstream did not answer in time.
    UpstreamTimeout => gateway(504, "gateway_timeout"), flows(504, "gateway_timeout"), Provider, retry: true;
    /// A workflow exceeded its timeout during a synchronous run.
    ExecutionTimeout => gateway(504, "execution_timeout"), flows(504, "execution_timeout"), Execution, retry: false;
}

/// An error on its way to a client: a row of the table plus what this occurrence says.
///
/// `internal` is for logs only; the server never renders it.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    pub param: Option<String>,
    pub details: Option<Map<String, Value>>,
    /// Seconds a client should wait; rendered as the `Retry-After` header.
    pub retry_after: Option<u64>,
    /// Methods the route accepts; rendered as the `Allow` header on 405.
    pub allow: Option<String>,
    /// Cause for the operator's log; never sent.
    pub internal: Option<String>,
    /// Rate-limit state to report in headers (on a 429, and on any error of a limited route).
    pub rate_limit: Option<Box<crate::ratelimit::RateLimitStatus>>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            param: None,
            details: None,
            retry_after: None,
            allow: None,
            internal: None,
            rate_limit: None,
        }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details
            .get_or_insert_with(Map::new)
            .insert(key.to_owned(), value.into());
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// Lists this error as the single field error in `details.errors` (its `param`, message and
    /// `code`), as the flows dialect's 422 always carries the list.
    pub fn with_field_error(self, code: &'static str) -> Self {
        let field = self.param.clone().unwrap_or_else(|| "body".to_owned());
        let one = serde_json::json!([{"field": field, "message": self.message, "code": code}]);
        self.with_detail("errors", one)
    }

    pub fn with_internal(mut self, cause: impl Into<String>) -> Self {
        self.internal = Some(cause.into());
        self
    }

    /// 401 with one of `missing_api_key`, `api_key_invalid`, `api_key_revoked`, `api_key_expired`.
    pub fn unauthorized(reason: &'static str) -> Self {
        let message = match reason {
            "missing_api_key" => {
                "Missing API key. Send it as `Authorization: Bearer <key>` or `x-api-key: <key>`."
            }
            "api_key_revoked" => "This API key has been revoked. Use another key.",
            "api_key_expired" => "This API key has expired. Create a new key.",
            _ => "Invalid API key provided.",
        };
        ApiError::new(ErrorKind::Unauthorized, message).with_detail("reason", reason)
    }

    /// 403 naming the scope the key lacks and the scopes it has.
    pub fn missing_scope(required: &str, available: Vec<String>) -> Self {
        ApiError::new(
            ErrorKind::Forbidden,
            format!("API key lacks required scope `{required}`."),
        )
        .with_detail("required_scope", required)
        .with_detail("available_scopes", available)
    }

    /// 403 for a management object of another account.
    pub fn not_owner(resource_type: &str) -> Self {
        ApiError::new(
            ErrorKind::NotOwner,
            format!("This {resource_type} belongs to another account."),
        )
        .with_detail("reason", "not_owner")
    }

    /// 404 naming what was looked for.
    pub fn not_found(resource_type: &str, resource_id: &str) -> Self {
        let mut chars = resource_type.chars();
        let title: String = chars
            .next()
            .map(|c| c.to_uppercase().chain(chars).collect())
            .unwrap_or_default();
        ApiError::new(ErrorKind::NotFound, format!("{title} not found"))
            .with_detail("resource_type", resource_type)
            .with_detail("resource_id", resource_id)
    }

    /// 409 for a unique value that is taken.
    pub fn conflict(resource_type: &str, field: &str, value: &str) -> Self {
        ApiError::new(
            ErrorKind::Conflict,
            format!("A {resource_type} with this {field} already exists."),
        )
        .with_param(field)
        .with_detail("field", field)
        .with_detail("value", value)
    }

    /// 500 whose cause goes to the log only.
    pub fn internal(cause: impl Into<String>) -> Self {
        ApiError::new(
            ErrorKind::Internal,
            "An unexpected error occurred. Retry the request; if it persists, contact support with the request_id.",
        )
        .with_internal(cause)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.code(Dialect::Gateway), self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_table() -> String {
        let mut out = String::from("kind | gateway | flows | type | retry\n");
        for kind in ErrorKind::ALL {
            out.push_str(&format!(
                "{kind:?} | {} {} | {} {} | {} | {}\n",
                kind.status(Dialect::Gateway),
                kind.code(Dialect::Gateway),
                kind.status(Dialect::Flows),
                kind.code(Dialect::Flows),
                kind.error_type().as_str(),
                kind.retryable()
            ));
        }
        out
    }

    #[test]
    fn the_error_table_matches_the_contract() {
        insta::assert_snapshot!(render_table());
    }

    #[test]
    fn retry_after_is_never_zero() {
        let e = ApiError::new(ErrorKind::RateLimited, "x").with_retry_after(0);
        assert_eq!(e.retry_after, Some(1));
    }

    #[test]
    fn not_found_titles_the_resource() {
        let e = ApiError::not_found("agent", "agent_1");
        assert_eq!(e.message, "Agent not found");
    }
}
