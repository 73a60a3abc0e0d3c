//! The collectors, and the one table that lists them.
//!
//! Each collector is a module that owns its config section (serde, with
//! its defaults), its flags (`clap::Args`, flattened into the CLI by
//! [`crate::config`]), and its registration: its `ENTRY` says its name,
//! whether it runs by default, and how it starts. [`ALL`] lists the
//! entries; the `--[no-]collector.<name>` flags, the `[collectors]` TOML
//! keys and the enabled list all come from it.
//!
//! A started collector is a [`Source`] that reads fresh values on each
//! scrape (or, for logs, keeps counters a background tailer feeds) and a
//! `prometheus_client` [`Collector`](prometheus_client::collector::Collector)
//! registered in a sub-registry under its own prefix.

pub mod app;
pub mod background;
pub mod backup;
pub mod backup_check;
pub mod backup_drill;
pub mod database;
pub mod encode;
pub mod host;
pub mod pg_custom_dump;
pub mod redis;
pub mod snapshot;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// Every collector, in exposition order. Adding a collector is its module
/// and one line here.
pub const ALL: &[Entry] = &[
    host::ENTRY,
    crate::logs::app::ENTRY,
    crate::logs::chat::ENTRY,
    crate::logs::access::ENTRY,
    database::ENTRY,
    redis::ENTRY,
    app::ENTRY,
    backup::ENTRY,
];

/// One line of the collector table.
pub struct Entry {
    /// The `collector` label, the `--collector.<name>` flag, the
    /// `collectors.<name>` key.
    pub name: &'static str,
    /// Which `--role` runs it by default.
    pub role: Role,
    pub enabled_by_default: bool,
    /// What it reads, for `--help`.
    pub help: &'static str,
    /// Registers its metrics and starts it. `None`: it has no per-scrape
    /// work of its own (chat events ride on the logs collector's tailer).
    pub start: StartFn,
}

pub type StartFn = fn(&Config, &mut Context<'_>) -> Result<Option<Arc<dyn Source>>, StartError>;

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

/// The entry named `name`.
pub fn entry(name: &str) -> Option<&'static Entry> {
    ALL.iter().find(|e| e.name == name)
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

/// `[collectors]`: which collectors run, `name = true|false`. The names are
/// the table's; an unknown name is refused by [`CollectorsConfig::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CollectorsConfig(BTreeMap<String, bool>);

impl Default for CollectorsConfig {
    fn default() -> Self {
        Self(
            ALL.iter()
                .map(|e| (e.name.to_string(), e.enabled_by_default))
                .collect(),
        )
    }
}

impl CollectorsConfig {
    /// The defaults of a role: those on by default that the role runs.
    pub fn for_role(role: Role) -> Self {
        Self(
            ALL.iter()
                .map(|e| {
                    let runs = role == Role::All || e.role == role;
                    (e.name.to_string(), e.enabled_by_default && runs)
                })
                .collect(),
        )
    }

    /// Every collector off: the defaults under `--collector.disable-defaults`.
    pub fn none() -> Self {
        Self(ALL.iter().map(|e| (e.name.to_string(), false)).collect())
    }

    pub fn is_enabled(&self, name: &str) -> bool {
        self.0.get(name).copied().unwrap_or(false)
    }

    pub fn set(&mut self, name: &str, on: bool) {
        self.0.insert(name.to_string(), on);
    }

    /// Names of the enabled collectors, in table order.
    pub fn enabled(&self) -> Vec<&'static str> {
        ALL.iter()
            .filter(|e| self.is_enabled(e.name))
            .map(|e| e.name)
            .collect()
    }

    pub fn validate(&self) -> Result<(), llmchat_common::ConfigError> {
        for name in self.0.keys() {
            if entry(name).is_none() {
                let known: Vec<_> = ALL.iter().map(|e| e.name).collect();
                return Err(llmchat_common::invalid(
                    format!("collectors.{name}"),
                    name,
                    format!("no such collector (known: {})", known.join(", ")),
                ));
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_unique_names_and_every_default_is_known() {
        let mut names: Vec<_> = ALL.iter().map(|e| e.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        CollectorsConfig::default().validate().unwrap();
        let mut c = CollectorsConfig::none();
        c.set("backup", true);
        assert_eq!(c.enabled(), vec!["backup"]);
        c.set("nope", true);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("collectors.nope") && e.contains("backup"), "{e}");
    }
}
