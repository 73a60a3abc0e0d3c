//! The extension point of recovery: an action kind. Each kind is one
//! module holding its spec (its `[recovery.actions.<name>.<kind>]` table),
//! its checks ([`Spec`]) and what it does ([`Effect`]); `config.rs` lists
//! the kinds once, in `effect_kinds!`.

use std::time::Duration;

use futures_util::future::BoxFuture;

use super::config::RecoveryConfig;
use super::{Decision, Outcome};
use crate::payload::Alert;

/// A kind's setting that cannot work, said with its key within the action
/// (`command.timeout must be above zero`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSpec(pub String);

/// Why an action cannot act for an alert (audited as
/// `skipped_other_instance`).
#[derive(Debug, thiserror::Error)]
pub enum NotServed {
    #[error("no URL for instance {0:?} in http.url_by_instance")]
    NoUrlForInstance(String),
}

/// A kind's configuration.
pub trait Spec {
    /// Checks beyond what serde checked; the reason names the key within
    /// the action (`command.argv needs ...`).
    fn check(&self, recovery: &RecoveryConfig) -> Result<(), InvalidSpec>;

    /// What runs, resolved once at start-up.
    fn build(&self, recovery: &RecoveryConfig) -> Result<Box<dyn Effect>, BuildError>;

    /// Whether a run can be stopped when its alert resolves
    /// (`cancel_on_resolve`).
    fn cancellable(&self) -> bool {
        false
    }
}

/// Why a kind could not be resolved at start-up; the source is kept.
pub type BuildError = Box<dyn std::error::Error + Send + Sync>;

/// What one run gets.
pub struct RunContext<'a> {
    /// The action's name (`LLMCHAT_ACTION` for commands).
    pub action: &'a str,
    pub alert: &'a Alert,
    /// Turns true when the alert resolves, for cancellable kinds.
    pub cancel: tokio::sync::watch::Receiver<bool>,
}

/// What an action does.
pub trait Effect: Send + Sync {
    /// The longest one run can take; with the decision budget, the run
    /// lock's lifetime.
    fn longest_run(&self) -> Duration;

    /// Runs once. Never fails: a failure is an [`Outcome`] to audit.
    fn run<'a>(&'a self, ctx: RunContext<'a>) -> BoxFuture<'a, Outcome>;

    /// Whether it can act for this alert at all (an `http` action with
    /// `url_by_instance` has no URL for an unknown instance); the reason
    /// when not, audited as `skipped_other_instance`.
    fn serves(&self, _alert: &Alert) -> Result<(), NotServed> {
        Ok(())
    }

    /// Whether each instance is a separate target (its own run lock and
    /// cooldown).
    fn per_instance(&self) -> bool {
        false
    }
}

/// The outcome of a run that failed before or while acting.
pub fn failed(detail: impl std::fmt::Display) -> Outcome {
    Outcome {
        result: Decision::Failed,
        exit_status: None,
        output: String::new(),
        detail: Some(detail.to_string()),
    }
}
