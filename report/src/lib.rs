//! `llmchat-exporter report`: the guide's monthly `PerformanceAnalyzer`,
//! reading Prometheus instead of a JSON file. It asks the HTTP API for the
//! period's figures, applies the guide's `checkThresholds` (mean > 500 ms
//! warning, error rate > 1 % critical, memory > 80 % warning), finds the
//! worst hours and days and the alerts that fired, derives recommendations
//! from what it found, and writes Markdown (with an SVG chart of traffic
//! and p95 latency) or JSON, in the reader's time zone.
//!
//! A Prometheus that cannot be reached, or a range without data, is an
//! error (exit 1), never a report that looks healthy.

#![forbid(unsafe_code)]

mod alerts;
mod backups;
mod chart;
mod deploys;
mod gather;
pub mod histogram;
mod llm;
mod model;
mod prometheus;
mod render;
mod text;
mod time;
mod timeline;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

pub use backups::{Backups, KindBackups};
pub use deploys::{Deploy, DeployHour};
pub use llm::LlmUsage;
pub use model::{Finding, Report, Severity, Source};
pub use prometheus::Client;
pub use time::Zone;

#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Prometheus base URL, e.g. http://localhost:9090.
    #[arg(long = "prometheus.url", value_name = "URL")]
    pub prometheus_url: String,
    /// Start of the period: RFC 3339 with any offset
    /// (2026-10-01T00:00:00+08:00, …Z), or a local time or date in
    /// --timezone (2026-10-01); with --to.
    #[arg(long, value_name = "TIME", requires = "to", conflicts_with = "range")]
    pub from: Option<String>,
    /// End of the period, as --from; with --from.
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
    /// IANA time zone of the report's times, hours and days (Asia/Shanghai,
    /// UTC) [default: the machine's, from TZ or /etc/localtime].
    #[arg(long, value_name = "ZONE")]
    pub timezone: Option<String>,
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

impl ReportError {
    /// A bad flag (exit 64), not a failure of the run.
    pub fn is_usage(&self) -> bool {
        matches!(self, ReportError::Argument(..))
    }
}

impl ReportArgs {
    /// The period as Unix seconds.
    pub fn period(&self, zone: &Zone) -> Result<(f64, f64), ReportError> {
        let (from, to) = match (&self.from, &self.to) {
            (Some(f), Some(t)) => (zone.parse("--from", f)?, zone.parse("--to", t)?),
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

/// The subcommand as a program runs it: one clear line on stderr naming
/// `program` and exit 64 for a bad flag, 1 for any other failure; where
/// a written report went.
pub fn main(program: &str, args: &ReportArgs) -> std::process::ExitCode {
    use std::process::ExitCode;
    match llmchat_common::runtime::once(program, run(args)) {
        Err(code) => code,
        Ok(Ok(where_)) => {
            if where_ != "stdout" {
                eprintln!("report written to {where_}");
            }
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("{program}: {e}");
            if e.is_usage() {
                ExitCode::from(llmchat_common::EXIT_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Runs the command: query, check, write. Returns what was written where.
pub async fn run(args: &ReportArgs) -> Result<String, ReportError> {
    let zone = Zone::new(args.timezone.as_deref())?;
    let (from, to) = args.period(&zone)?;
    let timeout = humantime::parse_duration(&args.timeout)
        .map_err(|e| ReportError::Argument("--timeout", e.to_string()))?;
    let client = Client::new(&args.prometheus_url, timeout)?;
    let job = Job::new(&args.job);
    let source = data_span(&client, &job, from, to, args.allow_partial).await?;
    let report = gather::build(&client, &job, &zone, source).await?;
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
            &zone,
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
                    &chart::svg(&report, args.lang, &zone),
                )?;
            }
            Ok(path.display().to_string())
        }
    }
}

/// The `job` matcher every query carries (`--job`), its value escaped.
pub struct Job {
    name: String,
    matcher: String,
}

impl Job {
    pub fn new(job: &str) -> Self {
        Job {
            name: job.to_string(),
            matcher: format!("job=\"{}\"", quote(job)),
        }
    }

    /// The job, or no job label at all (a fleet-wide alert).
    pub fn or_absent(&self) -> String {
        format!("job=~\"{}|\"", quote(&regex::escape(&self.name)))
    }

    /// `metric{job="...",extra}`.
    pub fn sel(&self, metric: &str, extra: &str) -> String {
        if extra.is_empty() {
            format!("{metric}{{{}}}", self.matcher)
        } else {
            format!("{metric}{{{},{extra}}}", self.matcher)
        }
    }
}

/// `s` as a Markdown table cell: a `|` in a label must not split it.
pub fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// `s` inside a PromQL double-quoted string.
pub fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
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
    // Found to within a step: data within a step of an end reaches it.
    let data_from = if first.0 - from <= step {
        from
    } else {
        first.0
    };
    let data_to = if to - last.0 <= step { to } else { last.0 };
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

pub fn rfc3339(unix: f64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs_f64(unix.max(0.0)))
        .to_string()
}
