//! Where templates and conditions are evaluated: in worker processes (`sluice template-worker`)
//! with a memory limit, killed at the node's deadline or when the execution is cancelled, so a
//! runaway template can neither block the async runtime nor grow the server. A bounded number run
//! at once; the rest wait for a slot within their own deadline.
//!
//! Without a worker executable (the engine used as a library, unit tests) jobs run on the blocking
//! pool under the same slots, deadlines and output caps, but with no memory limit and no way to
//! stop a job that has passed its deadline; the server binary always uses workers.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::nodes;

/// The largest job a worker accepts (a context of the largest allowed size, with room to spare).
const MAX_JOB_BYTES: usize = 256 * 1024 * 1024;
/// How often a running worker's resident memory is compared with its limit.
const MEMORY_CHECK: Duration = Duration::from_millis(20);
/// Error texts from the template engine are cut to this many characters.
const MAX_ERROR_CHARS: usize = 500;

/// `[executions]` settings of the sandbox.
#[derive(Clone, Debug)]
pub struct SandboxSettings {
    /// The executable to run as `<exe> template-worker`; `None` evaluates in-process.
    pub worker_exe: Option<PathBuf>,
    /// Jobs evaluated at once by this instance.
    pub workers: usize,
    /// Resident-memory limit of each worker process, in bytes (0: none): checked every
    /// `MEMORY_CHECK` while a job runs; an address-space limit of four times it is the backstop.
    pub memory_bytes: u64,
    /// Largest result of one job (a node's rendered params or output), serialised, in bytes.
    pub max_output_bytes: usize,
    /// Instructions one evaluation may execute (minijinja fuel).
    pub fuel: u64,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        SandboxSettings {
            worker_exe: None,
            workers: 2,
            memory_bytes: 512 * 1024 * 1024,
            max_output_bytes: 1024 * 1024,
            fuel: 50_000,
        }
    }
}

/// One evaluation.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Job {
    /// Render every string template inside `value`.
    Render { value: Value, ctx: Value },
    /// Evaluate a condition's expression to a boolean.
    Condition { expr: String, ctx: Value },
    /// Parse a definition's templates and expressions (`workflow_def::Syntax`).
    Check {
        templates: Vec<String>,
        expressions: Vec<String>,
    },
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "snake_case")]
enum Reply {
    Ok(Value),
    Err(String),
}

/// Limits one evaluation obeys wherever it runs.
#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
pub struct JobLimits {
    pub max_output_bytes: usize,
    pub fuel: u64,
}

/// Evaluates `job` here and now (inside a worker, or on the blocking pool).
pub fn evaluate(job: &Job, limits: JobLimits) -> Result<Value, String> {
    let out = match job {
        Job::Render { value, ctx } => nodes::render(value, ctx, limits)?,
        Job::Condition { expr, ctx } => Value::Bool(nodes::condition(expr, ctx, limits)?),
        Job::Check {
            templates,
            expressions,
        } => serde_json::to_value(crate::workflow_def::Syntax::check_here(
            templates,
            expressions,
        ))
        .map_err(|e| e.to_string())?,
    };
    let size = serde_json::to_vec(&out).map(|v| v.len()).unwrap_or(0);
    if size > limits.max_output_bytes {
        return Err(too_large(limits.max_output_bytes));
    }
    Ok(out)
}

pub fn too_large(cap: usize) -> String {
    format!("the result is larger than the {cap}-byte output limit ([executions] max_output_bytes)")
}

fn timed_out(timeout: Duration) -> String {
    format!(
        "Node timed out after {}s (evaluating a template)",
        timeout.as_secs_f64().round()
    )
}

/// Resident memory of process `pid` (Linux `/proc`; `None` elsewhere).
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
}

enum CallError {
    TooLarge,
    Died(String),
}

impl Worker {
    async fn call(&mut self, job: &[u8], max_reply: usize) -> Result<Reply, CallError> {
        let io = |e: std::io::Error| CallError::Died(e.to_string());
        let len = u32::try_from(job.len()).map_err(|_| CallError::TooLarge)?;
        self.stdin.write_all(&len.to_be_bytes()).await.map_err(io)?;
        self.stdin.write_all(job).await.map_err(io)?;
        self.stdin.flush().await.map_err(io)?;
        let mut head = [0u8; 4];
        self.stdout.read_exact(&mut head).await.map_err(io)?;
        let n = u32::from_be_bytes(head) as usize;
        if n > max_reply {
            return Err(CallError::TooLarge);
        }
        let mut body = vec![0u8; n];
        self.stdout.read_exact(&mut body).await.map_err(io)?;
        serde_json::from_slice(&body).map_err(|e| CallError::Died(e.to_string()))
    }
}

/// The pool of template workers of one engine.
pub struct Sandbox {
    settings: SandboxSettings,
    slots: Arc<Semaphore>,
    idle: Mutex<Vec<Worker>>,
}

impl Sandbox {
    pub fn new(settings: SandboxSettings) -> Sandbox {
        Sandbox {
            slots: Arc::new(Semaphore::new(settings.workers.max(1))),
            idle: Mutex::new(Vec::new()),
            settings,
        }
    }

    fn limits(&self) -> JobLimits {
        JobLimits {
            max_output_bytes: self.settings.max_output_bytes,
            fuel: self.settings.fuel,
        }
    }

    /// Evaluates `job` within `timeout`. Dropping the future (a cancelled execution) kills the
    /// worker that was evaluating it.
    pub async fn run(&self, job: Job, timeout: Duration) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        let slot = tokio::time::timeout_at(deadline, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| timed_out(timeout))?
            .map_err(|_| "the template sandbox is shut down".to_owned())?;
        let limits = self.limits();
        let Some(exe) = self.settings.worker_exe.clone() else {
            // The slot travels with the blocking job: a job past its deadline still holds it,
            // so at most `workers` of them can be running.
            let task = tokio::task::spawn_blocking(move || {
                let r = evaluate(&job, limits);
                drop(slot);
                r
            });
            return match tokio::time::timeout_at(deadline, task).await {
                Err(_) => Err(timed_out(timeout)),
                Ok(Err(_)) => Err("evaluating the template failed".to_owned()),
                Ok(Ok(r)) => r,
            };
        };
        let bytes = serde_json::to_vec(&job).map_err(|e| e.to_string())?;
        if bytes.len() > MAX_JOB_BYTES {
            return Err("the template's context is too large to evaluate".to_owned());
        }
        let popped = self.idle.lock().ok().and_then(|mut v| v.pop());
        let mut worker = match popped {
            Some(w) => w,
            None => self.spawn(&exe)?,
        };
        // Room for the JSON framing of a result of the largest allowed size, or an error text.
        let max_reply = limits.max_output_bytes.saturating_mul(2) + 4096;
        let memory = self.settings.memory_bytes;
        let pid = worker.child.id();
        let over_memory = async {
            loop {
                tokio::time::sleep(MEMORY_CHECK).await;
                if memory > 0 && pid.and_then(resident_bytes).is_some_and(|r| r > memory) {
                    return;
                }
            }
        };
        let call = tokio::select! {
            r = tokio::time::timeout_at(deadline, worker.call(&bytes, max_reply)) => r,
            _ = over_memory => Ok(Err(CallError::Died("over its memory limit".to_owned()))),
        };
        match call {
            Err(_) => Err(timed_out(timeout)),
            Ok(Err(CallError::TooLarge)) => Err(too_large(limits.max_output_bytes)),
            Ok(Err(CallError::Died(why))) => {
                let status = worker.child.try_wait().ok().flatten();
                tracing::warn!(?status, why, "template worker died");
                Err(format!(
                    "the template exceeded the sandbox's memory limit ({} MiB) or crashed its worker",
                    self.settings.memory_bytes / (1024 * 1024)
                ))
            }
            Ok(Ok(reply)) => {
                // A worker that grew keeps its memory (allocators hold on to it): retire it.
                let grew = pid
                    .and_then(resident_bytes)
                    .is_some_and(|r| memory > 0 && r > memory / 4);
                if !grew {
                    if let Ok(mut idle) = self.idle.lock() {
                        idle.push(worker);
                    }
                }
                drop(slot);
                match reply {
                    Reply::Ok(v) => Ok(v),
                    Reply::Err(e) => Err(e),
                }
            }
        }
    }

    fn spawn(&self, exe: &PathBuf) -> Result<Worker, String> {
        let limits = self.limits();
        let mut child = Command::new(exe)
            .arg("template-worker")
            .arg("--memory-bytes")
            .arg(self.settings.memory_bytes.to_string())
            .arg("--max-output-bytes")
            .arg(limits.max_output_bytes.to_string())
            .arg("--fuel")
            .arg(limits.fuel.to_string())
            .env_clear()
            // Give freed memory back at once, so resident memory is what the job holds now.
            .env("MIMALLOC_PURGE_DELAY", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                tracing::error!(error = %e, exe = %exe.display(), "cannot start a template worker");
                "the template sandbox could not start a worker".to_owned()
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the template sandbox could not start a worker".to_owned());
        };
        Ok(Worker {
            child,
            stdin,
            stdout,
        })
    }
}

/// The worker process: limits its own address space, then evaluates framed jobs from stdin
/// until stdin closes (its server stopped or dropped it). Synchronous: one job at a time.
pub fn worker_main(memory_bytes: u64, limits: JobLimits) -> std::io::Result<()> {
    if memory_bytes > 0 {
        // The backstop: the server watches resident memory; this stops what outruns it.
        let cap = memory_bytes.saturating_mul(4);
        rlimit::setrlimit(rlimit::Resource::AS, cap, cap)?;
    }
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    loop {
        let mut head = [0u8; 4];
        match stdin.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let n = u32::from_be_bytes(head) as usize;
        if n > MAX_JOB_BYTES {
            return Err(std::io::Error::other("job too large"));
        }
        let mut body = vec![0u8; n];
        stdin.read_exact(&mut body)?;
        let reply = match serde_json::from_slice::<Job>(&body) {
            Ok(job) => match evaluate(&job, limits) {
                Ok(v) => Reply::Ok(v),
                Err(e) => Reply::Err(e.chars().take(MAX_ERROR_CHARS).collect()),
            },
            Err(e) => Reply::Err(format!("malformed job: {e}")),
        };
        drop(body);
        let out = serde_json::to_vec(&reply).map_err(std::io::Error::other)?;
        let len = u32::try_from(out.len()).map_err(std::io::Error::other)?;
        stdout.write_all(&len.to_be_bytes())?;
        stdout.write_all(&out)?;
        stdout.flush()?;
    }
}
