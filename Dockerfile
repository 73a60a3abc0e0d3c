# syntax=docker/dockerfile:1
# Both binaries, llmchat-exporter and llmchat-receiver, in one small
# image that runs as a non-root user. Build: docker build -t llmchat-monitor:0.1.0 .

FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p llmchat-exporter -p llmchat-receiver \
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
