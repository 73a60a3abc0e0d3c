//! The maintenance loop: closes the audit records of runs that cannot
//! still be going (their receiver stopped) as `abandoned`, and forgets old
//! records.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Decision, Recovery};
use crate::metrics::ActionLabels;
use crate::store::now_ms;

/// How long audit records are kept.
const AUDIT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

impl Recovery {
    /// Every minute, closes the audit records of runs that cannot still be
    /// going (older than their action's longest run: the receiver running
    /// them stopped), as `abandoned`; hourly, forgets old records.
    pub async fn maintain(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut last_purge: Option<Instant> = None;
        loop {
            for action in self.actions.values() {
                let before = now_ms() - action.longest_run().as_millis() as i64;
                match self.store.audit_abandon(&action.name, before).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::warn!(action = %action.name, runs = n, "recovery runs interrupted by a stop recorded as abandoned");
                        self.metrics
                            .recovery_actions
                            .get_or_create(&ActionLabels {
                                action: action.name.clone(),
                                result: Decision::Abandoned.as_str().into(),
                            })
                            .inc_by(n);
                    }
                    Err(e) => tracing::warn!(error = %e, "recovery audit update failed"),
                }
            }
            if last_purge.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
                let cutoff = now_ms() - AUDIT_RETENTION.as_millis() as i64;
                if let Err(e) = self.store.purge_audit(cutoff).await {
                    tracing::warn!(error = %e, "recovery audit purge failed");
                }
                last_purge = Some(Instant::now());
            }
            tokio::select! {
                _ = tokio::time::sleep(self.maintenance_interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
