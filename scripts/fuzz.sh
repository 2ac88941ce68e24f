#!/usr/bin/env bash
# Bounded fuzzing of the context zip validator and the ARM path parser (not part of CI's run).
# Usage: scripts/fuzz.sh [seconds per target, default 60]. Logs: fuzz/logs/<target>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# cargo fuzz needs nightly flags; the stable toolchain accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
mkdir -p fuzz/logs
status=0
for target in context_zip arm_path; do
  mkdir -p "fuzz/corpus/$target"
  echo "== $target for ${seconds}s"
  if cargo fuzz run "$target" "fuzz/corpus/$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
      >"fuzz/logs/$target.log" 2>&1; then
    grep -E "^Done [0-9]+ runs" "fuzz/logs/$target.log" || true
    echo "   no crash, no leak, no timeout"
  else
    status=1
    echo "   FINDING: see fuzz/logs/$target.log and fuzz/artifacts/$target/"
    grep -E "^(==[0-9]+==|SUMMARY|artifact_prefix|Test unit written)" "fuzz/logs/$target.log" | head -5 || true
  fi
done
exit "$status"
