//! Reads whose cost grows with the data watched (row counts over big
//! tables, database sizes, key scans), kept off the scrape path.
//!
//! Each such read is a [`Job`]: it runs in a task of its own, right away and
//! then every `interval`, one run at a time, each bounded by its `timeout`
//! (and, for SQL, by the server's `statement_timeout` too). The scrape only
//! publishes the last value, and only while it is younger than three
//! intervals, so a read that stopped succeeding disappears instead of
//! lying. Every job reports the same series, under its collector's prefix:
//! `*_query_duration_seconds{query}`, `*_query_last_success_timestamp_seconds`,
//! `*_query_errors_total{query,reason}` (reason `timeout` or `error`) and
//! `*_query_interval_seconds`, and logs when it starts failing and when it
//! recovers, not on every run.

use llmchat_common::lock;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use llmchat_common::{duration, invalid, ConfigError};
use prometheus_client::registry::Unit;
use serde::{Deserialize, Serialize};

use super::snapshot::Snapshot;

/// A value older than this many intervals is not exported.
pub const FRESH_INTERVALS: u32 = 3;

/// How long past its own timeout a run may take before the task gives up
/// on it: the server-side timeout is meant to stop it first.
const CLIENT_GRACE: Duration = Duration::from_secs(1);

/// A background read's `{ interval = "30s", timeout = "10s" }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Schedule {
    /// Time from the start of one run to the start of the next.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// How long one run may take; the server stops it then.
    #[serde(with = "duration")]
    pub timeout: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::new(60, 10)
    }
}

impl Schedule {
    pub const fn new(interval_seconds: u64, timeout_seconds: u64) -> Self {
        Schedule {
            interval: Duration::from_secs(interval_seconds),
            timeout: Duration::from_secs(timeout_seconds),
        }
    }

    /// `key` is the TOML key the schedule sits under, for the message.
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if self.interval < Duration::from_secs(1) {
            return Err(invalid(
                format!("{key}.interval"),
                humantime::format_duration(self.interval),
                "must be at least 1s",
            ));
        }
        if self.timeout < Duration::from_millis(10) {
            return Err(invalid(
                format!("{key}.timeout"),
                humantime::format_duration(self.timeout),
                "must be at least 10ms",
            ));
        }
        Ok(())
    }
}

/// Why a run produced no value.
#[derive(Debug, thiserror::Error)]
pub enum BackgroundError {
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("the read failed")]
    Failed(#[source] super::RefreshError),
}

impl BackgroundError {
    /// The `reason` label.
    pub fn reason(&self) -> &'static str {
        match self {
            BackgroundError::Timeout(_) => "timeout",
            BackgroundError::Failed(_) => "error",
        }
    }
}

#[derive(Default)]
struct JobState {
    /// The last value read and when.
    value: Option<(Instant, Snapshot)>,
    last_duration: Option<f64>,
    last_success_unix: Option<f64>,
    timeouts: u64,
    errors: u64,
    /// The last run failed: a failure is logged when this turns on and a
    /// success when it turns off.
    failing: bool,
    /// Estimated rows of the largest sequential scan in the query's plan.
    plan_seq_scan_rows: Option<f64>,
}

/// One background read: its name (the `query` label), schedule and last
/// outcome.
pub struct Job {
    pub name: String,
    pub schedule: Schedule,
    state: Mutex<JobState>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("name", &self.name).finish()
    }
}

impl Job {
    pub fn new(name: impl Into<String>, schedule: Schedule) -> Arc<Job> {
        Arc::new(Job {
            name: name.into(),
            schedule,
            state: Mutex::new(JobState::default()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, JobState> {
        lock(&self.state)
    }

    /// The last value, unless it is [`FRESH_INTERVALS`] intervals old.
    pub fn fresh(&self) -> Option<Snapshot> {
        let state = self.state();
        let (at, value) = state.value.as_ref()?;
        (at.elapsed() < self.schedule.interval * FRESH_INTERVALS).then(|| value.clone())
    }

    /// Records one run's outcome.
    pub fn record(&self, outcome: Result<Snapshot, BackgroundError>, took: Duration) {
        let mut state = self.state();
        state.last_duration = Some(took.as_secs_f64());
        match outcome {
            Ok(value) => {
                state.value = Some((Instant::now(), value));
                state.last_success_unix = Some(unix_now());
                if state.failing {
                    tracing::info!(query = %self.name, "background query succeeded again");
                }
                state.failing = false;
            }
            Err(e) => {
                match e {
                    BackgroundError::Timeout(_) => state.timeouts += 1,
                    BackgroundError::Failed(_) => state.errors += 1,
                }
                if !state.failing {
                    tracing::warn!(
                        query = %self.name,
                        reason = e.reason(),
                        error = %llmchat_common::error_chain(&e),
                        "background query failed; its last value, if any, stays exported until it is {FRESH_INTERVALS} intervals old"
                    );
                } else {
                    tracing::debug!(query = %self.name, error = %llmchat_common::error_chain(&e), "background query failed again");
                }
                state.failing = true;
            }
        }
    }

    /// Records what the query's plan scans sequentially (see the database
    /// collector's plan check).
    pub fn set_plan_seq_scan_rows(&self, rows: f64) {
        self.state().plan_seq_scan_rows = Some(rows);
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A job's read: a fresh future per run.
pub type Read = Box<dyn Fn() -> BoxFuture<'static, Result<Snapshot, BackgroundError>> + Send>;

/// Runs `read` now and then every interval, one run at a time (a run that
/// overruns its interval delays the next instead of overlapping it), each
/// given up at its timeout plus a grace second.
pub fn spawn(job: Arc<Job>, read: Read) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(job.schedule.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let started = Instant::now();
            let bound = job.schedule.timeout + CLIENT_GRACE;
            let outcome = match tokio::time::timeout(bound, read()).await {
                Ok(outcome) => outcome,
                Err(_) => Err(BackgroundError::Timeout(job.schedule.timeout)),
            };
            job.record(outcome, started.elapsed());
        }
    })
}

/// The background tasks of one collector, stopped together.
#[derive(Default)]
pub struct Tasks(Mutex<Vec<tokio::task::JoinHandle<()>>>);

impl Tasks {
    pub fn push(&self, handle: tokio::task::JoinHandle<()>) {
        lock(&self.0).push(handle);
    }

    pub fn stop(&self) {
        for h in lock(&self.0).drain(..) {
            h.abort();
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Adds every job's fresh value to `s`.
pub fn add_fresh(s: &mut Snapshot, jobs: &[Arc<Job>]) {
    for job in jobs {
        if let Some(value) = job.fresh() {
            s.extend(value);
        }
    }
}

/// The jobs' own series, `query_*{query}` in the collector's sub-registry.
pub fn add_stats(s: &mut Snapshot, jobs: &[Arc<Job>]) {
    if jobs.is_empty() {
        return;
    }
    let states: Vec<_> = jobs
        .iter()
        .map(|j| {
            let st = j.state();
            (
                j,
                st.last_duration,
                st.last_success_unix,
                st.timeouts,
                st.errors,
                st.plan_seq_scan_rows,
            )
        })
        .collect();
    let mut f = s.gauge(
        "query_interval",
        "How often the background query runs.",
        Some(Unit::Seconds),
    );
    for (j, ..) in &states {
        f.sample(&[("query", &j.name)], j.schedule.interval.as_secs_f64());
    }
    let mut f = s.gauge(
        "query_duration",
        "How long the background query's latest run took, failed or not.",
        Some(Unit::Seconds),
    );
    for (j, took, ..) in &states {
        if let Some(v) = took {
            f.sample(&[("query", &j.name)], *v);
        }
    }
    let mut f = s.gauge(
        "query_last_success_timestamp",
        "When the background query last succeeded, Unix time; absent until it has.",
        Some(Unit::Seconds),
    );
    for (j, _, at, ..) in &states {
        if let Some(v) = at {
            f.sample(&[("query", &j.name)], *v);
        }
    }
    let mut f = s.counter(
        "query_errors",
        "Background query runs that failed, by reason: timeout (stopped at its timeout) or error.",
        None,
    );
    for (j, _, _, timeouts, errors, _) in &states {
        f.sample(
            &[("query", &j.name), ("reason", "timeout")],
            *timeouts as f64,
        );
        f.sample(&[("query", &j.name), ("reason", "error")], *errors as f64);
    }
    if states.iter().any(|s| s.5.is_some()) {
        let mut f = s.gauge(
            "query_plan_seq_scan_rows",
            "Rows the query's plan (EXPLAIN at start) expects to read by sequential scan, largest scan; 0 when it scans none.",
            None,
        );
        for (j, .., plan) in &states {
            if let Some(v) = plan {
                f.sample(&[("query", &j.name)], *v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(v: f64) -> Snapshot {
        let mut s = Snapshot::default();
        s.gauge("thing", "A thing.", None).value(v);
        s
    }

    #[test]
    fn a_value_is_exported_until_three_intervals_old() {
        let job = Job::new("q", Schedule::new(1, 1));
        assert!(job.fresh().is_none(), "nothing before the first run");
        job.record(Ok(value(7.0)), Duration::from_millis(3));
        assert_eq!(job.fresh().unwrap().get("thing"), Some(7.0));
        // Age it: three intervals.
        job.state().value.as_mut().unwrap().0 = Instant::now() - Duration::from_secs(3);
        assert!(job.fresh().is_none());
    }

    #[test]
    fn a_failure_keeps_the_last_value_and_is_counted_by_reason() {
        let job = Job::new("q", Schedule::new(60, 1));
        job.record(Ok(value(1.0)), Duration::from_millis(3));
        job.record(
            Err(BackgroundError::Timeout(Duration::from_secs(1))),
            Duration::from_secs(1),
        );
        job.record(
            Err(BackgroundError::Failed("boom".into())),
            Duration::from_millis(1),
        );
        assert_eq!(job.fresh().unwrap().get("thing"), Some(1.0));
        let mut s = Snapshot::default();
        add_stats(&mut s, &[job]);
        let text = s.render_for_tests();
        assert!(
            text.contains(r#"query_errors_total{query="q",reason="timeout"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"query_errors_total{query="q",reason="error"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"query_interval_seconds{query="q"} 60"#),
            "{text}"
        );
        assert!(
            text.contains(r#"query_duration_seconds{query="q"} 0.001"#),
            "{text}"
        );
    }

    #[test]
    fn schedules_are_checked_with_their_key() {
        let e = Schedule::new(0, 1)
            .validate("database.refresh.agents")
            .unwrap_err()
            .to_string();
        assert!(e.contains("database.refresh.agents.interval"), "{e}");
        let mut s = Schedule::new(5, 0);
        s.timeout = Duration::ZERO;
        let e = s.validate("x").unwrap_err().to_string();
        assert!(e.contains("x.timeout"), "{e}");
    }
}
