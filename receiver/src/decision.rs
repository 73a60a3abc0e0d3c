//! What became of one (action, alert) decision: one enum, from which the
//! audit's `result` column, the `result` label of
//! `llmchat_receiver_recovery_actions_total`, `/actions` and the SQL that
//! reads the audit all take their spelling.

/// The result of a decision. `Running` is the audit row's state while the
/// run lasts; every other variant is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
    DryRun,
    SkippedCooldown,
    SkippedRateLimit,
    SkippedRunning,
    SkippedUnavailable,
    /// The alert is for an instance this receiver does not act for
    /// (`recovery.instance`), or one the action has no target for.
    SkippedOtherInstance,
    /// A label the action requires (`require_labels`) is missing or does
    /// not match.
    SkippedLabelMismatch,
    /// The receiver stopped during the run (found by the maintenance loop).
    Abandoned,
}

impl Decision {
    /// Every final result: the metric's label values, each started at 0.
    pub const FINAL: [Decision; 12] = [
        Decision::Succeeded,
        Decision::Failed,
        Decision::TimedOut,
        Decision::Cancelled,
        Decision::DryRun,
        Decision::SkippedCooldown,
        Decision::SkippedRateLimit,
        Decision::SkippedRunning,
        Decision::SkippedUnavailable,
        Decision::SkippedOtherInstance,
        Decision::SkippedLabelMismatch,
        Decision::Abandoned,
    ];

    /// The results that count as a run for the cooldown and the hourly
    /// cap: anything that started the effect (or would have, dry).
    pub const RAN: [Decision; 7] = [
        Decision::Running,
        Decision::Succeeded,
        Decision::Failed,
        Decision::TimedOut,
        Decision::Cancelled,
        Decision::DryRun,
        Decision::Abandoned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Running => "running",
            Decision::Succeeded => "succeeded",
            Decision::Failed => "failed",
            Decision::TimedOut => "timed_out",
            Decision::Cancelled => "cancelled",
            Decision::DryRun => "dry_run",
            Decision::SkippedCooldown => "skipped_cooldown",
            Decision::SkippedRateLimit => "skipped_rate_limit",
            Decision::SkippedRunning => "skipped_running",
            Decision::SkippedUnavailable => "skipped_unavailable",
            Decision::SkippedOtherInstance => "skipped_other_instance",
            Decision::SkippedLabelMismatch => "skipped_label_mismatch",
            Decision::Abandoned => "abandoned",
        }
    }

    pub fn parse(s: &str) -> Option<Decision> {
        std::iter::once(Decision::Running)
            .chain(Decision::FINAL)
            .find(|d| d.as_str() == s)
    }

    /// `('a', 'b', ...)` for an SQL `IN`: the spelling comes from here,
    /// never from a literal in a query.
    pub fn sql_list(list: &[Decision]) -> String {
        let quoted: Vec<String> = list.iter().map(|d| format!("'{}'", d.as_str())).collect();
        format!("({})", quoted.join(", "))
    }
}

impl serde::Serialize for Decision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_parses_back() {
        for d in std::iter::once(Decision::Running).chain(Decision::FINAL) {
            assert_eq!(Decision::parse(d.as_str()), Some(d));
        }
        assert_eq!(Decision::parse("nope"), None);
        assert_eq!(
            Decision::sql_list(&[Decision::Running, Decision::DryRun]),
            "('running', 'dry_run')"
        );
    }
}
