//! `llmchat-exporter verify-deployment`: the guide's
//! `scripts/verify-deployment.sh` (step 7 of `deploy.sh`), read from
//! Prometheus as the `report` subcommand reads it. It waits until every
//! instance of the job reports the new version, finds when each changed
//! (from `llmchat_app_info`), then judges the new version over the
//! analysis window against the job's period before the change, on the
//! signals the deploy alert reads: 5xx ratio, p95 latency, each agent's
//! chat error ratio, and the backend's own health. The exit code is the
//! verdict, for `deploy.sh` to act on (docs/deploys.md).

mod judge;
mod render;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

pub use judge::{Check, CheckResult, Thresholds};
use llmchat_report::{Client, Lang, ReportError};

#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// Prometheus base URL, e.g. http://localhost:9090.
    #[arg(long = "prometheus.url", value_name = "URL")]
    pub prometheus_url: String,
    /// The version deployed, as the backend's /health reports it.
    #[arg(long, value_name = "VERSION")]
    pub version: String,
    /// The Prometheus job of the exporters beside the backend.
    #[arg(long, value_name = "JOB", default_value = "llmchat-exporter")]
    pub job: String,
    /// An instance to verify (repeatable) [default: every instance of the job].
    #[arg(long, value_name = "INSTANCE")]
    pub instance: Vec<String>,
    /// How long to wait for every instance to report the version (exit 3 after).
    #[arg(long = "wait-rollout", value_name = "DURATION", default_value = "10m")]
    pub wait_rollout: String,
    /// How long to watch the new version from the end of the rollout.
    #[arg(long, value_name = "DURATION", default_value = "10m")]
    pub analysis: String,
    /// The period before the first instance changed that the new version is compared with.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub baseline: String,
    /// How far back to look for the change to the version.
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    pub lookback: String,
    /// How often to ask Prometheus while waiting or watching.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub interval: String,
    /// Time budget of each Prometheus query.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub timeout: String,
    #[arg(long, value_enum, default_value_t = VerifyFormat::Text)]
    pub format: VerifyFormat,
    #[arg(long, value_enum, default_value_t = Lang::En)]
    pub lang: Lang,
    #[command(flatten)]
    pub thresholds: Thresholds,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VerifyFormat {
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("invalid {0}: {1}")]
    Argument(&'static str, String),
    #[error(transparent)]
    Prometheus(#[from] ReportError),
}

impl VerifyError {
    /// A bad flag (exit 64), not a failure to ask.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            VerifyError::Argument(..) | VerifyError::Prometheus(ReportError::Argument(..))
        )
    }
}

/// Exit code when Prometheus could not be asked: no verdict, and not the
/// regression (1) that makes `deploy.sh` roll back.
pub const EXIT_UNAVAILABLE: u8 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Regression,
    Inconclusive,
    RolloutUnfinished,
}

impl Verdict {
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Pass => 0,
            Verdict::Regression => 1,
            Verdict::Inconclusive => 2,
            Verdict::RolloutUnfinished => 3,
        }
    }
}

/// An instance not on the version: what it reports instead, if anything.
#[derive(Debug, Clone, Serialize)]
pub struct Straggler {
    pub instance: String,
    pub version: Option<String>,
}

/// A span of time, Unix seconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Span {
    pub from: f64,
    pub to: f64,
}

/// The whole verification, as `--format json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub verdict: Verdict,
    pub exit_code: u8,
    pub version: String,
    pub job: String,
    pub instances: Vec<String>,
    pub stragglers: Vec<Straggler>,
    /// Each instance's version before the change, where one was seen.
    pub previous_versions: BTreeMap<String, String>,
    /// When the first and the last instance changed to the version.
    pub rollout: Option<Span>,
    pub analysis: Option<Span>,
    pub baseline: Option<Span>,
    pub new_requests: Option<f64>,
    pub baseline_requests: Option<f64>,
    pub checks: Vec<Check>,
    /// One line per reason for the verdict.
    pub reasons: Vec<String>,
}

struct Settings {
    wait_rollout: Duration,
    analysis: Duration,
    baseline: Duration,
    lookback: Duration,
    interval: Duration,
}

fn duration(flag: &'static str, text: &str) -> Result<Duration, VerifyError> {
    humantime::parse_duration(text)
        .map_err(|e| VerifyError::Argument(flag, format!("{text:?}: {e}")))
}

impl VerifyArgs {
    fn settings(&self) -> Result<Settings, VerifyError> {
        if self.version.trim().is_empty() {
            return Err(VerifyError::Argument("--version", "is empty".into()));
        }
        self.thresholds.check()?;
        let s = Settings {
            wait_rollout: duration("--wait-rollout", &self.wait_rollout)?,
            analysis: duration("--analysis", &self.analysis)?,
            baseline: duration("--baseline", &self.baseline)?,
            lookback: duration("--lookback", &self.lookback)?,
            interval: duration("--interval", &self.interval)?,
        };
        for (flag, d) in [
            ("--analysis", s.analysis),
            ("--baseline", s.baseline),
            ("--interval", s.interval),
        ] {
            if d < Duration::from_secs(1) {
                return Err(VerifyError::Argument(flag, "must be at least 1s".into()));
            }
        }
        if s.lookback < s.analysis {
            return Err(VerifyError::Argument(
                "--lookback",
                "must be at least --analysis".into(),
            ));
        }
        Ok(s)
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The selector of the job's series, and of the verified instances' ones.
pub(crate) struct Selectors {
    pub job: String,
    pub instances: String,
}

impl Selectors {
    fn new(job: &str, instances: &[String]) -> Self {
        let job = format!("job=\"{}\"", llmchat_report::quote(job));
        let alternatives: Vec<String> = instances.iter().map(|i| regex::escape(i)).collect();
        let instances = format!(
            "{job},instance=~\"{}\"",
            llmchat_report::quote(&alternatives.join("|"))
        );
        Selectors { job, instances }
    }
}

/// Runs the command; the verification, or why none could be made.
pub async fn run(args: &VerifyArgs) -> Result<Verification, VerifyError> {
    let s = args.settings()?;
    let timeout = duration("--timeout", &args.timeout)?;
    let client = Client::new(&args.prometheus_url, timeout)?;
    let mut v = Verification {
        verdict: Verdict::Inconclusive,
        exit_code: 0,
        version: args.version.clone(),
        job: args.job.clone(),
        instances: Vec::new(),
        stragglers: Vec::new(),
        previous_versions: BTreeMap::new(),
        rollout: None,
        analysis: None,
        baseline: None,
        new_requests: None,
        baseline_requests: None,
        checks: Vec::new(),
        reasons: Vec::new(),
    };

    // 1. The rollout: every instance reports the version.
    let started = Instant::now();
    loop {
        let current = versions_now(&client, &args.job).await?;
        v.instances = if args.instance.is_empty() {
            current.keys().cloned().collect()
        } else {
            args.instance.clone()
        };
        v.stragglers = v
            .instances
            .iter()
            .filter(|i| current.get(*i) != Some(&args.version))
            .map(|i| Straggler {
                instance: i.clone(),
                version: current.get(i).cloned(),
            })
            .collect();
        if v.instances.is_empty() {
            v.stragglers.clear();
        }
        if !v.instances.is_empty() && v.stragglers.is_empty() {
            break;
        }
        let waited = started.elapsed();
        if waited >= s.wait_rollout {
            v.verdict = Verdict::RolloutUnfinished;
            v.reasons = if v.instances.is_empty() {
                vec![format!(
                    "no instance of job {} reports a version (llmchat_app_info)",
                    args.job
                )]
            } else {
                v.stragglers
                    .iter()
                    .map(|st| match &st.version {
                        Some(other) => format!("{} runs {other}", st.instance),
                        None => format!("{} reports no version", st.instance),
                    })
                    .collect()
            };
            return Ok(finish(v));
        }
        tokio::time::sleep(s.interval.min(s.wait_rollout - waited)).await;
    }

    // 2. When each instance changed, and from what.
    let sel = Selectors::new(&args.job, &v.instances);
    let changes = changes(&client, &sel, &args.version, s.lookback).await?;
    for (instance, change) in &changes {
        if let Some(previous) = &change.previous {
            v.previous_versions
                .insert(instance.clone(), previous.clone());
        }
    }
    let times: Vec<f64> = changes.values().filter_map(|c| c.at).collect();
    let (Some(first), Some(done)) = (
        times.iter().copied().reduce(f64::min),
        times.iter().copied().reduce(f64::max),
    ) else {
        v.reasons = vec![format!(
            "no change to {} within --lookback {}: nothing to compare it with",
            args.version, args.lookback
        )];
        return Ok(finish(v));
    };
    v.rollout = Some(Span {
        from: first,
        to: done,
    });
    let base = Span {
        from: first - s.baseline.as_secs_f64(),
        to: first,
    };
    v.baseline = Some(base);
    let end = done + s.analysis.as_secs_f64();

    // 3. Watch the new version until the window is over; a regression
    // seen on enough traffic ends it early.
    loop {
        let to = now().min(end);
        let window = Span { from: done, to };
        if to - done >= 1.0 {
            let judged = judge::judge(&client, &sel, window, base, &args.thresholds).await?;
            v.analysis = Some(window);
            v.new_requests = judged.new_requests;
            v.baseline_requests = judged.baseline_requests;
            v.checks = judged.checks;
            v.reasons = judged.reasons;
            v.verdict = judged.verdict;
            if judged.verdict == Verdict::Regression || to >= end {
                return Ok(finish(v));
            }
        }
        let left = end - now();
        if left <= 0.0 {
            continue;
        }
        tokio::time::sleep(s.interval.min(Duration::from_secs_f64(left))).await;
    }
}

fn finish(mut v: Verification) -> Verification {
    v.exit_code = v.verdict.exit_code();
    v
}

/// The version each instance of the job reports now.
async fn versions_now(client: &Client, job: &str) -> Result<BTreeMap<String, String>, VerifyError> {
    let query = format!("llmchat_app_info{{job=\"{}\"}}", llmchat_report::quote(job));
    Ok(client
        .vector(&query, now())
        .await?
        .into_iter()
        .filter_map(|(labels, _)| {
            Some((
                labels.get("instance")?.clone(),
                labels.get("version")?.clone(),
            ))
        })
        .collect())
}

/// One instance's change to the version.
#[derive(Debug, Default)]
struct Change {
    /// When it started reporting the version, after another one; `None`
    /// when it reported no other version within the lookback.
    at: Option<f64>,
    previous: Option<String>,
}

/// Each instance's latest change to `version` within the lookback.
async fn changes(
    client: &Client,
    sel: &Selectors,
    version: &str,
    lookback: Duration,
) -> Result<BTreeMap<String, Change>, VerifyError> {
    let to = now();
    let from = to - lookback.as_secs_f64();
    // Fine enough to place a change within a scrape or two, coarse enough
    // for a few pieces of a range query.
    let step = (lookback.as_secs_f64() / 20_000.0).clamp(1.0, 60.0).round();
    // timestamp(): each point's value is the time of the sample it comes
    // from, so a series that stopped is not drawn on for the 5 minutes
    // of lookback where no stale marker ends it (backfilled data).
    let series = client
        .matrix(
            &format!("timestamp(llmchat_app_info{{{}}})", sel.instances),
            from,
            to,
            step,
        )
        .await?;
    let mut by_instance: BTreeMap<String, Vec<(f64, String)>> = BTreeMap::new();
    for (labels, points) in series {
        let (Some(instance), Some(v)) = (labels.get("instance"), labels.get("version")) else {
            continue;
        };
        let list = by_instance.entry(instance.clone()).or_default();
        let mut sampled: Vec<f64> = points.into_iter().map(|(_, at)| at).collect();
        sampled.dedup();
        list.extend(sampled.into_iter().map(|at| (at, v.clone())));
    }
    Ok(by_instance
        .into_iter()
        .map(|(instance, points)| (instance, change_of(points, version)))
        .collect())
}

/// The start of the latest run of `version` in an instance's points, and
/// the version before it.
fn change_of(mut points: Vec<(f64, String)>, version: &str) -> Change {
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let Some(last_other) = points.iter().rposition(|(_, v)| v != version) else {
        return Change::default();
    };
    Change {
        at: points[last_other + 1..]
            .iter()
            .find(|(_, v)| v == version)
            .map(|(t, _)| *t),
        previous: Some(points[last_other].1.clone()),
    }
}

/// What to print, in the format asked.
pub fn render(v: &Verification, format: VerifyFormat, lang: Lang) -> String {
    match format {
        VerifyFormat::Json => serde_json::to_string_pretty(v).unwrap_or_default() + "\n",
        VerifyFormat::Text => render::text(v, lang),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(list: &[(f64, &str)]) -> Vec<(f64, String)> {
        list.iter().map(|(t, v)| (*t, v.to_string())).collect()
    }

    #[test]
    fn the_change_is_the_start_of_the_latest_run_of_the_version() {
        let c = change_of(
            points(&[
                (1.0, "1.4.2"),
                (2.0, "1.4.2"),
                (3.0, "1.5.0"),
                (4.0, "1.5.0"),
            ]),
            "1.5.0",
        );
        assert_eq!(c.at, Some(3.0));
        assert_eq!(c.previous.as_deref(), Some("1.4.2"));
        // Deployed, rolled back, deployed again: the last one counts.
        let c = change_of(
            points(&[
                (1.0, "1.5.0"),
                (2.0, "1.4.2"),
                (5.0, "1.5.0"),
                (3.0, "1.4.2"),
            ]),
            "1.5.0",
        );
        assert_eq!(c.at, Some(5.0));
        // Never anything else: no change seen.
        let c = change_of(points(&[(1.0, "1.5.0")]), "1.5.0");
        assert_eq!(c.at, None);
        assert_eq!(c.previous, None);
    }
}
