//! `llmchat-exporter`: publishes LLMChat's `llmchat_*` metrics for Prometheus.
//!
//! The binary in `main.rs` only parses flags and calls [`run`]; everything
//! else lives here so that tests can drive it without a process.
#![forbid(unsafe_code)]

pub mod collector_kit;
pub mod collectors;
pub mod config;
pub mod exposition;
pub mod http;
pub mod logs;

pub mod scrape;
pub mod shutdown;
pub mod verify;

use std::sync::Arc;

pub use config::{Cli, Config, ConfigError};

/// Version from Cargo, and the git revision the binary was built from.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const REVISION: &str = env!("LLMCHAT_BUILD_REVISION");

/// Starts every enabled collector, binds the listener, and serves until
/// `shutdown` resolves. The configuration must already be validated.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = config::resolve_listen_address(&config.web.listen_address)?;
    let web = llmchat_common::webconfig::WebGuard::new(
        config.web.config_file.as_deref(),
        &config.web.limits,
    )?;
    let server =
        llmchat_common::http::Server::new(&config.web.limits, web.clone(), http::BODY_LIMIT);
    let mut exporter = scrape::Exporter::start(&config)?;
    let own = exporter.registry_mut().sub_registry_with_prefix("exporter");
    web.register(own);
    server.register(own);
    let exporter = Arc::new(exporter);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    tracing::info!(
        address = %listener.local_addr()?,
        version = VERSION,
        collectors = ?config.enabled_collectors(),
        web_config = config.web.config_file.is_some(),
        max_connections = server.max_connections(),
        "llmchat-exporter listening"
    );
    let state = Arc::new(http::AppState::new(exporter.clone(), &config));
    web.watch(std::time::Duration::from_secs(5));
    http::serve(server, listener, state, shutdown).await;
    exporter.stop();
    tracing::info!("llmchat-exporter stopped");
    Ok(())
}
