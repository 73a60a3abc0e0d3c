#!/usr/bin/env bash
# What reading a backup back costs: a SIZE_MB tar.gz of incompressible data
# (the worst case for the read budget: every byte on disk is read) is
# dropped, already settled, into the backup folder of a release exporter
# with only the backup collector on and the default budget (20 MiB/s, or
# BUDGET bytes/s). The clock runs until llmchat_backup_newest_valid says
# it was judged; the exporter's CPU seconds come from /proc (utime+stime)
# before and after. Also prints `gzip -t && tar tzf` on the same file, the
# check an operator would run by hand, unthrottled.
#
# usage: bench/backup-check.sh [SIZE_MB]      (default 1024)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${1:-1024}
BUDGET=${BUDGET:-20971520}
cargo build --release -q -p llmchat-exporter
BIN=target/release/llmchat-exporter
WORK=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/src/uploads" "$WORK/backups"
head -c "$((SIZE_MB * 1024 * 1024))" /dev/urandom > "$WORK/src/uploads/blob.bin"
tar czf "$WORK/archive.tar.gz" -C "$WORK/src" uploads
rm -rf "$WORK/src"
BYTES=$(stat -c %s "$WORK/archive.tar.gz")
touch -d '2 hours ago' "$WORK/archive.tar.gz"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT/metrics"
"$BIN" --web.listen-address "127.0.0.1:$PORT" --collector.disable-defaults --collector.backup \
  --backup.dir "$WORK/backups" --backup.check-interval 1s --backup.settle 1s \
  --backup.check-bytes-per-second "$BUDGET" --log.level warn &
PID=$!
until curl -fsS "$URL" >/dev/null 2>&1; do sleep 0.05; done
ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
HZ=$(getconf CLK_TCK)
cpu0=$(ticks)
start=$(date +%s.%N)
mv "$WORK/archive.tar.gz" "$WORK/backups/uploads_20261201_020000.tar.gz"
until curl -fsS "$URL" | grep -q '^llmchat_backup_newest_valid{kind="uploads"} 1'; do sleep 0.2; done
end=$(date +%s.%N)
cpu1=$(ticks)
rss=$(ps -o rss= -p "$PID" | tr -d ' ')
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
hstart=$(date +%s.%N)
gzip -t "$WORK/backups/uploads_20261201_020000.tar.gz"
tar tzf "$WORK/backups/uploads_20261201_020000.tar.gz" > /dev/null
hend=$(date +%s.%N)
python3 - "$start" "$end" "$cpu0" "$cpu1" "$HZ" "$BYTES" "$BUDGET" "$rss" "$hstart" "$hend" <<'PY'
import sys
s, e, c0, c1, hz, b, budget, rss, hs, he = map(float, sys.argv[1:])
wall, cpu = e - s, (c1 - c0) / hz
print(f"archive: {b / 2**20:.0f} MiB, budget {budget / 2**20:.0f} MiB/s")
print(f"exporter check: {wall:.1f} s wall ({b / wall / 2**20:.1f} MiB/s), {cpu:.1f} CPU s, rss {rss / 1024:.0f} MiB")
print(f"gzip -t && tar tzf, unthrottled: {he - hs:.1f} s wall")
PY
