//! The scrape path: one registry, the collectors that feed it, and the
//! exporter's own metrics about them.
//!
//! A scrape refreshes every per-scrape collector concurrently, each bounded
//! by `web.collector_timeout`, records how each went in
//! `llmchat_exporter_collector_{duration_seconds,success}`, then encodes the
//! registry. A collector that fails or times out costs its own series and
//! nothing else: the scrape itself always answers.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::collectors::{access, host, logs, FileLabels, Source};
use crate::config::Config;
use crate::exposition::Format;
use prometheus_client::metrics::counter::Counter;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("host collector: {0}")]
    Host(#[from] host::HostError),
    #[error("logs collector: {0}")]
    Logs(#[from] logs::LogsError),
    #[error("access collector: {0}")]
    Access(#[from] access::AccessError),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CollectorLabels {
    collector: &'static str,
}

/// How one collector's refresh went, for `/health` and the self metrics.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub name: &'static str,
    pub healthy: bool,
    pub duration: Duration,
    pub error: Option<String>,
}

pub struct Exporter {
    registry: Registry,
    sources: Vec<Arc<dyn Source>>,
    duration: Family<CollectorLabels, Gauge<f64, AtomicU64>>,
    success: Family<CollectorLabels, Gauge>,
    timeout: Duration,
    /// Serialises refresh+encode so that two concurrent scrapes never see
    /// each other's half-refreshed snapshots.
    scrape_lock: tokio::sync::Mutex<()>,
    started: Instant,
}

impl Exporter {
    /// Builds the registry and starts the enabled collectors (the log tailer
    /// starts its background thread here).
    pub fn start(config: &Config) -> Result<Self, StartError> {
        let mut registry = Registry::with_prefix("llmchat");
        let (duration, success) = register_self_metrics(&mut registry);
        let mut sources: Vec<Arc<dyn Source>> = Vec::new();
        if config.collectors.host {
            let c = Arc::new(host::HostCollector::new(&config.host)?);
            registry.register_collector(Box::new(c.clone()));
            sources.push(c);
        }
        let parse_errors = Family::<FileLabels, Counter>::default();
        if config.collectors.logs || config.collectors.access {
            registry.register(
                "log_parse_errors",
                "Log lines skipped because they could not be parsed (access lines, chat events)",
                parse_errors.clone(),
            );
        }
        if config.collectors.logs {
            let chat = config.collectors.chat.then_some(&config.chat);
            let c = logs::LogCollector::start(&config.logs, chat, &parse_errors, &mut registry)?;
            sources.push(c);
        }
        if config.collectors.access {
            let c = access::AccessCollector::start(
                &config.logs,
                &config.access,
                &parse_errors,
                &mut registry,
            )?;
            sources.push(c);
        }
        Ok(Self {
            registry,
            sources,
            duration,
            success,
            timeout: config.web.collector_timeout,
            scrape_lock: tokio::sync::Mutex::new(()),
            started: Instant::now(),
        })
    }

    /// An exporter over the given sources only (for tests of the scrape
    /// and health logic without real collectors).
    pub fn with_sources(sources: Vec<Arc<dyn Source>>, timeout: Duration) -> Self {
        let mut registry = Registry::with_prefix("llmchat");
        let (duration, success) = register_self_metrics(&mut registry);
        Self {
            registry,
            sources,
            duration,
            success,
            timeout,
            scrape_lock: tokio::sync::Mutex::new(()),
            started: Instant::now(),
        }
    }

    /// Refreshes every collector and encodes the registry.
    pub async fn scrape(&self, format: Format) -> Result<String, std::fmt::Error> {
        let _guard = self.scrape_lock.lock().await;
        self.refresh_all().await;
        format.encode(&self.registry)
    }

    /// Refreshes every collector, as a scrape does, and reports each result.
    pub async fn check(&self) -> Vec<CheckResult> {
        let _guard = self.scrape_lock.lock().await;
        self.refresh_all().await
    }

    async fn refresh_all(&self) -> Vec<CheckResult> {
        let results = join_all(self.sources.iter().map(|s| self.refresh_one(s.as_ref()))).await;
        for r in &results {
            let labels = CollectorLabels { collector: r.name };
            self.duration
                .get_or_create(&labels)
                .set(r.duration.as_secs_f64());
            self.success
                .get_or_create(&labels)
                .set(i64::from(r.healthy));
        }
        results
    }

    async fn refresh_one(&self, source: &dyn Source) -> CheckResult {
        let start = Instant::now();
        let outcome = tokio::time::timeout(self.timeout, source.refresh()).await;
        let duration = start.elapsed();
        let error = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!(
                "timed out after {}",
                humantime::format_duration(self.timeout)
            )),
        };
        if let Some(e) = &error {
            source.clear();
            tracing::warn!(collector = source.name(), error = %e, "collector failed");
        }
        CheckResult {
            name: source.name(),
            healthy: error.is_none(),
            duration,
            error,
        }
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn stop(&self) {
        for s in &self.sources {
            s.stop();
        }
    }
}

type SelfMetrics = (
    Family<CollectorLabels, Gauge<f64, AtomicU64>>,
    Family<CollectorLabels, Gauge>,
);

fn register_self_metrics(registry: &mut Registry) -> SelfMetrics {
    let duration = Family::<CollectorLabels, Gauge<f64, AtomicU64>>::default();
    let success = Family::<CollectorLabels, Gauge>::default();
    registry.register_with_unit(
        "exporter_collector_duration",
        "Time the collector took during the last scrape",
        Unit::Seconds,
        duration.clone(),
    );
    registry.register(
        "exporter_collector_success",
        "1 if the collector's last read succeeded within its time budget, else 0",
        success.clone(),
    );
    registry.register(
        "exporter_build",
        "Version and git revision of llmchat-exporter",
        Info::new(vec![
            ("version", crate::VERSION),
            ("revision", crate::REVISION),
        ]),
    );
    (duration, success)
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop();
    }
}
