//! The scrape path: one registry, the collectors that feed it, and the
//! exporter's own metrics about them.
//!
//! A scrape refreshes every per-scrape collector concurrently, each bounded
//! by `web.collector_timeout`, records how each went in
//! `llmchat_exporter_collector_{duration_seconds,success}`, then encodes the
//! registry. A collector that fails or times out costs its own series and
//! nothing else: the scrape itself always answers.

use llmchat_common::lock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::collector_kit::{Context, Source};
use crate::config::Config;
use crate::exposition::Format;
use prometheus_client::metrics::counter::Counter;

pub use crate::collector_kit::StartError;

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
    failures: Family<CollectorLabels, Counter>,
    /// Per source (same order): whether its last refresh failed, so that a
    /// failure is logged when it starts and when it ends, not per scrape.
    failing: Vec<AtomicBool>,
    timeout: Duration,
    /// Serialises refresh+encode so that two concurrent scrapes never see
    /// each other's half-refreshed snapshots.
    scrape_lock: tokio::sync::Mutex<()>,
    /// The latest refresh's results, for `/health`: probes answer from
    /// them while they are fresh, so that a crowd of unauthenticated
    /// pollers costs the collectors nothing and cannot queue in front of
    /// a scrape.
    latest: std::sync::Mutex<Option<(Instant, Vec<CheckResult>)>>,
    /// One `/health` refresh at a time; the others wait for its results.
    health_refresh: tokio::sync::Mutex<()>,
    started: Instant,
}

/// How long a refresh's results answer `/health`.
pub const HEALTH_FRESH_FOR: Duration = Duration::from_secs(5);

impl Exporter {
    /// Builds the registry and starts the enabled collectors (the log tailer
    /// starts its background thread here).
    pub fn start(config: &Config) -> Result<Self, StartError> {
        let mut registry = Registry::with_prefix("llmchat");
        let self_metrics = register_self_metrics(&mut registry);
        let mut sources: Vec<Arc<dyn Source>> = Vec::new();
        let mut ctx = Context::new(&mut registry);
        for line in crate::config::collectors::ALL {
            if config.collectors.is_enabled(line.entry.name) {
                if let Some(source) = (line.start)(config, &mut ctx)? {
                    sources.push(source);
                }
            }
        }
        Ok(Self::assemble(
            registry,
            sources,
            self_metrics,
            config.web.collector_timeout,
        ))
    }

    /// The registry, for metrics registered after start (the web-config
    /// file's reload counter).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// An exporter over the given sources only (for tests of the scrape
    /// and health logic without real collectors).
    pub fn with_sources(sources: Vec<Arc<dyn Source>>, timeout: Duration) -> Self {
        let mut registry = Registry::with_prefix("llmchat");
        let self_metrics = register_self_metrics(&mut registry);
        Self::assemble(registry, sources, self_metrics, timeout)
    }

    fn assemble(
        registry: Registry,
        sources: Vec<Arc<dyn Source>>,
        (duration, success, failures): SelfMetrics,
        timeout: Duration,
    ) -> Self {
        let failing = sources.iter().map(|_| AtomicBool::new(false)).collect();
        Self {
            registry,
            sources,
            duration,
            success,
            failures,
            failing,
            timeout,
            scrape_lock: tokio::sync::Mutex::new(()),
            latest: std::sync::Mutex::new(None),
            health_refresh: tokio::sync::Mutex::new(()),
            started: Instant::now(),
        }
    }

    /// Refreshes every collector and encodes the registry. `scraper_timeout`
    /// is Prometheus' own (X-Prometheus-Scrape-Timeout-Seconds): the
    /// collectors get a little less than it, and never more than
    /// `web.collector_timeout`, so the answer reaches Prometheus in time.
    /// The wait for another scrape's refresh counts against that budget:
    /// one that has spent it all answers with the values the other one
    /// left, rather than after Prometheus has given up.
    pub async fn scrape(
        &self,
        format: Format,
        scraper_timeout: Option<Duration>,
    ) -> Result<String, std::fmt::Error> {
        let started = Instant::now();
        let deadline = self.deadline(scraper_timeout);
        let Ok(_guard) = tokio::time::timeout(deadline, self.scrape_lock.lock()).await else {
            tracing::debug!(
                "waited the whole scrape budget for another refresh; answering with its values"
            );
            return format.encode(&self.registry);
        };
        let left = deadline.saturating_sub(started.elapsed());
        if !left.is_zero() {
            let results = self.refresh_all(left).await;
            self.remember(results);
        }
        format.encode(&self.registry)
    }

    fn remember(&self, results: Vec<CheckResult>) {
        *lock(&self.latest) = Some((Instant::now(), results));
    }

    fn fresh_results(&self) -> Option<Vec<CheckResult>> {
        let latest = lock(&self.latest);
        latest
            .as_ref()
            .filter(|(at, _)| at.elapsed() < HEALTH_FRESH_FOR)
            .map(|(_, results)| results.clone())
    }

    /// The collectors' budget for a scrape with the scraper's timeout.
    pub fn deadline(&self, scraper_timeout: Option<Duration>) -> Duration {
        match scraper_timeout {
            // Leave a tenth (at least 100 ms) for encoding and the network.
            Some(t) => {
                let margin = (t / 10).max(Duration::from_millis(100));
                t.saturating_sub(margin)
                    .max(Duration::from_millis(10))
                    .min(self.timeout)
            }
            None => self.timeout,
        }
    }

    /// Every collector's result, for `/health`: the latest refresh's when
    /// it is under [`HEALTH_FRESH_FOR`] old (a scrape's or another
    /// probe's), else one refresh shared by every probe that asks
    /// meanwhile.
    pub async fn check(&self) -> Vec<CheckResult> {
        if let Some(results) = self.fresh_results() {
            return results;
        }
        let _one = self.health_refresh.lock().await;
        if let Some(results) = self.fresh_results() {
            return results;
        }
        let _guard = self.scrape_lock.lock().await;
        let results = self.refresh_all(self.timeout).await;
        self.remember(results.clone());
        results
    }

    /// The running collector named `name`, for `/health/db` and
    /// `/health/redis`.
    pub fn source(&self, name: &str) -> Option<&dyn Source> {
        self.sources
            .iter()
            .find(|s| s.name() == name)
            .map(|s| s.as_ref())
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn refresh_all(&self, deadline: Duration) -> Vec<CheckResult> {
        let results = join_all(
            self.sources
                .iter()
                .map(|s| self.refresh_one(s.as_ref(), deadline)),
        )
        .await;
        for (r, failing) in results.iter().zip(&self.failing) {
            let labels = CollectorLabels { collector: r.name };
            if let Some(e) = &r.error {
                self.failures.get_or_create(&labels).inc();
                if !failing.swap(true, Ordering::AcqRel) {
                    tracing::warn!(collector = r.name, error = %e, "collector failing; logged again when it recovers");
                }
            } else if failing.swap(false, Ordering::AcqRel) {
                tracing::info!(collector = r.name, "collector recovered");
            }
            self.duration
                .get_or_create(&labels)
                .set(r.duration.as_secs_f64());
            self.success
                .get_or_create(&labels)
                .set(i64::from(r.healthy));
        }
        results
    }

    async fn refresh_one(&self, source: &dyn Source, deadline: Duration) -> CheckResult {
        let start = Instant::now();
        let outcome = tokio::time::timeout(deadline, source.refresh()).await;
        let duration = start.elapsed();
        let error = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(llmchat_common::error_chain(e.as_ref())),
            Err(_) => Some(format!(
                "timed out after {}",
                humantime::format_duration(deadline)
            )),
        };
        if error.is_some() {
            source.clear();
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
    Family<CollectorLabels, Counter>,
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
    let failures = Family::<CollectorLabels, Counter>::default();
    registry.register(
        "exporter_collector_failures",
        "Scrapes in which the collector failed or ran out of time",
        failures.clone(),
    );
    registry.register(
        "exporter_build",
        "Version and git revision of llmchat-exporter",
        Info::new(vec![
            ("version", crate::VERSION),
            ("revision", crate::REVISION),
        ]),
    );
    (duration, success, failures)
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop();
    }
}
