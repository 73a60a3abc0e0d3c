#!/bin/sh
# Fills the stack's secrets volume. Nothing secret is written in the
# repository or printed here.
#
# receiver_token: a value from the environment (.env) wins, so a rotation
#   is `docker compose up -d` (`docker-compose up -d`) with a new LLMCHAT_RECEIVER_TOKEN: Alertmanager
#   re-reads the file on every request and the receiver when it changes.
# grafana_admin_password: written once. Grafana uses it only when it
#   creates its admin; rewriting it later would make the file lie about a
#   password that no longer works. A changed GRAFANA_ADMIN_PASSWORD is
#   reported with the reset command (README, "Grafana's password").
# Otherwise an existing file is kept, or a random value made.
set -eu
umask 022
dir=${LLMCHAT_SECRETS_DIR:-/run/llmchat-secrets}
mkdir -p "$dir"
write() {
  printf '%s' "$2" > "$dir/$1.tmp" && mv "$dir/$1.tmp" "$dir/$1"
}
# 40 characters of [A-Za-z0-9] (238 bits), always 40: base64 of 32 bytes
# with '/', '+' and '=' removed was sometimes shorter.
generate() {
  LC_ALL=C tr -dc 'A-Za-z0-9' < /dev/urandom | head -c 40
}
put() {
  name=$1 value=$2 once=$3
  if [ -s "$dir/$name" ] && [ "$once" = once ]; then
    if [ -n "$value" ] && [ "$value" != "$(cat "$dir/$name")" ]; then
      echo "$name: the value in .env differs from the one in use, which is kept (Grafana has its admin already); to change it: docker compose exec grafana grafana cli admin reset-admin-password (docker-compose exec ... with docker-compose 1.29), then see README"
    fi
  elif [ -n "$value" ]; then
    write "$name" "$value"
  elif [ ! -s "$dir/$name" ]; then
    write "$name" "$(generate)"
    echo "generated $name (read it with: docker compose exec grafana cat $dir/$name, or docker-compose exec grafana cat $dir/$name)"
  fi
  # Read by the grafana, alertmanager and receiver users; the volume is
  # mounted by those services only.
  chmod 0444 "$dir/$name"
}
put receiver_token "${LLMCHAT_RECEIVER_TOKEN:-}" always
put grafana_admin_password "${GRAFANA_ADMIN_PASSWORD:-}" once
