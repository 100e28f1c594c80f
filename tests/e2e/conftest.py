"""Fixtures: a real `sluice serve` process on a free port, and a real LLM server behind it."""
import json
import os
import re
import socket
import subprocess
import tempfile
import time

import httpx
import pytest

ADMIN_KEY = "sk-e2e-admin-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sluice:
    """A running sluice process: its base URL, the demo key, and an admin HTTP client."""

    def __init__(self, args, config_text=None):
        self.dir = tempfile.TemporaryDirectory()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        env["SLUICE_ADMIN_KEY"] = ADMIN_KEY
        env["SLUICE_DATABASE_URL"] = f"sqlite://{self.dir.name}/sluice.db"
        env["SLUICE_LOG"] = "info"
        cmd = [os.environ["SLUICE_BIN"], "serve", "--listen", "127.0.0.1:0", *args]
        if config_text is not None:
            path = os.path.join(self.dir.name, "sluice.toml")
            with open(path, "w") as f:
                f.write(config_text)
            cmd += ["--config", path]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        m = re.search(r"listening on (http://[0-9.:]+)", line)
        assert m, f"sluice did not start: {line}{self.proc.stderr.read() if self.proc.poll() is not None else ''}"
        self.url = m.group(1)
        self.demo_key = None
        if "--demo" in args:
            out = self.proc.stdout.readline()
            self.demo_key = re.search(r"(sk-[A-Za-z0-9]+)", out).group(1)
        self.admin = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60)

    def key(self, scopes=None, models=None, name="e2e"):
        """Creates an account and a key in it; returns the secret."""
        acct = self.admin.post("/v1/accounts", json={"name": f"{name}-{time.monotonic_ns()}"}).json()["id"]
        body = {"name": name, "account_id": acct}
        if scopes is not None:
            body["scopes"] = scopes
        if models is not None:
            body["models"] = models
        r = self.admin.post("/v1/keys", json=body)
        assert r.status_code == 201, r.text
        return r.json()["secret"]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.dir.cleanup()


@pytest.fixture(scope="module")
def demo():
    s = Sluice(["--demo"])
    yield s
    s.stop()


@pytest.fixture(scope="module")
def real():
    """llama.cpp serving SmolLM2 (OpenAI and Anthropic formats) and a sluice in front of it."""
    port = free_port()
    env = dict(os.environ)
    # ggml's AMX kernels crash on CPUs that advertise AMX without the kernel enabling it; the
    # repacking that selects them is off-switchable and costs nothing for a 135M model.
    env["LLAMA_ARG_REPACK"] = "0"
    script = os.environ["SLUICE_REAL_UPSTREAM"]
    subprocess.run(["bash", script, "start", str(port)], env=env, check=True, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    config = f"""
[[providers]]
id = "llama"
type = "openai"
base_url = "{base}/v1"

[[providers]]
id = "llama-anthropic"
type = "anthropic"
base_url = "{base}/v1"

[[models]]
id = "llama/smollm2"
upstream = "smollm2"
context_window = 4096
max_output_tokens = 512

[[models]]
id = "llama-anthropic/smollm2"
upstream = "smollm2"
context_window = 4096
max_output_tokens = 512

[[models]]
id = "llama/smollm2-embed"
upstream = "smollm2"
mode = "embedding"
context_window = 4096
"""
    s = Sluice([], config)
    s.upstream = base
    yield s
    s.stop()
    subprocess.run(["bash", script, "stop", str(port)], check=False)


@pytest.fixture(scope="session")
def clis():
    """Claude Code and the Codex CLI at their pinned versions (installed once by clients.sh)."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clients.sh")
    out = subprocess.run(["bash", script], check=True, capture_output=True, text=True)
    claude, codex = out.stdout.split()
    return {"claude": claude, "codex": codex}
