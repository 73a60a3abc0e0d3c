#!/bin/sh
# The TLS switch's Prometheus and Alertmanager configs, made from the plain
# ones at start (so there is one config to keep, not two): the llmchat
# scrape jobs get `scheme: https` and a tls_config with the client
# certificate, and the receiver's webhook gets https and the same.
# usage: tls-configs.sh PROMETHEUS_YML ALERTMANAGER_YML OUT_DIR [TLS_DIR]
set -eu
prom=$1 am=$2 out=$3
tls=${4:-/etc/llmchat-tls}
mkdir -p "$out"
tls_config="{ca_file: $tls/ca.pem, cert_file: $tls/client.pem, key_file: $tls/client-key.pem}"
awk -v tls="$tls_config" '
  { print }
  /^  - job_name: llmchat-(exporter|receiver)$/ {
    print "    scheme: https"
    print "    tls_config: " tls
  }
' "$prom" > "$out/prometheus.yml.tmp"
awk -v tls="$tls_config" '
  /url: "http:\/\/llmchat-receiver:/ { sub("http://", "https://") }
  { print }
  /^        http_config:$/ && webhook { print "          tls_config: " tls }
  /url: "https:\/\/llmchat-receiver:/ { webhook = 1 }
  /^  - name:/ && !/llmchat-receiver/ { webhook = 0 }
' "$am" > "$out/alertmanager.yml.tmp"
mv "$out/prometheus.yml.tmp" "$out/prometheus.yml"
mv "$out/alertmanager.yml.tmp" "$out/alertmanager.yml"
chmod 0644 "$out/prometheus.yml" "$out/alertmanager.yml"
echo "wrote $out/prometheus.yml and $out/alertmanager.yml (TLS)"
