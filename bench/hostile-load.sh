#!/usr/bin/env bash
# Scrapes and webhook posts under hostile clients (issue #29), against
# node_exporter (Go, exporter-toolkit) as the peer, in the same run.
#
# The exporter, the receiver and node_exporter all run under
# `prlimit --nofile=1024:1024` (the limit systemd and most shells give a
# service) with one web-config file: basic auth with a bcrypt cost-10
# hash. For each attack the driver (tests/examples/hostile_load.rs) holds
# it against each server in turn and meanwhile measures that server's
# fresh scrapes (a new connection each, with the right password, cached
# after the first) or webhook posts: p50, p99, max and failures, and the
# server's CPU.
# Attacks: none; 5,000 idle connections; 5,000 half-sent headers; 5,000
# bodies at one byte a second; 32 clients polling /health; 200 clients
# sending wrong passwords.
#
# Needs: prometheus-node-exporter, util-linux (prlimit), python3.
# usage: bench/hostile-load.sh [SECONDS per attack, default 20]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER=${1:-20}
cargo build --release -q -p llmchat-exporter -p llmchat-receiver
cargo build --release -q -p llmchat-tests --example hostile_load
DRIVER=$PWD/target/release/examples/hostile_load
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  rm -rf "$WORK"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# User bench, password bench-password-0123 (bcrypt, cost 10).
cat > "$WORK/web.yml" <<'YML'
basic_auth_users:
  bench: '$2b$10$45/s9zU0ZNZTxuH0kJ1TAeWmvfK2hAAVSeoBdc77ObQKiSmS2E/1O'
YML
cat > "$WORK/receiver.toml" <<TOML
[web]
config_file = "$WORK/web.yml"
[store]
url = "sqlite://$WORK/outbox.db"
[channels.webhook]
url = "http://127.0.0.1:9/nowhere"
TOML
OURS=$(port); RECV=$(port); NODE=$(port)
LIMIT=(prlimit --nofile=1024:1024)
"${LIMIT[@]}" target/release/llmchat-exporter --web.listen-address "127.0.0.1:$OURS" \
  --web.config.file "$WORK/web.yml" --log.level warn 2>"$WORK/exporter.log" &
PIDS+=($!); EXPORTER_PID=$!
"${LIMIT[@]}" target/release/llmchat-receiver --config.file "$WORK/receiver.toml" \
  --web.listen-address "127.0.0.1:$RECV" --log.level warn 2>"$WORK/receiver.log" &
PIDS+=($!); RECEIVER_PID=$!
"${LIMIT[@]}" prometheus-node-exporter --web.listen-address "127.0.0.1:$NODE" \
  --web.config.file "$WORK/web.yml" >"$WORK/node.log" 2>&1 &
PIDS+=($!); NODE_PID=$!
for p in "$OURS" "$RECV" "$NODE"; do
  until curl -fsS -u bench:bench-password-0123 "http://127.0.0.1:$p/metrics" >/dev/null 2>&1; do sleep 0.1; done
done

export BENCH_USER=bench BENCH_PASSWORD=bench-password-0123
echo "# $(nproc) cores, $SECONDS_PER s per attack, all three under prlimit --nofile=1024:1024"
for attack in none idle half-headers slow-body health-polling wrong-password; do
  "$DRIVER" "$attack" "$SECONDS_PER" \
    "exporter=http://127.0.0.1:$OURS/metrics=$EXPORTER_PID" \
    "node=http://127.0.0.1:$NODE/metrics=$NODE_PID" \
    "receiver=http://127.0.0.1:$RECV/webhook=$RECEIVER_PID"
done
