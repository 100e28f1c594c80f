#!/usr/bin/env bash
# End-to-end suites with real clients: the official `openai` (chat, Responses, Agents SDK) and
# `anthropic` SDKs, Claude Code and the Codex CLI against Sluice, in front of the mock provider
# and of a real LLM server (llama.cpp + SmolLM2 via ../shared/tools/real-upstream.sh).
#   tests/e2e/run.sh            # both
#   tests/e2e/run.sh -k sdk     # pytest selection
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"
venv="${SLUICE_VENV:-$HOME/.cache/sluice-venv}"
req="$root/tests/e2e/requirements.txt"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ "$(cat "$venv/.requirements" 2>/dev/null)" != "$want" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  echo "$want" >"$venv/.requirements"
fi
# Claude Code and the Codex CLI, pinned, from the npm registry (cached after the first run).
bash "$root/tests/e2e/clients.sh" >/dev/null
(cd "$root" && cargo build -q --bin sluice)
export SLUICE_BIN="$CARGO_TARGET_DIR/debug/sluice"
export SLUICE_REAL_UPSTREAM="${SLUICE_REAL_UPSTREAM:-$root/../shared/tools/real-upstream.sh}"
cd "$root/tests/e2e"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
