#!/usr/bin/env bash
# The image's rebuild times (issue #35): a build, then one after each of
# the edits a user makes: stack/alertmanager.yml (the README asks for the
# dead man's switch URL there), a rules file, and one source file of the
# receiver. Each in a copy of the working tree's tracked files, so the
# checkout is never touched; the layer cache is the engine's own.
#
# Needs: a running Docker engine; Debian's docker.io client for BuildKit
# (its 20.10 CLI has BuildKit built in; newer CLIs need buildx).
# usage: bench/image-rebuild.sh classic|buildkit
set -euo pipefail
cd "$(dirname "$0")/.."
builder=${1:-classic}
case $builder in
  classic) export DOCKER_BUILDKIT=0 ;;
  buildkit) export DOCKER_BUILDKIT=1 ;;
  *) echo "usage: $0 classic|buildkit" >&2; exit 64 ;;
esac
DOCKER=${DOCKER:-docker}
COPY=$(mktemp -d)
trap 'rm -rf "$COPY"' EXIT
git ls-files -z | tar --null -T - -cf - | tar -C "$COPY" -xf -
cd "$COPY"
TAG=llmchat-monitor:rebuild-bench
build() {
  local start end
  start=$(date +%s.%N)
  "$DOCKER" build -q --build-arg LLMCHAT_BUILD_REVISION=bench -t "$TAG" . >/dev/null
  end=$(date +%s.%N)
  printf '%-44s %7.1f s  image %s\n' "$1" "$(echo "$end - $start" | bc)" \
    "$("$DOCKER" image inspect -f '{{.Id}}' "$TAG" | cut -c8-19)"
}
echo "builder: $builder ($("$DOCKER" version -f '{{.Server.Version}}'), $(nproc) cores)"
build "first build (cache as the engine has it)"
build "again, nothing changed"
echo "# rebuild bench edit" >> stack/alertmanager.yml
build "after editing stack/alertmanager.yml"
echo "# rebuild bench edit" >> rules/self.alerts.rules.yml
build "after editing rules/self.alerts.rules.yml"
echo "// rebuild bench edit" >> receiver/src/http.rs
build "after editing receiver/src/http.rs"
