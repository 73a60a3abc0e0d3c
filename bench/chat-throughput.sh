#!/usr/bin/env bash
# Chat event lines per second through the real tail path: today's exporter
# (reading model, provider, tokens, time to first token, errors and spend
# from each event) against the exporter before those fields (75acfa5, which
# counts messages and durations only) and against mtail running
# bench/chat-equivalent.mtail, on the same lines.
#
# LINES realistic chat_message events (OpenAI- and Anthropic-style usage,
# streamed answers with a time to first token, cached input, 429s and
# other provider errors, 40 agents, 4 models) are appended at once to an
# empty app log tailed by the release exporter pinned to one core; the
# clock stops when llmchat_chat_messages_total sums to LINES. Each exporter
# runs RUNS times; the best run is kept. mtail -one_shot reads the same
# file on the same core.
#
# usage: bench/chat-throughput.sh [LINES] [RUNS]     (default 2000000 3)
set -euo pipefail
cd "$(dirname "$0")/.."
LINES=${1:-2000000}
RUNS=${2:-3}
CORE=${CORE:-0}
WRITER_CORE=${WRITER_CORE:-1}
BASE=${BASE:-75acfa5}
command -v mtail >/dev/null || { echo "mtail not installed (apt-get install mtail)" >&2; exit 1; }
WORK=$(mktemp -d -p "${BENCH_DIR:-/dev/shm}")
PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; git worktree remove --force "$WORK/base-src" 2>/dev/null; rm -rf "$WORK"' EXIT

cargo build --release -q -p llmchat-exporter
cp target/release/llmchat-exporter "$WORK/exporter-now"
# The exporter before the LLM fields, built from its commit in a target
# directory of its own (sharing target/ leaves cargo's uplifted binary
# stale for whichever tree built second).
git worktree add -q --detach "$WORK/base-src" "$BASE"
cargo build --release -q -p llmchat-exporter --manifest-path "$WORK/base-src/Cargo.toml" \
  --target-dir target/bench-base
cp target/bench-base/release/llmchat-exporter "$WORK/exporter-base"

python3 - "$LINES" > "$WORK/lines" <<'PY'
import sys
n = int(sys.argv[1])
out = sys.stdout
for i in range(n):
    agent = f"agent-{i % 40}"
    ms = 300 + (i * 37) % 9000
    head = f'{{"level":"info","timestamp":"2026-11-26T11:{i % 60:02d}:{i % 59:02d}.{i % 1000:03d}Z","context":"ChatService","message":"chat message","event":"chat_message","agent_id":"{agent}"'
    if i % 50 == 0:
        model, provider = ("gpt-4o", "openai") if i % 100 == 0 else ("claude-3-5-sonnet", "anthropic")
        status = 429 if i % 100 == 0 else 529
        tail = f'"error":{{"status":{status},"type":"rate_limit_error","message":"Rate limit reached for requests"}}'
        line = f'{head},"status":"error","duration_ms":{ms},"model":"{model}","provider":"{provider}",{tail},"sessionId":"s{i % 9973}"}}'
    elif i % 4 == 0:
        usage = f'"usage":{{"input_tokens":{200 + i % 3000},"output_tokens":{20 + i % 900},"cache_read_input_tokens":{i % 500}}}'
        line = f'{head},"status":"success","duration_ms":{ms},"model":"claude-3-5-sonnet","provider":"anthropic",{usage},"time_to_first_token_ms":{80 + i % 2500},"sessionId":"s{i % 9973}"}}'
    else:
        model = ["gpt-4o", "gpt-4o-mini", "o3-mini"][i % 3]
        usage = f'"usage":{{"prompt_tokens":{200 + i % 4000},"completion_tokens":{20 + i % 1200},"total_tokens":{220 + i % 5200},"prompt_tokens_details":{{"cached_tokens":{i % 1024}}}}}'
        stream = f',"time_to_first_token_ms":{60 + i % 2000}' if i % 3 else ""
        line = f'{head},"status":"success","duration_ms":{ms},"model":"{model}","provider":"openai",{usage}{stream},"sessionId":"s{i % 9973}"}}'
    out.write(line + "\n")
PY
BYTES=$(stat -c %s "$WORK/lines")
cat "$WORK/lines" > "$WORK/warm" && rm "$WORK/warm"
cat > "$WORK/exporter.toml" <<'TOML'
[chat.llm.prices.gpt-4o]
input = 2.5
output = 10.0
cached_input = 1.25
currency = "USD"
[chat.llm.prices.claude-3-5-sonnet]
input = 3.0
output = 15.0
cached_input = 0.3
currency = "USD"
TOML
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT/metrics"
echo "lines=$LINES bytes=$BYTES ($((BYTES / LINES)) bytes a line) core=$CORE runs=$RUNS base=$BASE"

total() {
  curl -fsS "$URL" | awk '/^llmchat_chat_messages_total\{/ {s += $2} END {printf "%d", s}'
}

run() { # name binary [args...]
  local name=$1 bin=$2; shift 2
  local best=
  for _ in $(seq "$RUNS"); do
    : > "$WORK/app.log"
    taskset -c "$CORE" "$bin" --web.listen-address "127.0.0.1:$PORT" --collector.disable-defaults \
      --collector.logs --collector.chat --logs.app "$WORK/app.log" --log.level warn "$@" &
    PID=$!
    until curl -fsS "$URL" >/dev/null 2>&1; do sleep 0.05; done
    local start end
    start=$(date +%s.%N)
    taskset -c "$WRITER_CORE" cat "$WORK/lines" >> "$WORK/app.log"
    while [ "$(total)" -lt "$LINES" ]; do sleep 0.01; done
    end=$(date +%s.%N)
    local tokens rss
    tokens=$(curl -fsS "$URL" | awk '/^llmchat_chat_tokens_total\{/ {s += $2} END {printf "%.0f", s}')
    rss=$(ps -o rss= -p "$PID" | tr -d ' ')
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
    local t
    t=$(python3 -c "print(f'{$end - $start:.3f}')")
    echo "  $name run: ${t} s tokens_counted=$tokens rss=$((rss / 1024)) MiB"
    if [ -z "$best" ] || python3 -c "import sys; sys.exit(0 if $t < $best else 1)"; then best=$t; fi
  done
  echo "$name $best" >> "$WORK/results"
}

run before "$WORK/exporter-base"
run now "$WORK/exporter-now" --config.file "$WORK/exporter.toml"

mstart=$(date +%s.%N)
taskset -c "$CORE" mtail -one_shot -progs bench/chat-equivalent.mtail -logs "$WORK/lines" \
  -port 0 > "$WORK/mtail.json" 2>/dev/null
mend=$(date +%s.%N)
mgot=$(python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))
print(int(sum(v["Value"]["Value"] for v in m["chat_messages_total"][0]["LabelValues"])))' "$WORK/mtail.json")
echo "mtail $(python3 -c "print(f'{$mend - $mstart:.3f}')")" >> "$WORK/results"

python3 - "$WORK/results" "$LINES" "$BYTES" "$mgot" <<'PY'
import sys
times = dict(l.split() for l in open(sys.argv[1]))
n, b, mgot = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for name in ("before", "now", "mtail"):
    t = float(times[name])
    print(f"{name:>7}: {t:.3f} s  {n / t / 1e6:.3f} M lines/s  {b / t / 2**20:.0f} MiB/s")
before, now, mtail = (float(times[k]) for k in ("before", "now", "mtail"))
print(f"the LLM fields cost {(1 - before / now) * 100:.1f}% of the throughput before them (limit 30%)")
print(f"now against mtail: {mtail / now:.1f}x  (mtail counted {mgot} messages)")
PY
