//! `llmchat-exporter report` against a real Prometheus (and
//! VictoriaMetrics) holding a month of synthetic but realistic series: one
//! test binary, one module per surface. The report runs as its own process
//! (`src/bin/llmchat-report.rs`, the exporter's subcommand's code).

mod month;
mod monthly;
mod periods;
mod prometheus;
mod storage;
