//! The outcome of a run as a notice: an `info` event through the outbox
//! (retried and deduplicated like any notification), to the channels that
//! take every outcome (the webhook) and to those that reply where the
//! alert that triggered the run went (Slack), each channel's
//! `RECOVERY_OUTCOMES`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::Recovery;
use crate::channels::ChannelSet;
use crate::payload::{Notice, NoticeKind, Status};
use crate::store::{AuditRecord, NewNotification};

impl Recovery {
    /// The outcome as an `info` event: to the webhook, and to Slack when
    /// the alert that triggered it went there. Through the outbox, so it
    /// is retried and deduplicated like any notification. It carries the
    /// triggering alert's runbook, dashboard and graph links.
    pub(super) async fn notify(
        &self,
        r: &AuditRecord,
        trigger: &crate::payload::Alert,
        went: ChannelSet,
        took: Option<Duration>,
    ) {
        let summary = if *r.dry_run {
            format!(
                "Dry run: recovery action {} would run for {}",
                r.action, r.alertname
            )
        } else {
            format!(
                "Recovery action {} {} for {}",
                r.action, r.result, r.alertname
            )
        };
        let mut description = format!("Action {} ({}): {}.", r.action, r.kind, r.result);
        if let Some(t) = took {
            description.push_str(&format!(" Took {:.1}s.", t.as_secs_f64()));
        }
        if let Some(s) = r.exit_status {
            description.push_str(&format!(" Exit status {s}."));
        }
        if let Some(d) = &r.detail {
            description.push_str(&format!(" {d}."));
        }
        description.push_str(" Full output: GET /actions.");
        let labels = BTreeMap::from([
            ("alertname".to_string(), super::NOTICE_ALERTNAME.to_string()),
            ("severity".to_string(), "info".to_string()),
            ("action".to_string(), r.action.clone()),
            ("result".to_string(), r.result.clone()),
            ("trigger_alertname".to_string(), r.alertname.clone()),
            ("trigger_fingerprint".to_string(), r.fingerprint.clone()),
        ]);
        let notice = Notice {
            kind: NoticeKind::RecoveryOutcome,
            alertname: super::NOTICE_ALERTNAME.into(),
            status: Status::Firing,
            severity: "info".into(),
            summary,
            description,
            labels,
            annotations: trigger
                .annotations
                .iter()
                .filter(|(k, _)| {
                    matches!(k.as_str(), "runbook_url" | "dashboard" | "dashboard_panel")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            starts_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            ends_at: None,
            generator_url: trigger.generator_url.clone(),
            fingerprint: format!("recovery-{}", r.id),
            group_key: format!("recovery:{}", r.action),
            truncated_alerts: 0,
            external_url: String::new(),
        };
        let Ok(payload) =
            serde_json::to_string(&crate::payload::Delivery::one(notice.clone(), None))
        else {
            return;
        };
        let rows: Vec<NewNotification> = went
            .for_recovery_outcome()
            .into_iter()
            .filter(|c| self.senders.wants(*c, &notice))
            .map(|c| NewNotification {
                // The audit id is unique in the shared store.
                dedup_key: format!("recovery|{}|{}|{}", r.id, r.started_ms, c.as_str()),
                channel: c.as_str().into(),
                severity: "info".into(),
                status: "firing".into(),
                alertname: notice.alertname.clone(),
                payload: payload.clone(),
            })
            .collect();
        match self.store.insert(&rows).await {
            Ok(n) if n > 0 => self.wake.notify_one(),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(action = %r.action, error = %e, "cannot queue the recovery notification")
            }
        }
    }
}
