#!/usr/bin/env bash
# The chaos loop for longer than CI runs it: three replicas on a private PostgreSQL server take a
# steady stream of commands while replicas are killed (SIGKILL) and restarted and the database is
# stopped and started; then every command must be final, none run twice, none lost without a reason.
#   scripts/chaos.sh [SECONDS]   (default 600; needs root and PostgreSQL, as scripts/test.sh installs)
# Prints the test's summary line ("chaos: … accepted …"); exits non-zero when an invariant broke.
set -euo pipefail
cd "$(dirname "$0")/.."
export KUBEINVOKE_CHAOS_SECONDS="${1:-600}"
cargo test -p kubeinvoke --test replicas chaos -- --nocapture
