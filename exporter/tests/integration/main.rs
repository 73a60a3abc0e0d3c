//! End-to-end tests of the real `llmchat-exporter` binary: one test binary,
//! shared helpers, one module per surface.

mod backends;
mod backends_postgres;
mod backends_redis;
mod background;
mod backup_check;
mod backup_drill;
mod config;
mod deploys;
mod exposition;
mod helpers;
mod host;
mod hostile;
mod http;
mod llm_usage;
mod logs;
mod report_cli;
mod tls;
mod traffic;
mod verify;
