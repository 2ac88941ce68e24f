#!/usr/bin/env bash
# Benchmarks kubeinvoke against baselines measured in the same run and rewrites the figures in
# BENCHMARKS.md (and the charts in docs/bench/). Flags go to kubeinvoke-bench, e.g.
#   scripts/bench.sh                 # everything but the soak (about 15 minutes)
#   scripts/bench.sh --quick         # a short run that checks the harness
#   scripts/bench.sh --only reads    # one scenario
#   scripts/bench.sh soak            # the 10-minute soak, its own section
#   scripts/bench.sh pods            # the Pod path against scripts/dev-cluster.sh, its own section
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  else
    echo "error: wrk is required (apt-get install wrk)" >&2
    exit 1
  fi
fi

# PostgreSQL for the replica and growth figures: Debian's cluster, a role that may create databases.
if [ "$(id -u)" = 0 ] && [ -x /usr/lib/postgresql/15/bin/postgres ]; then
  . scripts/lib/postgres.sh
  postgres_role kubeinvoke_bench pg-bench-secret
  export KUBEINVOKE_BENCH_POSTGRES="${KUBEINVOKE_BENCH_POSTGRES:-postgres://kubeinvoke_bench:pg-bench-secret@127.0.0.1:5432}"
fi

cargo build --release -p kubeinvoke -p kubeinvoke-bench
exec target/release/kubeinvoke-bench "$@"
