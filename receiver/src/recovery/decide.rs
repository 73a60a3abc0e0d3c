//! The decision flow of one (action, alert): the local busy flag, the
//! shared run lock, the cooldown and hourly cap, the audit row (no row, no
//! run), the run, its result, and the outcome notice. Every way out is a
//! [`Decision`], counted and audited.

use std::sync::Arc;
use std::time::Instant;

use super::busy::{BusyGuard, Take};
use super::coordination::Admission;
pub(super) use super::share::Share;
use super::{alertname, Action, Decision, Recovery, DECISION_BUDGET};
use crate::payload::Alert;
use crate::store::{now_ms, AuditRecord, IntFlag};

impl Recovery {
    async fn record_skip(
        &self,
        action: &Action,
        alert: &Alert,
        post: Share,
        dry_run: bool,
        skip: Decision,
        detail: Option<String>,
    ) {
        let now = now_ms();
        self.count(&action.name, skip);
        tracing::info!(action = %action.name, alert = alert.labels.get("alertname").map(String::as_str).unwrap_or(""), fingerprint = %alert.fingerprint, decision = skip.as_str(), covers = post.covers, "recovery action skipped");
        let detail = post.note(detail);
        let record = AuditRecord {
            id: 0,
            action: action.name.clone(),
            kind: action.config.effect.kind().into(),
            alertname: alertname(alert),
            fingerprint: alert.fingerprint.clone(),
            result: skip.as_str().into(),
            dry_run: IntFlag(dry_run),
            started_ms: now,
            finished_ms: Some(now),
            exit_status: None,
            output: String::new(),
            detail,
        };
        if let Err(e) = self.store.audit_insert(&record).await {
            tracing::error!(action = %action.name, error = %e, "cannot write the recovery audit");
        }
    }

    /// What one run lock, cooldown and busy mark cover: the action, or
    /// the action on one instance when each instance is its own target
    /// (`recovery.instance`, or an `http` action's `url_by_instance`), so
    /// that host-a's restart does not hold back host-b's.
    pub(super) fn scope(&self, action: &Action, alert: &Alert) -> String {
        let mut scope = if self.instance.is_some() || action.effect.per_instance() {
            let instance = alert
                .labels
                .get("instance")
                .map(String::as_str)
                .unwrap_or("");
            format!("{}@{instance}", action.name)
        } else {
            action.name.clone()
        };
        for label in &action.config.scope_labels {
            let value = alert.labels.get(label).map(String::as_str).unwrap_or("");
            // Bounded: the scope is a key in the store and in Redis. Two
            // values alike in their first 64 characters share a scope,
            // which can only hold a run back.
            let value: String = value.chars().take(64).collect();
            scope.push_str(&format!("#{label}={value}"));
        }
        scope
    }

    pub(super) async fn decide_and_run(&self, name: &str, alert: &Alert, post: Share) {
        let Some(action) = self.actions.get(name).cloned() else {
            return;
        };
        let dry_run = self.dry_run || action.config.dry_run;
        // Another host's alert: recorded, never run here.
        let not_ours = match &self.instance {
            Some(m) if !m.matches(&alert.labels) => Some(format!(
                "the alert's instance {:?} does not match recovery.instance {m}",
                alert
                    .labels
                    .get("instance")
                    .map(String::as_str)
                    .unwrap_or("")
            )),
            _ => action.effect.serves(alert).err().map(|e| e.to_string()),
        };
        if let Some(detail) = not_ours {
            return self
                .record_skip(
                    &action,
                    alert,
                    post,
                    dry_run,
                    Decision::SkippedOtherInstance,
                    Some(detail),
                )
                .await;
        }
        if let Some(detail) = label_mismatch(&action.config, alert) {
            return self
                .record_skip(
                    &action,
                    alert,
                    post,
                    dry_run,
                    Decision::SkippedLabelMismatch,
                    Some(detail),
                )
                .await;
        }
        let scope = self.scope(&action, alert);
        let busy = match action.busy.take(&scope, DECISION_BUDGET).await {
            Take::Taken(guard) => guard,
            Take::Running => {
                return self
                    .record_skip(
                        &action,
                        alert,
                        post,
                        dry_run,
                        Decision::SkippedRunning,
                        None,
                    )
                    .await
            }
            Take::StillDeciding => {
                return self
                    .record_skip(
                        &action,
                        alert,
                        post,
                        dry_run,
                        Decision::SkippedUnavailable,
                        Some(
                            "another decision for this scope is still waiting for the store".into(),
                        ),
                    )
                    .await
            }
        };
        // The run must start by then: the lock taken below lives for the
        // budget plus the longest run.
        let start_by = Instant::now() + DECISION_BUDGET;
        // Across replicas too: the shared lock (a dry run runs nothing).
        let lock = if dry_run {
            None
        } else {
            match self.coordinator.lock(&scope, action.longest_run()).await {
                Ok(Some(lock)) => Some(lock),
                Ok(None) => {
                    return self
                        .record_skip(
                            &action,
                            alert,
                            post,
                            dry_run,
                            Decision::SkippedRunning,
                            Some("running in another replica".into()),
                        )
                        .await
                }
                Err(e) => {
                    tracing::error!(action = %name, backend = self.coordinator.backend(), error = %e, "cannot take the recovery run lock; not running");
                    return self
                        .record_skip(
                            &action,
                            alert,
                            post,
                            dry_run,
                            Decision::SkippedUnavailable,
                            Some(e.to_string()),
                        )
                        .await;
                }
            }
        };
        self.gate_and_run(&action, &busy, alert, post, dry_run, start_by)
            .await;
        if let Some(lock) = lock {
            self.coordinator.release(lock).await;
        }
    }

    /// Past the run lock: the cooldown and hourly cap, then the run.
    async fn gate_and_run(
        &self,
        action: &Arc<Action>,
        busy: &BusyGuard<'_>,
        alert: &Alert,
        post: Share,
        dry_run: bool,
        start_by: Instant,
    ) {
        let name = action.name.as_str();
        let scope = busy.scope();
        match self
            .coordinator
            .admit(
                name,
                scope,
                dry_run,
                action.config.cooldown,
                action.config.max_runs_per_hour,
            )
            .await
        {
            Ok(Admission::Granted) => busy.running(),
            Ok(Admission::Cooldown) => {
                return self
                    .record_skip(
                        action,
                        alert,
                        post,
                        dry_run,
                        Decision::SkippedCooldown,
                        None,
                    )
                    .await
            }
            Ok(Admission::RateLimited) => {
                let detail = format!("{} runs in the last hour", action.config.max_runs_per_hour);
                return self
                    .record_skip(
                        action,
                        alert,
                        post,
                        dry_run,
                        Decision::SkippedRateLimit,
                        Some(detail),
                    )
                    .await;
            }
            Err(e) => {
                tracing::error!(action = %name, backend = self.coordinator.backend(), error = %e, "cannot check the recovery cooldown; not running");
                return self
                    .record_skip(
                        action,
                        alert,
                        post,
                        dry_run,
                        Decision::SkippedUnavailable,
                        Some(e.to_string()),
                    )
                    .await;
            }
        }
        let mut record = AuditRecord {
            id: 0,
            action: name.to_string(),
            kind: action.config.effect.kind().into(),
            alertname: alertname(alert),
            fingerprint: alert.fingerprint.clone(),
            result: if dry_run {
                Decision::DryRun
            } else {
                Decision::Running
            }
            .as_str()
            .into(),
            dry_run: IntFlag(dry_run),
            started_ms: now_ms(),
            finished_ms: None,
            exit_status: None,
            output: String::new(),
            detail: dry_run.then(|| {
                format!(
                    "dry run: the {} action was not run",
                    action.config.effect.kind()
                )
            }),
        };
        record.detail = post.note(record.detail);
        if dry_run {
            record.finished_ms = Some(record.started_ms);
        }
        // The audit first: a run that cannot be recorded does not happen.
        record.id = match self.store.audit_insert(&record).await {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(action = %name, error = %e, "cannot write the recovery audit; not running");
                self.count(name, Decision::SkippedUnavailable);
                return;
            }
        };
        if !dry_run && Instant::now() > start_by {
            // The store was too slow to decide: running now could outlive
            // the run lock and overlap another replica's run.
            tracing::error!(action = %name, "the recovery decision took longer than the run lock allows; not running");
            self.count(name, Decision::SkippedUnavailable);
            record.result = Decision::SkippedUnavailable.as_str().into();
            record.finished_ms = Some(now_ms());
            record.detail = Some("the store was too slow to decide within the run lock".into());
            if let Err(e) = self.store.audit_finish(&record).await {
                tracing::error!(action = %name, error = %e, "cannot write the recovery audit");
            }
            return;
        }
        if dry_run {
            self.count(name, Decision::DryRun);
            tracing::info!(action = %name, alert = %record.alertname, fingerprint = %alert.fingerprint, "recovery action: dry run");
            self.notify(&record, alert, post.went, None).await;
            return;
        }
        tracing::info!(action = %name, kind = record.kind, alert = %record.alertname, fingerprint = %alert.fingerprint, "recovery action started");
        let started = Instant::now();
        let outcome = self.execute(action, alert).await;
        let took = started.elapsed();
        self.metrics
            .recovery_duration
            .get_or_create(&crate::metrics::ActionNameLabels {
                action: name.to_string(),
            })
            .observe(took.as_secs_f64());
        record.result = outcome.result.as_str().into();
        record.finished_ms = Some(now_ms());
        record.exit_status = outcome.exit_status;
        record.output = outcome.output;
        record.detail = post.note(outcome.detail);
        self.count(name, outcome.result);
        if outcome.result == Decision::Succeeded {
            tracing::info!(action = %name, took = ?took, exit_status = ?record.exit_status, "recovery action succeeded");
        } else {
            tracing::warn!(action = %name, result = %record.result, took = ?took, exit_status = ?record.exit_status, detail = record.detail.as_deref().unwrap_or(""), "recovery action did not succeed");
        }
        if let Err(e) = self.store.audit_finish(&record).await {
            tracing::error!(action = %name, error = %e, "cannot write the recovery audit");
        }
        self.notify(&record, alert, post.went, Some(took)).await;
    }
}

/// Why the alert does not carry what the action requires, if it does not.
/// The value itself is not repeated: it came from outside.
fn label_mismatch(config: &super::ActionConfig, alert: &Alert) -> Option<String> {
    config
        .require_labels
        .iter()
        .find_map(|(label, re)| match alert.labels.get(label) {
            None => Some(format!("the alert has no {label} label (require_labels)")),
            Some(v) if !re.is_match(v) => Some(format!(
                "the alert's {label} ({} characters) does not match require_labels.{label}",
                v.chars().count()
            )),
            Some(_) => None,
        })
}
