//! `llmchat-receiver`: takes Alertmanager's webhooks and delivers them by
//! email, Slack and generic webhooks, by severity as the guide's
//! `NotificationService` does, through a durable, deduplicating outbox.
#![forbid(unsafe_code)]

pub mod auth;
pub mod budget;
pub mod channels;
pub mod config;
pub mod decision;
pub mod http;
pub mod metrics;
pub mod payload;
pub mod recovery;
pub mod render;
pub mod routing;
pub mod store;
pub mod templates;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

pub use config::{Cli, Config, ConfigError};

/// Opens the store, starts the delivery worker (pending rows from before
/// a restart included) and serves until `shutdown`.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = config::listen_address(&config.web.listen_address)?;
    let web_guard = llmchat_common::webconfig::WebGuard::new(
        config.web.config_file.as_deref(),
        &config.web.limits,
    )?;
    let server = llmchat_common::http::Server::new(
        &config.web.limits,
        web_guard.clone(),
        config.web.body_limit_bytes,
    );
    let mut metrics = metrics::Metrics::new();
    web_guard.register(&mut metrics.registry);
    server.register(&mut metrics.registry);
    let metrics = Arc::new(metrics);
    let store = Arc::new(store::Store::open(&config.store.url, metrics.store.clone()).await?);
    let senders = Arc::new(config.senders(metrics.template_errors.clone())?);
    // Every configured channel's results start at 0, so that the first
    // failure is an increase Prometheus can see.
    for channel in senders.configured() {
        for result in ["sent", "failed", "dead"] {
            metrics
                .notifications
                .get_or_create(&metrics::NotificationLabels {
                    channel: channel.as_str(),
                    result,
                })
                .inc_by(0);
        }
        metrics
            .template_errors
            .get_or_create(&metrics::ChannelLabels {
                channel: channel.as_str(),
            })
            .inc_by(0);
    }
    let wake = Arc::new(tokio::sync::Notify::new());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = worker::Worker {
        store: store.clone(),
        senders: senders.clone(),
        metrics: metrics.clone(),
        config: config.delivery.clone(),
        wake: wake.clone(),
    };
    let recovery = Arc::new(
        recovery::Recovery::new(
            &config.recovery,
            store.clone(),
            senders.clone(),
            metrics.clone(),
            wake.clone(),
        )
        .map_err(|e| anyhow::anyhow!(e))?,
    );
    let maintenance = tokio::spawn(recovery.clone().maintain(stop_rx.clone()));
    let worker = tokio::spawn(worker.run(stop_rx));
    let state = Arc::new(http::AppState {
        auth: auth::Auth::new(&config.web),
        store,
        senders,
        metrics,
        web: config.web.clone(),
        routing: config.routing.clone(),
        wake,
        recovery,
        web_guard: web_guard.clone(),
        posts: Arc::new(tokio::sync::Semaphore::new(config.web.max_concurrent_posts)),
        urgent_posts: Arc::new(tokio::sync::Semaphore::new(1)),
        committing: Arc::new(tokio::sync::Semaphore::new(config.web.commit_queue_bytes)),
        urgent_committing: Arc::new(tokio::sync::Semaphore::new(config.web.body_limit_bytes)),
        budget: budget::Budget::new(config.delivery.max_messages_per_minute),
    });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    tracing::info!(address = %listener.local_addr()?, version = env!("CARGO_PKG_VERSION"), max_connections = server.max_connections(), "llmchat-receiver listening");
    let handler = move |req: hyper::Request<llmchat_common::http::Body>| {
        let state = state.clone();
        async move { http::handle(&state, req).await }
    };
    web_guard.watch(Duration::from_secs(5));
    server.serve(listener, handler, shutdown).await;
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(15), worker).await;
    maintenance.abort();
    tracing::info!("llmchat-receiver stopped");
    Ok(())
}

pub use llmchat_common::shutdown_signal;
