//! What the report says, in base units (seconds, ratios 0-1, Unix times):
//! the JSON output as it is, and what the Markdown renders. Also the
//! guide's `checkThresholds`, which turns figures into named findings.

use serde::Serialize;

use super::alerts::FiredAlert;
use super::histogram::Estimate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Critical,
}

/// What a finding is about; the fields that apply are set (and only they
/// are in the JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Subject {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mountpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// A backup kind (`database`, `uploads`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_kind: Option<String>,
}

/// One `checkThresholds` finding (or a derived one: disk, connections,
/// agents), naming what it is about.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub kind: &'static str,
    pub severity: Severity,
    pub value: f64,
    pub threshold: f64,
    #[serde(flatten)]
    pub subject: Subject,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    pub mean: Option<f64>,
    /// The highest sample of the period (`max_over_time`).
    pub max: Option<f64>,
}

/// The fullest filesystem's usage, and which it is.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DiskUsage {
    pub mean: Option<f64>,
    pub max: Option<f64>,
    pub instance: Option<String>,
    pub mountpoint: Option<String>,
}

/// One host's mean usage over the period.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceUsage {
    pub instance: String,
    pub mean: f64,
}

/// One filesystem's peak usage over the period.
#[derive(Debug, Clone, Serialize)]
pub struct Mount {
    pub instance: String,
    pub mountpoint: String,
    pub max: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentStats {
    pub agent_id: String,
    pub messages: f64,
    pub errors: f64,
    pub error_ratio: f64,
}

/// A route's share of the traffic and of its trouble.
#[derive(Debug, Clone, Serialize)]
pub struct RouteStats {
    pub route: String,
    pub requests: f64,
    pub server_errors: f64,
    pub mean_seconds: Option<f64>,
}

/// An hour, a day, or any span of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Period {
    pub start: f64,
    pub end: f64,
    pub requests: f64,
    pub requests_per_second: f64,
    pub server_errors: f64,
    /// 5xx over all requests; `None` without requests.
    pub server_error_ratio: Option<f64>,
    pub p95: Option<Estimate>,
    pub cpu_max: Option<f64>,
    pub memory_max: Option<f64>,
}

/// The hour of day with the highest mean traffic, and that mean.
#[derive(Debug, Clone, Serialize)]
pub struct TypicalPeak {
    /// 0-23, local.
    pub hour_of_day: u8,
    pub requests_per_second: f64,
}

/// The database's figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Database {
    pub connections: Usage,
    pub max_connections: Option<f64>,
    /// The exporter's `SELECT 1`: the round trip, not a query's work.
    pub ping_seconds: Option<f64>,
    /// Whether pg_stat_statements could be read (`None`: no exporter said).
    pub statements_available: Option<bool>,
    /// Mean execution time of the statements run in the period.
    pub statements_mean_seconds: Option<f64>,
    /// Calls of statements whose mean time is over the exporter's
    /// `database.slow_query_threshold`.
    pub slow_queries: Option<f64>,
}

/// Where the figures come from: the server, and the span of data it held
/// for the requested period.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    /// The server's URL (credentials, if any, are not in it: the report
    /// takes none).
    pub server: String,
    pub version: Option<String>,
    pub requested_from: f64,
    pub requested_to: f64,
    /// The first and last time the server had LLMChat data in the period.
    pub data_from: f64,
    pub data_to: f64,
    /// The data covers less than the period (`--allow-partial`).
    pub partial: bool,
}

/// Everything the report says.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The span reported on: the period, or with `--allow-partial` the
    /// part of it the server holds.
    pub from: f64,
    pub to: f64,
    /// The IANA zone (or offset) local times, days and hours are in.
    pub timezone: String,
    pub source: Source,
    pub mean_response_seconds: Option<f64>,
    /// Estimated from histogram buckets (linear interpolation).
    pub p95_response_seconds: Option<f64>,
    pub p95_above_top_bucket: bool,
    pub p99_response_seconds: Option<f64>,
    pub p99_above_top_bucket: bool,
    pub requests: f64,
    pub error_ratio: Option<f64>,
    pub client_errors: f64,
    pub server_errors: f64,
    pub requests_per_second: f64,
    pub requests_per_day: f64,
    pub cpu: Usage,
    pub memory: Usage,
    /// Mean memory usage of each host.
    pub memory_by_instance: Vec<InstanceUsage>,
    pub disk: DiskUsage,
    pub mounts: Vec<Mount>,
    pub database: Database,
    pub routes: Vec<RouteStats>,
    pub agents: Vec<AgentStats>,
    /// The busiest single local whole hour.
    pub busiest_hour: Option<Period>,
    pub typical_peak: Option<TypicalPeak>,
    /// `hour` under two days, else `day` (local days).
    pub timeline_resolution: &'static str,
    pub timeline: Vec<Period>,
    /// The hours and days with the highest 5xx ratio, worst first.
    pub worst_hours: Vec<Period>,
    pub worst_days: Vec<Period>,
    /// The hour with the highest p95 and the one with the highest CPU or
    /// memory peak.
    pub slowest_hour: Option<Period>,
    pub most_saturated_hour: Option<Period>,
    /// Alerts that fired in the period (Prometheus' `ALERTS`).
    pub alerts: Vec<FiredAlert>,
    /// Version changes of the job (`llmchat_app_info`), oldest first.
    pub deploys: Vec<super::Deploy>,
    /// Tokens, spend, time to first token and provider errors.
    pub llm: super::LlmUsage,
    /// Backups made, read back and found invalid, per kind; the drills.
    pub backups: super::Backups,
    pub findings: Vec<Finding>,
}

/// The guide's `checkThresholds` (mean > 500 ms warning, error rate > 1 %
/// critical, memory > 80 % warning), plus the same kind of check for the
/// figures the guide reports without a threshold; each names its subject.
pub fn check_thresholds(r: &Report) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut check = |kind, severity, value: Option<f64>, threshold, subject: Subject| {
        if let Some(v) = value.filter(|v| *v > threshold) {
            out.push(Finding {
                kind,
                severity,
                value: v,
                threshold,
                subject,
            });
        }
    };
    let slowest_route = r
        .routes
        .iter()
        .filter(|x| x.mean_seconds.is_some())
        .max_by(|a, b| a.mean_seconds.total_cmp_opt(&b.mean_seconds));
    check(
        "performance",
        Severity::Warning,
        r.mean_response_seconds,
        0.5,
        Subject {
            route: slowest_route.map(|x| x.route.clone()),
            ..Subject::default()
        },
    );
    let most_errors = r
        .routes
        .iter()
        .filter(|x| x.server_errors > 0.0)
        .max_by(|a, b| a.server_errors.total_cmp(&b.server_errors));
    check(
        "error_rate",
        Severity::Critical,
        r.error_ratio,
        0.01,
        Subject {
            route: most_errors.map(|x| x.route.clone()),
            ..Subject::default()
        },
    );
    for InstanceUsage { instance, mean } in &r.memory_by_instance {
        check(
            "memory",
            Severity::Warning,
            Some(*mean),
            0.8,
            Subject {
                instance: Some(instance.clone()),
                ..Subject::default()
            },
        );
    }
    for m in &r.mounts {
        check(
            "disk",
            Severity::Warning,
            Some(m.max),
            0.8,
            Subject {
                instance: Some(m.instance.clone()),
                mountpoint: Some(m.mountpoint.clone()),
                ..Subject::default()
            },
        );
    }
    let db = &r.database;
    if let (Some(max), Some(limit)) = (db.connections.max, db.max_connections) {
        if limit > 0.0 {
            check(
                "database_connections",
                Severity::Warning,
                Some(max / limit),
                0.8,
                Subject::default(),
            );
        }
    }
    for a in &r.agents {
        if a.messages >= 10.0 {
            check(
                "agent_errors",
                Severity::Warning,
                Some(a.error_ratio),
                0.05,
                Subject {
                    agent_id: Some(a.agent_id.clone()),
                    ..Subject::default()
                },
            );
        }
    }
    out.extend(r.llm.findings());
    out.extend(super::backups::findings(&r.backups));
    out
}

trait OptCmp {
    fn total_cmp_opt(&self, other: &Self) -> std::cmp::Ordering;
}

impl OptCmp for Option<f64> {
    fn total_cmp_opt(&self, other: &Self) -> std::cmp::Ordering {
        self.unwrap_or(f64::MIN)
            .total_cmp(&other.unwrap_or(f64::MIN))
    }
}
