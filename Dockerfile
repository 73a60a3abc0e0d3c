# Both binaries, llmchat-exporter and llmchat-receiver, in one small
# image that runs as a non-root user. Build:
#   docker build --build-arg LLMCHAT_BUILD_REVISION="$(git rev-parse --short=12 HEAD)" -t llmchat-monitor:0.1.0 .
#
# Plain Dockerfile syntax, no BuildKit-only instruction (RUN --mount):
# it builds with BuildKit and with the classic builder alike (Debian's
# docker-compose 1.29, Engine < 23 without DOCKER_BUILDKIT=1).

# A rust image tag read in rust-lang/docker-rust; the toolchain the
# workspace needs (sysinfo wants 1.95) is installed on it by rustup, so the
# build does not depend on a newer tag existing.
FROM rust:1.90.0-slim-bookworm AS build
ARG RUST_TOOLCHAIN=1.95.0
RUN rustup toolchain install "$RUST_TOOLCHAIN" --profile minimal \
 && rustup default "$RUST_TOOLCHAIN"
# make: the receiver's allocator (jemalloc) is built from its C sources.
RUN apt-get update && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The dependencies first, in a layer of their own: with an unchanged
# Cargo.lock a rebuild downloads nothing.
COPY Cargo.toml Cargo.lock ./
COPY common/Cargo.toml common/
COPY exporter/Cargo.toml exporter/
COPY receiver/Cargo.toml receiver/
COPY tests/Cargo.toml tests/
RUN mkdir -p common/src exporter/src receiver/src tests/src \
 && touch common/src/lib.rs exporter/src/lib.rs exporter/src/main.rs receiver/src/lib.rs receiver/src/main.rs tests/src/lib.rs \
 && cargo fetch --locked \
 && rm -rf common/src exporter/src receiver/src tests/src
COPY . .
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
