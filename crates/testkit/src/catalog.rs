//! The catalog test servers use: models on the mock provider in both wire formats, plus
//! providers that are unconfigured or unreachable, for the error rows.

use sluice_gateway::catalog::{Catalog, RawModel, RawProvider};

fn provider(id: &str, kind: &str, base_url: Option<String>) -> RawProvider {
    RawProvider {
        id: id.to_owned(),
        kind: kind.to_owned(),
        base_url,
        api_key_env: None,
        api_key_file: None,
        connect_timeout_ms: Some(1_000),
        first_byte_timeout_ms: Some(2_000),
        idle_timeout_ms: Some(2_000),
        max_response_bytes: None,
    }
}

pub fn model(id: &str) -> RawModel {
    RawModel {
        id: id.to_owned(),
        upstream: None,
        aliases: vec![],
        mode: None,
        context_window: Some(8_192),
        max_output_tokens: Some(1_024),
        input_price: 1_000_000,
        output_price: 2_000_000,
        capabilities: vec!["tools".to_owned()],
        priority: 0,
        tokenizer: None,
        strict_max_tokens: None,
    }
}

/// Providers `mock` (OpenAI wire), `anth` (Anthropic wire), both on `mock_url`; `down` (its
/// key variable is unset: not configured); `dead` (nothing listens there).
/// Models: `mock/small` (alias `small`), `mock/tiny` (64-token context, priority 5),
/// `mock/embed` (embedding), `anth/claude`, `down/x`, `dead/x`, `mock/notools` (no tool support,
/// priority 10), `mock/backup`, and fault models (priority −10): `mock/broken` (503),
/// `mock/err500`, `mock/slow` (5 s), `mock/slowish` (300 ms), `mock/ratelimited` (429,
/// Retry-After 7), `mock/flaky` (normal unless a fault is scripted), `mock/strict` (refuses a
/// `max_tokens` over its 1,024-token output limit instead of clamping it; priority −20).
pub fn test_catalog(mock_url: &str) -> Catalog {
    let mut down = provider("down", "openai", Some(mock_url.to_owned()));
    down.api_key_env = Some("SLUICE_TEST_UNSET_PROVIDER_KEY".to_owned());
    let providers = vec![
        provider("mock", "openai", Some(mock_url.to_owned())),
        provider("anth", "anthropic", Some(mock_url.to_owned())),
        down,
        provider("dead", "openai", Some("http://127.0.0.1:9/v1".to_owned())),
    ];
    let mut small = model("mock/small");
    small.aliases = vec!["small".to_owned()];
    let mut tiny = model("mock/tiny");
    tiny.context_window = Some(64);
    tiny.max_output_tokens = Some(16);
    let mut embed = model("mock/embed");
    embed.mode = Some("embedding".to_owned());
    let mut claude = model("anth/claude");
    claude.upstream = Some("claude-test".to_owned());
    tiny.priority = 5;
    let mut notools = model("mock/notools");
    notools.capabilities = vec![];
    notools.priority = 10;
    let mut backup = model("mock/backup");
    backup.upstream = Some("backup".to_owned());
    // Models whose upstream name scripts a fault at the mock, last in every routing mode.
    let fault = |id: &str, upstream: &str| {
        let mut m = model(id);
        m.upstream = Some(upstream.to_owned());
        m.priority = -10;
        m
    };
    let models = vec![
        small,
        tiny,
        embed,
        claude,
        model("down/x"),
        model("dead/x"),
        notools,
        backup,
        fault("mock/broken", "fault:status=503"),
        fault("mock/err500", "fault:status=500"),
        fault("mock/slow", "fault:delay_ms=5000"),
        fault("mock/slowish", "fault:delay_ms=300"),
        fault("mock/ratelimited", "fault:status=429,retry_after=7"),
        fault("mock/flaky", "flaky"),
        {
            let mut m = model("mock/strict");
            m.strict_max_tokens = Some(true);
            m.priority = -20;
            m
        },
    ];
    let (catalog, _) = Catalog::build(&providers, &models, &|_| None, None).expect("test catalog");
    catalog
}
