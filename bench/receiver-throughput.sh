#!/usr/bin/env bash
# Accepted Alertmanager posts per second at llmchat-receiver's /webhook,
# with a realistic 3-alert payload and the default SQLite outbox, against
# the same machine's ceiling: a bare hyper server that reads the body and
# answers 200 (receiver/examples/bare_hyper.rs). wrk drives both from this
# machine with the same connections and duration.
#
# usage: bench/receiver-throughput.sh [DURATION] [CONNECTIONS]   (default 15s 64)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-15s}
CONNS=${2:-64}
command -v wrk >/dev/null || { echo "wrk not installed (apt-get install wrk)" >&2; exit 1; }
cargo build --release -q -p llmchat-receiver --bin llmchat-receiver --example bare_hyper
WORK=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TOKEN=bench-token-0123456789abcdef
RPORT=$(port); BPORT=$(port); DEAD=$(port)

# Notifications go to a webhook target that is down: they are stored and
# retried with backoff, as in an outage, without a target to measure too.
cat > "$WORK/receiver.toml" <<TOML
[web]
bearer_token = "$TOKEN"
[store]
url = "sqlite://$WORK/outbox.db"
[channels.webhook]
url = "http://127.0.0.1:$DEAD/h"
[channels.slack]
webhook_url = "http://127.0.0.1:$DEAD/s"
TOML
target/release/llmchat-receiver --config.file "$WORK/receiver.toml" \
  --web.listen-address "127.0.0.1:$RPORT" --log.level error &
PIDS+=($!)
target/release/examples/bare_hyper "$BPORT" &
PIDS+=($!)
until curl -fsS "http://127.0.0.1:$RPORT/-/ready" >/dev/null 2>&1; do sleep 0.1; done

# Each request is a distinct group (its own fingerprints), as real traffic;
# a repeated body would only hit deduplication.
cat > "$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $TOKEN"
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", tostring(threads))
end
local n = 0
request = function()
  n = n + 1
  local id = tid .. "-" .. n
  local alert = function(name, sev)
    return '{"status":"firing","labels":{"alertname":"' .. name .. '","severity":"' .. sev ..
      '","instance":"host-a:9842","job":"llmchat-exporter"},"annotations":{"summary":"' .. name ..
      ' summary","description":"value 6.2% over the last 5 minutes","runbook_url":"docs/runbooks.md"},' ..
      '"startsAt":"2026-11-26T10:00:00Z","endsAt":"0001-01-01T00:00:00Z",' ..
      '"generatorURL":"http://prometheus:9090/graph?g0.expr=x","fingerprint":"' .. name .. id .. '"}'
  end
  local body = '{"version":"4","groupKey":"group-' .. id .. '","truncatedAlerts":0,' ..
    '"status":"firing","receiver":"llmchat","groupLabels":{},"commonLabels":{},"commonAnnotations":{},' ..
    '"externalURL":"http://alertmanager:9093","alerts":[' ..
    alert("LLMChatHighErrorRate", "critical") .. "," .. alert("LLMChatSlowResponses", "warning") .. "," ..
    alert("LLMChatLogErrors", "info") .. ']}'
  return wrk.format(nil, "/webhook", nil, body)
end
response = function(status, headers, body)
  if status ~= 200 then print("status " .. status) end
end
LUA

echo "== llmchat-receiver /webhook (SQLite outbox)"
wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s "$WORK/post.lua" "http://127.0.0.1:$RPORT" | tee "$WORK/receiver.txt"
echo "== bare hyper (ceiling)"
wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s "$WORK/post.lua" "http://127.0.0.1:$BPORT" | tee "$WORK/bare.txt"

sleep 1
python3 - "$WORK" "$RPORT" <<'PY'
import re, sqlite3, sys, urllib.request
work, rport = sys.argv[1:]
def rps(f): return float(re.search(r"Requests/sec:\s+([\d.]+)", open(f).read()).group(1))
def p99(f): return re.search(r"99%\s+([\d.]+\w+)", open(f).read()).group(1)
m = urllib.request.urlopen(f"http://127.0.0.1:{rport}/metrics").read().decode()
accepted = int(float(re.search(r'llmchat_receiver_webhook_requests_total\{code="200"\} (\S+)', m).group(1)))
db = sqlite3.connect(f"{work}/outbox.db")
rows = dict(db.execute("select channel, count(*) from notifications group by channel").fetchall())
# 3 alerts: critical -> slack+webhook (no email configured), warning -> slack+webhook, info -> webhook.
print(f"receiver: {rps(work + '/receiver.txt'):.0f} posts/s, p99 {p99(work + '/receiver.txt')}; "
      f"bare hyper: {rps(work + '/bare.txt'):.0f} req/s, p99 {p99(work + '/bare.txt')}; "
      f"ratio {rps(work + '/receiver.txt') / rps(work + '/bare.txt'):.2f}")
# Each accepted post is 3 webhook rows, and 2 Slack rows or, past Slack's
# per-minute budget (delivery.max_messages_per_minute), 1 digest. Requests
# in flight when wrk stops are stored but their 200 is not counted: rows
# may exceed these, never fall short of them.
hook, slack = rows.get("webhook", 0), rows.get("slack", 0)
ok = hook >= accepted * 3 and slack >= accepted
verdict = "every accepted notification stored" if ok else "LOST NOTIFICATIONS"
print(f"accepted posts {accepted}: webhook rows {hook} (>= {accepted * 3}), slack rows {slack} "
      f"(>= {accepted}: 2 messages or 1 digest a post): {verdict}")
PY
