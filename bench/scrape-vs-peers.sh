#!/usr/bin/env bash
# One full scrape of llmchat-exporter (all collectors on) against the three
# Debian exporters it replaces for LLMChat, on the same real services:
# prometheus-postgres-exporter, prometheus-redis-exporter and
# prometheus-node-exporter. Each is scraped RUNS times (after 5 warm-ups)
# over one kept-alive HTTP connection, as Prometheus does, sending
# Prometheus' Accept header; the median is the p50. RSS is read after the
# runs.
#
# Needs: postgresql, redis-server, the three exporters, curl, python3.
# usage: bench/scrape-vs-peers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-50}
cargo build --release -q -p llmchat-exporter
BIN=$PWD/target/release/llmchat-exporter
WORK=$(mktemp -d)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/pg/postmaster.pid" ] && kill "$(head -1 "$WORK/pg/postmaster.pid")" 2>/dev/null || true
  sleep 1
  rm -rf "$WORK"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PGPORT=$(port); REDISPORT=$(port); APPPORT=$(port)
OURS=$(port); PGX=$(port); REDISX=$(port); NODEX=$(port)

mkdir -p "$WORK/pg" && [ "$(id -u)" = 0 ] && chown postgres: "$WORK/pg"
as_pg "$PGBIN/initdb" -D "$WORK/pg" -A trust -U postgres --no-sync >/dev/null
as_pg "$PGBIN/postgres" -D "$WORK/pg" -p "$PGPORT" -k "$WORK/pg" -c listen_addresses=127.0.0.1 -c fsync=off >/dev/null 2>&1 &
until pg_isready -q -h 127.0.0.1 -p "$PGPORT"; do sleep 0.1; done
psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -c "CREATE DATABASE llmchat"
psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -d llmchat -f tests/fixtures/llmchat-schema.sql >/dev/null
redis-server --port "$REDISPORT" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
PIDS+=($!)
until redis-cli -p "$REDISPORT" ping >/dev/null 2>&1; do sleep 0.1; done
for i in $(seq 1 2000); do echo "SET messages:$i x"; done | redis-cli -p "$REDISPORT" >/dev/null
# A stand-in backend for the app probe: the three health endpoints, with
# keep-alive as NestJS does it.
python3 bench/health-standin.py "$APPPORT" >/dev/null 2>&1 &
PIDS+=($!)
until curl -fsS "http://127.0.0.1:$APPPORT/health" >/dev/null 2>&1; do sleep 0.1; done

DSN="postgres://postgres@127.0.0.1:$PGPORT/llmchat?sslmode=disable"
"$BIN" --web.listen-address "127.0.0.1:$OURS" --database.url "$DSN" \
  --redis.url "redis://127.0.0.1:$REDISPORT" --app.url "http://127.0.0.1:$APPPORT" \
  --log.level warn &
PIDS+=($!)
DATA_SOURCE_NAME="$DSN" prometheus-postgres-exporter --web.listen-address "127.0.0.1:$PGX" >/dev/null 2>&1 &
PIDS+=($!)
prometheus-redis-exporter --redis.addr "redis://127.0.0.1:$REDISPORT" --web.listen-address "127.0.0.1:$REDISX" >/dev/null 2>&1 &
PIDS+=($!)
prometheus-node-exporter --web.listen-address "127.0.0.1:$NODEX" >/dev/null 2>&1 &
PIDS+=($!)
for p in $OURS $PGX $REDISX $NODEX; do
  until curl -fsS "http://127.0.0.1:$p/metrics" >/dev/null 2>&1; do sleep 0.1; done
done
curl -fsS "http://127.0.0.1:$OURS/metrics" | grep -E '^llmchat_(database|redis|app)_up |^llmchat_exporter_collector_success'

# Where our scrape time goes, collector by collector.
for i in 1 2 3; do curl -fsS "http://127.0.0.1:$OURS/metrics" >/dev/null; done
curl -fsS "http://127.0.0.1:$OURS/metrics" | grep '^llmchat_exporter_collector_duration_seconds' | sort -k2 -g -r
python3 - "$RUNS" "$OURS" "$PGX" "$REDISX" "$NODEX" <<'PY'
import http.client, statistics, subprocess, sys, time
runs = int(sys.argv[1]); ours, *peers = sys.argv[2:]
names = {ours: "llmchat-exporter", peers[0]: "postgres-exporter", peers[1]: "redis-exporter", peers[2]: "node-exporter"}
accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
def p50(port):
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
    times = []
    for i in range(runs + 5):
        start = time.perf_counter()
        conn.request("GET", "/metrics", headers={"Accept": accept, "X-Prometheus-Scrape-Timeout-Seconds": "10"})
        resp = conn.getresponse(); body = resp.read()
        assert resp.status == 200 and body, (port, resp.status)
        if i >= 5:
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000
def rss(port):
    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True).stdout
    pid = out.split("pid=")[1].split(",")[0]
    return int(open(f"/proc/{pid}/status").read().split("VmRSS:")[1].split()[0]) / 1024
rows = {p: (p50(p), rss(p)) for p in [ours] + peers}
for p, (m, r) in rows.items():
    print(f"{names[p]:18} p50 scrape {m:7.2f} ms   RSS {r:6.1f} MiB")
ps = sum(rows[p][0] for p in peers); pr = sum(rows[p][1] for p in peers)
print(f"{'peers summed':18} p50 scrape {ps:7.2f} ms   RSS {pr:6.1f} MiB")
print(f"ours / peers: scrape {rows[ours][0] / ps:.2f} (target <= 0.25), RSS {rows[ours][1] / pr:.2f} (target <= 0.33)")
PY
