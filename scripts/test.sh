#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, then runs
# the Rust tests (unit + contract, against real server processes) and the Azure SDK tests.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }

# bubblewrap isolates commands; the security tests require it (Debian package).
if ! need bwrap; then
  if [ "$(id -u)" = 0 ] && need apt-get; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
  else
    echo "error: bubblewrap (bwrap) is required; install it (Debian: apt-get install bubblewrap)" >&2
    exit 1
  fi
fi
if ! need kubectl; then
  echo "error: kubectl is required by the contract tests (kubeconfig wiring) and was not found" >&2
  exit 1
fi

# Chromium for the web console's end-to-end tests (Debian package; no browser download).
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && need apt-get; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "error: chromium is required for the console tests (Debian: apt-get install chromium)" >&2
    exit 1
  fi
fi
if ! need npm; then
  echo "error: Node.js and npm are required (the console is TypeScript, built by cargo's build script)" >&2
  exit 1
fi
(cd console && npm ci --no-audit --no-fund --loglevel=error)

# Python venv with the real Azure SDK (pinned in tests/python/requirements.txt).
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import azure.mgmt.containerservice, pytest' 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
fi

cargo build --bins
cargo test --workspace
KUBEINVOKE_BIN="$PWD/target/debug/kubeinvoke" .venv/bin/python -m pytest tests/python -q
(cd console && KUBEINVOKE_BIN="$PWD/../target/debug/kubeinvoke" node --test tests/)
