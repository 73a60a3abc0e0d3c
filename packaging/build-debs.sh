#!/usr/bin/env bash
# Builds the two Debian packages, llmchat-exporter and llmchat-receiver,
# into target/debian/ with cargo-deb (cargo install cargo-deb).
#
#   packaging/build-debs.sh                 # release build, as shipped
#   PROFILE=dev packaging/build-debs.sh     # quicker, unoptimised (tests)
#   NO_BUILD=1 PROFILE=dev packaging/...    # package binaries already built
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${PROFILE:-release}
args=(--profile "$PROFILE" --fast)
[ -n "${NO_BUILD:-}" ] && args+=(--no-build)
for package in llmchat-exporter llmchat-receiver; do
  cargo deb -p "$package" "${args[@]}"
done
ls -1 target/debian/*.deb
