#!/usr/bin/env bash
# The chaos loop for longer than CI runs it: three replicas, each on a test host of its own (a
# network namespace) with its data directory on a small disk, and PostgreSQL on another, take a
# steady stream of commands and result reads while faults come in turn — a replica killed
# (SIGKILL) and restarted, the database stopped and started, a replica's database link cut
# (shorter and longer than the fence) or flapping, its client link cut, its disk filled. The
# invariants are checked as it runs and at the end: nothing ran twice, every Succeeded command ran
# once to its end, nothing called lost ran on, every command ended, no 5xx but 503 and 507.
#   scripts/chaos.sh [SECONDS]   (default 600)
#   scripts/chaos.sh --hour      (3600 s: the figures in BENCHMARKS.md)
# Needs root, iproute2 and PostgreSQL, as scripts/test.sh installs. Prints the run's table and
# writes it to target/chaos-report.md; exits non-zero when an invariant broke.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
[ "$seconds" = "--hour" ] && seconds=3600
export KUBEINVOKE_CHAOS_SECONDS="$seconds"
export KUBEINVOKE_CHAOS_REPORT="$PWD/target/chaos-report.md"
export KUBEINVOKE_TEST_EVERY_SUITE=1
cargo test -p kubeinvoke --test replicas chaos -- --nocapture
echo "the table: $KUBEINVOKE_CHAOS_REPORT"
