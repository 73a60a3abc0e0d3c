//! `llmchat-exporter report` against a real Prometheus holding a month of
//! synthetic but realistic series, loaded with `promtool tsdb
//! create-blocks-from openmetrics`. Expected figures are computed here from
//! the generator, independently of PromQL.

use llmchat_common::lock;
use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{free_port, BIN};

/// 2026-10-01T00:00:00Z and 2026-10-31T00:00:00Z.
pub(crate) const FROM: i64 = 1_790_812_800;
pub(crate) const TO: i64 = FROM + 30 * 86_400;
const STEP: i64 = 300;
/// 2026-10-15T20:00:00Z, the one hour at 60 requests/s.
const PEAK: i64 = FROM + 14 * 86_400 + 20 * 3600;
/// 2026-10-20T03:00:00Z to 06:00: three hours at 30% 5xx (1.5% otherwise).
pub(crate) const INCIDENT: i64 = FROM + 19 * 86_400 + 3 * 3600;
const INCIDENT_END: i64 = INCIDENT + 3 * 3600;
/// 2026-10-06T10:00:00Z: a deploy that changed nothing.
const DEPLOY_CLEAN: i64 = FROM + 5 * 86_400 + 10 * 3600;

/// The share of requests answered 5xx in the step starting at `t`.
fn share_5xx(t: i64) -> f64 {
    if (INCIDENT..INCIDENT_END).contains(&t) {
        0.3
    } else {
        0.015
    }
}

/// Requests per second during the 5 minutes that start at `t`: 10, 30 in
/// the 20:00 UTC hour, 60 in that hour on October 15.
fn rate(t: i64) -> i64 {
    let hour = (t.rem_euclid(86_400)) / 3600;
    if (PEAK..PEAK + 3600).contains(&t) {
        60
    } else if hour == 20 {
        30
    } else {
        10
    }
}

fn busy(t: i64) -> bool {
    (t.rem_euclid(86_400)) / 3600 == 20
}

/// Request durations: half at 0.05 s, 30% at 0.3 s, 15% at 1.5 s, 5% at 4 s.
const DURATIONS: [(f64, f64); 4] = [(0.5, 0.05), (0.3, 0.3), (0.15, 1.5), (0.05, 4.0)];
const BOUNDS: [&str; 7] = ["0.1", "0.5", "1.0", "2.0", "5.0", "10.0", "+Inf"];

pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) labels: String,
    pub(crate) points: Vec<(i64, f64)>,
}

/// Counters that start at 0 one day before FROM and grow by `inc(t)` for
/// the step starting at `t`; gauges that take `value(t)`.
fn generate() -> Vec<Series> {
    generate_between(FROM - 86_400, TO + 3600)
}

/// A counter from 0 at `start`, growing by `inc(t)` in the step starting
/// at `t`, until `end`.
fn counter_series(
    name: &str,
    labels: String,
    start: i64,
    end: i64,
    inc: &dyn Fn(i64) -> f64,
) -> Series {
    let mut v = 0.0;
    let mut points = vec![(start, 0.0)];
    let mut t = start;
    while t < end {
        v += inc(t);
        t += STEP;
        points.push((t, v));
    }
    Series {
        name: name.into(),
        labels,
        points,
    }
}

/// The same series between `start` and `end` (a server that keeps less,
/// or more, than the month).
pub(crate) fn generate_between(start: i64, end: i64) -> Vec<Series> {
    let job = r#"job="llmchat-exporter",instance="a:9842""#;
    let mut out = Vec::new();
    let mut counter = |name: &str, labels: String, inc: &dyn Fn(i64) -> f64| {
        out.push(counter_series(name, labels, start, end, inc));
    };
    let n = |t: i64| (rate(t) * STEP) as f64;
    let shares: [(&str, &dyn Fn(i64) -> f64); 3] = [
        ("200", &|t| 0.99 - share_5xx(t)),
        ("404", &|_| 0.01),
        ("500", &share_5xx),
    ];
    for (status, share) in shares {
        counter(
            "llmchat_http_requests_total",
            format!(r#"{job},method="GET",route="/api/chat",status_code="{status}""#),
            &move |t| n(t) * share(t),
        );
    }
    // Another job with the same metric names (a staging exporter on the
    // same Prometheus): ten times the traffic, all of it 5xx. The report
    // reads --job llmchat-exporter only, so none of it may show.
    counter(
        "llmchat_http_requests_total",
        r#"job="staging-exporter",instance="s:9842",method="GET",route="/api/chat",status_code="503""#.into(),
        &move |t| n(t) * 10.0,
    );
    let route = format!(r#"{job},method="GET",route="/api/chat""#);
    for (i, le) in BOUNDS.iter().enumerate() {
        let below: f64 = DURATIONS
            .iter()
            .filter(|(_, d)| i == 6 || *d <= le.parse::<f64>().unwrap())
            .map(|(share, _)| share)
            .sum();
        counter(
            "llmchat_http_request_duration_seconds_bucket",
            format!(r#"{route},le="{le}""#),
            &move |t| n(t) * below,
        );
    }
    let mean: f64 = DURATIONS.iter().map(|(s, d)| s * d).sum();
    counter(
        "llmchat_http_request_duration_seconds_sum",
        route.clone(),
        &move |t| n(t) * mean,
    );
    counter("llmchat_http_request_duration_seconds_count", route, &n);
    // The staging job's requests all take longer than the top bucket.
    for le in BOUNDS {
        counter(
            "llmchat_http_request_duration_seconds_bucket",
            format!(
                r#"job="staging-exporter",instance="s:9842",method="GET",route="/api/chat",le="{le}""#
            ),
            &move |t| if le == "+Inf" { n(t) * 10.0 } else { 0.0 },
        );
    }
    // pg_stat_statements: 1,000 statements a step at 5 ms on average, two
    // of them calls of slow statements.
    counter(
        "llmchat_database_statement_calls_total",
        job.into(),
        &|_| 1000.0,
    );
    counter(
        "llmchat_database_statement_execution_seconds_total",
        job.into(),
        &|_| 5.0,
    );
    counter("llmchat_database_slow_queries_total", job.into(), &|_| 2.0);
    let mut gauge = |name: &str, labels: &str, value: &dyn Fn(i64) -> f64| {
        let mut points = Vec::new();
        let mut t = start;
        while t <= end {
            points.push((t, value(t)));
            t += STEP;
        }
        out.push(Series {
            name: name.into(),
            labels: labels.into(),
            points,
        });
    };
    gauge("llmchat_host_memory_total_bytes", job, &|_| 16e9);
    gauge("llmchat_host_memory_available_bytes", job, &|t| {
        16e9 * if busy(t) { 0.05 } else { 0.15 }
    });
    gauge("llmchat_host_cpu_usage_ratio", job, &|t| {
        if busy(t) {
            0.9
        } else {
            0.3
        }
    });
    let fs = format!(r#"{job},mountpoint="/",device="/dev/vda",fstype="ext4""#);
    gauge("llmchat_host_filesystem_size_bytes", &fs, &|_| 100e9);
    gauge("llmchat_host_filesystem_available_bytes", &fs, &|_| 30e9);
    // The fullest mount, over the 80% line: the report must name it.
    let data = format!(r#"{job},mountpoint="/data",device="/dev/vdb",fstype="xfs""#);
    gauge("llmchat_host_filesystem_size_bytes", &data, &|_| 500e9);
    gauge("llmchat_host_filesystem_available_bytes", &data, &|_| 75e9);
    gauge(
        "llmchat_database_connections",
        &format!(r#"{job},state="active""#),
        &|t| {
            if busy(t) {
                70.0
            } else {
                5.0
            }
        },
    );
    gauge(
        "llmchat_database_connections",
        &format!(r#"{job},state="idle""#),
        &|_| 15.0,
    );
    gauge("llmchat_database_connections_max", job, &|_| 100.0);
    gauge("llmchat_database_ping_duration_seconds", job, &|_| 0.002);
    gauge("llmchat_database_statements_available", job, &|_| 1.0);
    // One sample between two 5-minute ones at 99%: a maximum read from
    // 5-minute points would say 95%.
    if let Some(memory) = out
        .iter_mut()
        .find(|s| s.name == "llmchat_host_memory_available_bytes")
    {
        let spike = PEAK + 150;
        if let Some(i) = memory.points.iter().position(|(t, _)| *t > spike) {
            memory.points.insert(i, (spike, 16e9 * 0.01));
        }
    }
    // The alert Prometheus raised during the incident (a sample a minute,
    // as its rule evaluation writes them), plus two that must stay out:
    // the always-firing Watchdog, and the staging job's own alert.
    let mut alert = |labels: &str, from: i64, to: i64, every: usize| {
        let points = (from..to)
            .step_by(every)
            .filter(|t| (start..=end).contains(t))
            .map(|t| (t, 1.0))
            .collect();
        out.push(Series {
            name: "ALERTS".into(),
            labels: labels.into(),
            points,
        });
    };
    alert(
        r#"alertname="LLMChatHighErrorRate",alertstate="firing",severity="critical",job="llmchat-exporter",instance="a:9842""#,
        INCIDENT + 300,
        INCIDENT_END + 300,
        60,
    );
    alert(
        r#"alertname="Watchdog",alertstate="firing",severity="none""#,
        start,
        end,
        STEP as usize,
    );
    alert(
        r#"alertname="LLMChatHighErrorRate",alertstate="firing",severity="critical",job="staging-exporter",instance="s:9842""#,
        start,
        end,
        STEP as usize,
    );
    // Versions: a clean deploy on October 6 and one at the start of the
    // incident (the worst); the staging job's own deploy stays out.
    let mut version = |labels: &str, from: i64, to: i64| {
        let points = (from..to)
            .step_by(STEP as usize)
            .filter(|t| (start..=end).contains(t))
            .map(|t| (t, 1.0))
            .collect();
        out.push(Series {
            name: "llmchat_app_info".into(),
            labels: labels.into(),
            points,
        });
    };
    version(&format!(r#"{job},version="1.4.0""#), start, DEPLOY_CLEAN);
    version(&format!(r#"{job},version="1.4.1""#), DEPLOY_CLEAN, INCIDENT);
    version(&format!(r#"{job},version="1.5.0""#), INCIDENT, end + STEP);
    let staging = r#"job="staging-exporter",instance="s:9842""#;
    version(
        &format!(r#"{staging},version="9.9.9""#),
        start,
        FROM + 2 * 86_400,
    );
    version(
        &format!(r#"{staging},version="9.9.10""#),
        FROM + 2 * 86_400,
        end + STEP,
    );
    chat_and_llm(&mut out, start, end);
    backup_series(&mut out, start, end);
    out
}

/// backup.sh at 02:00 every day, each file read back at 02:05; the
/// database dump of October 12 is found truncated (the newest dump does
/// not read back until the next night's).
fn backup_series(out: &mut Vec<Series>, start: i64, end: i64) {
    let job = r#"job="llmchat-exporter",instance="a:9842""#;
    let bad = FROM + 11 * 86_400 + 7500;
    let mut gauge = |name: &str, kind: &str, value: &dyn Fn(i64) -> f64| {
        let points = (start..=end)
            .step_by(STEP as usize)
            .map(|t| (t, value(t)))
            .collect();
        out.push(Series {
            name: name.into(),
            labels: format!(r#"{job},kind="{kind}""#),
            points,
        });
    };
    let at = |t: i64, offset: i64| ((t - offset).div_euclid(86_400) * 86_400 + offset) as f64;
    for kind in ["database", "uploads"] {
        gauge("llmchat_backup_newest_timestamp_seconds", kind, &|t| {
            at(t, 7200)
        });
        gauge(
            "llmchat_backup_newest_check_timestamp_seconds",
            kind,
            &|t| at(t, 7500),
        );
        let broken = kind == "database";
        gauge("llmchat_backup_newest_valid", kind, &move |t| {
            if broken && (bad..bad + 86_400).contains(&t) {
                0.0
            } else {
                1.0
            }
        });
    }
    // The restore drill at 03:00 every day; October 12's failed.
    let drill_day = FROM + 11 * 86_400 + 10_800;
    for (result, counts) in [
        (
            "succeeded",
            &(|day: i64| day != drill_day) as &dyn Fn(i64) -> bool,
        ),
        ("failed", &|day: i64| day == drill_day),
    ] {
        out.push(Series {
            name: "llmchat_backup_drill_runs_total".into(),
            labels: format!(r#"{job},result="{result}""#),
            points: (start..=end)
                .step_by(STEP as usize)
                .map(|t| {
                    let first = (start - 10_800).div_euclid(86_400) + 1;
                    let last = (t - 10_800).div_euclid(86_400);
                    let n = (first..=last)
                        .filter(|d| counts(d * 86_400 + 10_800))
                        .count();
                    (t, n as f64)
                })
                .collect(),
        });
    }
    out.push(Series {
        name: "llmchat_backup_invalid_files_total".into(),
        labels: format!(r#"{job},kind="database",reason="truncated""#),
        points: (start..=end)
            .step_by(STEP as usize)
            .map(|t| (t, if t >= bad { 1.0 } else { 0.0 }))
            .collect(),
    });
}

/// What a counter grows by in the step starting at a time.
type PerStep<'a> = &'a dyn Fn(i64) -> f64;

/// The bounds of FIRST_TOKEN_BUCKETS (the GenAI conventions') the data
/// below lands in, and +Inf: the others would only repeat their
/// neighbours' counts, and a month of them is slow to backfill.
const FIRST_TOKEN_BOUNDS: [&str; 5] = ["0.32", "0.64", "1.28", "2.56", "+Inf"];

/// The chat events' series, per 5-minute step; messages and spend from a
/// month before FROM (the LLM section compares each agent's cost per
/// message with the period before): gpt-4o on OpenAI (0.425 USD, 1 rate-limited call),
/// claude on Anthropic (0.405 USD, 5 overloaded), qwen on Dify (CNY:
/// 0.144 before FROM, 0.224 from it, its input doubled; 8 provider 5xx)
/// and an unpriced embedding model.
fn chat_and_llm(out: &mut Vec<Series>, start: i64, end: i64) {
    let job = r#"job="llmchat-exporter",instance="a:9842""#;
    let early = start.min(FROM - 30 * 86_400);
    let mut counter = |name: &str, labels: String, inc: &dyn Fn(i64) -> f64| {
        let start = if name == "llmchat_chat_messages_total" || name == "llmchat_chat_cost_total" {
            early
        } else {
            start
        };
        out.push(counter_series(name, labels, start, end, inc));
    };
    for (agent, status, per_step) in [
        ("gpt-4o", "success", 100.0),
        ("gpt-4o", "error", 1.0),
        ("claude", "success", 50.0),
        ("claude", "error", 5.0),
        ("qwen", "success", 92.0),
        ("qwen", "error", 8.0),
    ] {
        counter(
            "llmchat_chat_messages_total",
            format!(r#"{job},agent_id="{agent}",status="{status}""#),
            &move |_| per_step,
        );
    }
    let qwen_input = |t: i64| if t < FROM { 50_000.0 } else { 100_000.0 };
    let tokens: [(&str, &str, &str, PerStep); 8] = [
        ("gpt-4o", "gpt-4o", "input", &|_| 100_000.0),
        ("gpt-4o", "gpt-4o", "cached_input", &|_| 20_000.0),
        ("gpt-4o", "gpt-4o", "output", &|_| 20_000.0),
        ("claude", "claude-3-5-sonnet", "input", &|_| 60_000.0),
        ("claude", "claude-3-5-sonnet", "output", &|_| 15_000.0),
        ("qwen", "qwen-max", "input", &qwen_input),
        ("qwen", "qwen-max", "output", &|_| 10_000.0),
        ("qwen", "bge-embed", "input", &|_| 5_000.0),
    ];
    for (agent, model, kind, inc) in tokens {
        counter(
            "llmchat_chat_tokens_total",
            format!(r#"{job},agent_id="{agent}",model="{model}",type="{kind}""#),
            inc,
        );
    }
    counter(
        "llmchat_chat_unpriced_tokens_total",
        format!(r#"{job},agent_id="qwen",model="bge-embed",type="input""#),
        &|_| 5_000.0,
    );
    let qwen_cost = move |t: i64| (qwen_input(t) * 1.6 + 10_000.0 * 6.4) / 1e6;
    let costs: [(&str, &str, &str, PerStep); 3] = [
        ("gpt-4o", "gpt-4o", "USD", &|_| 0.425),
        ("claude", "claude-3-5-sonnet", "USD", &|_| 0.405),
        ("qwen", "qwen-max", "CNY", &qwen_cost),
    ];
    for (agent, model, currency, inc) in costs {
        counter(
            "llmchat_chat_cost_total",
            format!(r#"{job},agent_id="{agent}",model="{model}",currency="{currency}""#),
            inc,
        );
    }
    for (agent, provider, calls, error_type, errors) in [
        ("gpt-4o", "openai", 101.0, "rate_limited", 1.0),
        ("claude", "anthropic", 55.0, "overloaded", 5.0),
        ("qwen", "dify", 100.0, "provider_5xx", 8.0),
    ] {
        counter(
            "llmchat_chat_provider_calls_total",
            format!(r#"{job},agent_id="{agent}",provider="{provider}""#),
            &move |_| calls,
        );
        counter(
            "llmchat_chat_provider_errors_total",
            format!(r#"{job},agent_id="{agent}",provider="{provider}",error_type="{error_type}""#),
            &move |_| errors,
        );
    }
    // Streamed answers per step, cumulative by bound: gpt-4o 50 within
    // 0.32 s, 90 within 0.64 s, all 100 within 1.28 s; claude 20 within
    // 0.64 s, 38 within 1.28 s, all 40 within 2.56 s.
    for (agent, model, cumulative) in [
        (
            "gpt-4o",
            "gpt-4o",
            [(0.32, 50.0), (0.64, 90.0), (1.28, 100.0)],
        ),
        (
            "claude",
            "claude-3-5-sonnet",
            [(0.64, 20.0), (1.28, 38.0), (2.56, 40.0)],
        ),
    ] {
        for le in FIRST_TOKEN_BOUNDS {
            let bound: f64 = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            let below = cumulative
                .iter()
                .rev()
                .find(|(b, _)| bound >= *b)
                .map_or(0.0, |(_, n)| *n);
            counter(
                "llmchat_chat_time_to_first_token_seconds_bucket",
                format!(r#"{job},agent_id="{agent}",model="{model}",le="{le}""#),
                &move |_| below,
            );
        }
    }
}

pub(crate) fn openmetrics(series: &[Series]) -> String {
    let mut text = String::new();
    let mut names: Vec<&str> = Vec::new();
    for s in series {
        if !names.contains(&s.name.as_str()) {
            names.push(&s.name);
        }
    }
    for name in names {
        // `unknown` keeps every sample name as it is; PromQL needs no type.
        let _ = writeln!(text, "# TYPE {name} unknown");
        for s in series.iter().filter(|s| s.name == name) {
            for (t, v) in &s.points {
                let _ = writeln!(text, "{name}{{{}}} {v} {t}", s.labels);
            }
        }
    }
    text.push_str("# EOF\n");
    text
}

/// What the generator says the month holds, step by step.
pub(crate) struct Expected {
    pub(crate) requests: f64,
    pub(crate) server_errors: f64,
    busiest_hour: (i64, f64),
}

impl Expected {
    /// 4xx (1%) and 5xx over all requests.
    pub(crate) fn error_ratio(&self) -> f64 {
        (self.requests * 0.01 + self.server_errors) / self.requests
    }
}

pub(crate) fn expected() -> Expected {
    let mut requests = 0.0;
    let mut server_errors = 0.0;
    let mut hours = std::collections::BTreeMap::new();
    let mut t = FROM;
    while t < TO {
        requests += (rate(t) * STEP) as f64;
        server_errors += (rate(t) * STEP) as f64 * share_5xx(t);
        *hours.entry(t - t.rem_euclid(3600)).or_insert(0.0) += (rate(t) * STEP) as f64;
        t += STEP;
    }
    let (hour, n) = hours
        .into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    Expected {
        requests,
        server_errors,
        busiest_hour: (hour, n / 3600.0),
    }
}

pub(crate) struct Prometheus {
    child: Child,
    pub(crate) url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus_with_a_month() -> Prometheus {
    prometheus_with(&generate(), "100y")
}

/// TSDB blocks of `series`, made once per content and kept in Cargo's
/// scratch directory for integration tests: promtool takes tens of seconds
/// over a month of samples, and several tests read the same month.
fn blocks_of(series: &[Series]) -> std::path::PathBuf {
    use std::hash::{Hash, Hasher};
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let text = openmetrics(series);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("report-blocks-{:016x}", hasher.finish()));
    let _one_at_a_time = lock(&MAKING);
    if dir.join("done").exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("input.om");
    std::fs::write(&input, text).unwrap();
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
        .arg(&input)
        .arg(dir.join("data"))
        .output()
        .expect("promtool (apt-get install prometheus)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&input).unwrap();
    std::fs::write(dir.join("done"), "").unwrap();
    dir
}

/// A real Prometheus holding `series` (backfilled with promtool) and
/// keeping `retention`, on its own copy of the blocks.
pub(crate) fn prometheus_with(series: &[Series], retention: &str) -> Prometheus {
    let blocks = blocks_of(series);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    llmchat_tests::copy_dir(&blocks.join("data"), &data);
    serve(dir, retention)
}

/// A real Prometheus holding `series`, backfilled into its own directory
/// (data relative to now is new each run: nothing to keep).
pub(crate) fn prometheus_with_recent(series: &[Series]) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.om");
    std::fs::write(&input, openmetrics(series)).unwrap();
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
        .arg(&input)
        .arg(dir.path().join("data"))
        .output()
        .expect("promtool (apt-get install prometheus)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serve(dir, "100y")
}

/// Prometheus on the TSDB in `dir`/data.
fn serve(dir: tempfile::TempDir, retention: &str) -> Prometheus {
    let data = dir.path().join("data");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1m\n").unwrap();
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--storage.tsdb.retention.time={retention}"))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (apt-get install prometheus)");
    let url = format!("http://127.0.0.1:{port}");
    let prom = Prometheus {
        child,
        url,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reqwest::blocking::get(format!("{}/-/ready", prom.url))
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "prometheus did not become ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    prom
}

/// The report in UTC unless a test says otherwise: the machine's zone is
/// the default, and a developer's must not change a result.
pub(crate) fn report(args: &[&str]) -> std::process::Output {
    report_in("UTC", args)
}

/// The report with `TZ` set to `zone` (the machine's zone, as it sees it).
pub(crate) fn report_in(zone: &str, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("report")
        .args(args)
        .env("TZ", zone)
        .output()
        .unwrap()
}

pub(crate) fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-6 * want.abs().max(1.0),
        "{what}: got {got}, want {want}"
    );
}

const MONTH: [&str; 4] = [
    "--from",
    "2026-10-01T00:00:00Z",
    "--to",
    "2026-10-31T00:00:00Z",
];

fn json(prom: &Prometheus, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--prometheus.url", prom.url.as_str(), "--format", "json"];
    args.extend_from_slice(extra);
    let out = report(&args);
    assert!(
        out.status.success(),
        "{extra:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn monthly_report_from_a_real_prometheus() {
    let prom = prometheus_with_a_month();
    let r = json(&prom, &MONTH);
    // The job's two deploys (not the staging job's), each with the hour
    // before and after; the one at the incident's start is the worst.
    let deploys = r["deploys"].as_array().expect("deploys");
    assert_eq!(deploys.len(), 2, "{deploys:?}");
    let (clean, bad) = (&deploys[0], &deploys[1]);
    assert_eq!(clean["version"], "1.4.1");
    assert_eq!(clean["previous_version"], "1.4.0");
    assert!(
        (clean["at"].as_f64().unwrap() - DEPLOY_CLEAN as f64).abs() <= 60.0,
        "{clean}"
    );
    assert_eq!(clean["worst"], false);
    close(
        clean["after"]["error_ratio"].as_f64().unwrap(),
        0.015,
        "clean after",
    );
    assert_eq!(bad["version"], "1.5.0");
    assert_eq!(bad["previous_version"], "1.4.1");
    assert_eq!(bad["instances"], 1);
    assert!(
        (bad["at"].as_f64().unwrap() - INCIDENT as f64).abs() <= 60.0,
        "{bad}"
    );
    assert_eq!(bad["worst"], true);
    close(
        bad["before"]["error_ratio"].as_f64().unwrap(),
        0.015,
        "before the bad deploy",
    );
    close(
        bad["after"]["error_ratio"].as_f64().unwrap(),
        0.3,
        "after the bad deploy",
    );
    let f = |k: &str| {
        r[k].as_f64()
            .unwrap_or_else(|| panic!("{k} missing in {r}"))
    };
    let exp = expected();
    let seconds = (TO - FROM) as f64;
    // The report names its server, the span it covered (all of it) and
    // the zone its times are in.
    assert_eq!(r["source"]["server"], prom.url.as_str());
    assert_eq!(r["source"]["partial"], false);
    assert!(r["source"]["version"].is_string(), "{}", r["source"]);
    assert_eq!(r["timezone"], "UTC");
    close(f("from"), FROM as f64, "from");

    close(f("requests"), exp.requests, "requests");
    close(f("client_errors"), exp.requests * 0.01, "4xx");
    close(f("server_errors"), exp.server_errors, "5xx");
    close(f("error_ratio"), exp.error_ratio(), "error ratio");
    close(f("requests_per_second"), exp.requests / seconds, "rps");
    close(f("requests_per_day"), exp.requests / 30.0, "per day");
    let mean: f64 = DURATIONS.iter().map(|(s, d)| s * d).sum();
    close(f("mean_response_seconds"), mean, "mean");
    // 95% of requests are at or below 2 s and 80% below 1 s: the 95th
    // lands on the top of (1, 2]; the 99th is 4/5 into (2, 5].
    close(f("p95_response_seconds"), 2.0, "p95");
    close(f("p99_response_seconds"), 2.0 + 3.0 * 0.8, "p99");
    assert_eq!(r["p95_above_top_bucket"], false);
    // A mean over time takes every 5-minute point of [FROM, TO], both ends
    // included (Prometheus 2.x ranges are closed): 8641 points.
    let mean_of = |value: &dyn Fn(i64) -> f64| {
        let points: Vec<f64> = (0..=(TO - FROM) / STEP)
            .map(|i| value(FROM + i * STEP))
            .collect();
        points.iter().sum::<f64>() / points.len() as f64
    };
    let memory_mean = mean_of(&|t| if busy(t) { 0.95 } else { 0.85 });
    // The mean of available bytes includes the one 99% sample.
    assert!(
        (r["memory"]["mean"].as_f64().unwrap() - memory_mean).abs() < 1e-4,
        "memory mean {}",
        r["memory"]
    );
    // The 99% sample between two 5-minute points is the maximum.
    close(r["memory"]["max"].as_f64().unwrap(), 0.99, "memory max");
    let cpu_mean = mean_of(&|t| if busy(t) { 0.9 } else { 0.3 });
    close(r["cpu"]["mean"].as_f64().unwrap(), cpu_mean, "cpu mean");
    close(r["cpu"]["max"].as_f64().unwrap(), 0.9, "cpu max");
    // The fullest mount, named.
    close(r["disk"]["max"].as_f64().unwrap(), 0.85, "disk max");
    assert_eq!(r["disk"]["mountpoint"], "/data");
    assert_eq!(r["disk"]["instance"], "a:9842");
    let db = &r["database"];
    let conn_mean = mean_of(&|t| if busy(t) { 85.0 } else { 20.0 });
    close(
        db["connections"]["mean"].as_f64().unwrap(),
        conn_mean,
        "conn mean",
    );
    close(db["connections"]["max"].as_f64().unwrap(), 85.0, "conn max");
    close(
        db["max_connections"].as_f64().unwrap(),
        100.0,
        "max_connections",
    );
    close(db["ping_seconds"].as_f64().unwrap(), 0.002, "ping");
    assert_eq!(db["statements_available"], true);
    close(
        db["statements_mean_seconds"].as_f64().unwrap(),
        0.005,
        "statements' mean",
    );
    close(
        db["slow_queries"].as_f64().unwrap(),
        2.0 * 8640.0,
        "slow queries",
    );

    // The busiest single hour and the typical daily peak, on whole hours.
    let busiest = &r["busiest_hour"];
    assert_eq!(
        busiest["start"].as_f64().unwrap() as i64,
        exp.busiest_hour.0
    );
    assert_eq!(exp.busiest_hour.0, PEAK);
    close(
        busiest["requests_per_second"].as_f64().unwrap(),
        exp.busiest_hour.1,
        "busiest rate",
    );
    assert_eq!(r["typical_peak"]["hour_of_day"], 20);
    close(
        r["typical_peak"]["requests_per_second"].as_f64().unwrap(),
        (29.0 * 30.0 + 60.0) / 30.0,
        "typical peak rate",
    );
    assert_eq!(r["timeline_resolution"], "day");
    let timeline = r["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), 30);
    close(
        timeline[0]["p95"]["seconds"].as_f64().unwrap(),
        2.0,
        "daily p95",
    );
    close(
        timeline[0]["start"].as_f64().unwrap(),
        FROM as f64,
        "first day",
    );

    // The incident: its three hours are the worst, its day the worst day,
    // and its alert is listed with its span; the Watchdog and the staging
    // job's alert are not.
    let worst = r["worst_hours"].as_array().unwrap();
    for (i, h) in worst.iter().take(3).enumerate() {
        assert_eq!(
            h["start"].as_f64().unwrap() as i64,
            INCIDENT + 3600 * i as i64,
            "{worst:?}"
        );
        close(
            h["server_error_ratio"].as_f64().unwrap(),
            0.3,
            "incident 5xx",
        );
    }
    assert_eq!(worst.len(), 3, "ordinary hours are not listed: {worst:?}");
    assert_eq!(r["worst_days"].as_array().unwrap().len(), 1);
    assert_eq!(
        r["slowest_hour"],
        serde_json::Value::Null,
        "all hours alike"
    );
    assert_eq!(
        r["worst_days"][0]["start"].as_f64().unwrap() as i64,
        INCIDENT - 3 * 3600
    );
    let alerts = r["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!(a["alertname"], "LLMChatHighErrorRate");
    assert_eq!(a["labels"]["instance"], "a:9842");
    assert_eq!(a["start"].as_f64().unwrap() as i64, INCIDENT + 300);
    // Backfilled samples have no stale marker at the end, so the series
    // stays visible for Prometheus' 5-minute lookback after the last one.
    let end = a["end"].as_f64().unwrap() as i64;
    assert!(
        (INCIDENT_END + 300..=INCIDENT_END + 600).contains(&end),
        "end {end}"
    );
    assert_eq!(
        r["most_saturated_hour"]["start"].as_f64().unwrap() as i64,
        PEAK,
        "the 99% memory sample"
    );

    let agents = r["agents"].as_array().unwrap();
    let agent = |id: &str| {
        agents
            .iter()
            .find(|a| a["agent_id"] == id)
            .unwrap_or_else(|| panic!("{id} in {agents:?}"))
    };
    close(
        agent("gpt-4o")["error_ratio"].as_f64().unwrap(),
        1.0 / 101.0,
        "gpt-4o errors",
    );
    close(
        agent("claude")["error_ratio"].as_f64().unwrap(),
        5.0 / 55.0,
        "claude errors",
    );

    // checkThresholds: mean > 500 ms warning, error rate > 1% critical,
    // memory > 80% warning; plus /data over 80%, connections > 80% of max
    // and two agents over 5% errors. Each names its subject.
    let findings: Vec<(String, String, String)> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let subject = ["route", "instance", "mountpoint", "agent_id", "backup_kind"]
                .iter()
                .filter_map(|k| f[*k].as_str().map(|v| format!("{k}={v}")))
                .collect::<Vec<_>>()
                .join(" ");
            (
                f["kind"].as_str().unwrap().into(),
                f["severity"].as_str().unwrap().into(),
                subject,
            )
        })
        .collect();
    let want: Vec<(String, String, String)> = [
        ("performance", "warning", "route=/api/chat"),
        ("error_rate", "critical", "route=/api/chat"),
        ("memory", "warning", "instance=a:9842"),
        ("disk", "warning", "instance=a:9842 mountpoint=/data"),
        ("database_connections", "warning", ""),
        ("agent_errors", "warning", "agent_id=qwen"),
        ("agent_errors", "warning", "agent_id=claude"),
        ("agent_cost_per_message", "warning", "agent_id=qwen"),
        ("backup_invalid", "critical", "backup_kind=database"),
        ("backup_drill_failed", "warning", ""),
    ]
    .iter()
    .map(|(k, s, x)| (k.to_string(), s.to_string(), x.to_string()))
    .collect();
    assert_eq!(findings, want);

    // Backups: one a night per kind, each read back, October 12's dump
    // truncated; the newest of each reads back at the month's end.
    let backups: Vec<(String, f64, f64, f64, bool)> = r["backups"]["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["kind"].as_str().unwrap().to_string(),
                k["made"].as_f64().unwrap(),
                k["checked"].as_f64().unwrap(),
                k["invalid"]["truncated"].as_f64().unwrap_or(0.0),
                k["newest_valid"] == true,
            )
        })
        .collect();
    assert_eq!(
        backups,
        [
            ("database".to_string(), 30.0, 30.0, 1.0, true),
            ("uploads".to_string(), 30.0, 30.0, 0.0, true),
        ]
    );
    // The restore drills: one a night, October 12's failed.
    assert_eq!(r["backups"]["drills"]["succeeded"], 29.0);
    assert_eq!(r["backups"]["drills"]["failed"], 1.0);

    // LLM usage, against the generator's own figures (8,640 steps): tokens
    // per agent and model, spend to the cent, the top agents by spend per
    // currency, cost per message against September's, time to first token
    // and provider error rates.
    let llm = &r["llm"];
    let model = |agent: &str, model: &str| {
        llm["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["agent_id"] == agent && m["model"] == model)
            .unwrap_or_else(|| panic!("{agent}/{model} in {llm}"))
            .clone()
    };
    for (agent, name, input, cached, output, cost) in [
        (
            "gpt-4o",
            "gpt-4o",
            100_000.0,
            20_000.0,
            20_000.0,
            Some(3672.00),
        ),
        (
            "claude",
            "claude-3-5-sonnet",
            60_000.0,
            0.0,
            15_000.0,
            Some(3499.20),
        ),
        ("qwen", "qwen-max", 100_000.0, 0.0, 10_000.0, Some(1935.36)),
        ("qwen", "bge-embed", 5_000.0, 0.0, 0.0, None),
    ] {
        let m = model(agent, name);
        let what = format!("{agent}/{name}");
        close(m["input_tokens"].as_f64().unwrap(), input * 8640.0, &what);
        close(
            m["cached_input_tokens"].as_f64().unwrap(),
            cached * 8640.0,
            &what,
        );
        close(m["output_tokens"].as_f64().unwrap(), output * 8640.0, &what);
        match cost {
            Some(c) => assert!(
                (m["cost"].as_f64().unwrap() - c).abs() < 0.005,
                "{what}: spend {} against {c}",
                m["cost"]
            ),
            None => assert!(m["cost"].is_null(), "{what}: unpriced, not free: {m}"),
        }
    }
    close(
        llm["unpriced_tokens"].as_f64().unwrap(),
        5_000.0 * 8640.0,
        "unpriced",
    );
    let agents: Vec<(String, String)> = llm["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["currency"].as_str().unwrap().into(),
                a["agent_id"].as_str().unwrap().into(),
            )
        })
        .collect();
    let pairs = |l: &[(&str, &str)]| -> Vec<(String, String)> {
        l.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        agents,
        pairs(&[("CNY", "qwen"), ("USD", "gpt-4o"), ("USD", "claude")])
    );
    let qwen = &llm["agents"][0];
    close(
        qwen["cost_per_message"].as_f64().unwrap(),
        0.224 / 100.0,
        "qwen now",
    );
    close(
        qwen["previous_cost_per_message"].as_f64().unwrap(),
        0.144 / 100.0,
        "qwen before",
    );
    let gpt = &llm["agents"][1];
    close(
        gpt["cost_per_message"].as_f64().unwrap(),
        gpt["previous_cost_per_message"].as_f64().unwrap(),
        "gpt-4o's cost per message did not move",
    );
    let first = llm["first_token"].as_array().unwrap();
    let p = |i: usize, q: &str| first[i][q]["seconds"].as_f64().unwrap();
    assert_eq!(first[0]["agent_id"], "claude");
    close(
        first[0]["answers"].as_f64().unwrap(),
        40.0 * 8640.0,
        "claude answers",
    );
    close(p(0, "p50"), 0.64, "claude p50");
    close(p(0, "p95"), 1.28, "claude p95");
    close(p(0, "p99"), 2.304, "claude p99");
    assert_eq!(first[1]["agent_id"], "gpt-4o");
    close(p(1, "p50"), 0.32, "gpt-4o p50");
    close(p(1, "p95"), 0.96, "gpt-4o p95");
    close(p(1, "p99"), 1.216, "gpt-4o p99");
    type Provider = (String, f64, Vec<(String, f64)>);
    let providers: Vec<Provider> = llm["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let errors = p["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (e[0].as_str().unwrap().to_string(), e[1].as_f64().unwrap()))
                .collect();
            (
                p["provider"].as_str().unwrap().into(),
                p["calls"].as_f64().unwrap(),
                errors,
            )
        })
        .collect();
    let want_providers = [
        ("openai", 101.0, "rate_limited", 1.0),
        ("dify", 100.0, "provider_5xx", 8.0),
        ("anthropic", 55.0, "overloaded", 5.0),
    ];
    assert_eq!(providers.len(), 3, "{providers:?}");
    for ((name, calls, errors), (want, n, kind, failed)) in providers.iter().zip(want_providers) {
        assert_eq!(name, want);
        close(*calls, n * 8640.0, want);
        assert_eq!(errors.len(), 1, "{want}: {errors:?}");
        assert_eq!(errors[0].0, kind);
        close(errors[0].1, failed * 8640.0, kind);
    }

    // Markdown, English and Chinese, with the chart beside it.
    let dir = tempfile::tempdir().unwrap();
    for (lang, needles) in [
        (
            "en",
            &[
                "## Response time",
                "## Error rate",
                "## Throughput",
                "## Resource usage",
                "## Database performance",
                "## Recommendations",
                "Mean response time too high: 540.00ms",
                "**CRITICAL** Error rate too high:",
                "Busiest hour: 2026-10-15 20:00–21:00 (60.00 req/s)",
                "| 2026-10-20 03:00–04:00 | 10.00 | 30.00% |",
                "| LLMChatHighErrorRate | critical | instance=a:9842 | 2026-10-20 03:05 |",
                "Agent qwen's error ratio is 8.00%",
                "Agent claude's error ratio is 9.09%",
                "Disk usage of /data on a:9842 reached 85.00%",
                "Start with the worst hour, 2026-10-20 03:00–04:00 (5xx 30.00%), when LLMChatHighErrorRate fired.",
                "P95 and P99 are estimates",
            ][..],
        ),
        (
            "zh",
            &[
                "## 响应时间",
                "## 错误率",
                "## 吞吐量",
                "## 资源使用",
                "## 数据库性能",
                "## 建议",
                "平均响应时间过高: 540.00ms",
                "错误率过高:",
                "最繁忙的一小时: 2026-10-15 20:00–21:00",
                "智能体 qwen 的错误率为 8.00%",
                "智能体 claude 的错误率为 9.09%",
                "慢查询数量",
                "内存使用率: 平均",
                "，最高 99.00%",
            ][..],
        ),
    ] {
        let path = dir.path().join(format!("report-{lang}.md"));
        let mut args = vec![
            "--prometheus.url",
            prom.url.as_str(),
            "--lang",
            lang,
            "--output",
        ];
        let p = path.to_str().unwrap().to_string();
        args.push(&p);
        args.extend_from_slice(&MONTH);
        let out = report(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let md = std::fs::read_to_string(&path).unwrap();
        for n in needles {
            assert!(md.contains(n), "{lang}: {n:?} missing in\n{md}");
        }
        let chart_name = format!("report-{lang}-chart.svg");
        assert!(md.contains(&format!("]({chart_name})")));
        let svg = std::fs::read_to_string(dir.path().join(&chart_name)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.matches("<polyline").count() == 2,
            "{svg}"
        );
        let title = if lang == "zh" { "每日每秒请求数" } else { "Daily requests/s" };
        assert!(svg.contains(title), "{lang}: {svg}");
    }

    // A range with no data: a clear error, not an empty healthy report.
    let out = report(&[
        "--prometheus.url",
        &prom.url,
        "--from",
        "2025-01-01T00:00:00Z",
        "--to",
        "2025-01-31T00:00:00Z",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no LLMChat data"));
    assert!(out.stdout.is_empty());
}

/// The golden reports of the fixture: English in UTC, Chinese in
/// Asia/Shanghai. `LLMCHAT_BLESS=1` rewrites them after a deliberate
/// change; the diff is then the review.
#[test]
fn golden_reports_in_english_and_chinese() {
    let prom = prometheus_with_a_month();
    for (lang, zone, from, to) in [
        ("en", "UTC", "2026-10-01T00:00:00Z", "2026-10-31T00:00:00Z"),
        (
            "zh",
            "Asia/Shanghai",
            "2026-10-01T00:00:00+08:00",
            "2026-10-31T00:00:00+08:00",
        ),
    ] {
        let out = report(&[
            "--prometheus.url",
            &prom.url,
            "--lang",
            lang,
            "--timezone",
            zone,
            "--from",
            from,
            "--to",
            to,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let md = String::from_utf8(out.stdout).unwrap();
        // The server's address and version change from run to run.
        let md = md
            .lines()
            .map(|l| {
                if l.contains(&prom.url) {
                    let (head, _) = l.split_once("http").unwrap();
                    let tail = l.rsplit_once(')').map_or("", |(_, t)| t);
                    format!("{head}http://prometheus (VERSION){tail}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n";
        let golden =
            crate::helpers::repo_root().join(format!("exporter/tests/golden/report-{lang}.md"));
        if std::env::var_os("LLMCHAT_BLESS").is_some() {
            std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
            std::fs::write(&golden, &md).unwrap();
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("{}: {e} (LLMCHAT_BLESS=1 writes it)", golden.display()));
        if md != want {
            let line = md
                .lines()
                .zip(want.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(md.lines().count().min(want.lines().count()));
            panic!(
                "{lang}: the report differs from {} at line {}:\n got: {:?}\nwant: {:?}\n(LLMCHAT_BLESS=1 rewrites it)\n{md}",
                golden.display(),
                line + 1,
                md.lines().nth(line),
                want.lines().nth(line)
            );
        }
    }
}

#[test]
fn unreachable_prometheus_is_exit_1_with_a_clear_message() {
    let port = free_port();
    let out = report(&[
        "--prometheus.url",
        &format!("http://127.0.0.1:{port}"),
        "--range",
        "30d",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unreachable"), "{err}");
    assert!(err.contains("connection refused"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "the URL: {err}");
    assert!(out.stdout.is_empty());

    // A server that accepts and never answers: the timeout, named.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let out = report(&[
        "--prometheus.url",
        &url,
        "--range",
        "30d",
        "--timeout",
        "1s",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no answer within --timeout 1s"), "{err}");
    assert!(err.contains(&url), "{err}");

    // A name that does not resolve.
    let out = report(&[
        "--prometheus.url",
        "http://prometheus.invalid:9090",
        "--range",
        "30d",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not resolve"), "{err}");
}

/// Any period the flags accept makes a report: an hour, twelve hours
/// (hourly points under two days), three days (daily points), 90 days over
/// the 31 the server holds (refused, or partial when allowed), two years
/// (over Prometheus' point limit at an hour a point); the other job's
/// series stay out; on stdout the Markdown links no chart it did not write.
#[test]
fn every_period_one_job_and_no_phantom_chart() {
    let prom = prometheus_with_a_month();
    let at = |from: &str, to: &str, extra: &[&str]| {
        let mut args = vec!["--from", from, "--to", to];
        args.extend_from_slice(extra);
        json(&prom, &args)
    };
    let hour = at("2026-10-10T10:00:00Z", "2026-10-10T11:00:00Z", &[]);
    assert_eq!(hour["timeline_resolution"], "hour");
    assert_eq!(
        hour["timeline"].as_array().unwrap().len(),
        1,
        "{}",
        hour["timeline"]
    );
    close(
        hour["requests"].as_f64().unwrap(),
        10.0 * 3600.0,
        "requests in the hour",
    );
    let half_day = at("2026-10-10T00:00:00Z", "2026-10-10T12:00:00Z", &[]);
    assert_eq!(half_day["timeline"].as_array().unwrap().len(), 12);
    let three_days = at("2026-10-10T00:00:00Z", "2026-10-13T00:00:00Z", &[]);
    assert_eq!(three_days["timeline_resolution"], "day");
    assert_eq!(three_days["timeline"].as_array().unwrap().len(), 3);
    // The month's own test holds the exact figures of llmchat-exporter's
    // job; here, the other job is there when asked for, and only then.
    close(
        half_day["error_ratio"].as_f64().unwrap(),
        0.025,
        "own job's errors only",
    );
    assert_eq!(half_day["alerts"].as_array().unwrap().len(), 0);
    let staging = at(
        "2026-10-10T00:00:00Z",
        "2026-10-10T12:00:00Z",
        &["--job", "staging-exporter"],
    );
    close(
        staging["error_ratio"].as_f64().unwrap(),
        1.0,
        "the staging job: all 503",
    );
    assert_eq!(staging["alerts"][0]["labels"]["instance"], "s:9842");

    // 90 days where the server holds 31: refused, naming what it holds;
    // with --allow-partial, the span it holds, said.
    let ninety = [
        "--from",
        "2026-08-02T00:00:00Z",
        "--to",
        "2026-10-31T00:00:00Z",
    ];
    let mut args = vec!["--prometheus.url", prom.url.as_str()];
    args.extend_from_slice(&ninety);
    let out = report(&args);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--allow-partial"), "{err}");
    let mut partial = ninety.to_vec();
    partial.push("--allow-partial");
    let r = json(&prom, &partial);
    assert_eq!(r["source"]["partial"], true);
    // Two years: 17,520 hours, asked in pieces under the point limit.
    let r = json(
        &prom,
        &[
            "--from",
            "2024-10-31T00:00:00Z",
            "--to",
            "2026-10-31T00:00:00Z",
            "--allow-partial",
        ],
    );
    assert_eq!(r["source"]["partial"], true);
    assert!(r["timeline"].as_array().unwrap().len() >= 30);

    // Markdown on stdout: no link to a chart file that does not exist; a
    // job without pg_stat_statements says how to get slow queries.
    let md = report(&[
        "--prometheus.url",
        prom.url.as_str(),
        "--job",
        "staging-exporter",
        "--from",
        "2026-10-10T00:00:00Z",
        "--to",
        "2026-10-13T00:00:00Z",
    ]);
    let md = String::from_utf8(md.stdout).unwrap();
    assert!(md.contains("Throughput"), "{md}");
    assert!(!md.contains(".svg"), "{md}");
    // Every request above the top bucket: a lower bound, said as one.
    assert!(md.contains("- P95: > 10 s\n"), "{md}");
    assert!(
        md.contains("Slow queries (calls of statements over the exporter's database.slow_query_threshold): not available: enable pg_stat_statements"),
        "{md}"
    );
}

/// Local time: a `+08:00` period in Asia/Shanghai has days from local
/// midnight and hours as the reader's clock shows them, and the machine's
/// zone (TZ) is the default, printed.
#[test]
fn local_time_days_and_hours() {
    let prom = prometheus_with_a_month();
    let period = [
        "--from",
        "2026-10-10T00:00:00+08:00",
        "--to",
        "2026-10-13T00:00:00+08:00",
    ];
    let mut args = vec!["--prometheus.url", prom.url.as_str(), "--format", "json"];
    args.extend_from_slice(&period);
    let out = report_in("Asia/Shanghai", &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["timezone"], "Asia/Shanghai", "the machine's zone");
    // 2026-10-10T00:00:00+08:00 is 2026-10-09T16:00:00Z.
    let local_midnight = (FROM + 8 * 86_400 + 16 * 3600) as f64;
    close(r["from"].as_f64().unwrap(), local_midnight, "from");
    let days = r["timeline"].as_array().unwrap();
    assert_eq!(days.len(), 3);
    for (i, d) in days.iter().enumerate() {
        close(
            d["start"].as_f64().unwrap(),
            local_midnight + 86_400.0 * i as f64,
            "a day starts at local midnight",
        );
    }
    // The busy 20:00 UTC hour is 04:00 in Shanghai.
    assert_eq!(r["typical_peak"]["hour_of_day"], 4);

    let mut md_args = vec![
        "--prometheus.url",
        prom.url.as_str(),
        "--timezone",
        "Asia/Shanghai",
        "--lang",
        "zh",
    ];
    md_args.extend_from_slice(&period);
    let md = String::from_utf8(report(&md_args).stdout).unwrap();
    assert!(
        md.contains("时段: 2026-10-10 00:00 – 2026-10-13 00:00 (Asia/Shanghai, UTC+08:00)"),
        "{md}"
    );
    assert!(md.contains("04:00–05:00"), "{md}");
    // A zone that does not exist: a clear error naming the flag.
    let out = report(&[
        "--prometheus.url",
        prom.url.as_str(),
        "--timezone",
        "Mars/Olympus",
    ]);
    assert_eq!(out.status.code(), Some(64), "a bad flag");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--timezone"));
}
