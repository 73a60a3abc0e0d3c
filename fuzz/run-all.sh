#!/usr/bin/env bash
# Runs every fuzz target of every crate (exporter/fuzz, common/fuzz,
# receiver/fuzz) for RUNS executions (default 1,000,000), starting from
# the seeds in <crate>/fuzz/corpus/<target>/. New inputs go to a scratch
# directory, so the committed seeds stay as they are. `cargo test` runs
# the seeds and bounded mutations of them on every run (tests/src/fuzz.rs).
#
# Needs cargo-fuzz (cargo install cargo-fuzz). cargo-fuzz wants nightly
# flags; on a stable toolchain RUSTC_BOOTSTRAP=1 lets it pass them.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-1000000}
export RUSTC_BOOTSTRAP=${RUSTC_BOOTSTRAP:-1}
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
for crate in exporter common receiver; do
  pushd "$crate/fuzz" >/dev/null
  for target in $(cargo fuzz list); do
    mkdir -p "$SCRATCH/$crate-$target"
    echo "== $crate/$target: $RUNS runs"
    if ! cargo fuzz run -O "$target" "$SCRATCH/$crate-$target" "corpus/$target" -- \
      -runs="$RUNS" -max_len=8192 -print_final_stats=1 > "$SCRATCH/$crate-$target.log" 2>&1; then
      tail -40 "$SCRATCH/$crate-$target.log"
      echo "fuzz target $crate/$target failed" >&2
      exit 1
    fi
    grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)" "$SCRATCH/$crate-$target.log"
  done
  popd >/dev/null
done
echo "all fuzz targets ran $RUNS executions without a crash"
