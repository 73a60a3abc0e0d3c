//! The collector kit: what every collector is built from, and nothing
//! project-specific. A collector implements [`Source`] (its per-scrape
//! read), describes itself with an [`Entry`] (name, role, default, help),
//! checks its own config section with [`Section`], and registers its
//! metrics through the [`Context`] it is started with. `encode` writes
//! families at scrape time, `snapshot` publishes a refresh's values
//! atomically, `background` runs the costly reads off the scrape path.
//!
//! This module imports nothing of the crate: the collectors
//! (`crate::collectors`, `crate::logs`) import it, and only
//! `crate::config` knows which sections and collectors exist.

pub mod background;
pub mod encode;
pub mod snapshot;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

pub use llmchat_common::ConfigError;

/// What a collector says about itself: its line in the collector table
/// (`crate::config::collectors::ALL`) pairs it with how it starts.
pub struct Entry {
    /// The `collector` label, the `--collector.<name>` flag, the
    /// `collectors.<name>` key.
    pub name: &'static str,
    /// Which `--role` runs it by default.
    pub role: Role,
    pub enabled_by_default: bool,
    /// What it reads, for `--help`.
    pub help: &'static str,
}

/// What a started collector hands the scrape path. `None`: it has no
/// per-scrape work of its own (chat events ride on the logs collector's
/// tailer).
pub type Started = Result<Option<Arc<dyn Source>>, StartError>;

/// A config section's own checks, run before anything starts. A section
/// sees only itself and whether the collector of its name runs (`false`
/// for sections no collector is named after); checks that join two
/// sections belong to the module that assembles the configuration.
pub trait Section {
    fn validate(&self, enabled: bool) -> Result<(), ConfigError>;
}

/// Checks histogram bucket bounds (`access.buckets`, `chat.buckets`).
pub fn validate_buckets(key: &'static str, buckets: &[f64]) -> Result<(), ConfigError> {
    let text = || {
        buckets
            .iter()
            .map(f64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    if buckets.is_empty() {
        return Err(llmchat_common::invalid(
            key,
            "",
            "needs at least one bucket",
        ));
    }
    if buckets.iter().any(|b| !b.is_finite() || *b < 0.0)
        || buckets.windows(2).any(|w| w[0] >= w[1])
    {
        return Err(llmchat_common::invalid(
            key,
            text(),
            "bounds must be finite, non-negative and increasing",
        ));
    }
    Ok(())
}

/// `--role`: which collectors run by default on this machine. On many
/// hosts, each runs `host` (its own logs, host and backend probe) and one
/// machine runs `services` (the shared PostgreSQL, Redis and backups), so
/// the shared services are queried once and exported once, not once per
/// host. `all` is one machine doing both. Explicit `--collector.<name>`
/// flags and `[collectors]` still decide.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    All,
    Host,
    Services,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Host => "host",
            Role::Services => "services",
        }
    }
}

/// Why a live round trip to a watched service failed; the driver's error
/// kept as the source.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error(transparent)]
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

impl PingError {
    pub fn failed(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        PingError::Failed(Box::new(e))
    }
}

/// What a collector's start gets besides the configuration.
pub struct Context<'a> {
    /// The root registry (prefix `llmchat`); a collector takes its own
    /// sub-registry with [`Registry::sub_registry_with_prefix`].
    pub registry: &'a mut Registry,
    log_files: Option<LogFiles>,
}

/// The per-file log metrics every log collector (app and access) shares,
/// so that one file's series sit in one family whichever tails it.
#[derive(Clone)]
pub struct LogFiles {
    /// `llmchat_log_parse_errors_total{file}`.
    pub parse_errors: Family<FileLabels, Counter>,
    /// `llmchat_log_file_readable{file}`: whether the path holds a file
    /// the exporter reads (a missing access log shows as 0, not nothing).
    pub readable: Family<FileLabels, Gauge>,
}

impl<'a> Context<'a> {
    pub fn new(registry: &'a mut Registry) -> Self {
        Self {
            registry,
            log_files: None,
        }
    }

    /// The shared log-file families; registered by whichever collector
    /// asks first.
    pub fn log_files(&mut self) -> LogFiles {
        self.log_files
            .get_or_insert_with(|| {
                let shared = LogFiles {
                    parse_errors: Family::default(),
                    readable: Family::default(),
                };
                let log = self.registry.sub_registry_with_prefix("log");
                log.register(
                    "parse_errors",
                    "Log lines skipped because they could not be parsed (access lines, chat events)",
                    shared.parse_errors.clone(),
                );
                log.register(
                    "file_readable",
                    "1 if the path holds a regular file the exporter can read, else 0 (missing, unreadable, or a directory, FIFO, socket or device)",
                    shared.readable.clone(),
                );
                shared
            })
            .clone()
    }
}

/// A collector that could not start; the source is kept.
#[derive(Debug, thiserror::Error)]
#[error("{collector} collector: {source}")]
pub struct StartError {
    pub collector: &'static str,
    #[source]
    pub source: RefreshError,
}

impl StartError {
    pub fn new(
        collector: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            collector,
            source: Box::new(source),
        }
    }
}

/// The `file` label: a configured path, so its values are bounded.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FileLabels {
    pub file: String,
}

/// Why a collector could not read its values for this scrape. Each
/// collector's own `thiserror` enum is boxed into this at the boundary.
pub type RefreshError = Box<dyn std::error::Error + Send + Sync>;

/// A collector that the scrape path refreshes before encoding.
pub trait Source: Send + Sync {
    /// The `collector` label value and the `--collector.<name>` flag.
    fn name(&self) -> &'static str;

    /// Reads this scrape's values. Must not block the async runtime: blocking
    /// reads go to `spawn_blocking`. The caller bounds it with a timeout.
    fn refresh(&self) -> BoxFuture<'_, Result<(), RefreshError>>;

    /// Forgets the last values after a failed or timed-out refresh, so that
    /// no stale series is exported.
    fn clear(&self);

    /// A live round trip to the service it watches, for the daily check's
    /// `/health/db` and `/health/redis`; `None` when it watches no service.
    fn ping(&self, _timeout: Duration) -> Option<BoxFuture<'_, Result<Duration, PingError>>> {
        None
    }

    /// Stops background work at shutdown.
    fn stop(&self) {}
}
