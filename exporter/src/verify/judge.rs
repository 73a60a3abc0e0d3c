//! The checks of `verify-deployment`: the new version's figures over the
//! analysis window against the job's over the baseline, each with the
//! factor and the absolute floor it must pass (the deploy alert's, in
//! rules/deploys.recording.rules.yml), and the traffic it needs to say
//! anything.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{Selectors, Span, Verdict, VerifyError};
use llmchat_report::histogram::{self, quantile, Estimate};
use llmchat_report::Client;

/// The limits, with the deploy alert's defaults: the guide's 1% error
/// target as the 5xx floor.
#[derive(Debug, Clone, clap::Args)]
pub struct Thresholds {
    /// The 5xx ratio fails above this many times the baseline's...
    #[arg(long = "max-5xx-factor", value_name = "FACTOR", default_value_t = 2.0)]
    pub max_5xx_factor: f64,
    /// ...and this much above it (0.01 = one percentage point).
    #[arg(
        long = "min-5xx-increase",
        value_name = "RATIO",
        default_value_t = 0.01
    )]
    pub min_5xx_increase: f64,
    /// p95 latency fails above this many times the baseline's...
    #[arg(long = "max-p95-factor", value_name = "FACTOR", default_value_t = 1.5)]
    pub max_p95_factor: f64,
    /// ...and this many seconds above it.
    #[arg(
        long = "min-p95-increase",
        value_name = "SECONDS",
        default_value_t = 0.25
    )]
    pub min_p95_increase: f64,
    /// An agent's chat error ratio fails above this many times the baseline's...
    #[arg(
        long = "max-chat-error-factor",
        value_name = "FACTOR",
        default_value_t = 2.0
    )]
    pub max_chat_error_factor: f64,
    /// ...and this much above it.
    #[arg(
        long = "min-chat-error-increase",
        value_name = "RATIO",
        default_value_t = 0.05
    )]
    pub min_chat_error_increase: f64,
    /// Requests the analysis window and the baseline each need for a verdict.
    #[arg(long = "min-requests", value_name = "N", default_value_t = 100.0)]
    pub min_requests: f64,
    /// Chat messages an agent needs in each period to be judged.
    #[arg(long = "min-chat-messages", value_name = "N", default_value_t = 20.0)]
    pub min_chat_messages: f64,
}

impl Thresholds {
    pub(super) fn check(&self) -> Result<(), VerifyError> {
        for (flag, v) in [
            ("--max-5xx-factor", self.max_5xx_factor),
            ("--min-5xx-increase", self.min_5xx_increase),
            ("--max-p95-factor", self.max_p95_factor),
            ("--min-p95-increase", self.min_p95_increase),
            ("--max-chat-error-factor", self.max_chat_error_factor),
            ("--min-chat-error-increase", self.min_chat_error_increase),
            ("--min-requests", self.min_requests),
            ("--min-chat-messages", self.min_chat_messages),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(VerifyError::Argument(
                    flag,
                    format!("{v} is not a number >= 0"),
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckResult {
    Pass,
    Fail,
    /// Too little traffic in the new window or the baseline to judge.
    TooLittleTraffic,
    /// No series to judge (the exporter does not collect it).
    NoData,
}

/// One check: its figure now and before, and the limit it was held to.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// `http_5xx`, `latency_p95`, `chat_errors`, `health`.
    pub check: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    pub new: Option<f64>,
    pub baseline: Option<f64>,
    /// The new figure fails above this.
    pub limit: Option<f64>,
    pub result: CheckResult,
    /// What was counted: requests, messages or probes, now and before.
    pub new_count: Option<f64>,
    pub baseline_count: Option<f64>,
    /// The p95 is over the top bucket: only a lower bound is known.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub above_top_bucket: bool,
}

pub(super) struct Judged {
    pub verdict: Verdict,
    pub new_requests: Option<f64>,
    pub baseline_requests: Option<f64>,
    pub checks: Vec<Check>,
    pub reasons: Vec<String>,
}

/// `[Ns]`: a whole number of seconds, as PromQL ranges are written.
fn range(span: Span) -> String {
    format!("{}s", (span.to - span.from).round().max(1.0) as u64)
}

/// The figures of one period.
struct Figures {
    requests: Option<f64>,
    server_errors: Option<f64>,
    p95: Option<Estimate>,
    /// Agent → (messages, errors).
    chat: BTreeMap<String, (f64, f64)>,
    /// The lowest and the mean of the health probe (`llmchat_app_up`).
    health: Option<(f64, f64)>,
}

async fn figures(client: &Client, sel: &str, span: Span) -> Result<Figures, VerifyError> {
    let r = range(span);
    let t = span.to;
    let requests = format!("sum(increase(llmchat_http_requests_total{{{sel}}}[{r}]))");
    let errors =
        format!("sum(increase(llmchat_http_requests_total{{{sel},status_code=~\"5..\"}}[{r}]))");
    let buckets = format!(
        "sum by (le) (increase(llmchat_http_request_duration_seconds_bucket{{{sel}}}[{r}]))"
    );
    let chat =
        format!("sum by (agent_id, status) (increase(llmchat_chat_messages_total{{{sel}}}[{r}]))");
    let health = format!("min(min_over_time(llmchat_app_up{{{sel}}}[{r}]))");
    let health_mean = format!("avg(avg_over_time(llmchat_app_up{{{sel}}}[{r}]))");
    let (requests, errors, buckets, chat, health, health_mean) = tokio::join!(
        client.scalar(&requests, t),
        client.scalar(&errors, t),
        client.vector(&buckets, t),
        client.vector(&chat, t),
        client.scalar(&health, t),
        client.scalar(&health_mean, t),
    );
    let buckets = histogram::buckets(&buckets?);
    let mut agents: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for (labels, n) in chat? {
        let Some(agent) = labels.get("agent_id") else {
            continue;
        };
        let slot = agents.entry(agent.clone()).or_default();
        slot.0 += n;
        if labels.get("status").map(String::as_str) == Some("error") {
            slot.1 += n;
        }
    }
    let requests = requests?;
    Ok(Figures {
        requests,
        // No 5xx series at all is no 5xx, when there were requests.
        server_errors: errors?.or(requests.map(|_| 0.0)),
        p95: quantile(0.95, &buckets),
        chat: agents,
        health: health?.zip(health_mean?),
    })
}

/// The limit a new figure fails above: over `factor` times the baseline
/// and over the baseline plus `floor`, whichever is higher.
fn limit(baseline: f64, factor: f64, floor: f64) -> f64 {
    (baseline * factor).max(baseline + floor)
}

/// Judges the new version over `new` (the verified instances) against the
/// job over `base`.
pub(super) async fn judge(
    client: &Client,
    sel: &Selectors,
    new: Span,
    base: Span,
    th: &Thresholds,
) -> Result<Judged, VerifyError> {
    let (now, before) = tokio::join!(
        figures(client, &sel.instances, new),
        figures(client, &sel.job, base)
    );
    let (now, before) = (now?, before?);
    let mut checks = Vec::new();
    let mut reasons = Vec::new();
    let enough = |n: Option<f64>, need: f64| n.is_some_and(|n| n >= need);
    let traffic_ok =
        enough(now.requests, th.min_requests) && enough(before.requests, th.min_requests);

    // 5xx ratio.
    let ratio = |f: &Figures| Some(f.server_errors? / f.requests.filter(|r| *r > 0.0)?);
    let (new_ratio, base_ratio) = (ratio(&now), ratio(&before));
    let lim = base_ratio.map(|b| limit(b, th.max_5xx_factor, th.min_5xx_increase));
    checks.push(Check {
        check: "http_5xx",
        agent_id: None,
        new: new_ratio,
        baseline: base_ratio,
        limit: lim,
        result: match (new_ratio, lim) {
            _ if now.requests.is_none() && before.requests.is_none() => CheckResult::NoData,
            _ if !traffic_ok => CheckResult::TooLittleTraffic,
            (Some(n), Some(l)) if n > l => CheckResult::Fail,
            _ => CheckResult::Pass,
        },
        new_count: now.requests,
        baseline_count: before.requests,
        above_top_bucket: false,
    });

    // p95 latency, estimated from the buckets.
    let (new_p95, base_p95) = (now.p95, before.p95);
    let lim = base_p95.map(|b| limit(b.seconds, th.max_p95_factor, th.min_p95_increase));
    checks.push(Check {
        check: "latency_p95",
        agent_id: None,
        new: new_p95.map(|e| e.seconds),
        baseline: base_p95.map(|e| e.seconds),
        limit: lim,
        result: match (new_p95, lim) {
            (None, _) | (_, None) if traffic_ok => CheckResult::NoData,
            _ if !traffic_ok => CheckResult::TooLittleTraffic,
            (Some(n), Some(l)) if n.seconds > l => CheckResult::Fail,
            _ => CheckResult::Pass,
        },
        new_count: now.requests,
        baseline_count: before.requests,
        above_top_bucket: new_p95.is_some_and(|e| e.above_top_bucket),
    });

    // Each agent's chat error ratio; an agent with too few messages in
    // either period is shown, not judged.
    let agents: BTreeSet<&String> = now.chat.keys().chain(before.chat.keys()).collect();
    for agent in agents {
        let (n_msgs, n_err) = now.chat.get(agent).copied().unwrap_or_default();
        let (b_msgs, b_err) = before.chat.get(agent).copied().unwrap_or_default();
        let new_r = (n_msgs > 0.0).then(|| n_err / n_msgs);
        let base_r = (b_msgs > 0.0).then(|| b_err / b_msgs);
        let lim = base_r.map(|b| limit(b, th.max_chat_error_factor, th.min_chat_error_increase));
        let judged = n_msgs >= th.min_chat_messages && b_msgs >= th.min_chat_messages;
        checks.push(Check {
            check: "chat_errors",
            agent_id: Some(agent.clone()),
            new: new_r,
            baseline: base_r,
            limit: lim,
            result: match (new_r, lim) {
                _ if !judged => CheckResult::TooLittleTraffic,
                (Some(n), Some(l)) if n > l => CheckResult::Fail,
                _ => CheckResult::Pass,
            },
            new_count: Some(n_msgs),
            baseline_count: Some(b_msgs),
            above_top_bucket: false,
        });
    }

    // The backend's own health: any failed probe of /health in the window.
    checks.push(Check {
        check: "health",
        agent_id: None,
        new: now.health.map(|(_, mean)| mean),
        baseline: before.health.map(|(_, mean)| mean),
        limit: None,
        result: match now.health {
            None => CheckResult::NoData,
            Some((min, _)) if min < 1.0 => CheckResult::Fail,
            Some(_) => CheckResult::Pass,
        },
        new_count: None,
        baseline_count: None,
        above_top_bucket: false,
    });

    for c in checks.iter().filter(|c| c.result == CheckResult::Fail) {
        reasons.push(reason(c));
    }
    let verdict = if !reasons.is_empty() {
        Verdict::Regression
    } else if !traffic_ok {
        reasons.push(format!(
            "too little traffic to judge: {} requests in the analysis window and {} in the baseline, {} needed in each (--min-requests)",
            count(now.requests),
            count(before.requests),
            th.min_requests
        ));
        Verdict::Inconclusive
    } else {
        Verdict::Pass
    };
    Ok(Judged {
        verdict,
        new_requests: now.requests,
        baseline_requests: before.requests,
        checks,
        reasons,
    })
}

fn count(n: Option<f64>) -> String {
    n.map(|n| format!("{n:.0}")).unwrap_or_else(|| "0".into())
}

/// A failed check in one line, both values given.
pub(super) fn reason(c: &Check) -> String {
    let fmt = |v: Option<f64>| super::render::value(c.check, v, c.above_top_bucket && v == c.new);
    match c.check {
        "health" => format!(
            "the backend's /health failed probes during the analysis window (up {} of the time)",
            fmt(c.new)
        ),
        _ => format!(
            "{}{}: {} against {} before (limit {})",
            c.check,
            c.agent_id
                .as_ref()
                .map(|a| format!(" (agent {a})"))
                .unwrap_or_default(),
            fmt(c.new),
            fmt(c.baseline),
            super::render::value(c.check, c.limit, false),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_the_higher_of_the_factor_and_the_floor() {
        assert_eq!(limit(0.0, 2.0, 0.01), 0.01);
        assert_eq!(limit(0.005, 2.0, 0.01), 0.015);
        assert_eq!(limit(0.2, 2.0, 0.01), 0.4);
        assert_eq!(limit(0.24, 1.5, 0.25), 0.49);
    }

    #[test]
    fn ranges_are_whole_seconds() {
        assert_eq!(
            range(Span {
                from: 0.0,
                to: 600.4
            }),
            "600s"
        );
        assert_eq!(range(Span { from: 0.0, to: 0.2 }), "1s");
    }
}
