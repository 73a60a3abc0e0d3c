# Both binaries, llmchat-exporter and llmchat-receiver, in one small
# image that runs as a non-root user. Build:
#   docker build --build-arg LLMCHAT_BUILD_REVISION="$(git rev-parse --short=12 HEAD)" -t llmchat-monitor:0.1.0 .
#
# Plain Dockerfile syntax, no BuildKit-only instruction (RUN --mount):
# it builds with BuildKit and with the classic builder alike (Debian's
# docker-compose 1.29, Engine < 23 without DOCKER_BUILDKIT=1).
#
# Layers, so that a rebuild costs what changed (README, "Building the
# image", has the measured times):
#   1. toolchain and cargo-chef: change only with this file;
#   2. the dependencies, compiled by `cargo chef cook` from a recipe made
#      of the manifests and Cargo.lock alone: change only when those do;
#   3. the workspace's own crates, from their sources only (not stack/,
#      rules/, dashboards/, docs/ or the tests' data): a source edit
#      recompiles these, in minutes, not the dependencies' half hour.
# cargo-chef rather than hand-made stub sources: it writes the stubs for
# every target the manifests declare (lib, bins, build script, explicit
# test targets) and removes the stubs' artifacts after cooking, so a new
# crate or target needs no edit here and a stub can never end up in the
# image. It is well kept (written for the Zero To Production book,
# maintained since 2020, widely used in Rust images)
# and pinned here with its own lockfile.

# A rust image tag read in rust-lang/docker-rust; the toolchain the
# workspace needs (sysinfo wants 1.95) is installed on it by rustup, so the
# build does not depend on a newer tag existing.
FROM rust:1.90.0-slim-bookworm AS chef
ARG RUST_TOOLCHAIN=1.95.0
RUN rustup toolchain install "$RUST_TOOLCHAIN" --profile minimal \
 && rustup default "$RUST_TOOLCHAIN"
# make: the receiver's allocator (jemalloc) is built from its C sources.
RUN apt-get update && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/*
ARG CARGO_CHEF_VERSION=0.1.78
RUN cargo install cargo-chef --locked --version "$CARGO_CHEF_VERSION" \
 && rm -rf "$CARGO_HOME/registry"
WORKDIR /src

# The recipe: manifests, lockfile and the list of targets. Its sources
# are here only so cargo-chef can see which targets exist; the recipe it
# writes holds no source text, so an edit to a source file gives the same
# recipe and the cook layer below stays cached.
FROM chef AS planner
COPY Cargo.toml Cargo.lock ./
COPY settings-derive/Cargo.toml settings-derive/
COPY settings-derive/src settings-derive/src
COPY common/Cargo.toml common/
COPY common/src common/src
COPY tail/Cargo.toml tail/
COPY tail/src tail/src
COPY report/Cargo.toml report/
COPY report/src report/src
COPY exporter/Cargo.toml exporter/build.rs exporter/
COPY exporter/src exporter/src
COPY receiver/Cargo.toml receiver/
COPY receiver/src receiver/src
COPY tests/Cargo.toml tests/
COPY tests/src tests/src
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
# The same packages and profile as the build below, so the dependencies
# are compiled with the same features and nothing is compiled twice.
RUN cargo chef cook --release --locked --recipe-path recipe.json \
      -p llmchat-exporter -p llmchat-receiver
# Only what the two binaries are compiled from.
COPY Cargo.toml Cargo.lock ./
COPY settings-derive/Cargo.toml settings-derive/
COPY settings-derive/src settings-derive/src
COPY common/Cargo.toml common/
COPY common/src common/src
COPY tail/Cargo.toml tail/
COPY tail/src tail/src
COPY report/Cargo.toml report/
COPY report/src report/src
COPY exporter/Cargo.toml exporter/build.rs exporter/
COPY exporter/src exporter/src
COPY receiver/Cargo.toml receiver/
COPY receiver/src receiver/src
COPY receiver/templates receiver/templates
COPY receiver/migrations receiver/migrations
COPY tests/Cargo.toml tests/
# .git is not in the build context: the revision comes in as an argument
# (docker-compose.yml passes LLMCHAT_BUILD_REVISION from .env).
ARG LLMCHAT_BUILD_REVISION=unknown
ENV LLMCHAT_BUILD_REVISION=${LLMCHAT_BUILD_REVISION}
RUN cargo build --release --locked -p llmchat-exporter -p llmchat-receiver \
 && install -D -s -m 0755 target/release/llmchat-exporter target/release/llmchat-receiver -t /out

FROM debian:12.8-slim
# The receiver's outbox lives in /var/lib/llmchat-receiver (a volume).
RUN groupadd --system --gid 65532 llmchat \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --shell /usr/sbin/nologin llmchat \
 && install -d -o 65532 -g 65532 -m 0750 /var/lib/llmchat-receiver
COPY --from=build /out/ /usr/local/bin/
COPY config/ /etc/llmchat/examples/
USER 65532:65532
EXPOSE 9842 9843
# The exporter by default; the receiver with
#   command: ["/usr/local/bin/llmchat-receiver", "--config.file=..."]
CMD ["/usr/local/bin/llmchat-exporter"]
