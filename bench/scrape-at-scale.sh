#!/usr/bin/env bash
# Scrape cost against the size of the watched data: PostgreSQL with the
# guide's schema and indexes (only those: no index on updated_at) at
# 200,000, 1,000,000 and 10,000,000 messages (sessions a fifth of that, 1%
# of them active within 30 minutes, 20% idle for over 30 days, 1% of the
# messages 90+ days old and orphaned), and Redis with 10,000 and 1,000,000
# keys under the guide's cache namespaces.
#
# At each size, llmchat-exporter (every collector on, background intervals
# shortened to 5 s so that scrapes keep falling during background runs) is
# scraped for DURATION seconds, one scrape every 50 ms on one kept-alive
# connection with Prometheus' headers: p50, p99 and max over all of them.
# Then Debian's postgres_exporter, redis_exporter and node_exporter are
# scraped RUNS times each the same way (one connection, 50 ms apart)
# against the same services, for the full-scrape ratio. Last, what each background query costs PostgreSQL per minute at the
# DEFAULT intervals: its server-side execution time per run
# (pg_stat_statements over the measuring window) times its runs per minute.
#
# Needs: postgresql, redis-server, the three exporters, curl, python3.
# usage: bench/scrape-at-scale.sh ["MESSAGES:KEYS ..."]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${1:-"200000:10000 1000000:1000000 10000000:1000000"}
DURATION=${DURATION:-60}
RUNS=${RUNS:-100}
cargo build --release -q -p llmchat-exporter
BIN=$PWD/target/release/llmchat-exporter
WORK=$(mktemp -d)
chmod 755 "$WORK"
PIDS=()
stop_exporters() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  PIDS=()
}
cleanup() {
  stop_exporters
  [ -n "${REDIS_PID:-}" ] && kill "$REDIS_PID" 2>/dev/null || true
  [ -f "$WORK/pg/postmaster.pid" ] && kill "$(head -1 "$WORK/pg/postmaster.pid")" 2>/dev/null || true
  sleep 1
  rm -rf "$WORK"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
psql_() { psql -qAt -h 127.0.0.1 -p "$PGPORT" -U postgres -d llmchat "$@"; }

PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PGPORT=$(port); REDISPORT=$(port); APPPORT=$(port)
mkdir -p "$WORK/pg" && [ "$(id -u)" = 0 ] && chown postgres: "$WORK/pg"
as_pg "$PGBIN/initdb" -D "$WORK/pg" -A trust -U postgres --no-sync >/dev/null
as_pg "$PGBIN/postgres" -D "$WORK/pg" -p "$PGPORT" -k "$WORK/pg" -c listen_addresses=127.0.0.1 \
  -c fsync=off -c shared_buffers=512MB -c max_wal_size=4GB \
  -c shared_preload_libraries=pg_stat_statements >/dev/null 2>&1 &
until pg_isready -q -h 127.0.0.1 -p "$PGPORT"; do sleep 0.1; done
psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -c "CREATE DATABASE llmchat"
psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -d llmchat -c "CREATE EXTENSION pg_stat_statements"
# The guide's tables and indexes, empty.
psql_ <<'SQL'
CREATE TABLE agents (id serial PRIMARY KEY, provider text, is_active boolean);
CREATE TABLE chat_sessions (id serial PRIMARY KEY, user_id text NOT NULL, updated_at timestamptz NOT NULL);
CREATE TABLE messages (id bigserial PRIMARY KEY, session_id int NOT NULL, created_at timestamptz NOT NULL, content text);
CREATE INDEX idx_messages_session_created ON messages(session_id, created_at);
CREATE INDEX idx_sessions_user_updated ON chat_sessions(user_id, updated_at);
INSERT INTO agents(provider, is_active) SELECT (ARRAY['openai','anthropic','deepseek'])[1 + g % 3], g % 5 <> 0 FROM generate_series(1, 40) g;
SQL
redis-server --port "$REDISPORT" --bind 127.0.0.1 --save "" --appendonly no --enable-debug-command local >/dev/null &
REDIS_PID=$!
until redis-cli -p "$REDISPORT" ping >/dev/null 2>&1; do sleep 0.1; done

python3 bench/health-standin.py "$APPPORT" >/dev/null 2>&1 &
APP_PID=$!
trap 'kill $APP_PID 2>/dev/null || true; cleanup' EXIT

DSN="postgres://postgres@127.0.0.1:$PGPORT/llmchat?sslmode=disable"
cat > "$WORK/exporter.toml" <<EOF
[database]
url = "$DSN"
[database.refresh]
active_sessions = { interval = "5s", timeout = "60s" }
agents = { interval = "5s", timeout = "60s" }
database_size = { interval = "5s", timeout = "60s" }
table_sizes = { interval = "5s", timeout = "60s" }
expired_sessions = { interval = "5s", timeout = "60s" }
orphaned_messages = { interval = "5s", timeout = "60s" }
[redis]
url = "redis://127.0.0.1:$REDISPORT"
scan_interval = "5s"
EOF

have_messages=0
have_keys=0
for size in $SIZES; do
  messages=${size%%:*}; keys=${size##*:}
  sessions=$((messages / 5))
  if [ "$messages" -gt "$have_messages" ]; then
    echo "# loading PostgreSQL to $messages messages, $sessions sessions" >&2
    have_sessions=$((have_messages / 5))
    psql_ <<SQL
INSERT INTO chat_sessions(user_id, updated_at)
  SELECT 'u' || (g % 50000),
         CASE WHEN g % 100 = 0 THEN now() - (g % 1800) * interval '1 second'
              WHEN g % 5 = 1 THEN now() - interval '31 days' - (g % 60) * interval '1 day'
              ELSE now() - interval '1 hour' - (g % 29) * interval '1 day' END
  FROM generate_series($have_sessions + 1, $sessions) g;
INSERT INTO messages(session_id, created_at, content)
  SELECT CASE WHEN g % 100 = 7 THEN $sessions + 1000000 + g ELSE 1 + g % $sessions END,
         CASE WHEN g % 100 = 7 THEN now() - interval '100 days' ELSE now() - (g % 2500000) * interval '1 second' END,
         repeat('x', 40 + g % 80)
  FROM generate_series($have_messages + 1, $messages) g;
VACUUM ANALYZE;
SQL
    have_messages=$messages
  fi
  if [ "$keys" -gt "$have_keys" ]; then
    echo "# loading Redis to $keys keys" >&2
    redis-cli -p "$REDISPORT" FLUSHALL >/dev/null
    third=$((keys / 3))
    for ns in agents sessions messages; do
      redis-cli -p "$REDISPORT" DEBUG POPULATE "$third" "$ns" 200 >/dev/null
    done
    have_keys=$keys
  fi
  echo "## $messages messages ($(psql_ -c "SELECT pg_size_pretty(pg_database_size('llmchat'))")), $(redis-cli -p "$REDISPORT" DBSIZE) Redis keys"

  OURS=$(port); PGX=$(port); REDISX=$(port); NODEX=$(port)
  "$BIN" --web.listen-address "127.0.0.1:$OURS" --config.file "$WORK/exporter.toml" \
    --app.url "http://127.0.0.1:$APPPORT" --log.level warn &
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
  # Until every background query has run once.
  until curl -fsS "http://127.0.0.1:$OURS/metrics" 2>/dev/null | grep -q "^llmchat_orphaned_messages "; do sleep 0.5; done
  psql_ -c "SELECT pg_stat_statements_reset()" >/dev/null

  python3 - "$DURATION" "$RUNS" "$OURS" "$PGX" "$REDISX" "$NODEX" "$PGPORT" <<'PY'
import http.client, re, statistics, subprocess, sys, time
duration, runs = float(sys.argv[1]), int(sys.argv[2]); ours, *peers = sys.argv[3:7]; pgport = sys.argv[7]
accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
def scrape(conn):
    start = time.perf_counter()
    conn.request("GET", "/metrics", headers={"Accept": accept, "X-Prometheus-Scrape-Timeout-Seconds": "10"})
    resp = conn.getresponse(); body = resp.read()
    assert resp.status == 200 and body
    return time.perf_counter() - start, body.decode()
conn = http.client.HTTPConnection("127.0.0.1", int(ours), timeout=30)
for _ in range(5):
    scrape(conn)
times, durations, collectors = [], {}, {}
end = time.time() + duration
last = ""
while time.time() < end:
    t, body = scrape(conn)
    times.append(t * 1000)
    for q, v in re.findall(r'^llmchat_database_query_duration_seconds\{query="([^"]+)"\} (\S+)', body, re.M):
        durations.setdefault(q, set()).add(float(v))
    for c, v in re.findall(r'^llmchat_exporter_collector_duration_seconds\{collector="([^"]+)"\} (\S+)', body, re.M):
        collectors.setdefault(c, []).append(float(v) * 1000)
    last = body
    time.sleep(0.05)
times.sort()
p = lambda q: times[min(len(times) - 1, int(q * len(times)))]
runs_bg = {q: len(v) for q, v in durations.items()}
print(f"llmchat-exporter: {len(times)} scrapes over {duration:.0f} s while the background queries ran "
      f"({sum(runs_bg.values())} distinct run times seen): p50 {p(0.5):.2f} ms, p99 {p(0.99):.2f} ms, max {times[-1]:.2f} ms")
print("  median per collector: " + ", ".join(f"{c} {statistics.median(v):.2f} ms" for c, v in sorted(collectors.items())))
# Server-side time of each background query over the window.
sql = "SELECT query, calls, total_exec_time FROM pg_stat_statements WHERE calls > 0"
out = subprocess.run(["psql", "-qAtF", "\t", "-h", "127.0.0.1", "-p", pgport, "-U", "postgres", "-d", "llmchat", "-c", sql],
                     capture_output=True, text=True, check=True).stdout
marks = {"active_sessions": "make_interval", "agents": "FROM agents GROUP BY", "database_size": "pg_database_size",
         "table_sizes": "pg_total_relation_size", "expired_sessions": "updated_at < now()", "orphaned_messages": "NOT EXISTS"}
server = {}
for line in out.splitlines():
    text, calls, total = line.rsplit("\t", 2)
    for q, mark in marks.items():
        if mark in text and "EXPLAIN" not in text:
            c, t = server.get(q, (0, 0.0))
            server[q] = (c + int(calls), t + float(total))
def p50(port):
    # Scraped as ours is: one connection, 50 ms between scrapes.
    c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
    ts = []
    for i in range(runs + 5):
        t = scrape(c)[0] * 1000
        if i >= 5:
            ts.append(t)
        time.sleep(0.05)
    return statistics.median(ts)
peer = {name: p50(port) for name, port in zip(["postgres_exporter", "redis_exporter", "node_exporter"], peers)}
summed = sum(peer.values())
print("peers p50: " + ", ".join(f"{k} {v:.2f} ms" for k, v in peer.items()) + f"; summed {summed:.2f} ms")
print(f"ours p50 / peers summed: {p(0.5) / summed:.2f} (target <= 0.25); p50 <= 5 ms: {p(0.5) <= 5}, p99 <= 20 ms: {p(0.99) <= 20}, max <= 50 ms: {times[-1] <= 50}")
default_interval = {"active_sessions": 30, "agents": 30, "database_size": 300, "table_sizes": 300,
                    "expired_sessions": 900, "orphaned_messages": 900}
total = 0.0
print("background query cost to PostgreSQL at the default intervals (server-side execution, pg_stat_statements):")
for q, iv in default_interval.items():
    calls, ms = server.get(q, (0, 0.0))
    per_run = ms / calls / 1000 if calls else 0.0
    run_time = statistics.median(sorted(durations.get(q, {0.0})))
    per_min = per_run * 60 / iv
    total += per_min
    print(f"  {q:18} {per_run * 1000:9.1f} ms a run ({calls} runs; {run_time * 1000:.1f} ms as the exporter saw it), every {iv:4d} s: {per_min * 1000:8.1f} ms a minute")
print(f"  {'all':18} {total * 1000:9.1f} ms a minute ({total / 60 * 100:.2f}% of one core)")
PY
  stop_exporters
  sleep 1
done
