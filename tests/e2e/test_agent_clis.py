"""Claude Code and the Codex CLI (pinned in clients.sh, from the npm registry) run non-interactively
through Sluice and exit 0 with an answer: in front of the mock provider here, and in front of a
real llama.cpp model in test_real_clients.py. Neither may need the internet: each runs with a
scrubbed environment, its telemetry, update checks and plugins off, and only Sluice's loopback URL."""
import json
import os
import subprocess
import tempfile
import time

import httpx
import pytest

from conftest import Sluice, free_port

TIMEOUT = 300

# Mock models with a coding agent's context window (the demo model's 16k is too small for them):
# `agent` on an OpenAI-format provider (Messages are translated), `agent-native` on an
# Anthropic-format one (Messages pass through).
AGENT_CATALOG = """
[[providers]]
id = "mock"
type = "mock"

[[providers]]
id = "mock-anthropic"
type = "anthropic"
base_url = "{mock}/v1"

[[models]]
id = "mock/agent"
aliases = ["agent"]
context_window = 200000
max_output_tokens = 8192
capabilities = ["tools"]

[[models]]
id = "mock-anthropic/agent"
upstream = "agent"
aliases = ["agent-native"]
context_window = 200000
max_output_tokens = 8192
capabilities = ["tools"]
"""


@pytest.fixture(scope="module")
def agent_sluice():
    port = free_port()
    mock = subprocess.Popen([os.environ["SLUICE_BIN"], "mock-provider", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/v1/models", timeout=1)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the mock provider did not start"
            time.sleep(0.1)
    s = Sluice(["--demo"], AGENT_CATALOG.format(mock=url))
    yield s
    s.stop()
    mock.terminate()
    mock.wait(timeout=10)


def run_claude(claude, url, key, model):
    """`claude -p "say hi"` against Sluice; returns (exit code, parsed JSON output, stderr)."""
    with tempfile.TemporaryDirectory() as home:
        env = {
            "PATH": "/usr/bin:/bin", "HOME": home, "CLAUDE_CONFIG_DIR": os.path.join(home, ".claude"),
            "ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": key,
            "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1", "DISABLE_ERROR_REPORTING": "1",
            # A broken stream must fail the test, not be retried silently as a non-streaming call.
            "CLAUDE_CODE_DISABLE_NONSTREAMING_FALLBACK": "1", "CLAUDE_CODE_MAX_RETRIES": "1",
        }
        p = subprocess.run([claude, "-p", "say hi", "--model", model, "--output-format", "json"],
                           cwd=home, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=TIMEOUT)
        out = json.loads(p.stdout) if p.stdout.strip().startswith("{") else {"raw": p.stdout}
        return p.returncode, out, p.stderr


CODEX_CONFIG = """
model = "{model}"
model_provider = "sluice"
approval_policy = "never"
sandbox_mode = "read-only"
check_for_update_on_startup = false

[model_providers.sluice]
name = "Sluice"
base_url = "{url}/v1"
wire_api = "responses"
env_key = "SLUICE_API_KEY"

[analytics]
enabled = false
[feedback]
enabled = false
[otel]
exporter = "none"
metrics_exporter = "none"
trace_exporter = "none"
[features]
plugins = false
apps = false
remote_plugin = false
"""


def run_codex(codex, url, key, model):
    """`codex exec "say hi"` against Sluice; returns (exit code, stdout, stderr)."""
    with tempfile.TemporaryDirectory() as home:
        codex_home = os.path.join(home, "codex")
        os.makedirs(codex_home)
        with open(os.path.join(codex_home, "config.toml"), "w") as f:
            f.write(CODEX_CONFIG.format(model=model, url=url))
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "CODEX_HOME": codex_home, "SLUICE_API_KEY": key}
        p = subprocess.run([codex, "exec", "--skip-git-repo-check", "--ephemeral", "--color", "never", "say hi"],
                           cwd=home, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=TIMEOUT)
        return p.returncode, p.stdout, p.stderr


def agent_requests(sluice):
    """How many requests the demo account made, from Sluice's usage records."""
    accounts = sluice.admin.get("/v1/accounts", params={"limit": 100}).json()["data"]
    demo = next(a["id"] for a in accounts if a["name"] == "demo")
    r = sluice.admin.get("/v1/usage", params={"account_id": demo})
    assert r.status_code == 200, r.text
    return r.json()["totals"]["requests"]


def wait_for_requests(sluice, at_least):
    """Usage records are written in batches off the request path: wait for them to land."""
    deadline = time.monotonic() + 10
    while (n := agent_requests(sluice)) < at_least and time.monotonic() < deadline:
        time.sleep(0.2)
    return n


@pytest.mark.parametrize("model", ["agent", "agent-native"])
def test_claude_code_answers_through_sluice(clis, agent_sluice, model):
    before = agent_requests(agent_sluice)
    code, out, err = run_claude(clis["claude"], agent_sluice.url, agent_sluice.demo_key, model)
    assert code == 0, f"stdout: {out}\nstderr: {err}"
    assert out.get("is_error") is False, out
    assert out["result"].strip().startswith("lorem ipsum"), out
    assert wait_for_requests(agent_sluice, before + 1) >= before + 1, "the call is in the usage log"


def test_codex_answers_through_sluice(clis, agent_sluice):
    before = agent_requests(agent_sluice)
    code, out, err = run_codex(clis["codex"], agent_sluice.url, agent_sluice.demo_key, "agent")
    assert code == 0, f"stdout: {out}\nstderr: {err}"
    assert out.strip().startswith("lorem ipsum"), out
    assert wait_for_requests(agent_sluice, before + 1) >= before + 1, "the call is in the usage log"


def test_a_refused_key_fails_the_clis_clearly(clis, agent_sluice):
    code, out, _ = run_claude(clis["claude"], agent_sluice.url, "sk-not-a-key", "agent")
    assert code != 0 or out.get("is_error") is True, out
    code, _, err = run_codex(clis["codex"], agent_sluice.url, "sk-not-a-key", "agent")
    assert code != 0
    assert "401" in err, err
