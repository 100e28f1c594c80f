//! Configuration: defaults < TOML file < `SLUICE_*` environment < command-line flags.
//!
//! The file is parsed strictly into `RawConfig` (unknown keys are errors naming the key's path),
//! then validated into `Config`, the only type the program uses. Secrets may come from files
//! (`admin_key_file`, `SLUICE_ADMIN_KEY_FILE`) and never appear in `Debug` output.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sluice_gateway::catalog::{Catalog, RawModel, RawProvider};

use crate::secret::{redact_url, SecretString};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://./sluice.db";

/// The file's shape, exactly as written.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub admin_key: Option<String>,
    pub admin_key_file: Option<PathBuf>,
    /// Log filter: a level (`info`) or `target=level` pairs (`info,sluice_server=debug`).
    pub log: Option<String>,
    /// Seconds to let in-flight requests finish after SIGTERM/SIGINT.
    pub shutdown_grace_seconds: Option<u64>,
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    #[serde(default)]
    pub models: Vec<RawModel>,
    #[serde(default)]
    pub credits: RawCredits,
    #[serde(default)]
    pub rate_limits: RawRateLimits,
    #[serde(default)]
    pub routing: RawRouting,
    #[serde(default)]
    pub executions: RawExecutions,
    #[serde(default)]
    pub server: RawServer,
}

/// `[server]`: what a connection may cost the instance.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Time a connection has to send a complete request head, idle keep-alive included (ms).
    pub header_timeout_ms: Option<u64>,
    /// Time a request has to send its whole body (ms).
    pub body_timeout_ms: Option<u64>,
    /// Open connections per instance (kept below the open-file limit).
    pub max_connections: Option<usize>,
    /// Open connections per client address (0: no per-address cap, e.g. behind a proxy).
    pub max_connections_per_client: Option<usize>,
    /// Deadline of store calls on the request path: key lookup, credit leases (ms, default 2000).
    pub store_timeout_ms: Option<u64>,
    /// How long a key read from the store serves without another read (ms, default 1000; 0:
    /// a read per request, revocations seen at once on every instance).
    pub key_cache_ms: Option<u64>,
}

/// Connection and request-read limits of the HTTP server (`[server]`).
#[derive(Clone, Debug)]
pub struct ServerLimits {
    pub header_timeout: std::time::Duration,
    pub body_timeout: std::time::Duration,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_timeout: std::time::Duration::from_secs(30),
            body_timeout: std::time::Duration::from_secs(60),
            max_connections: 10_000,
            max_connections_per_client: 1_000,
        }
    }
}

impl ServerLimits {
    fn from_raw(r: &RawServer) -> ServerLimits {
        let d = ServerLimits::default();
        let ms = |v: Option<u64>, d: std::time::Duration| {
            v.map_or(d, |ms| std::time::Duration::from_millis(ms.max(100)))
        };
        ServerLimits {
            header_timeout: ms(r.header_timeout_ms, d.header_timeout),
            body_timeout: ms(r.body_timeout_ms, d.body_timeout),
            max_connections: r.max_connections.unwrap_or(d.max_connections).max(1),
            max_connections_per_client: r
                .max_connections_per_client
                .unwrap_or(d.max_connections_per_client),
        }
    }
}

/// `[executions]`: the workflow executor.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawExecutions {
    /// Executions one instance works on at once (default 4).
    pub workers: Option<usize>,
    /// Let `http_request` nodes reach loopback, private and link-local addresses (default false).
    pub allow_private_networks: Option<bool>,
    /// Largest `timeout_seconds` a workflow may set (default 3600).
    pub max_timeout_seconds: Option<u64>,
    /// Largest node output, rendered template or HTTP response body, in bytes (default 1 MiB).
    pub max_output_bytes: Option<usize>,
    /// Largest execution context (input + every node's output), in bytes (default 8 MiB).
    pub max_context_bytes: Option<usize>,
    /// Template worker processes per instance (default 2).
    pub template_workers: Option<usize>,
    /// Memory limit of each template worker, in MiB (default 512).
    pub template_memory_mb: Option<u64>,
}

/// `[routing]`: circuit breakers, and how an over-long output budget is treated.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    /// Consecutive failures that open a model's circuit (default 3).
    pub breaker_failures: Option<u32>,
    /// Seconds an open circuit waits before one probe request (default 30).
    pub breaker_cooldown_seconds: Option<u64>,
    /// Refuse (400) a `max_tokens` above the model's output limit instead of clamping it
    /// (default false; `[[models]] strict_max_tokens` overrides per model).
    pub strict_max_tokens: Option<bool>,
}

/// `[rate_limits]`: where limits live and what each tier allows.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimits {
    /// `memory` (default: one instance) or `redis` (several instances share limits).
    pub backend: Option<String>,
    pub redis_url: Option<String>,
    /// Deadline of every Redis call on the request path (default 50 ms).
    pub redis_timeout_ms: Option<u64>,
    /// `fail_open` (default: this instance's own limits apply) or `fail_closed` (503).
    pub on_redis_error: Option<String>,
    /// In-process limits on PostgreSQL are per instance; say so to start that way.
    pub per_instance: Option<bool>,
    pub key_prefix: Option<String>,
    pub flows_requests: Option<u64>,
    pub flows_window_seconds: Option<u64>,
    /// `[rate_limits.tiers."1"]` etc.: `rpm`, `rps`, `tpm`, `tps` (0 = unlimited).
    pub tiers: Option<std::collections::BTreeMap<String, sluice_types::ratelimit::Limits>>,
}

/// `[credits]`: how balances are leased and what new accounts start with.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawCredits {
    /// Micro-credits every new account starts with (default 0).
    pub starting_grant: Option<i64>,
    /// A lease covers this many requests at their maximum cost (default 16).
    pub lease_requests: Option<i64>,
    pub lease_ttl_seconds: Option<u64>,
    pub flush_interval_ms: Option<u64>,
}

impl Config {
    /// `serve` only: several instances on one PostgreSQL with in-process limits would each allow
    /// the whole limit, so that needs saying (`per_instance = true`) or Redis.
    pub fn check_shared_limits(&self) -> Result<(), ConfigError> {
        let postgres = self.database_url.expose().starts_with("postgres");
        if postgres && self.redis_url.is_none() && !self.limits_per_instance {
            return Err(ConfigError(
                "rate_limits: the database is PostgreSQL, which several instances may share, but \
                 limits are kept in each process, so every instance would allow the whole limit. \
                 Set rate_limits.backend = \"redis\" (or SLUICE_REDIS_URL) to share them, or \
                 rate_limits.per_instance = true to run with per-instance limits."
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

/// Validated configuration.
#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: SecretString,
    pub admin_key: Option<SecretString>,
    pub log: String,
    pub shutdown_grace_seconds: u64,
    pub server: ServerLimits,
    /// The catalog sections as written; `catalog()` validates them (already done once by `load`).
    pub providers: Vec<RawProvider>,
    pub models: Vec<RawModel>,
    pub settings: crate::Settings,
    pub breaker: sluice_gateway::routing::BreakerSettings,
    /// `[routing] strict_max_tokens`.
    pub strict_max_tokens: bool,
    /// Set when `[rate_limits] backend = "redis"` (or `SLUICE_REDIS_URL` is given).
    pub redis_url: Option<SecretString>,
    pub redis_timeout: std::time::Duration,
    pub on_redis_error: crate::limiter_policy::OnError,
    /// `[rate_limits] per_instance`: in-process limits accepted on a shared database.
    pub limits_per_instance: bool,
    /// Environment values named by providers' `api_key_env`, captured at load.
    pub provider_env: Vec<(String, String)>,
    /// Things worth telling the operator that do not stop the start (e.g. unknown `SLUICE_*`).
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("database_url", &redact_url(self.database_url.expose()))
            .field("admin_key", &self.admin_key)
            .field("log", &self.log)
            .field("shutdown_grace_seconds", &self.shutdown_grace_seconds)
            .field(
                "redis_url",
                &self.redis_url.as_ref().map(|u| redact_url(u.expose())),
            )
            .field(
                "providers",
                &self.providers.iter().map(|p| &p.id).collect::<Vec<_>>(),
            )
            .field(
                "models",
                &self.models.iter().map(|m| &m.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Values given on the command line; they win over everything else.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub listen: Option<String>,
    pub database_url: Option<String>,
}

/// Why configuration could not be loaded; the message names the file, variable or key at fault.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Environment variables Sluice reads. Any other `SLUICE_*` earns a warning (a likely typo).
const KNOWN_ENV: &[&str] = &[
    "SLUICE_CONFIG",
    "SLUICE_LISTEN",
    "SLUICE_DATABASE_URL",
    "SLUICE_DATABASE_URL_FILE",
    "SLUICE_ADMIN_KEY",
    "SLUICE_ADMIN_KEY_FILE",
    "SLUICE_LOG",
    "SLUICE_SHUTDOWN_GRACE_SECONDS",
    "SLUICE_REDIS_URL",
];

/// Parses TOML text strictly, reporting the dotted path of a bad or unknown key.
pub fn parse_file_text(text: &str, origin: &str) -> Result<RawConfig, ConfigError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.message().trim().to_owned();
        let at = if path == "." || path.is_empty() {
            String::new()
        } else {
            format!(" at `{path}`")
        };
        ConfigError(format!("{origin}: {msg}{at}"))
    })
}

fn read_secret_file(path: &Path, what: &str) -> Result<SecretString, ConfigError> {
    std::fs::read_to_string(path)
        .map(|s| SecretString::new(s.trim_end_matches(['\n', '\r'])))
        .map_err(|e| ConfigError(format!("{what}: cannot read {}: {e}", path.display())))
}

/// Loads configuration from `env` (pass `std::env::vars()` in production) and `overrides`.
pub fn load(
    overrides: &Overrides,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let all_env: Vec<(String, String)> = env.into_iter().collect();
    let env: Vec<(String, String)> = all_env
        .iter()
        .filter(|(k, _)| k.starts_with("SLUICE_"))
        .cloned()
        .collect();
    let var = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let mut warnings: Vec<String> = env
        .iter()
        .filter(|(k, _)| !KNOWN_ENV.contains(&k.as_str()))
        .map(|(k, _)| format!("ignoring unknown environment variable {k}"))
        .collect();

    let file = overrides
        .config_file
        .clone()
        .or_else(|| var("SLUICE_CONFIG").map(PathBuf::from));
    let raw = match &file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError(format!("cannot read config file {}: {e}", path.display()))
            })?;
            parse_file_text(&text, &path.display().to_string())?
        }
        None => RawConfig::default(),
    };

    let listen_text = overrides
        .listen
        .clone()
        .or_else(|| var("SLUICE_LISTEN"))
        .or(raw.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let listen: SocketAddr = listen_text.parse().map_err(|_| {
        ConfigError(format!(
            "listen: `{listen_text}` is not an address like 127.0.0.1:8080 (port 0 picks a free port)"
        ))
    })?;

    let database_url = match (overrides.database_url.clone(), var("SLUICE_DATABASE_URL")) {
        (Some(u), _) | (None, Some(u)) => SecretString::new(u),
        (None, None) => match var("SLUICE_DATABASE_URL_FILE") {
            Some(p) => read_secret_file(Path::new(&p), "SLUICE_DATABASE_URL_FILE")?,
            None => SecretString::new(
                raw.database_url
                    .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
            ),
        },
    };
    let url = database_url.expose();
    if !(url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://"))
    {
        return Err(ConfigError(format!(
            "database_url: `{}` must start with sqlite:// or postgres://",
            redact_url(url)
        )));
    }

    let admin_key = match (var("SLUICE_ADMIN_KEY"), var("SLUICE_ADMIN_KEY_FILE")) {
        (Some(k), _) => Some(SecretString::new(k)),
        (None, Some(p)) => Some(read_secret_file(Path::new(&p), "SLUICE_ADMIN_KEY_FILE")?),
        (None, None) => match (raw.admin_key, raw.admin_key_file) {
            (Some(k), _) => Some(SecretString::new(k)),
            (None, Some(p)) => Some(read_secret_file(&p, "admin_key_file")?),
            (None, None) => None,
        },
    };
    if let Some(k) = &admin_key {
        if k.expose().len() < 16 {
            return Err(ConfigError(
                "admin_key: must be at least 16 characters; use a long random value".to_owned(),
            ));
        }
    }

    let shutdown_grace_seconds = match var("SLUICE_SHUTDOWN_GRACE_SECONDS") {
        Some(s) => s.parse().map_err(|_| {
            ConfigError(format!(
                "SLUICE_SHUTDOWN_GRACE_SECONDS: `{s}` is not a whole number"
            ))
        })?,
        None => raw.shutdown_grace_seconds.unwrap_or(30),
    };

    let wanted: Vec<&str> = raw
        .providers
        .iter()
        .filter_map(|p| p.api_key_env.as_deref())
        .collect();
    let provider_env: Vec<(String, String)> = all_env
        .iter()
        .filter(|(k, _)| wanted.contains(&k.as_str()))
        .cloned()
        .collect();
    let lookup = |name: &str| {
        provider_env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let (_, catalog_warnings) =
        Catalog::build(&raw.providers, &raw.models, &lookup, None).map_err(ConfigError)?;
    warnings.extend(catalog_warnings);

    let c = &raw.credits;
    let defaults = crate::credits::CreditSettings::default();
    if c.starting_grant.is_some_and(|g| g < 0) {
        return Err(ConfigError(
            "credits.starting_grant: must not be negative".to_owned(),
        ));
    }
    if c.lease_requests.is_some_and(|n| n < 1) {
        return Err(ConfigError(
            "credits.lease_requests: must be at least 1".to_owned(),
        ));
    }
    let r = &raw.rate_limits;
    let mut rate_limits = crate::limits::RateSettings::default();
    if let Some(p) = &r.key_prefix {
        rate_limits.key_prefix = p.clone();
    }
    if let Some(n) = r.flows_requests {
        rate_limits.flows_requests = n;
    }
    if let Some(n) = r.flows_window_seconds {
        if n == 0 {
            return Err(ConfigError(
                "rate_limits.flows_window_seconds: must be at least 1".to_owned(),
            ));
        }
        rate_limits.flows_window_seconds = n;
    }
    for (name, limits) in r.tiers.iter().flatten() {
        let i = match name.as_str() {
            "1" => 0,
            "3" => 1,
            "5" => 2,
            "unlimited" => 3,
            other => {
                return Err(ConfigError(format!(
                    "rate_limits.tiers.{other}: tiers are \"1\", \"3\", \"5\" and \"unlimited\""
                )))
            }
        };
        rate_limits.tiers[i] = *limits;
    }
    let redis_url = match (var("SLUICE_REDIS_URL"), r.backend.as_deref()) {
        (Some(u), _) => Some(SecretString::new(u)),
        (None, Some("redis")) => Some(SecretString::new(
            r.redis_url
                .clone()
                .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned()),
        )),
        (None, None | Some("memory")) => None,
        (None, Some(other)) => {
            return Err(ConfigError(format!(
                "rate_limits.backend: `{other}` is not memory or redis"
            )))
        }
    };
    let redis_timeout = std::time::Duration::from_millis(r.redis_timeout_ms.unwrap_or(50).max(1));
    let on_redis_error = match r.on_redis_error.as_deref() {
        None | Some("fail_open") => crate::limiter_policy::OnError::FailOpen,
        Some("fail_closed") => crate::limiter_policy::OnError::FailClosed,
        Some(other) => {
            return Err(ConfigError(format!(
                "rate_limits.on_redis_error: `{other}` is not fail_open or fail_closed"
            )))
        }
    };
    let defaults_b = sluice_gateway::routing::BreakerSettings::default();
    let breaker = sluice_gateway::routing::BreakerSettings {
        failures: raw
            .routing
            .breaker_failures
            .unwrap_or(defaults_b.failures)
            .max(1),
        cooldown: raw
            .routing
            .breaker_cooldown_seconds
            .map_or(defaults_b.cooldown, std::time::Duration::from_secs),
    };
    let store_deadline =
        std::time::Duration::from_millis(raw.server.store_timeout_ms.unwrap_or(2_000).max(10));
    let settings = crate::Settings {
        plans: crate::agents::PlanLimits::default(),
        workflow_limits: crate::workflow_def::DefinitionLimits {
            max_timeout_seconds: raw.executions.max_timeout_seconds.unwrap_or(3_600).max(1),
            ..Default::default()
        },
        allow_private_networks: raw.executions.allow_private_networks.unwrap_or(false),
        executor: {
            let d = crate::executor::ExecutorSettings::default();
            let x = &raw.executions;
            crate::executor::ExecutorSettings {
                workers: x.workers.unwrap_or(d.workers).max(1),
                max_context_bytes: x.max_context_bytes.unwrap_or(d.max_context_bytes).max(1024),
                sandbox: crate::executor::sandbox::SandboxSettings {
                    workers: x.template_workers.unwrap_or(d.sandbox.workers).max(1),
                    memory_bytes: x
                        .template_memory_mb
                        .map_or(d.sandbox.memory_bytes, |mb| mb.max(32) * 1024 * 1024),
                    max_output_bytes: x
                        .max_output_bytes
                        .unwrap_or(d.sandbox.max_output_bytes)
                        .max(1024),
                    ..d.sandbox
                },
                ..d
            }
        },
        rate_limits,
        starting_grant: c.starting_grant.unwrap_or(0),
        credits: crate::credits::CreditSettings {
            lease_requests: c.lease_requests.unwrap_or(defaults.lease_requests),
            lease_ttl: c
                .lease_ttl_seconds
                .map_or(defaults.lease_ttl, std::time::Duration::from_secs),
            flush_interval: c
                .flush_interval_ms
                .map_or(defaults.flush_interval, std::time::Duration::from_millis),
            idle_return: defaults.idle_return,
            store_deadline,
        },
        store_deadline,
        key_cache: std::time::Duration::from_millis(raw.server.key_cache_ms.unwrap_or(1_000)),
    };

    Ok(Config {
        listen,
        database_url,
        admin_key,
        log: var("SLUICE_LOG")
            .or(raw.log)
            .unwrap_or_else(|| "info".to_owned()),
        shutdown_grace_seconds,
        server: ServerLimits::from_raw(&raw.server),
        providers: raw.providers,
        models: raw.models,
        settings,
        breaker,
        strict_max_tokens: raw.routing.strict_max_tokens.unwrap_or(false),
        redis_url,
        redis_timeout,
        on_redis_error,
        limits_per_instance: r.per_instance.unwrap_or(false),
        provider_env,
        warnings,
    })
}

impl Config {
    /// The validated catalog; `mock_url` is the embedded mock server for `mock` providers.
    /// (The gateway also needs `breaker`.)
    pub fn catalog(&self, mock_url: Option<&str>) -> Result<Catalog, ConfigError> {
        let lookup = |name: &str| {
            self.provider_env
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        Catalog::build(&self.providers, &self.models, &lookup, mock_url)
            .map(|(c, _)| c)
            .map_err(ConfigError)
    }

    /// True when some provider is of type `mock` without a `base_url` (it needs the embedded mock).
    pub fn needs_embedded_mock(&self) -> bool {
        self.providers
            .iter()
            .any(|p| p.kind == "mock" && p.base_url.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_file_and_no_env_gives_working_defaults() {
        let c = load(&Overrides::default(), env(&[("PATH", "/bin")])).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.database_url.expose(), DEFAULT_DATABASE_URL);
        assert!(c.admin_key.is_none());
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn unknown_file_keys_are_rejected_with_their_path() {
        let e = parse_file_text("lisen = \"x\"\n", "sluice.toml").unwrap_err();
        assert!(
            e.0.starts_with("sluice.toml: unknown field `lisen`"),
            "{}",
            e.0
        );
        assert!(e.0.contains("at `lisen`"), "{}", e.0);
        let e = parse_file_text("shutdown_grace_seconds = \"ten\"\n", "f").unwrap_err();
        assert!(e.0.contains("at `shutdown_grace_seconds`"), "{}", e.0);
    }

    #[test]
    fn cli_beats_env_beats_file() {
        let dir =
            std::env::temp_dir().join(format!("sluice-cfg-{}", sluice_types::id::random_base62(8)));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("sluice.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:1\"\nlog = \"debug\"\n").unwrap();
        let mut o = Overrides {
            config_file: Some(file),
            ..Default::default()
        };
        let c = load(&o, env(&[])).unwrap();
        assert_eq!(c.listen.port(), 1);
        assert_eq!(c.log, "debug");
        let c = load(&o, env(&[("SLUICE_LISTEN", "127.0.0.1:2")])).unwrap();
        assert_eq!(c.listen.port(), 2);
        o.listen = Some("127.0.0.1:0".into());
        let c = load(&o, env(&[("SLUICE_LISTEN", "127.0.0.1:2")])).unwrap();
        assert_eq!(c.listen.port(), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn secrets_come_from_files_and_never_print() {
        let dir =
            std::env::temp_dir().join(format!("sluice-cfg-{}", sluice_types::id::random_base62(8)));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("admin");
        std::fs::write(&f, "sk-admin-0123456789abcdef\n").unwrap();
        let c = load(
            &Overrides::default(),
            env(&[
                ("SLUICE_ADMIN_KEY_FILE", f.to_str().unwrap()),
                ("SLUICE_DATABASE_URL", "postgres://u:hunter2@db/x"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.admin_key.as_ref().unwrap().expose(),
            "sk-admin-0123456789abcdef"
        );
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("sk-admin"),
            "{shown}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_values_name_what_is_wrong() {
        let e = load(
            &Overrides::default(),
            env(&[("SLUICE_LISTEN", "localhost")]),
        )
        .unwrap_err();
        assert!(e.0.starts_with("listen:"), "{}", e.0);
        let e = load(
            &Overrides::default(),
            env(&[("SLUICE_DATABASE_URL", "mysql://x")]),
        )
        .unwrap_err();
        assert!(e.0.starts_with("database_url:"), "{}", e.0);
        let e = load(&Overrides::default(), env(&[("SLUICE_ADMIN_KEY", "short")])).unwrap_err();
        assert!(e.0.starts_with("admin_key:"), "{}", e.0);
    }

    #[test]
    fn catalog_sections_are_validated_at_load_with_their_path() {
        let e = parse_file_text("[[models]]\nid = \"x/y\"\ncontext_windw = 5\n", "f").unwrap_err();
        assert!(e.0.contains("unknown field `context_windw`"), "{}", e.0);
        assert!(e.0.contains("at `models[0].context_windw`"), "{}", e.0);
    }

    #[test]
    fn unknown_sluice_variables_warn() {
        let c = load(&Overrides::default(), env(&[("SLUICE_LISTNE", "x")])).unwrap();
        assert_eq!(
            c.warnings,
            ["ignoring unknown environment variable SLUICE_LISTNE"]
        );
    }
}
