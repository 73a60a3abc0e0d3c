//! Auto-recovery, the guide's `attemptAutoRecovery`: a firing alert that
//! matches a trigger runs the configured actions, in the background (the
//! webhook answers at once). Every decision goes through the same gate and
//! lands in the audit and in `llmchat_receiver_recovery_actions_total`:
//! one run of an action at a time (`skipped_running`), the hourly cap
//! (`skipped_rate_limit`), the cooldown (`skipped_cooldown`), dry run
//! (`dry_run`), a gate that cannot decide (`skipped_unavailable`), then the
//! run's own end (`succeeded`, `failed`, `timed_out`, `cancelled`). Runs
//! and dry runs are notified as `info` events through the outbox.

mod busy;
pub mod command;
pub mod config;
pub mod coordination;
mod decide;

pub mod effect;
pub mod http_action;
mod maintenance;
pub mod matcher;
mod notice;
pub mod redis_cleanup;
mod share;
pub mod signal;

use llmchat_common::lock;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use self::config::{ActionConfig, RecoveryConfig, Trigger};
use self::coordination::Coordinator;
use crate::channels::{ChannelSet, Senders};
pub use crate::decision::Decision;

use crate::metrics::{ActionLabels, Metrics};
use crate::payload::{Alert, Status};
use crate::store::Store;

/// How much of an action's output the audit keeps.
pub const OUTPUT_LIMIT: usize = 4096;

/// The alertname of the notice that reports a recovery outcome.
pub const NOTICE_ALERTNAME: &str = "LLMChatRecoveryAction";

/// How one run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub result: Decision,
    /// The exit code (128+signal when killed), or the HTTP status.
    pub exit_status: Option<i64>,
    pub output: String,
    pub detail: Option<String>,
}

/// Output bytes as text, cut to [`OUTPUT_LIMIT`] on a character boundary.
pub fn output_text(bytes: &[u8]) -> String {
    let mut cut = bytes.len().min(OUTPUT_LIMIT);
    if cut < bytes.len() {
        // Back off to the start of a UTF-8 sequence (not a continuation
        // byte), so the cut never splits a character into U+FFFD.
        while cut > 0 && (bytes[cut] & 0b1100_0000) == 0b1000_0000 {
            cut -= 1;
        }
    }
    let mut s = String::from_utf8_lossy(&bytes[..cut]).into_owned();
    while s.len() > OUTPUT_LIMIT {
        s.pop();
    }
    s
}

/// One configured action and its run-at-a-time flag.
struct Action {
    name: String,
    /// Cooldown, cap, dry run; what it does is in `effect`.
    config: ActionConfig,
    effect: Box<dyn effect::Effect>,
    /// The scopes (see [`Recovery::scope`]) with a decision or a run
    /// under way here.
    busy: busy::Scopes,
}

impl Action {
    /// The longest one run can take: the run lock's lifetime, after which
    /// a crashed holder's lock is taken over.
    fn longest_run(&self) -> Duration {
        DECISION_BUDGET + self.effect.longest_run()
    }
}

/// How long the decision after the run lock (cooldown, cap, audit row)
/// may take before the run starts. Part of the lock's lifetime, so a run
/// that starts at all ends before its lock expires, however slow a faulty
/// store made the decision.
const DECISION_BUDGET: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("recovery.actions.{name}.{kind}: {source}")]
    Effect {
        name: String,
        kind: &'static str,
        #[source]
        source: effect::BuildError,
    },
    #[error("recovery.redis_url: {0}")]
    Coordination(#[from] coordination::CoordinationError),
}

pub struct Recovery {
    actions: BTreeMap<String, Arc<Action>>,
    triggers: Vec<Trigger>,
    dry_run: bool,
    coordinator: Coordinator,
    store: Arc<Store>,
    senders: Arc<Senders>,
    metrics: Arc<Metrics>,
    wake: Arc<tokio::sync::Notify>,
    /// How often interrupted runs are looked for.
    maintenance_interval: Duration,
    /// `recovery.instance`: the instance(s) this receiver acts for.
    instance: Option<matcher::Matcher>,
    /// Running commands that cancel when their alert resolves, by
    /// (action, fingerprint).
    cancellable: Mutex<HashMap<(String, String), tokio::sync::watch::Sender<bool>>>,
}

impl Recovery {
    pub fn new(
        config: &RecoveryConfig,
        store: Arc<Store>,
        senders: Arc<Senders>,
        metrics: Arc<Metrics>,
        wake: Arc<tokio::sync::Notify>,
    ) -> Result<Self, RecoveryError> {
        let mut actions = BTreeMap::new();
        for (name, c) in &config.actions {
            let effect = c
                .effect
                .spec()
                .build(config)
                .map_err(|source| RecoveryError::Effect {
                    name: name.clone(),
                    kind: c.effect.kind(),
                    source,
                })?;
            actions.insert(
                name.clone(),
                Arc::new(Action {
                    name: name.clone(),
                    config: c.clone(),
                    effect,
                    busy: busy::Scopes::default(),
                }),
            );
        }
        // Every (action, result) starts at 0: a counter that appears only
        // with its first increment hides that increment from increase().
        for name in actions.keys() {
            for result in Decision::FINAL {
                metrics
                    .recovery_actions
                    .get_or_create(&ActionLabels {
                        action: name.clone(),
                        result: result.as_str().to_string(),
                    })
                    .inc_by(0);
            }
        }
        Ok(Recovery {
            actions,
            triggers: config.effective_triggers(),
            dry_run: config.dry_run,
            coordinator: Coordinator::new(config.redis_url.as_deref(), store.clone())?,
            store,
            senders,
            metrics,
            wake,
            maintenance_interval: config.maintenance_interval,
            instance: config.instance.clone(),
            cancellable: Mutex::new(HashMap::new()),
        })
    }

    /// The actions an alert's labels select, each once, in trigger order.
    pub fn actions_for(&self, labels: &BTreeMap<String, String>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in &self.triggers {
            if t.matchers.iter().all(|m| m.matches(labels)) {
                for a in &t.actions {
                    if !out.contains(a) && self.actions.contains_key(a) {
                        out.push(a.clone());
                    }
                }
            }
        }
        out
    }

    /// Starts what a post's alerts call for and returns at once: firing
    /// alerts run their actions, one decision per (action, scope) however
    /// many alerts of the post call for it; a resolved alert cancels its
    /// running commands that asked for it. Each alert comes with the
    /// channels it went to, where the outcome may follow it.
    pub fn on_post(self: &Arc<Self>, alerts: &[(&Alert, ChannelSet)]) {
        let mut decisions: BTreeMap<(String, String), (Alert, share::Share)> = BTreeMap::new();
        for (alert, went) in alerts {
            let names = self.actions_for(&alert.labels);
            if names.is_empty() {
                continue;
            }
            match alert.status {
                Status::Resolved => {
                    let map = lock(&self.cancellable);
                    for name in names {
                        if let Some(tx) = map.get(&(name, alert.fingerprint.clone())) {
                            let _ = tx.send(true);
                        }
                    }
                }
                Status::Firing => {
                    for name in names {
                        let Some(action) = self.actions.get(&name) else {
                            continue;
                        };
                        let scope = self.scope(action, alert);
                        decisions
                            .entry((name, scope))
                            .and_modify(|(_, share)| {
                                share.covers += 1;
                                share.went = share.went.union(*went);
                            })
                            .or_insert_with(|| ((*alert).clone(), share::Share::one(*went)));
                    }
                }
            }
        }
        for ((name, _), (alert, share)) in decisions {
            let this = self.clone();
            tokio::spawn(async move { this.decide_and_run(&name, &alert, share).await });
        }
    }

    fn count(&self, action: &str, result: Decision) {
        self.metrics
            .recovery_actions
            .get_or_create(&ActionLabels {
                action: action.to_string(),
                result: result.as_str().to_string(),
            })
            .inc();
    }

    async fn execute(&self, action: &Action, alert: &Alert) -> Outcome {
        let (tx, cancel) = tokio::sync::watch::channel(false);
        let key = (action.name.clone(), alert.fingerprint.clone());
        if action.config.cancel_on_resolve {
            lock(&self.cancellable).insert(key.clone(), tx);
        }
        let outcome = action
            .effect
            .run(effect::RunContext {
                action: &action.name,
                alert,
                cancel,
            })
            .await;
        if action.config.cancel_on_resolve {
            lock(&self.cancellable).remove(&key);
        }
        outcome
    }

    /// The configuration as `GET /actions` shows it: names, kinds and
    /// limits, but no argv, URL, header or pattern (they may hold secrets).
    pub fn describe(&self) -> serde_json::Value {
        let actions: Vec<serde_json::Value> = self
            .actions
            .values()
            .map(|a| {
                json!({
                    "name": a.name,
                    "kind": a.config.effect.kind(),
                    "cooldown_seconds": a.config.cooldown.as_secs_f64(),
                    "max_runs_per_hour": a.config.max_runs_per_hour,
                    "dry_run": self.dry_run || a.config.dry_run,
                    "cancel_on_resolve": a.config.cancel_on_resolve,
                    "running": a.busy.any_running(),
                })
            })
            .collect();
        let triggers: Vec<serde_json::Value> = self
            .triggers
            .iter()
            .map(|t| {
                json!({
                    "matchers": t.matchers.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
                    "actions": t.actions,
                })
            })
            .collect();
        json!({
            "dry_run": self.dry_run,
            "instance": self.instance.as_ref().map(|m| m.to_string()),
            "cooldown_backend": self.coordinator.backend(),
            "actions": actions,
            "triggers": triggers,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

fn alertname(alert: &Alert) -> String {
    alert
        .labels
        .get("alertname")
        .cloned()
        .unwrap_or_else(|| "unnamed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_cut_at_four_kib_on_a_character_boundary() {
        // "a" first: the 4096-byte mark falls inside an "é" (2 bytes).
        let input = format!("a{}", "é".repeat(5000));
        let text = output_text(input.as_bytes());
        assert!(text.len() <= OUTPUT_LIMIT && text.len() >= OUTPUT_LIMIT - 1);
        assert!(!text.contains('\u{fffd}'), "a character was split");
        assert!(input.starts_with(&text));
        // Invalid bytes of the command's own still show as U+FFFD.
        assert_eq!(output_text(b"ok\xff"), "ok\u{fffd}");
    }
}
