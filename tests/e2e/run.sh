#!/usr/bin/env bash
# End-to-end suites that need Python: the official `openai` SDK against Sluice, and Sluice in front
# of a real LLM server (llama.cpp + SmolLM2 via ../shared/tools/real-upstream.sh).
#   tests/e2e/run.sh            # both
#   tests/e2e/run.sh -k sdk     # pytest selection
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"
venv="${SLUICE_VENV:-$HOME/.cache/sluice-venv}"
if ! "$venv/bin/python" -c "import openai, pytest, httpx" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "openai>=1.40,<3" "pytest>=8" "httpx>=0.27"
fi
(cd "$root" && cargo build -q --bin sluice)
export SLUICE_BIN="$CARGO_TARGET_DIR/debug/sluice"
export SLUICE_REAL_UPSTREAM="${SLUICE_REAL_UPSTREAM:-$root/../shared/tools/real-upstream.sh}"
cd "$root/tests/e2e"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
