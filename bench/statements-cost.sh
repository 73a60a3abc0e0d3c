#!/usr/bin/env bash
# What the exporter's `statements` background query (pg_stat_statements'
# totals and slow statements, once a minute) costs PostgreSQL at the
# extension's capacity: pg_stat_statements.max (5,000) distinct statements
# tracked, the most the view ever holds, whatever the data's size.
# The query is the exporter's own (read from its source) with its
# threshold; its server-side time comes from EXPLAIN ANALYZE,
# over RUNS runs.
#
# Needs: postgresql (with its contrib pg_stat_statements), python3.
# usage: bench/statements-cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-200}
WORK=$(mktemp -d)
chmod 755 "$WORK"
cleanup() {
  [ -f "$WORK/pg/postmaster.pid" ] && kill "$(head -1 "$WORK/pg/postmaster.pid")" 2>/dev/null || true
  sleep 1
  rm -rf "$WORK"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PGPORT=$(port)
mkdir -p "$WORK/pg" && { [ "$(id -u)" != 0 ] || chown postgres: "$WORK/pg"; }
as_pg "$PGBIN/initdb" -D "$WORK/pg" -A trust -U postgres --no-sync >/dev/null
as_pg "$PGBIN/postgres" -D "$WORK/pg" -p "$PGPORT" -k "$WORK/pg" -c listen_addresses=127.0.0.1 \
  -c fsync=off -c shared_preload_libraries=pg_stat_statements >/dev/null 2>&1 &
until pg_isready -q -h 127.0.0.1 -p "$PGPORT"; do sleep 0.1; done
psql_() { psql -qAt -h 127.0.0.1 -p "$PGPORT" -U postgres -d llmchat "$@"; }
psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -c "CREATE DATABASE llmchat"
psql_ -c "CREATE EXTENSION pg_stat_statements"
# 6,000 distinct statements, more than the 5,000 kept: a column of one of
# 200 tables each (the query id follows the relation and the column).
psql_ -c "DO \$\$ BEGIN FOR t IN 1..200 LOOP EXECUTE format('CREATE TABLE t%s (%s)', t, (SELECT string_agg(format('c%s int', c), ', ') FROM generate_series(1, 30) c)); END LOOP; END \$\$"
for t in $(seq 1 200); do for c in $(seq 1 30); do echo "SELECT c$c FROM t$t;"; done; done | psql_ >/dev/null
tracked=$(psql_ -c "SELECT count(*) FROM pg_stat_statements")
# The exporter's query, as in exporter/src/collectors/database/jobs.rs.
sql=$(python3 - <<'PY'
import re
src = open("exporter/src/collectors/database/jobs.rs").read()
m = re.search(r'const STATEMENTS_SQL: &str = "(.*?)";', src, re.S)
print(re.sub(r'\\\n\s*', '', m.group(1)).replace('$1', '1'))
PY
)
# Server-side execution time of each run, from EXPLAIN ANALYZE (the
# extension does not count the time of reading its own view).
for _ in $(seq 1 "$RUNS"); do echo "EXPLAIN (ANALYZE, FORMAT JSON) $sql;"; done | psql_ | python3 -c '
import re, sys
times = sorted(float(t) for t in re.findall(r"\"Execution Time\": ([0-9.]+)", sys.stdin.read()))
n = len(times)
print(f"statements tracked: '"$tracked"'")
print(f"the statements query, {n} runs: median {times[n // 2]:.2f} ms, p99 {times[int(n * 0.99) - 1]:.2f} ms, max {times[-1]:.2f} ms a run; at its default interval (1 m), {sum(times) / n:.2f} ms a minute ({sum(times) / n / 600:.4f}% of a core)")
'
