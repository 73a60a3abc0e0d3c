#!/usr/bin/env bash
# Runs every fuzz target for RUNS executions (default 1,000,000), starting
# from the seed corpus of real lines in corpus/<target>/. New inputs go to
# a scratch directory, so the committed seeds stay as they are.
#
# Needs cargo-fuzz (cargo install cargo-fuzz). cargo-fuzz wants nightly
# flags; on a stable toolchain RUSTC_BOOTSTRAP=1 lets it pass them.
set -euo pipefail
cd "$(dirname "$0")"
RUNS=${1:-1000000}
export RUSTC_BOOTSTRAP=${RUSTC_BOOTSTRAP:-1}
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
for target in $(cargo fuzz list); do
  mkdir -p "$SCRATCH/$target"
  echo "== $target: $RUNS runs"
  if ! cargo fuzz run -O "$target" "$SCRATCH/$target" "corpus/$target" -- \
    -runs="$RUNS" -max_len=4096 -print_final_stats=1 > "$SCRATCH/$target.log" 2>&1; then
    tail -40 "$SCRATCH/$target.log"
    echo "fuzz target $target failed" >&2
    exit 1
  fi
  grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)" "$SCRATCH/$target.log"
done
echo "all fuzz targets ran $RUNS executions without a crash"
