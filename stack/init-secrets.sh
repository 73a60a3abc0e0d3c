#!/bin/sh
# Fills the stack's secrets volume once: a value from the environment (.env)
# wins; otherwise an existing file is kept; otherwise a random one is made.
# Nothing secret is written in the repository or printed here.
set -eu
umask 022
dir=/run/llmchat-secrets
mkdir -p "$dir"
put() {
  name=$1 value=$2
  if [ -n "$value" ]; then
    printf '%s' "$value" > "$dir/$name.tmp" && mv "$dir/$name.tmp" "$dir/$name"
  elif [ ! -s "$dir/$name" ]; then
    head -c 32 /dev/urandom | base64 | tr -d '/+=\n' | head -c 40 > "$dir/$name.tmp"
    mv "$dir/$name.tmp" "$dir/$name"
    echo "generated $name (read it with: docker compose exec grafana cat $dir/$name)"
  fi
  # Read by the grafana, alertmanager and receiver users; the volume is
  # mounted by those services only.
  chmod 0444 "$dir/$name"
}
put receiver_token "${LLMCHAT_RECEIVER_TOKEN:-}"
put grafana_admin_password "${GRAFANA_ADMIN_PASSWORD:-}"
