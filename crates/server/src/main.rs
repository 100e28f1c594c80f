//! The `sluice` binary: `serve`, offline `keys create` / `accounts create`, and `migrate`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use sluice_engine::config::{self, Config, Overrides};
use sluice_engine::{accounts, keys, Engine};
use sluice_types::ApiError;

// glibc's allocator serialises on arena locks under many small, short-lived allocations (JSON
// values, headers); mimalloc's per-thread heaps measured markedly faster in BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "An AI gateway and workflow engine in one binary."
)]
struct Cli {
    /// TOML configuration file (also SLUICE_CONFIG).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Database URL: sqlite://path or postgres://… (also SLUICE_DATABASE_URL).
    #[arg(long, global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8080; port 0 picks a free port (also SLUICE_LISTEN).
        #[arg(long)]
        listen: Option<String>,
        /// Add a mock-backed demo model (`demo`) and print a ready-to-use key.
        #[arg(long)]
        demo: bool,
    },
    /// Run the mock LLM provider (OpenAI and Anthropic formats, scriptable faults).
    MockProvider {
        /// Port on 127.0.0.1; 0 picks a free one.
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Manage API keys directly in the database (no server needed).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Manage accounts directly in the database (no server needed).
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Internal: evaluate workflow templates for a server (framed jobs on stdin).
    #[command(hide = true)]
    TemplateWorker {
        #[arg(long)]
        memory_bytes: u64,
        #[arg(long)]
        max_output_bytes: usize,
        #[arg(long)]
        fuel: u64,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print it (with its secret) as JSON.
    Create {
        #[arg(long)]
        name: String,
        /// Account to create the key in (default: the admin account).
        #[arg(long)]
        account_id: Option<String>,
        /// Comma-separated scopes (default: every scope but admin).
        #[arg(long, value_delimiter = ',')]
        scopes: Option<Vec<String>>,
        /// Comma-separated model allowlist (default: every model).
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        /// Expiry: Unix seconds or RFC 3339.
        #[arg(long)]
        expires_at: Option<String>,
    },
}

#[derive(Subcommand)]
enum AccountsCommand {
    /// Create an account and print it as JSON.
    Create {
        #[arg(long)]
        name: String,
        /// free, pro or enterprise.
        #[arg(long, default_value = "free")]
        plan: String,
        /// 1, 3, 5 or unlimited.
        #[arg(long, default_value = "1")]
        tier: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::TemplateWorker {
        memory_bytes,
        max_output_bytes,
        fuel,
    } = cli.command
    {
        // No configuration, no runtime: the worker only evaluates what its server sends.
        let limits = sluice_engine::executor::sandbox::JobLimits {
            max_output_bytes,
            fuel,
        };
        return match sluice_engine::executor::sandbox::worker_main(memory_bytes, limits) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    let listen = match &cli.command {
        Command::Serve { listen, .. } => listen.clone(),
        _ => None,
    };
    let overrides = Overrides {
        config_file: cli.config.clone(),
        listen,
        database_url: cli.database_url.clone(),
    };
    let config = match config::load(&overrides, std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluice: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if matches!(cli.command, Command::Serve { .. }) {
        if let Err(e) = config.check_shared_limits() {
            eprintln!("sluice: configuration error: {e}");
            return ExitCode::from(2);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve { demo, .. } => serve(config, demo).await,
            Command::MockProvider { port } => mock_provider(port).await,
            Command::Migrate => open(&config, None).await.map(|_| ()),
            Command::TemplateWorker { .. } => Ok(()),
            Command::Keys { command } => keys_command(&config, command).await,
            Command::Accounts { command } => accounts_command(&config, command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The engine on the configured store and limiter, and what to log once the server listens.
async fn open_engine(
    config: &Config,
    mock_url: Option<&str>,
) -> Result<(Arc<Engine>, Vec<String>), String> {
    let mut warnings = Vec::new();
    let catalog = config.catalog(mock_url).map_err(|e| e.to_string())?;
    let mut gateway = sluice_gateway::Gateway::with_breaker(catalog, config.breaker.clone())?;
    gateway.strict_max_tokens = config.strict_max_tokens;
    let store = sluice_store::open(config.database_url.expose())
        .await
        .map_err(|e| {
            format!(
                "cannot open database {}: {e}",
                sluice_engine::secret::redact_url(config.database_url.expose())
            )
        })?;
    let mut settings = config.settings.clone();
    // Templates run in worker processes started from this very executable.
    match std::env::current_exe() {
        Ok(exe) => settings.executor.sandbox.worker_exe = Some(exe),
        Err(e) => {
            tracing::error!(error = %e, "cannot find this executable; templates run in-process without a memory limit")
        }
    }
    let mut engine = Engine::new(store, config.admin_key.as_ref(), gateway, settings);
    if let Some(url) = &config.redis_url {
        let (redis, warning) = sluice_engine::limiter_policy::Resilient::start(
            url.expose(),
            config.on_redis_error,
            config.redis_timeout,
        )
        .await
        .map_err(|e| format!("rate limits (on_redis_error = fail_closed): {e}"))?;
        warnings.extend(warning);
        engine = engine
            .with_limiter(Arc::new(redis))
            .with_limiter_policy(config.on_redis_error);
    }
    Ok((Arc::new(engine), warnings))
}

async fn open(config: &Config, mock_url: Option<&str>) -> Result<Arc<Engine>, String> {
    open_engine(config, mock_url).await.map(|(e, _)| e)
}

fn api_err(e: ApiError) -> String {
    match &e.internal {
        Some(cause) => format!(
            "{}: {} ({cause})",
            e.kind.code(sluice_types::Dialect::Gateway),
            e.message
        ),
        None => match &e.details {
            Some(d) => format!(
                "{}: {} {}",
                e.kind.code(sluice_types::Dialect::Gateway),
                e.message,
                Value::Object(d.clone())
            ),
            None => format!(
                "{}: {}",
                e.kind.code(sluice_types::Dialect::Gateway),
                e.message
            ),
        },
    }
}

async fn serve(mut config: Config, demo: bool) -> Result<(), String> {
    sluice_server::serve::init_logging(&config.log)?;
    if demo {
        sluice_engine::demo::add_catalog(&mut config);
    }
    // `mock` providers without a base URL talk to a mock server inside this process.
    let mock = if config.needs_embedded_mock() {
        Some(
            sluice_mock::MockProvider::start()
                .await
                .map_err(|e| format!("cannot start the embedded mock provider: {e}"))?,
        )
    } else {
        None
    };
    let mock_url = mock.as_ref().map(|m| m.base_url());
    let (engine, startup_warnings) = open_engine(&config, mock_url.as_deref()).await?;
    sluice_gateway::tokens::warm_up();
    let bootstrap_secret = engine.bootstrap().await.map_err(api_err)?;
    let announced = engine.listen_for_key_changes().await;
    let demo_secret = if demo {
        Some(
            sluice_engine::demo::issue_key(&engine)
                .await
                .map_err(api_err)?,
        )
    } else {
        None
    };
    let listener = sluice_server::serve::bind(config.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!("listening on http://{addr}");
    for w in config.warnings.iter().chain(&startup_warnings) {
        tracing::warn!("{w}");
    }
    if !announced && engine.store.backend() == "postgres" && !engine.settings.key_cache.is_zero() {
        tracing::warn!("not listening for key changes: other instances' revocations reach this one within key_cache_ms");
    }
    if let Some(secret) = bootstrap_secret {
        println!("Created an admin API key (shown once; store it now): {secret}");
        println!("Set SLUICE_ADMIN_KEY or create keys with `sluice keys create` to manage access.");
    }
    if let Some(secret) = demo_secret {
        println!("Demo key (account `demo`, model `demo`): {secret}");
    }
    let background = engine.start_background();
    let (stop_workers, workers_rx) = tokio::sync::watch::channel(false);
    let workers = engine.start_executor(engine.settings.executor.clone(), workers_rx);
    let app = sluice_server::app(engine.clone(), None);
    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    let mut limits = config.server.clone();
    // Leave descriptors for the store, upstream connections and template workers.
    let fd_budget =
        (sluice_server::serve::raise_nofile_limit().saturating_sub(256) as usize).max(64);
    if limits.max_connections > fd_budget {
        tracing::warn!(
            configured = limits.max_connections,
            fd_budget,
            "max_connections lowered to fit the open-file limit"
        );
        limits.max_connections = fd_budget;
    }
    let result = sluice_server::serve::serve(
        listener,
        app,
        sluice_server::serve::shutdown_signal(),
        grace,
        &limits,
    )
    .await
    .map_err(|e| e.to_string());
    // Requests have drained. Workers finish their current step (an execution they leave is
    // resumed by any instance once its lease lapses), then charges and usage are written.
    let _ = stop_workers.send(true);
    for w in workers {
        let _ = tokio::time::timeout(Duration::from_secs(5), w).await;
    }
    engine.shutdown(background).await;
    engine.store.close().await;
    tracing::info!("stopped");
    result
}

async fn mock_provider(port: u16) -> Result<(), String> {
    sluice_server::serve::init_logging("info")?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mock = sluice_mock::MockProvider::start_on(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    tracing::info!("listening on http://{}", mock.addr);
    sluice_server::serve::shutdown_signal().await;
    Ok(())
}

async fn keys_command(config: &Config, command: KeysCommand) -> Result<(), String> {
    let engine = open(config, None).await?;
    accounts::ensure_admin_account(&*engine.store)
        .await
        .map_err(api_err)?;
    match command {
        KeysCommand::Create {
            name,
            account_id,
            scopes,
            models,
            expires_at,
        } => {
            let expires = expires_at.map(|t| match t.parse::<i64>() {
                Ok(n) => json!(n),
                Err(_) => json!(t),
            });
            let req = keys::KeyRequest {
                name: Some(json!(name)),
                account_id: account_id.map(Value::from),
                scopes: scopes.map(|s| json!(s)),
                models: models.map(|m| json!(m)),
                expires_at: expires,
                max_spend: None,
                rate_limits: None,
            };
            let spec = req
                .validate(accounts::ADMIN_ACCOUNT_ID, sluice_types::now_unix())
                .map_err(api_err)?;
            let issued = keys::issue(&*engine.store, spec).await.map_err(api_err)?;
            let mut view = keys::KeyView::from(issued.key);
            view.secret = Some(issued.secret);
            println!(
                "{}",
                serde_json::to_string_pretty(&view).map_err(|e| e.to_string())?
            );
        }
    }
    engine.store.close().await;
    Ok(())
}

async fn accounts_command(config: &Config, command: AccountsCommand) -> Result<(), String> {
    let engine = open(config, None).await?;
    match command {
        AccountsCommand::Create { name, plan, tier } => {
            let req = accounts::AccountRequest {
                name: Some(json!(name)),
                plan: Some(json!(plan)),
                tier: Some(json!(tier)),
            };
            let account = req.validate().map_err(api_err)?;
            let account = accounts::insert(&*engine.store, account, config.settings.starting_grant)
                .await
                .map_err(api_err)?;
            let view = accounts::AccountView::from(account);
            println!(
                "{}",
                serde_json::to_string_pretty(&view).map_err(|e| e.to_string())?
            );
        }
    }
    engine.store.close().await;
    Ok(())
}
