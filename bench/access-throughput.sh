#!/usr/bin/env bash
# nginx access lines per second through the real tail path, against mtail.
#
# The release exporter, pinned to one core, tails an empty file; LINES
# nginx combined+$request_time lines are appended in one go; the clock
# stops when llmchat_http_requests_total sums to LINES. Then mtail (Debian
# package), pinned to the same core, runs bench/nginx-equivalent.mtail in
# -one_shot mode over the same file: requests by method and status, the
# same duration histogram, bytes by method. Prints both rates, the ratio,
# and the exporter's RSS after all lines.
#
# usage: bench/access-throughput.sh [LINES]      (default 10000000)
set -euo pipefail
cd "$(dirname "$0")/.."
LINES=${1:-10000000}
CORE=${CORE:-0}
# The writer (cat) runs on another core, so it does not take the exporter's.
WRITER_CORE=${WRITER_CORE:-1}
command -v mtail >/dev/null || { echo "mtail not installed (apt-get install mtail)" >&2; exit 1; }
cargo build --release -q -p llmchat-exporter
BIN=target/release/llmchat-exporter
# On tmpfs by default, so the writer (cat) and the disk are not what is measured.
WORK=$(mktemp -d -p "${BENCH_DIR:-/dev/shm}")
PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; rm -rf "$WORK"' EXIT

# Realistic LLMChat traffic: ids in paths, query strings, IPv4/IPv6, 2xx-5xx.
python3 - "$LINES" > "$WORK/lines" <<'PY'
import sys
n = int(sys.argv[1])
routes = ["/api/chat/sessions/{}", "/api/chat/sessions/{}/messages?limit=50", "/api/agents",
          "/api/chat/messages", "/health", "/api/users/{}/profile", "/static/app.{}.js", "/api/auth/refresh"]
methods = ["GET"] * 6 + ["POST"] * 3 + ["DELETE"]
statuses = [200] * 40 + [201] * 5 + [304] * 3 + [404, 500]
uas = ['Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36',
       'curl/8.5.0', 'okhttp/4.12.0']
out = sys.stdout
for i in range(n):
    r = routes[i % len(routes)].format(i % 100003)
    ip = "2001:db8::%x" % (i % 4096) if i % 5 == 0 else "203.0.%d.%d" % (i % 256, i % 251)
    rt = (i % 4000) / 1000.0
    out.write(f'{ip} - - [26/Nov/2026:11:{i % 60:02d}:{i % 59:02d} +0000] "{methods[i % 10]} {r} HTTP/1.1" '
              f'{statuses[i % 50]} {i % 20000} "https://chat.example.com/" "{uas[i % 3]}" {rt:.3f}\n')
PY
BYTES=$(stat -c %s "$WORK/lines")
# Touch as much fresh memory as the append will need, then free it: on a VM
# the first touch of guest memory is slow, and that is not what is measured.
cat "$WORK/lines" > "$WORK/warm" && rm "$WORK/warm"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT/metrics"
echo "lines=$LINES bytes=$BYTES core=$CORE"

total() {
  curl -fsS "$URL" | awk '/^llmchat_http_requests_total\{/ {s += $2} END {printf "%d", s}'
}

: > "$WORK/access.log"
taskset -c "$CORE" "$BIN" --web.listen-address "127.0.0.1:$PORT" --no-collector.host \
  --no-collector.logs --logs.access "$WORK/access.log" --log.level warn &
PID=$!
until curl -fsS "$URL" >/dev/null 2>&1; do sleep 0.05; done
start=$(date +%s.%N)
taskset -c "$WRITER_CORE" cat "$WORK/lines" >> "$WORK/access.log"
appended=$(date +%s.%N)
while [ "$(total)" -lt "$LINES" ]; do sleep 0.01; done
end=$(date +%s.%N)
got=$(total)
errors=$(curl -fsS "$URL" | awk '/^llmchat_log_parse_errors_total\{/ {s += $2} END {printf "%d", s}')
routes=$(curl -fsS "$URL" | grep -c '^llmchat_http_request_duration_seconds_count{' || true)
rss=$(ps -o rss= -p "$PID" | tr -d ' ')
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=

mstart=$(date +%s.%N)
taskset -c "$CORE" mtail -one_shot -progs bench/nginx-equivalent.mtail -logs "$WORK/lines" \
  -port 0 > "$WORK/mtail.json" 2>/dev/null
mend=$(date +%s.%N)
mgot=$(python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))
print(int(sum(v["Value"]["Value"] for v in m["http_requests_total"][0]["LabelValues"])))' "$WORK/mtail.json")

python3 - "$start" "$end" "$mstart" "$mend" "$LINES" "$BYTES" "$got" "$mgot" "$rss" "$errors" "$routes" "$appended" <<'PY'
import sys
s, e, ms, me, n, b, got, mgot, rss, errors, routes, ap = map(float, sys.argv[1:])
t, mt = e - s, me - ms
print(f"writer: the append itself took {ap - s:.3f} s; the count was complete {e - ap:.3f} s after it")
ours, theirs = n / t, n / mt
print(f"llmchat-exporter: {t:.3f} s  {ours / 1e6:.2f} M lines/s  {b / t / 2**20:.0f} MiB/s  counted={int(got)}  parse_errors={int(errors)}  method+route series={int(routes)}  rss={rss / 1024:.1f} MiB")
print(f"mtail -one_shot:  {mt:.3f} s  {theirs / 1e6:.2f} M lines/s  counted={int(mgot)}")
print(f"ratio: {ours / theirs:.1f}x")
PY
