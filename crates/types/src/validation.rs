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
