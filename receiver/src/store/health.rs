//! Whether the store can take a write, as `/health`, the
//! `llmchat_receiver_store_writable` gauge and the logs tell it, and the
//! count of store errors by kind.
//!
//! The truth comes from real writes of the accept path: every outbox
//! insert sets it, and when no insert was tried for a second a heartbeat
//! write (a row with a 16 KiB payload, about what a post stores) stands in
//! for one. A read proves nothing about a full disk, and a tiny write can
//! still fit where a post cannot. The state is logged when it changes,
//! never once per failed request.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use sqlx::{AnyPool, Executor};

use super::{now_ms, ErrorKind, StoreError};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreErrorLabels {
    pub kind: &'static str,
}

/// The store's metrics; registered by [`crate::metrics::Metrics`].
#[derive(Clone, Default)]
pub struct StoreMetrics {
    pub writable: Gauge,
    pub errors: Family<StoreErrorLabels, Counter>,
}

/// How often the heartbeat writes while no insert is tried.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// The heartbeat's payload: a post of a few alerts to three channels.
const PAD_BYTES: usize = 16 * 1024;

pub struct StoreHealth {
    metrics: StoreMetrics,
    writable: AtomicBool,
    /// When the accept path last tried a write (ms since the epoch).
    last_attempt_ms: AtomicI64,
    sqlite: bool,
    pool: AnyPool,
}

impl StoreHealth {
    pub(super) fn new(metrics: StoreMetrics, sqlite: bool, pool: AnyPool) -> Self {
        for kind in ErrorKind::ALL {
            metrics
                .errors
                .get_or_create(&StoreErrorLabels {
                    kind: kind.as_str(),
                })
                .inc_by(0);
        }
        metrics.writable.set(1);
        StoreHealth {
            metrics,
            writable: AtomicBool::new(true),
            last_attempt_ms: AtomicI64::new(0),
            sqlite,
            pool,
        }
    }

    pub fn writable(&self) -> bool {
        self.writable.load(Ordering::Acquire)
    }

    /// Counts a failed statement by kind and wraps it.
    pub(super) fn error(&self, source: sqlx::Error) -> StoreError {
        let kind = ErrorKind::of(&source, self.sqlite);
        self.metrics
            .errors
            .get_or_create(&StoreErrorLabels {
                kind: kind.as_str(),
            })
            .inc();
        StoreError::Query { kind, source }
    }

    /// Records the outcome of a write of the accept path.
    pub(super) fn wrote(&self, outcome: Result<(), &StoreError>) {
        self.last_attempt_ms.store(now_ms(), Ordering::Release);
        let ok = outcome.is_ok();
        self.metrics.writable.set(i64::from(ok));
        if self.writable.swap(ok, Ordering::AcqRel) == ok {
            return;
        }
        match outcome {
            Err(e) => tracing::error!(
                kind = e.kind().as_str(),
                error = %e,
                "the store cannot take writes; webhooks get 503 and /health 503 until it can"
            ),
            Ok(()) => {
                tracing::info!("the store takes writes again");
                if self.sqlite {
                    // A full disk may have left a long WAL that could not be
                    // checkpointed; fold it back and truncate it now.
                    let pool = self.pool.clone();
                    tokio::spawn(async move {
                        if let Err(e) = pool.execute("PRAGMA wal_checkpoint(TRUNCATE)").await {
                            tracing::warn!(error = %e, "WAL checkpoint after recovery failed; SQLite retries on its own");
                        }
                    });
                }
            }
        }
    }

    /// One heartbeat write, recorded as the accept path's latest outcome.
    pub(super) async fn probe(&self) {
        let pad: String = std::iter::repeat_with(fastrand::alphanumeric)
            .take(PAD_BYTES)
            .collect();
        let result = sqlx::query(
            "INSERT INTO receiver_probe (k, at_ms, pad) VALUES ('health', $1, $2) \
             ON CONFLICT (k) DO UPDATE SET at_ms = excluded.at_ms, pad = excluded.pad",
        )
        .bind(now_ms())
        .bind(pad)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => self.wrote(Ok(())),
            Err(e) => {
                let e = self.error(e);
                self.wrote(Err(&e));
            }
        }
    }

    /// Probes once a second unless an insert was tried within the second.
    pub(super) async fn heartbeat(self: Arc<Self>) {
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let idle = now_ms() - self.last_attempt_ms.load(Ordering::Acquire);
            if idle >= HEARTBEAT.as_millis() as i64 {
                self.probe().await;
            }
        }
    }
}
