#!/usr/bin/env bash
# The receiver under an alert storm's posts (issue #30): RSS and time for
# one post of 9,600 critical alerts (3.9 MB), and for 16 such posts at
# once; what the outbox stored; RSS a while after. The channels point at
# a closed port, so everything stays pending (the cost measured is taking
# the posts, not sending).
#
# Needs: python3, curl.
# usage: bench/storm-memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p llmchat-receiver
WORK=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(port)
TOKEN=storm-bench-token-0123456789
cat > "$WORK/receiver.toml" <<TOML
[web]
bearer_token = "$TOKEN"
# The post below is 3.9 MB (realistic labels and annotations).
body_limit_bytes = 8388608
[store]
url = "sqlite://$WORK/outbox.db"
[channels.slack]
webhook_url = "http://127.0.0.1:9/slack"
[channels.webhook]
url = "http://127.0.0.1:9/hook"
[channels.email]
smtp_host = "127.0.0.1"
smtp_port = 9
tls = "none"
from = "alerts@example.com"
to = { critical = ["oncall@example.com"] }
TOML
python3 - "$WORK/post.json" <<'PY'
import json, sys
alerts = [{"status": "firing",
           "labels": {"alertname": "LLMChatStorm", "severity": "critical", "instance": f"host-{i}:9842",
                      "job": "llmchat", "fault": "high_error_rate"},
           "annotations": {"summary": f"storm on host-{i}", "description": "x" * 20},
           "startsAt": "2026-12-02T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
           "generatorURL": "http://prometheus:9090/graph?g0.expr=up", "fingerprint": f"fp{i:05d}"}
          for i in range(9600)]
body = {"version": "4", "groupKey": "{}:{alertname=\"LLMChatStorm\"}", "truncatedAlerts": 0,
        "status": "firing", "receiver": "llmchat", "groupLabels": {"alertname": "LLMChatStorm"},
        "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
        "alerts": alerts}
open(sys.argv[1], "w").write(json.dumps(body))
PY
rss() { awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' "/proc/$PID/status"; }
target/release/llmchat-receiver --config.file "$WORK/receiver.toml" \
  --web.listen-address "127.0.0.1:$PORT" --log.level warn 2>"$WORK/receiver.log" &
PID=$!
until curl -fs "http://127.0.0.1:$PORT/-/ready" >/dev/null; do sleep 0.1; done
echo "post size: $(stat -c %s "$WORK/post.json") bytes, 9,600 alerts"
echo "idle RSS: $(rss)"
post() { curl -s -o /dev/null -w '%{http_code} %{time_total}s\n' -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' --data-binary "@$WORK/post.json" "http://127.0.0.1:$PORT/webhook"; }
echo "one post: $(post)"
echo "RSS after one post: $(rss)"
# 16 distinct posts at once (each its own group, so none is a duplicate).
for k in $(seq 1 16); do
  sed "s/fp0/g${k}fp0/g; s/LLMChatStorm/LLMChatStorm$k/g" "$WORK/post.json" > "$WORK/post$k.json"
done
start=$(date +%s.%N)
CURLS=()
for k in $(seq 1 16); do
  curl -s -o /dev/null -w '%{http_code} ' -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' --data-binary "@$WORK/post$k.json" "http://127.0.0.1:$PORT/webhook" &
  CURLS+=($!)
done
wait "${CURLS[@]}"
echo
echo "16 posts at once: $(python3 -c "import time; print(f'{time.time()-$start:.2f} s')")"
echo "RSS after 16 posts: $(rss)"
sleep 10
echo "RSS 10 s later: $(rss)"
sleep 20
echo "RSS 30 s later: $(rss)"
curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^llmchat_receiver_(outbox_pending|alerts_folded_total)'
