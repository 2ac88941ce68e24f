#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, then runs the Rust
# tests (unit + contract, against real server processes), the Azure SDK and az CLI tests, and the
# web console's browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }

# A cold run needs about 10 GB of disk at its peak (the control plane's Go build, the Rust build,
# the venv, PostgreSQL); say so up front rather than fail half an hour in.
free_gb=$(df -Pk . | awk 'NR == 2 { print int($4 / 1048576) }')
if [ "${free_gb:-0}" -lt 10 ]; then
  echo "warning: ${free_gb} GB free on $(df -P . | awk 'NR == 2 { print $6 }'); a first run needs about 10 GB" >&2
fi

# Installs a Debian package when the file it provides is missing (as root), else explains.
debian_package() { # PACKAGE FILE WHY
  [ -x "$2" ] && return 0
  if [ "$(id -u)" = 0 ] && need apt-get; then
    if [ -z "${apt_updated:-}" ]; then apt-get update -qq; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
  else
    echo "error: $1 is required ($3); install it: apt-get install $1" >&2
    exit 1
  fi
}

# The local Kubernetes control plane (kube-apiserver, controller-manager, scheduler, etcd, kwok)
# and the kubectl and helm that match it, built from the Go module proxy (cached after the first
# build: see scripts/build-cluster.sh). Commands run kubectl and helm from the host's PATH.
# Started first, in the background: on a cold machine it is the longest step, and it overlaps
# with the package downloads below.
if ! need go; then
  echo "error: Go is required to build the local control plane the cluster tests run against" >&2
  exit 1
fi
cluster_build_log=$(mktemp)
./scripts/build-cluster.sh >"$cluster_build_log" 2>&1 &
cluster_build=$!
# Terraform and its azapi provider, for the IaC test (scripts/build-terraform.sh; cached too).
terraform_build_log=$(mktemp)
./scripts/build-terraform.sh >"$terraform_build_log" 2>&1 &
terraform_build=$!

debian_package bubblewrap /usr/bin/bwrap "commands are isolated with it; the security tests attack it"
debian_package chromium /usr/bin/chromium "the web console's end-to-end tests drive it"
debian_package openssl /usr/bin/openssl "scripts/dev-cluster.sh makes the test cluster's certificates with it"
# The dev cluster's real node (scripts/lib/real-node.sh): its container runtime, network plugins,
# the relay to the API server, and busybox for the command image built here.
debian_package containerd /usr/bin/containerd "the test cluster's real node runs containers with it"
debian_package runc /usr/sbin/runc "containerd starts containers with it"
debian_package containernetworking-plugins /usr/lib/cni/bridge "the real node's Pods are networked with them"
debian_package socat /usr/bin/socat "the real node reaches the API server through it"
debian_package busybox-static /bin/busybox "the command image built here carries it"
debian_package iproute2 /usr/sbin/ip "the real node gets a network namespace of its own"

if ! need npm; then
  echo "error: Node.js and npm are required (the console is TypeScript, built by cargo's build script)" >&2
  exit 1
fi
(cd console && npm ci --no-audit --no-fund --loglevel=error)

# PostgreSQL: the store suite runs on it as on SQLite, and the replica tests start private
# servers from its binaries. Debian's cluster 15/main, with a role that may create databases.
debian_package postgresql-15 /usr/lib/postgresql/15/bin/postgres "the PostgreSQL store is tested against it"
if [ "$(id -u)" = 0 ]; then
  . scripts/lib/postgres.sh
  postgres_role kubeinvoke_test pg-test-secret
  # Databases of earlier runs (one per test server).
  runuser -u postgres -- psql -Atq -c "SELECT datname FROM pg_database WHERE datname LIKE 'ki\_%'" |
    while read -r db; do runuser -u postgres -- dropdb --if-exists "$db"; done
fi
export KUBEINVOKE_TEST_POSTGRES_URL="postgres://kubeinvoke_test:pg-test-secret@127.0.0.1:5432"

# Python venv with the real Azure SDK (pinned in tests/python/requirements.txt).
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import azure.mgmt.containerservice, pytest' 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
fi

if ! wait "$cluster_build"; then
  cat "$cluster_build_log" >&2
  echo "error: building the local control plane (scripts/build-cluster.sh) failed" >&2
  exit 1
fi
cluster_bin=$(tail -n1 "$cluster_build_log")
rm -f "$cluster_build_log"
if [ "$(id -u)" = 0 ]; then
  install -m 0755 "$cluster_bin/kubectl" "$cluster_bin/helm" /usr/local/bin/
fi
for tool in kubectl helm; do
  if ! cmp -s "$(command -v "$tool")" "$cluster_bin/$tool"; then
    echo "error: the $tool on PATH is not the one matching the test cluster; install $cluster_bin/$tool first on PATH" >&2
    exit 1
  fi
done

if ! wait "$terraform_build"; then
  cat "$terraform_build_log" >&2
  echo "error: building Terraform and the azapi provider (scripts/build-terraform.sh) failed" >&2
  exit 1
fi
KUBEINVOKE_TERRAFORM=$(tail -n1 "$terraform_build_log")
export KUBEINVOKE_TERRAFORM
rm -f "$terraform_build_log"

cargo build --workspace --bins
# Every suite must run here: one whose needs are missing fails (crates/testkit/src/prerequisites.rs).
export KUBEINVOKE_TEST_EVERY_SUITE=1
cargo test --workspace
# The whole HTTP contract suite again, every test server on its own PostgreSQL database.
KUBEINVOKE_TEST_POSTGRES="$KUBEINVOKE_TEST_POSTGRES_URL" cargo test -p kubeinvoke --test api
KUBEINVOKE_BIN="$PWD/target/debug/kubeinvoke" .venv/bin/python -m pytest tests/python -q
(cd console && KUBEINVOKE_BIN="$PWD/../target/debug/kubeinvoke" node --test tests/)
