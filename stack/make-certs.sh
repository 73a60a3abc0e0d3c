#!/bin/sh
# Makes the certificates the stack's TLS switch (docker-compose.tls.yml)
# needs, with openssl, into stack/tls/: a CA, a server certificate for the
# two llmchat services, and a client certificate that Prometheus and
# Alertmanager present (both binaries then require one: mutual TLS).
# Bring your own instead by putting files of the same names there.
set -eu
cd "$(dirname "$0")"
mkdir -p tls
cd tls
days=${DAYS:-825}
openssl req -x509 -newkey rsa:3072 -nodes -days "$days" -subj "/CN=llmchat-monitor CA" \
  -keyout ca-key.pem -out ca.pem 2>/dev/null
leaf() {
  name=$1 subject=$2 ext=$3
  openssl req -newkey rsa:3072 -nodes -subj "$subject" -keyout "$name-key.pem" -out "$name.csr" 2>/dev/null
  printf '%s\n' "$ext" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
    -days "$days" -extfile "$name.ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}
leaf server "/CN=llmchat" \
  "subjectAltName=DNS:llmchat-exporter,DNS:llmchat-receiver,DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
leaf client "/CN=prometheus-alertmanager" "extendedKeyUsage=clientAuth"
# Keys readable by the containers' users (nobody, the receiver's user).
chmod 0644 ./*.pem
chmod 0600 ca-key.pem
echo "wrote $(pwd): ca.pem, server.pem, server-key.pem, client.pem, client-key.pem"
