//! `llmchat-exporter report`: the guide's monthly `PerformanceAnalyzer`,
//! reading Prometheus instead of a JSON file. It asks the HTTP API for the
//! month's figures, applies the guide's `checkThresholds` (mean > 500 ms
//! warning, error rate > 1 % critical, memory > 80 % warning), derives
//! recommendations from what it found, and writes Markdown (with an SVG
//! chart of daily traffic and p95 latency) or JSON.
//!
//! A Prometheus that cannot be reached, or a range without data, is an
//! error (exit 1), never a report that looks healthy.

mod chart;
mod prometheus;
mod render;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

pub use prometheus::Client;

#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Prometheus base URL, e.g. http://localhost:9090.
    #[arg(long = "prometheus.url", value_name = "URL")]
    pub prometheus_url: String,
    /// Start of the period (RFC 3339, e.g. 2026-10-01T00:00:00Z); with --to.
    #[arg(long, value_name = "TIME", requires = "to", conflicts_with = "range")]
    pub from: Option<String>,
    /// End of the period (RFC 3339); with --from.
    #[arg(long, value_name = "TIME", requires = "from")]
    pub to: Option<String>,
    /// The period ending now, e.g. 30d [default: 30d].
    #[arg(long, value_name = "DURATION")]
    pub range: Option<String>,
    /// Write the report here (the chart goes beside it); stdout if absent.
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Markdown)]
    pub format: OutputFormat,
    #[arg(long, value_enum, default_value_t = Lang::En)]
    pub lang: Lang,
    /// Time budget of each Prometheus query.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub timeout: String,
    /// The Prometheus job of the exporters whose data the report reads;
    /// another job with the same metric names is left out.
    #[arg(long, value_name = "JOB", default_value = "llmchat-exporter")]
    pub job: String,
    /// When the server holds less than the period (a Prometheus keeping
    /// 15 days, asked for 30), report on the span it holds, and say so,
    /// instead of failing.
    #[arg(long = "allow-partial")]
    pub allow_partial: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Markdown,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    En,
    Zh,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("invalid {0}: {1}")]
    Argument(&'static str, String),
    #[error("Prometheus at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Prometheus answered an error for {query}: {reason}")]
    Query { query: String, reason: String },
    #[error("no LLMChat data between {from} and {to}: is Prometheus scraping llmchat-exporter?")]
    NoData { from: String, to: String },
    #[error("{server} holds LLMChat data from {found_from} to {found_to}, not the whole period {from} to {to}: a shorter --range, a server that keeps more (long-term storage such as VictoriaMetrics), or --allow-partial to report on what there is")]
    Partial {
        server: String,
        from: String,
        to: String,
        found_from: String,
        found_to: String,
    },
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Critical,
}

/// One `checkThresholds` finding (or a derived one: disk, connections, agents).
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub kind: &'static str,
    pub severity: Severity,
    pub value: f64,
    pub threshold: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    pub mean: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentStats {
    pub agent_id: String,
    pub messages: f64,
    pub errors: f64,
    pub error_ratio: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DailyPoint {
    /// Unix time of the day's end.
    pub time: f64,
    pub requests_per_second: Option<f64>,
    pub p95_seconds: Option<f64>,
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

/// Everything the report says, in base units (seconds, ratios 0-1).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The span reported on: the period, or with `--allow-partial` the
    /// part of it the server holds.
    pub from: f64,
    pub to: f64,
    pub source: Source,
    pub mean_response_seconds: Option<f64>,
    pub p95_response_seconds: Option<f64>,
    pub p99_response_seconds: Option<f64>,
    pub requests: f64,
    pub error_ratio: Option<f64>,
    pub client_errors: f64,
    pub server_errors: f64,
    pub requests_per_second: f64,
    pub requests_per_day: f64,
    pub cpu: Usage,
    pub memory: Usage,
    pub disk: Usage,
    pub database_connections: Usage,
    pub database_connections_max: Option<f64>,
    pub database_ping_seconds: Option<f64>,
    pub agents: Vec<AgentStats>,
    /// Unix time of the start of the busiest hour, and its request rate.
    pub peak_hour: Option<(f64, f64)>,
    pub daily: Vec<DailyPoint>,
    pub findings: Vec<Finding>,
}

fn parse_time(name: &'static str, s: &str) -> Result<f64, ReportError> {
    humantime::parse_rfc3339_weak(s)
        .map_err(|e| ReportError::Argument(name, format!("{s:?}: {e}")))
        .map(|t| {
            t.duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64()
        })
}

impl ReportArgs {
    /// The period as Unix seconds.
    pub fn period(&self) -> Result<(f64, f64), ReportError> {
        let (from, to) = match (&self.from, &self.to) {
            (Some(f), Some(t)) => (parse_time("--from", f)?, parse_time("--to", t)?),
            _ => {
                let range = self.range.as_deref().unwrap_or("30d");
                let d = humantime::parse_duration(range)
                    .map_err(|e| ReportError::Argument("--range", format!("{range:?}: {e}")))?;
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64();
                (now - d.as_secs_f64(), now)
            }
        };
        if to - from < 3600.0 {
            return Err(ReportError::Argument(
                "period",
                "must be at least one hour, --from before --to".into(),
            ));
        }
        Ok((from, to))
    }
}

/// Runs the command: query, check, write. Returns what was written where.
pub async fn run(args: &ReportArgs) -> Result<String, ReportError> {
    let (from, to) = args.period()?;
    let timeout = humantime::parse_duration(&args.timeout)
        .map_err(|e| ReportError::Argument("--timeout", e.to_string()))?;
    let client = Client::new(&args.prometheus_url, timeout)?;
    let job = Job::new(&args.job);
    let source = data_span(&client, &job, from, to, args.allow_partial).await?;
    let report = build(&client, &job, source).await?;
    let chart_name = args
        .output
        .as_ref()
        .and_then(|p| p.file_stem())
        .map(|s| format!("{}-chart.svg", s.to_string_lossy()))
        .unwrap_or_else(|| "report-chart.svg".into());
    let text = match args.format {
        OutputFormat::Json => serde_json::to_string_pretty(&report).unwrap_or_default() + "\n",
        OutputFormat::Markdown => render::markdown(
            &report,
            args.lang,
            args.output.is_some().then_some(chart_name.as_str()),
        ),
    };
    match &args.output {
        None => {
            print!("{text}");
            Ok("stdout".into())
        }
        Some(path) => {
            let write = |p: &std::path::Path, body: &str| {
                std::fs::write(p, body).map_err(|e| ReportError::Write {
                    path: p.display().to_string(),
                    reason: e.to_string(),
                })
            };
            write(path, &text)?;
            if args.format == OutputFormat::Markdown {
                write(
                    &path.with_file_name(&chart_name),
                    &chart::svg(&report.daily),
                )?;
            }
            Ok(path.display().to_string())
        }
    }
}

/// The `job` matcher every query carries (`--job`), its value escaped.
pub struct Job(String);

impl Job {
    pub fn new(job: &str) -> Self {
        Job(format!(
            "job=\"{}\"",
            job.replace('\\', "\\\\").replace('"', "\\\"")
        ))
    }

    /// `metric{job="...",extra}`.
    pub fn sel(&self, metric: &str, extra: &str) -> String {
        if extra.is_empty() {
            format!("{metric}{{{}}}", self.0)
        } else {
            format!("{metric}{{{},{extra}}}", self.0)
        }
    }
}

/// Finds the span of data the server holds in the period. A period that
/// starts (or ends) more than one step plus an hour away from the data is
/// an error, unless `allow_partial`: a report over 15 days must not call
/// itself monthly.
pub async fn data_span(
    client: &Client,
    job: &Job,
    from: f64,
    to: f64,
    allow_partial: bool,
) -> Result<Source, ReportError> {
    // At most ~2,000 points whatever the period (Prometheus allows 11,000).
    let step = ((to - from) / 2000.0).max(60.0).ceil();
    // Series every exporter role has one of: traffic or the host.
    let presence = format!(
        "count({} or {})",
        job.sel("llmchat_http_requests_total", ""),
        job.sel("llmchat_host_memory_total_bytes", "")
    );
    let (points, version) = tokio::join!(client.range(&presence, from, to, step), client.version());
    let points = points?;
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Err(ReportError::NoData {
            from: rfc3339(from),
            to: rfc3339(to),
        });
    };
    let (data_from, data_to) = (first.0.max(from), last.0.min(to));
    let slack = step + 3600.0;
    let partial = data_from - from > slack || to - data_to > slack;
    if partial && !allow_partial {
        return Err(ReportError::Partial {
            server: client.url().to_string(),
            from: rfc3339(from),
            to: rfc3339(to),
            found_from: rfc3339(data_from),
            found_to: rfc3339(data_to),
        });
    }
    Ok(Source {
        server: client.url().to_string(),
        version,
        requested_from: from,
        requested_to: to,
        data_from,
        data_to,
        partial,
    })
}

/// Asks the server for every figure of the span `source` found (the
/// period, or with `--allow-partial` the part of it the server holds).
pub async fn build(client: &Client, job: &Job, source: Source) -> Result<Report, ReportError> {
    let (from, to) = if source.partial {
        (source.data_from, source.data_to)
    } else {
        (source.requested_from, source.requested_to)
    };
    let d = format!("{}s", (to - from).round() as i64);
    let step = "5m";
    let q = |expr: String| async move { client.scalar(&expr, to).await };
    let requests = job.sel("llmchat_http_requests_total", "");
    let requests_4xx = job.sel("llmchat_http_requests_total", r#"status_code=~"4..""#);
    let requests_5xx = job.sel("llmchat_http_requests_total", r#"status_code=~"5..""#);
    let duration = |suffix: &str| {
        job.sel(
            &format!("llmchat_http_request_duration_seconds_{suffix}"),
            "",
        )
    };
    let (requests_n, client_errors, server_errors) = tokio::try_join!(
        q(format!("sum(increase({requests}[{d}]))")),
        q(format!("sum(increase({requests_4xx}[{d}]))")),
        q(format!("sum(increase({requests_5xx}[{d}]))")),
    )?;
    let (bucket, sum, count) = (duration("bucket"), duration("sum"), duration("count"));
    let (mean, p95, p99) = tokio::try_join!(
        q(format!(
            "sum(increase({sum}[{d}])) / sum(increase({count}[{d}]))"
        )),
        q(format!(
            "histogram_quantile(0.95, sum by (le) (increase({bucket}[{d}])))"
        )),
        q(format!(
            "histogram_quantile(0.99, sum by (le) (increase({bucket}[{d}])))"
        )),
    )?;
    let mem = format!(
        "(1 - sum({}) / sum({}))",
        job.sel("llmchat_host_memory_available_bytes", ""),
        job.sel("llmchat_host_memory_total_bytes", "")
    );
    let disk = format!(
        "max(1 - {} / {})",
        job.sel("llmchat_host_filesystem_available_bytes", ""),
        job.sel("llmchat_host_filesystem_size_bytes", "")
    );
    let conns = format!("sum({})", job.sel("llmchat_database_connections", ""));
    let cpu = job.sel("llmchat_host_cpu_usage_ratio", "");
    let (cpu_mean, cpu_max, mem_mean, mem_max, disk_mean, disk_max) = tokio::try_join!(
        q(format!("avg(avg_over_time({cpu}[{d}]))")),
        q(format!("max(max_over_time({cpu}[{d}]))")),
        q(format!("avg_over_time({mem}[{d}:{step}])")),
        q(format!("max_over_time({mem}[{d}:{step}])")),
        q(format!("avg_over_time({disk}[{d}:{step}])")),
        q(format!("max_over_time({disk}[{d}:{step}])")),
    )?;
    let (conn_mean, conn_max, conn_limit, ping) = tokio::try_join!(
        q(format!("avg_over_time({conns}[{d}:{step}])")),
        q(format!("max_over_time({conns}[{d}:{step}])")),
        q(format!(
            "max(max_over_time({}[{d}]))",
            job.sel("llmchat_database_connections_max", "")
        )),
        q(format!(
            "avg(avg_over_time({}[{d}]))",
            job.sel("llmchat_database_ping_duration_seconds", "")
        )),
    )?;
    let messages = job.sel("llmchat_chat_messages_total", "");
    let message_errors = job.sel("llmchat_chat_messages_total", r#"status="error""#);
    let agents_expr = format!("sum by (agent_id) (increase({messages}[{d}]))");
    let agent_errors_expr = format!("sum by (agent_id) (increase({message_errors}[{d}]))");
    let (by_agent, errors_by_agent) = tokio::try_join!(
        client.vector(&agents_expr, to),
        client.vector(&agent_errors_expr, to),
    )?;
    // Daily points, or hourly ones for a period under two days (a day
    // would not fit). The busiest hour's search steps at least an hour,
    // and more over long periods: Prometheus answers at most 11,000 points.
    let (point, window) = if to - from < 2.0 * 86400.0 {
        (3600.0, "1h")
    } else {
        (86400.0, "1d")
    };
    let hour_step = ((to - from) / 10_000.0).max(3600.0).ceil();
    let hourly_expr = format!("sum(increase({requests}[1h])) / 3600");
    let rps_expr = format!("sum(increase({requests}[{window}])) / {point}");
    let p95_expr = format!("histogram_quantile(0.95, sum by (le) (increase({bucket}[{window}])))");
    let (hourly, daily_rps, daily_p95) = tokio::try_join!(
        client.range(&hourly_expr, from + 3600.0, to, hour_step),
        client.range(&rps_expr, from + point, to, point),
        client.range(&p95_expr, from + point, to, point),
    )?;
    let requests = requests_n;

    let has_host = mem_mean.is_some() || cpu_mean.is_some();
    let Some(requests) = requests.filter(|r| *r > 0.0).or(has_host.then_some(0.0)) else {
        return Err(ReportError::NoData {
            from: rfc3339(from),
            to: rfc3339(to),
        });
    };
    let seconds = to - from;
    let mut agents: Vec<AgentStats> = by_agent
        .iter()
        .map(|(labels, n)| {
            let id = labels.get("agent_id").cloned().unwrap_or_default();
            let errors = errors_by_agent
                .iter()
                .find(|(l, _)| l.get("agent_id") == Some(&id))
                .map_or(0.0, |(_, v)| *v);
            AgentStats {
                error_ratio: if *n > 0.0 { errors / n } else { 0.0 },
                agent_id: id,
                messages: *n,
                errors,
            }
        })
        .collect();
    agents.sort_by(|a, b| b.messages.total_cmp(&a.messages));
    let peak_hour = hourly
        .iter()
        .filter(|(_, v)| v.is_finite())
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(t, v)| (t - 3600.0, *v));
    let daily = daily_rps
        .iter()
        .map(|(t, v)| DailyPoint {
            time: *t,
            requests_per_second: Some(*v).filter(|v| v.is_finite()),
            p95_seconds: daily_p95
                .iter()
                .find(|(pt, _)| pt == t)
                .map(|(_, p)| *p)
                .filter(|p| p.is_finite()),
        })
        .collect();
    let error_ratio = (requests > 0.0)
        .then(|| (client_errors.unwrap_or(0.0) + server_errors.unwrap_or(0.0)) / requests);
    let mut report = Report {
        from,
        to,
        source,
        mean_response_seconds: mean.filter(|v| v.is_finite()),
        p95_response_seconds: p95.filter(|v| v.is_finite()),
        p99_response_seconds: p99.filter(|v| v.is_finite()),
        requests,
        error_ratio,
        client_errors: client_errors.unwrap_or(0.0),
        server_errors: server_errors.unwrap_or(0.0),
        requests_per_second: requests / seconds,
        requests_per_day: requests / (seconds / 86400.0),
        cpu: Usage {
            mean: cpu_mean,
            max: cpu_max,
        },
        memory: Usage {
            mean: mem_mean,
            max: mem_max,
        },
        disk: Usage {
            mean: disk_mean,
            max: disk_max,
        },
        database_connections: Usage {
            mean: conn_mean,
            max: conn_max,
        },
        database_connections_max: conn_limit,
        database_ping_seconds: ping,
        agents,
        peak_hour,
        daily,
        findings: Vec::new(),
    };
    report.findings = check_thresholds(&report);
    Ok(report)
}

/// The guide's `checkThresholds`, plus the same kind of check for the
/// figures the guide reports without a threshold.
pub fn check_thresholds(r: &Report) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut check = |kind, severity, value: Option<f64>, threshold| {
        if let Some(v) = value.filter(|v| *v > threshold) {
            out.push(Finding {
                kind,
                severity,
                value: v,
                threshold,
            });
        }
    };
    check(
        "performance",
        Severity::Warning,
        r.mean_response_seconds,
        0.5,
    );
    check("error_rate", Severity::Critical, r.error_ratio, 0.01);
    check("memory", Severity::Warning, r.memory.mean, 0.8);
    check("disk", Severity::Warning, r.disk.max, 0.8);
    if let (Some(max), Some(limit)) = (r.database_connections.max, r.database_connections_max) {
        if limit > 0.0 {
            check(
                "database_connections",
                Severity::Warning,
                Some(max / limit),
                0.8,
            );
        }
    }
    for a in &r.agents {
        if a.messages >= 10.0 && a.error_ratio > 0.05 {
            out.push(Finding {
                kind: "agent_errors",
                severity: Severity::Warning,
                value: a.error_ratio,
                threshold: 0.05,
            });
        }
    }
    out
}

pub fn rfc3339(unix: f64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs_f64(unix.max(0.0)))
        .to_string()
}
