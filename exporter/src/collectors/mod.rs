//! The collectors. Each one is a [`Source`] that reads fresh values on each
//! scrape (or, for logs, keeps counters that a background tailer feeds) and
//! a `prometheus_client` [`Collector`](prometheus_client::collector::Collector)
//! that encodes what the last read found.

pub mod access;
pub mod app;
pub mod backup;
pub mod chat;
pub mod database;
pub mod encode;
pub mod host;
pub mod logs;
pub mod redis;
pub mod snapshot;

use futures_util::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;

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

    /// Stops background work at shutdown.
    fn stop(&self) {}
}
