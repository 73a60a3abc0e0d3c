#!/usr/bin/env bash
# Plain app-log lines per second through the real tail path: the release
# binary tails a file (pinned to one core with taskset), the lines are
# appended in one go, and the clock stops when llmchat_log_lines_total
# shows them all. For scale, the same run times the guide's own check,
# `grep -c ERROR`, over the same lines.
#
# usage: bench/tail-throughput.sh [LINES] [RUNS]     (default 5000000 3)
set -euo pipefail
cd "$(dirname "$0")/.."
LINES=${1:-5000000}
RUNS=${2:-3}
CORE=${CORE:-0}
# The writer (cat) runs on another core, so it does not take the exporter's.
WRITER_CORE=${WRITER_CORE:-1}
cargo build --release -q -p llmchat-exporter
BIN=target/release/llmchat-exporter
# On tmpfs by default, so the writer (cat) and the disk are not what is measured.
WORK=$(mktemp -d -p "${BENCH_DIR:-/dev/shm}")
trap 'kill $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT

# Realistic NestJS plain lines, about 110 bytes each; 1 in 50 is an ERROR.
python3 - "$LINES" > "$WORK/lines" <<'PY'
import sys
n = int(sys.argv[1])
levels = ["LOG"] * 30 + ["WARN"] * 10 + ["DEBUG"] * 9 + ["ERROR"]
out = sys.stdout
for i in range(n):
    lvl = levels[i % 50]
    out.write(f"[Nest] 4242  - 11/26/2026, 11:{i % 60:02d}:{i % 57:02d} AM   {lvl} [ChatService] message {i} session=s{i % 9973} agent=gpt-4o took={i % 997}ms\n")
PY
BYTES=$(stat -c %s "$WORK/lines")
# Touch as much fresh memory as the append will need, then free it: on a VM
# the first touch of guest memory is slow, and that is not what is measured.
cat "$WORK/lines" > "$WORK/warm" && rm "$WORK/warm"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT/metrics"

total_lines() {
  curl -fsS "$URL" | awk '/^llmchat_log_lines_total\{/ {s += $2} END {printf "%d", s}'
}

echo "lines=$LINES bytes=$BYTES core=$CORE runs=$RUNS"
for run in $(seq "$RUNS"); do
  : > "$WORK/app.log"
  taskset -c "$CORE" "$BIN" --web.listen-address "127.0.0.1:$PORT" --no-collector.host --no-collector.access \
    --logs.app "$WORK/app.log" --log.level warn &
  PID=$!
  until curl -fsS "$URL" >/dev/null 2>&1; do sleep 0.05; done
  start=$(date +%s.%N)
  taskset -c "$WRITER_CORE" cat "$WORK/lines" >> "$WORK/app.log"
  appended=$(date +%s.%N)
  while [ "$(total_lines)" -lt "$LINES" ]; do sleep 0.01; done
  end=$(date +%s.%N)
  got=$(total_lines)
  rss=$(ps -o rss= -p "$PID" | tr -d ' ')
  kill "$PID"; wait "$PID" 2>/dev/null || true
  python3 - "$start" "$end" "$LINES" "$BYTES" "$got" "$rss" "$appended" <<'PY'
import sys
start, end, n, b, got, rss, ap = map(float, sys.argv[1:])
t = end - start
print(f"exporter run: {t:.3f} s  {n / t / 1e6:.2f} M lines/s  {b / t / 2**20:.0f} MiB/s  counted={int(got)}  rss={rss / 1024:.1f} MiB  (append took {ap - start:.3f} s)")
PY
done

# Reference: the guide's daily check over the same lines (cached file).
start=$(date +%s.%N)
errors=$(taskset -c "$CORE" grep -c ERROR "$WORK/lines")
end=$(date +%s.%N)
python3 - "$start" "$end" "$LINES" "$errors" <<'PY'
import sys
start, end, n, e = map(float, sys.argv[1:])
t = end - start
print(f"grep -c ERROR: {t:.3f} s  {n / t / 1e6:.2f} M lines/s  errors={int(e)}")
PY
