//! Field-level validation errors (`details.errors[]`), collected so a client sees every problem at once.

use serde::Serialize;
use serde_json::Value;

use crate::error::{ApiError, ErrorKind};

/// One problem with one field: `{field, message, code}` as in seed 004.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
    /// `required`, `invalid_type`, `invalid_enum`, `min_length`, `max_length`, `min_value`,
    /// `max_value`, `invalid_format`.
    pub code: &'static str,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
            code,
        }
    }
}

/// Collects field errors; `finish` turns a non-empty list into one `InvalidFields` error.
#[derive(Default, Debug)]
pub struct Errors(Vec<FieldError>);

impl Errors {
    pub fn new() -> Self {
        Errors(Vec::new())
    }

    pub fn push(&mut self, e: FieldError) {
        self.0.push(e);
    }

    pub fn add(
        &mut self,
        field: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
    ) {
        self.0.push(FieldError::new(field, code, message));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems collected so far.
    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(invalid_fields(self.0))
        }
    }
}

/// `InvalidFields` with `param` = the first field and every error in `details.errors`.
pub fn invalid_fields(errors: Vec<FieldError>) -> ApiError {
    let first = errors.first().cloned();
    let message = match (&first, errors.len()) {
        (Some(f), 1) => format!("Validation failed: {}", f.message),
        (Some(f), n) => format!("Validation failed: {} (and {} more)", f.message, n - 1),
        (None, _) => "Validation failed.".to_owned(),
    };
    let list: Vec<Value> = errors
        .iter()
        .filter_map(|e| serde_json::to_value(e).ok())
        .collect();
    let mut err = ApiError::new(ErrorKind::InvalidFields, message).with_detail("errors", list);
    if let Some(f) = first {
        err = err.with_param(f.field);
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_is_kept_and_param_names_the_first() {
        let mut errs = Errors::new();
        errs.add("name", "required", "Name is required");
        errs.add("model", "invalid_enum", "Invalid model");
        let e = errs.finish().unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidFields);
        assert_eq!(e.param.as_deref(), Some("name"));
        let details = e.details.unwrap();
        assert_eq!(details["errors"].as_array().unwrap().len(), 2);
        assert_eq!(details["errors"][1]["code"], "invalid_enum");
    }
}

/// What a serde type in an error message is called in a field error (no Rust names).
fn expected_in_words(expected: &str) -> &'static str {
    let e = expected.trim();
    match e {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a non-negative integer",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer",
        "f32" | "f64" => "a number",
        "a boolean" => "true or false",
        "a string" | "a borrowed string" | "a character" => "a string",
        "a sequence" => "an array",
        _ if e == "a map" || e.starts_with("struct ") || e.starts_with("a map") => "an object",
        _ => "of a different type",
    }
}

/// A serde error at `path` (`.` for the root, `a.b[0]` below it) as a field error whose message
/// reads like ours: no Rust type names, no framework wording.
pub fn from_serde(path: &str, message: &str) -> FieldError {
    let message = message.split(" at line ").next().unwrap_or(message);
    let quoted = |i: usize| message.split('`').nth(i).unwrap_or_default().to_owned();
    // serde_path_to_error puts an unknown field in the path, a missing one only in the message.
    let join = |parent: &str, name: &str| match parent {
        "." | "" => name.to_owned(),
        p if p == name || p.ends_with(&format!(".{name}")) => p.to_owned(),
        p => format!("{p}.{name}"),
    };
    if message.starts_with("missing field") {
        let name = quoted(1);
        return FieldError::new(join(path, &name), "required", format!("{name} is required"));
    }
    if message.starts_with("unknown field") {
        let name = quoted(1);
        let allowed: Vec<String> = message
            .split_once("expected")
            .map(|(_, rest)| {
                rest.split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let hint = if allowed.is_empty() {
            String::new()
        } else {
            format!(". Allowed: {}", allowed.join(", "))
        };
        return FieldError::new(
            join(path, &name),
            "invalid_format",
            format!("Unknown field '{name}'{hint}"),
        );
    }
    let field = if path == "." { "body" } else { path };
    let expected = message
        .rsplit_once("expected ")
        .map_or("", |(_, e)| e)
        .trim_end_matches('.');
    FieldError::new(
        field,
        "invalid_type",
        format!("{field} must be {}", expected_in_words(expected)),
    )
}

#[cfg(test)]
mod serde_tests {
    use super::*;

    #[test]
    fn serde_errors_read_like_ours() {
        let e = from_serde(
            "retry",
            "invalid value: integer `-1`, expected u32 at line 1 column 5",
        );
        assert_eq!(
            (e.field.as_str(), e.code, e.message.as_str()),
            (
                "retry",
                "invalid_type",
                "retry must be a non-negative integer"
            )
        );
        let e = from_serde(".", "missing field `id`");
        assert_eq!((e.field.as_str(), e.code), ("id", "required"));
        let e = from_serde(
            "retry",
            "unknown field `x`, expected `max_attempts` or `backoff_seconds`",
        );
        assert_eq!(e.field, "retry.x");
        assert_eq!(
            e.message,
            "Unknown field 'x'. Allowed: max_attempts, backoff_seconds"
        );
        let e = from_serde("limit", "invalid digit found in string");
        assert_eq!(e.message, "limit must be of a different type");
    }
}
