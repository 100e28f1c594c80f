//! Runs the real `sluice` binary: waits for its `listening on http://ADDR` line and stops it
//! with SIGTERM (or SIGKILL, for crash tests).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running `sluice serve`.
pub struct SluiceProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// Everything the process printed to stdout until it was ready to serve.
    pub stdout_lines: Vec<String>,
    /// The first line written to stderr (the first log line).
    pub first_log_line: String,
}

impl SluiceProcess {
    /// Starts `bin serve --listen 127.0.0.1:0` with `env` and waits until it listens.
    pub async fn spawn(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> SluiceProcess {
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("SLUICE_ADMIN_KEY")
            .env_remove("SLUICE_DATABASE_URL")
            .env_remove("SLUICE_CONFIG")
            .env("SLUICE_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn sluice");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("sluice printed nothing within 30 s")
            .expect("read stderr")
            .expect("sluice exited before logging");
        let addr: SocketAddr = first
            .split("listening on http://")
            .nth(1)
            .unwrap_or_else(|| panic!("first log line is not `listening on`: {first}"))
            .trim()
            .parse()
            .expect("address in listening line");
        // Keep draining stderr so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let stdout = child.stdout.take().expect("stdout");
        let mut out = BufReader::new(stdout).lines();
        let mut stdout_lines = Vec::new();
        // The bootstrap key, when there is one, is printed right after the listening line.
        while let Ok(Ok(Some(line))) =
            tokio::time::timeout(Duration::from_millis(300), out.next_line()).await
        {
            stdout_lines.push(line);
        }
        tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
        SluiceProcess {
            child,
            addr,
            stdout_lines,
            first_log_line: first,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("sluice is running")
    }

    /// Resident memory of the server process (Linux `/proc`), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        sluice_engine::executor::sandbox::resident_bytes(self.pid()).expect("VmRSS of sluice")
    }

    /// The server's child processes (template workers), from every thread's `children` list.
    pub fn children(&self) -> Vec<u32> {
        let mut out = Vec::new();
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.pid())).expect("read tasks");
        for t in tasks.flatten() {
            if let Ok(list) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(
                    list.split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
        out
    }

    /// Kills the process outright (SIGKILL): no graceful anything, as in a crash.
    pub async fn kill9(mut self) {
        let _ = self.child.kill().await;
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("sluice did not exit within 30 s of SIGTERM")
            .expect("wait")
    }
}
