#!/usr/bin/env bash
# A fleet on one machine: HOSTS (default 50) llmchat-exporter processes
# with --role host, each tailing its own access log and app log, written
# at RATE (default 20) access lines and RATE/10 chat events per second per
# host, and probing its own backend stand-in; Debian's Prometheus scrapes
# all of them every 15 s (one job, as README's N-hosts topology) and
# evaluates rules/*.rules.yml every 15 s. After DURATION seconds
# (default 300) it reports:
#   - each rule group's evaluation time (prometheus_rule_group_last_duration_seconds, max over the run);
#   - the scrape duration of the exporters: p50, p99 and max over every scrape of the run;
#   - the resident memory of one exporter (median and max over the HOSTS),
#     and, as the named peer in the same run, of one prometheus-node-exporter
#     scraped by the same Prometheus.
#
# Needs: prometheus, prometheus-node-exporter, python3, curl.
# usage: HOSTS=50 RATE=20 DURATION=300 bench/fleet.sh
set -euo pipefail
cd "$(dirname "$0")/.."
HOSTS=${HOSTS:-50}
RATE=${RATE:-20}
DURATION=${DURATION:-300}
cargo build --release -q -p llmchat-exporter
BIN=$PWD/target/release/llmchat-exporter
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 1
  rm -rf "$WORK"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

HEALTH=$(port)
python3 bench/health-standin.py "$HEALTH" & PIDS+=($!)
TARGETS=()
EXPORTER_PIDS=()
for i in $(seq 1 "$HOSTS"); do
  d="$WORK/host-$i"; mkdir -p "$d"; : > "$d/access.log"; : > "$d/app.log"
  p=$(port)
  "$BIN" --role host --web.listen-address "127.0.0.1:$p" \
    --logs.app "$d/app.log" --logs.access "$d/access.log" \
    --app.url "http://127.0.0.1:$HEALTH" >/dev/null 2>&1 &
  PIDS+=($!); EXPORTER_PIDS+=($!)
  TARGETS+=("\"127.0.0.1:$p\"")
done
NODE=$(port)
prometheus-node-exporter --web.listen-address "127.0.0.1:$NODE" >/dev/null 2>&1 & PIDS+=($!); NODE_PID=$!

# The load: every host's nginx and backend writing their logs.
python3 - "$WORK" "$HOSTS" "$RATE" <<'PY' & PIDS+=($!)
import os, sys, time, random
work, hosts, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
files = [(open(f"{work}/host-{i}/access.log", "a", buffering=1 << 16),
          open(f"{work}/host-{i}/app.log", "a", buffering=1 << 16)) for i in range(1, hosts + 1)]
routes = ["/api/chat/messages", "/api/sessions", "/api/agents", "/health"]
n = 0
while True:
    start = time.time()
    for access, app in files:
        for _ in range(rate):
            n += 1
            status = 500 if n % 97 == 0 else 200
            access.write(f'203.0.113.{n % 250} - - [27/Nov/2026:09:00:00 +0000] "POST {routes[n % 4]}?id={n} HTTP/1.1" {status} 512 "-" "bench" 0.{random.randint(5, 900):03d}\n')
        for _ in range(max(1, rate // 10)):
            app.write('{"level":"info","event":"chat_message","agent_id":"agent-%d","status":"success","duration_ms":%d}\n' % (n % 5, 500 + n % 900))
        access.flush(); app.flush()
    time.sleep(max(0.0, 1.0 - (time.time() - start)))
PY

PROM=$(port)
mkdir -p "$WORK/rules"; cp rules/*.rules.yml "$WORK/rules/"
cat > "$WORK/prometheus.yml" <<EOF
global: {scrape_interval: 15s, scrape_timeout: 10s, evaluation_interval: 15s}
rule_files: ["$WORK/rules/*.yml"]
scrape_configs:
  - job_name: llmchat-exporter
    static_configs: [{targets: [$(IFS=,; echo "${TARGETS[*]}")]}]
  - job_name: node-exporter
    static_configs: [{targets: ["127.0.0.1:$NODE"]}]
  - job_name: prometheus
    static_configs: [{targets: ["127.0.0.1:$PROM"]}]
EOF
prometheus --config.file "$WORK/prometheus.yml" --storage.tsdb.path "$WORK/tsdb" \
  --web.listen-address "127.0.0.1:$PROM" >/dev/null 2>&1 & PIDS+=($!)
until curl -sf "http://127.0.0.1:$PROM/-/ready" >/dev/null; do sleep 0.5; done
START=$(date +%s)
echo "fleet: $HOSTS exporters, $RATE access lines/s each, for ${DURATION}s ..." >&2
RSS_SAMPLES="$WORK/rss"
for _ in $(seq 1 $((DURATION / 15))); do
  sleep 15
  for p in "${EXPORTER_PIDS[@]}"; do awk '/VmRSS/ {print "exporter", $2}' "/proc/$p/status"; done >> "$RSS_SAMPLES"
  awk '/VmRSS/ {print "node", $2}' "/proc/$NODE_PID/status" >> "$RSS_SAMPLES"
done
END=$(date +%s)

python3 - "http://127.0.0.1:$PROM" "$START" "$END" "$RSS_SAMPLES" "$HOSTS" <<'PY'
import json, statistics, sys, urllib.parse, urllib.request
prom, start, end, rss_file, hosts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
def q(path, **params):
    with urllib.request.urlopen(f"{prom}{path}?{urllib.parse.urlencode(params)}") as r:
        return json.load(r)["data"]["result"]
span = f"{end - start}s"
print(f"# {hosts} host exporters scraped every 15 s for {end - start} s\n")
print("rule group evaluation (max over the run):")
for s in sorted(q("/api/v1/query", query=f"max_over_time(prometheus_rule_group_last_duration_seconds[{span}])", time=end),
                key=lambda s: s["metric"]["rule_group"]):
    print(f"  {s['metric']['rule_group'].split(';')[-1]:32s} {float(s['value'][1]) * 1000:8.2f} ms")
def durations(job):
    out = []
    for s in q("/api/v1/query_range", query=f'scrape_duration_seconds{{job="{job}"}}', start=start, end=end, step=15):
        out += [float(v) for _, v in s["values"]]
    return sorted(out)
for job in ["llmchat-exporter", "node-exporter"]:
    d = durations(job)
    if d:
        p = lambda f: d[min(len(d) - 1, int(f * len(d)))] * 1000
        print(f"scrape duration {job:17s} n={len(d):5d}  p50 {p(0.5):7.2f} ms  p99 {p(0.99):7.2f} ms  max {d[-1] * 1000:7.2f} ms")
rss = {"exporter": [], "node": []}
for line in open(rss_file):
    kind, kb = line.split()
    rss[kind].append(int(kb) / 1024)
last_exporters = rss["exporter"][-hosts:]
print(f"resident memory, one llmchat-exporter: median {statistics.median(last_exporters):.1f} MiB, "
      f"max {max(rss['exporter']):.1f} MiB (over every exporter and sample)")
print(f"resident memory, prometheus-node-exporter (peer): {statistics.median(rss['node']):.1f} MiB")
series = q("/api/v1/query", query='count({job="llmchat-exporter"})', time=end)
print(f"series from the exporters: {series[0]['value'][1] if series else 0}")
PY
