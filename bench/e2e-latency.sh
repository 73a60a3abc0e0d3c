#!/usr/bin/env bash
# Fault-to-email latency through the real chain: runs the end-to-end
# four-fault scenario (tests/tests/stack/scenarios.rs: real Prometheus,
# Alertmanager, PostgreSQL, Redis, exporter, receiver, SMTP sink) RUNS
# times with release binaries, and summarises the three critical alerts'
# latencies. The stack runs at 1 s scrape/evaluation intervals, group_wait
# 1 s and rule durations divided by 60, so what is above `for + group_wait`
# is scrape and evaluation alignment (up to 2 s) plus what the pair adds.
#
#   bench/e2e-latency.sh [RUNS]     (default 3; about 95 s a run)
set -euo pipefail
runs=${1:-3}
cd "$(dirname "$0")/.."
mkdir -p bench/out
out=bench/out/e2e-latency.txt
cargo build --release --quiet --bins
cargo test --release --quiet -p llmchat-tests --test stack --no-run
: > "$out"
for i in $(seq "$runs"); do
  cargo test --release --quiet -p llmchat-tests --test stack four_faults -- --nocapture 2>&1 \
    | grep '^latency ' | tee -a "$out"
done
python3 - "$out" <<'PY'
import re, statistics, sys
lines = open(sys.argv[1]).read().splitlines()
rows = [l for l in lines if l.startswith("latency LLMChat")]
scrapes = [l for l in lines if l.startswith("latency exporter")]
def col(name):
    return [int(re.search(name + r" (\d+) ms", l).group(1)) for l in rows]
total, above, recv = col("fault to email"), col("above that"), col("receiver stored to sent")
hook = [int(re.search(r"webhook: (\d+) ms", l).group(1)) for l in rows]
med = [float(re.search(r"median ([\d.]+) ms", l).group(1)) for l in scrapes]
mx = [float(re.search(r"max ([\d.]+) ms", l).group(1)) for l in scrapes]
def s(xs): return f"median {statistics.median(xs):.0f} ms, min {min(xs)}, max {max(xs)} (n={len(xs)})"
print("fault to email:          ", s(total))
print("above for + group_wait:  ", s(above))
print("receiver stored to sent: ", s(recv), "(email)")
print("receiver stored to sent: ", s(hook), "(webhook)")
print(f"exporter scrape:          median of run medians {statistics.median(med):.1f} ms, max {max(mx):.1f} ms")
PY
