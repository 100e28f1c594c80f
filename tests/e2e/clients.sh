#!/usr/bin/env bash
# Installs the pinned agent CLIs (Claude Code, Codex) from the npm registry into a cache prefix,
# only when they are not there yet, and prints the paths of their executables:
#   line 1: claude    line 2: codex
#   tests/e2e/clients.sh            # both paths
#   tests/e2e/clients.sh claude     # just one
# Prefix: ${SLUICE_NPM:-$HOME/.cache/sluice-npm}. Quick and silent (no npm call) when already installed.
# Both ship native linux-x64 binaries in optional platform packages: no post-install download,
# no Node needed by claude (its wrapper package declares node>=22; npm only warns on Node 20).
set -euo pipefail

CLAUDE_CODE_VERSION=2.1.332
CODEX_VERSION=0.171.0

prefix="${SLUICE_NPM:-$HOME/.cache/sluice-npm}"
nm="$prefix/node_modules"

case "$(uname -m)" in
  x86_64 | amd64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "clients.sh: unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac

pkg_version() { # prints the "version" of a package.json, or nothing
  [ -f "$1" ] && sed -n 's/^  "version": "\([^"]*\)".*/\1/p' "$1" | head -n1 || true
}

claude_bin() {
  # The wrapper's postinstall hard-links the native binary over bin/claude.exe (a 500-byte stub
  # before that); if npm skipped the script, the platform package's binary is the same file.
  local stub="$nm/@anthropic-ai/claude-code/bin/claude.exe"
  local native="$nm/@anthropic-ai/claude-code-linux-$arch/claude"
  if [ -x "$native" ]; then echo "$native"; elif [ -x "$stub" ] && [ "$(stat -c %s "$stub")" -gt 1000000 ]; then echo "$stub"; fi
}

codex_bin() {
  # The Node wrapper (execs the native binary, sets CODEX_MANAGED_BY_NPM and puts the bundled rg on PATH).
  local native="$nm/@openai/codex-linux-$arch/vendor/$(uname -m | sed 's/arm64/aarch64/;s/amd64/x86_64/')-unknown-linux-musl/bin/codex"
  [ -x "$native" ] && [ -f "$nm/@openai/codex/bin/codex.js" ] && echo "$nm/@openai/codex/bin/codex.js"
}

installed() {
  [ "$(pkg_version "$nm/@anthropic-ai/claude-code/package.json")" = "$CLAUDE_CODE_VERSION" ] &&
    [ "$(pkg_version "$nm/@anthropic-ai/claude-code-linux-$arch/package.json")" = "$CLAUDE_CODE_VERSION" ] &&
    [ "$(pkg_version "$nm/@openai/codex/package.json")" = "$CODEX_VERSION" ] &&
    [ -n "$(claude_bin)" ] && [ -n "$(codex_bin)" ]
}

if ! installed; then
  mkdir -p "$prefix"
  exec 9>"$prefix/.install.lock"
  flock 9
  if ! installed; then # another process may have installed while we waited
    echo "clients.sh: installing @anthropic-ai/claude-code@$CLAUDE_CODE_VERSION @openai/codex@$CODEX_VERSION into $prefix" >&2
    npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error \
      "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" "@openai/codex@$CODEX_VERSION" >&2
    installed || { echo "clients.sh: install finished but the executables are missing under $nm" >&2; exit 1; }
  fi
  exec 9>&-
fi

case "${1:-both}" in
  claude) claude_bin ;;
  codex) codex_bin ;;
  both) claude_bin; codex_bin ;;
  *) echo "usage: $0 [claude|codex]" >&2; exit 2 ;;
esac
