//! The model catalog: providers (where and how to call) and models (what they cost and can do),
//! parsed strictly from config and validated into lookups the hot path can use without locks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sluice_types::secret::SecretString;

/// `[[providers]]` as written in the config file.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub id: String,
    /// `openai`, `anthropic` or `mock`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Base URL including the version prefix, e.g. `https://api.openai.com/v1`.
    /// Optional for `mock` (an embedded mock server is started).
    pub base_url: Option<String>,
    /// Name of the environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// File holding the API key.
    pub api_key_file: Option<String>,
    pub connect_timeout_ms: Option<u64>,
    pub first_byte_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub max_response_bytes: Option<usize>,
}

/// `[[models]]` as written in the config file.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// `provider/model`, e.g. `openai/gpt-4o`.
    pub id: String,
    /// The model name sent upstream (default: the part of `id` after the provider).
    pub upstream: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `chat` (default) or `embedding`.
    pub mode: Option<String>,
    pub context_window: Option<u32>,
    pub max_output_tokens: Option<u32>,
    /// Micro-credits per 1M input tokens.
    #[serde(default)]
    pub input_price: u64,
    /// Micro-credits per 1M output tokens.
    #[serde(default)]
    pub output_price: u64,
    /// Any of `tools`, `vision`, `json`.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Higher is preferred by routing.
    #[serde(default)]
    pub priority: i32,
    /// `cl100k` (default) or `o200k`.
    pub tokenizer: Option<String>,
    /// Refuse (400) a `max_tokens` above `max_output_tokens` instead of clamping it; unset
    /// follows `[routing] strict_max_tokens`.
    #[serde(default)]
    pub strict_max_tokens: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderKind {
    OpenAi,
    Anthropic,
    /// The in-tree mock; speaks the OpenAI wire format.
    Mock,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Mock => "mock",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    /// Until the response headers arrive.
    pub first_byte: Duration,
    /// Between two chunks of a response body.
    pub idle: Duration,
}

#[derive(Debug)]
pub struct Provider {
    pub id: String,
    pub kind: ProviderKind,
    pub base_url: String,
    pub api_key: Option<SecretString>,
    /// False when the provider's credentials are named but missing: its models answer 503.
    pub configured: bool,
    pub timeouts: Timeouts,
    pub max_response_bytes: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Chat,
    Embedding,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tokenizer {
    Cl100k,
    O200k,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub tools: bool,
    pub vision: bool,
    pub json: bool,
}

#[derive(Debug)]
pub struct Model {
    pub id: String,
    pub provider: Arc<Provider>,
    pub upstream: String,
    pub aliases: Vec<String>,
    pub mode: Mode,
    pub context_window: u32,
    pub max_output_tokens: u32,
    pub input_price: u64,
    pub output_price: u64,
    pub capabilities: Capabilities,
    pub priority: i32,
    pub tokenizer: Tokenizer,
    /// `Some(true)`: an over-long `max_tokens` is refused; `Some(false)`: clamped; `None`: the
    /// gateway-wide setting decides.
    pub strict_max_tokens: Option<bool>,
}

impl Model {
    /// True when `name` (an allowlist entry) names this model by id or alias.
    pub fn is_named(&self, name: &str) -> bool {
        self.id == name || self.aliases.iter().any(|a| a == name)
    }
}

/// Every configured model, looked up by id or alias.
#[derive(Debug, Default)]
pub struct Catalog {
    pub providers: Vec<Arc<Provider>>,
    pub models: Vec<Arc<Model>>,
    /// Name (id or alias) → models, highest priority first. Several providers may serve one
    /// model under a shared alias; routing chooses among them.
    by_name: HashMap<String, Vec<usize>>,
}

impl Catalog {
    /// The preferred model for a name (the highest-priority one when an alias is shared).
    pub fn get(&self, name: &str) -> Option<&Arc<Model>> {
        self.by_name
            .get(name)
            .and_then(|v| v.first())
            .and_then(|&i| self.models.get(i))
    }

    /// Every model a name stands for, highest priority first.
    pub fn all_named(&self, name: &str) -> Vec<Arc<Model>> {
        self.by_name
            .get(name)
            .map(|v| {
                v.iter()
                    .filter_map(|&i| self.models.get(i).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Validates the raw sections. `env` reads environment variables (for `api_key_env`);
    /// `mock_url` is the embedded mock server's base URL for `mock` providers without one.
    pub fn build(
        providers: &[RawProvider],
        models: &[RawModel],
        env: &dyn Fn(&str) -> Option<String>,
        mock_url: Option<&str>,
    ) -> Result<(Catalog, Vec<String>), String> {
        let mut warnings = Vec::new();
        let mut by_id: HashMap<String, Arc<Provider>> = HashMap::new();
        let mut out = Catalog::default();
        for (i, p) in providers.iter().enumerate() {
            let at = format!("providers[{i}]");
            let provider = build_provider(p, &at, env, mock_url, &mut warnings)?;
            if by_id.contains_key(&provider.id) {
                return Err(format!(
                    "{at}.id: provider `{}` is defined twice",
                    provider.id
                ));
            }
            let provider = Arc::new(provider);
            by_id.insert(provider.id.clone(), provider.clone());
            out.providers.push(provider);
        }
        for (i, m) in models.iter().enumerate() {
            let at = format!("models[{i}]");
            let model = build_model(m, &at, &by_id)?;
            let idx = out.models.len();
            if out.by_name.contains_key(&model.id) {
                return Err(format!("{at}.id: `{}` is used by two models", model.id));
            }
            for name in std::iter::once(&model.id).chain(model.aliases.iter()) {
                out.by_name.entry(name.clone()).or_default().push(idx);
            }
            out.models.push(Arc::new(model));
        }
        for (name, idxs) in out.by_name.iter_mut() {
            if idxs.len() > 1 && idxs.iter().any(|&i| out.models[i].id == *name) {
                return Err(format!(
                    "models: `{name}` is both a model id and another model's alias"
                ));
            }
            idxs.sort_by_key(|&i| std::cmp::Reverse(out.models[i].priority));
        }
        if out.by_name.contains_key("auto") || out.by_name.contains_key("fast") {
            return Err("models: `auto` and `fast` are routing modes, not model names".to_owned());
        }
        Ok((out, warnings))
    }
}

fn build_provider(
    p: &RawProvider,
    at: &str,
    env: &dyn Fn(&str) -> Option<String>,
    mock_url: Option<&str>,
    warnings: &mut Vec<String>,
) -> Result<Provider, String> {
    if p.id.is_empty() || p.id.contains('/') {
        return Err(format!("{at}.id: must be non-empty and contain no `/`"));
    }
    let kind = match p.kind.as_str() {
        "openai" => ProviderKind::OpenAi,
        "anthropic" => ProviderKind::Anthropic,
        "mock" => ProviderKind::Mock,
        other => {
            return Err(format!(
                "{at}.type: `{other}` is not one of openai, anthropic, mock"
            ))
        }
    };
    let base_url = match (&p.base_url, kind) {
        (Some(u), _) => u.trim_end_matches('/').to_owned(),
        (None, ProviderKind::Mock) => mock_url.unwrap_or("http://127.0.0.1:0/v1").to_owned(),
        (None, ProviderKind::OpenAi) => "https://api.openai.com/v1".to_owned(),
        (None, ProviderKind::Anthropic) => "https://api.anthropic.com/v1".to_owned(),
    };
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(format!(
            "{at}.base_url: `{base_url}` must start with http:// or https://"
        ));
    }
    let (api_key, configured) = match (&p.api_key_env, &p.api_key_file) {
        (Some(var), _) => match env(var) {
            Some(v) if !v.is_empty() => (Some(SecretString::new(v)), true),
            _ => {
                warnings.push(format!(
                    "provider `{}`: environment variable {var} is not set; its models will answer 503",
                    p.id
                ));
                (None, false)
            }
        },
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(v) => (Some(SecretString::new(v.trim())), true),
            Err(e) => {
                warnings.push(format!(
                    "provider `{}`: cannot read api_key_file {path}: {e}; its models will answer 503",
                    p.id
                ));
                (None, false)
            }
        },
        (None, None) => (None, true),
    };
    let ms = |v: Option<u64>, default: u64| Duration::from_millis(v.unwrap_or(default));
    Ok(Provider {
        id: p.id.clone(),
        kind,
        base_url,
        api_key,
        configured,
        timeouts: Timeouts {
            connect: ms(p.connect_timeout_ms, 5_000),
            first_byte: ms(p.first_byte_timeout_ms, 120_000),
            idle: ms(p.idle_timeout_ms, 60_000),
        },
        max_response_bytes: p.max_response_bytes.unwrap_or(32 * 1024 * 1024),
    })
}

fn build_model(
    m: &RawModel,
    at: &str,
    providers: &HashMap<String, Arc<Provider>>,
) -> Result<Model, String> {
    let Some((provider_id, name)) = m.id.split_once('/') else {
        return Err(format!("{at}.id: `{}` must be `provider/model`", m.id));
    };
    let provider = providers
        .get(provider_id)
        .ok_or_else(|| {
            format!("{at}.id: provider `{provider_id}` is not defined in [[providers]]")
        })?
        .clone();
    let mode = match m.mode.as_deref() {
        None | Some("chat") => Mode::Chat,
        Some("embedding") => Mode::Embedding,
        Some(other) => return Err(format!("{at}.mode: `{other}` is not chat or embedding")),
    };
    let tokenizer = match m.tokenizer.as_deref() {
        None | Some("cl100k") => Tokenizer::Cl100k,
        Some("o200k") => Tokenizer::O200k,
        Some(other) => return Err(format!("{at}.tokenizer: `{other}` is not cl100k or o200k")),
    };
    let mut capabilities = Capabilities::default();
    for (j, c) in m.capabilities.iter().enumerate() {
        match c.as_str() {
            "tools" => capabilities.tools = true,
            "vision" => capabilities.vision = true,
            "json" => capabilities.json = true,
            other => {
                return Err(format!(
                    "{at}.capabilities[{j}]: `{other}` is not tools, vision or json"
                ))
            }
        }
    }
    let context_window = m.context_window.unwrap_or(8_192);
    let max_output_tokens = m.max_output_tokens.unwrap_or(4_096);
    if context_window == 0 || max_output_tokens == 0 {
        return Err(format!(
            "{at}: context_window and max_output_tokens must be positive"
        ));
    }
    Ok(Model {
        id: m.id.clone(),
        upstream: m.upstream.clone().unwrap_or_else(|| name.to_owned()),
        provider,
        aliases: m.aliases.clone(),
        mode,
        context_window,
        max_output_tokens,
        input_price: m.input_price,
        output_price: m.output_price,
        capabilities,
        priority: m.priority,
        tokenizer,
        strict_max_tokens: m.strict_max_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(id: &str, kind: &str) -> RawProvider {
        RawProvider {
            id: id.into(),
            kind: kind.into(),
            base_url: None,
            api_key_env: None,
            api_key_file: None,
            connect_timeout_ms: None,
            first_byte_timeout_ms: None,
            idle_timeout_ms: None,
            max_response_bytes: None,
        }
    }

    fn model(id: &str) -> RawModel {
        RawModel {
            id: id.into(),
            upstream: None,
            aliases: vec![],
            mode: None,
            context_window: None,
            max_output_tokens: None,
            input_price: 0,
            output_price: 0,
            capabilities: vec![],
            priority: 0,
            tokenizer: None,
            strict_max_tokens: None,
        }
    }

    #[test]
    fn models_resolve_by_id_and_alias() {
        let mut m = model("openai/gpt-4o");
        m.aliases = vec!["gpt-4o".into()];
        let (c, _) =
            Catalog::build(&[provider("openai", "openai")], &[m], &|_| None, None).unwrap();
        let found = c.get("gpt-4o").unwrap();
        assert_eq!(found.id, "openai/gpt-4o");
        assert_eq!(found.upstream, "gpt-4o");
        assert!(c.get("openai/gpt-4o").is_some());
        assert!(c.get("gpt-5").is_none());
    }

    #[test]
    fn errors_name_the_entry_at_fault() {
        let e = Catalog::build(
            &[provider("openai", "openai")],
            &[model("nope/x")],
            &|_| None,
            None,
        )
        .unwrap_err();
        assert!(e.starts_with("models[0].id: provider `nope`"), "{e}");
        let e = Catalog::build(&[provider("p", "grpc")], &[], &|_| None, None).unwrap_err();
        assert!(e.starts_with("providers[0].type"), "{e}");
        let mut m = model("p/x");
        m.capabilities = vec!["telepathy".into()];
        let e = Catalog::build(&[provider("p", "openai")], &[m], &|_| None, None).unwrap_err();
        assert!(e.starts_with("models[0].capabilities[0]"), "{e}");
    }

    #[test]
    fn a_missing_credential_marks_the_provider_unconfigured() {
        let mut p = provider("openai", "openai");
        p.api_key_env = Some("NO_SUCH_KEY".into());
        let (c, warnings) = Catalog::build(&[p], &[], &|_| None, None).unwrap();
        assert!(!c.providers[0].configured);
        assert_eq!(warnings.len(), 1);
        assert!(!warnings[0].contains("sk-"));
    }
}
