//! `/v1/embeddings`: OpenAI-compatible providers only (Anthropic has no embeddings API).

use std::sync::Arc;

use serde_json::Value;
use sluice_types::validation::Errors;
use sluice_types::{ApiError, ErrorKind, Principal};

use crate::catalog::{Mode, Model, ProviderKind};
use crate::{openai, tokens, upstream, Gateway, Usage};

/// An embeddings answer and the model that produced it.
pub struct EmbeddingsOutcome {
    pub model: Arc<Model>,
    pub body: Value,
    pub usage: Option<Usage>,
}

fn check_input(v: Option<&Value>) -> Result<(), ApiError> {
    let mut errors = Errors::new();
    let ok = match v {
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(items)) => {
            !items.is_empty() && items.iter().all(|x| x.is_string() || x.is_array())
        }
        None | Some(Value::Null) => {
            errors.add("input", "required", "input is required");
            true
        }
        _ => false,
    };
    if !ok {
        errors.add(
            "input",
            "invalid_type",
            "input must be a non-empty string or array of strings",
        );
    }
    errors.finish()
}

impl Gateway {
    pub async fn embeddings(
        &self,
        who: &Principal,
        body: Value,
    ) -> Result<EmbeddingsOutcome, ApiError> {
        let Value::Object(body) = body else {
            return Err(ApiError::new(
                ErrorKind::MalformedRequest,
                "The request body must be a JSON object.",
            ));
        };
        let name = match body.get("model") {
            Some(Value::String(s)) => s.clone(),
            _ => {
                return Err(ApiError::new(
                    ErrorKind::InvalidFields,
                    "model is required; GET /v1/models lists the models you may use",
                )
                .with_param("model")
                .with_field_error("required"))
            }
        };
        check_input(body.get("input"))?;
        let model = self.resolve(who, &name, Mode::Embedding)?;
        if model.provider.kind == ProviderKind::Anthropic {
            return Err(ApiError::new(
                ErrorKind::InvalidFields,
                format!(
                    "'{name}' is served by an Anthropic provider, which has no embeddings API."
                ),
            )
            .with_param("model")
            .with_field_error("invalid_enum"));
        }
        let text = match body.get("input") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        };
        let window = model.context_window as usize;
        let input_tokens = tokens::count_text(model.tokenizer, &text);
        if input_tokens > window {
            return Err(ApiError::new(
                ErrorKind::ContextLengthExceeded,
                format!("Input exceeds the context length of '{}'.", model.id),
            )
            .with_param("input")
            .with_detail("model", model.id.as_str())
            .with_detail("max_tokens", window)
            .with_detail("input_tokens", input_tokens));
        }
        let upstream_body = openai::prepare(&body, &model, false);
        let client = self.client(&model)?;
        let res = upstream::post(client, &model, "/embeddings", &upstream_body).await?;
        let v = openai::finish_json(upstream::read_json(&model, res).await?, &model, "data")?;
        let usage = v["usage"]["prompt_tokens"].as_u64().map(|p| Usage {
            prompt_tokens: p,
            completion_tokens: 0,
        });
        Ok(EmbeddingsOutcome {
            model,
            body: v,
            usage,
        })
    }
}
