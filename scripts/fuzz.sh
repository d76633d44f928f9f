#!/usr/bin/env bash
# Runs each fuzz target (fuzz/fuzz_targets) for a fixed number of executions, with a per-input
# timeout and an RSS cap. A panic, a hang (-timeout) or an allocation past the cap
# (-rss_limit_mb, -malloc_limit_mb) stops the run and saves the input in fuzz/artifacts/TARGET/.
#
#   scripts/fuzz.sh                 # every target, 1,000,000 executions each
#   RUNS=20000 scripts/fuzz.sh csv  # one target, fewer executions
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). Only the stable toolchain is assumed:
# RUSTC_BOOTSTRAP lets cargo-fuzz pass its -Z flags, and `-s none` leaves out AddressSanitizer
# (nightly only); the targets are built with debug assertions and overflow checks, and panics,
# hangs and the memory caps are still caught.
set -euo pipefail

RUNS=${RUNS:-1000000}
TIMEOUT=${TIMEOUT:-10}      # seconds per input
RSS_MB=${RSS_MB:-1024}      # the targets themselves run under a 64 MB MemoryLimit
MAX_LEN=${MAX_LEN:-16384}   # bytes per input
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(npy idx csv config)

cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}

for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t"
  echo "== $t: $RUNS executions"
  start=$(date +%s)
  # New inputs go to the first folder; seeds/ holds the committed starting inputs.
  cargo fuzz run -s none "$t" "corpus/$t" "seeds/$t" -- \
    -runs="$RUNS" -timeout="$TIMEOUT" -rss_limit_mb="$RSS_MB" -malloc_limit_mb="$RSS_MB" \
    -max_len="$MAX_LEN" -print_final_stats=1
  echo "== $t: $RUNS executions, no crash, hang or memory cap hit, $(( $(date +%s) - start )) s"
done
