//! `llmchat-exporter report` against a real Prometheus holding a month of
//! synthetic but realistic series, loaded with `promtool tsdb
//! create-blocks-from openmetrics`. Expected figures are computed here from
//! the generator, independently of PromQL.

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

/// The same series between `start` and `end` (a server that keeps less,
/// or more, than the month).
pub(crate) fn generate_between(start: i64, end: i64) -> Vec<Series> {
    let job = r#"job="llmchat-exporter",instance="a:9842""#;
    let mut out = Vec::new();
    let mut counter = |name: &str, labels: String, inc: &dyn Fn(i64) -> f64| {
        let mut v = 0.0;
        let mut points = vec![(start, 0.0)];
        let mut t = start;
        while t < end {
            v += inc(t);
            t += STEP;
            points.push((t, v));
        }
        out.push(Series {
            name: name.into(),
            labels,
            points,
        });
    };
    let n = |t: i64| (rate(t) * STEP) as f64;
    for (status, share) in [("200", 0.975), ("404", 0.01), ("500", 0.015)] {
        counter(
            "llmchat_http_requests_total",
            format!(r#"{job},method="GET",route="/api/chat",status_code="{status}""#),
            &move |t| n(t) * share,
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
    for (agent, status, per_step) in [
        ("gpt-4o", "success", 100.0),
        ("gpt-4o", "error", 1.0),
        ("claude", "success", 50.0),
        ("claude", "error", 5.0),
    ] {
        counter(
            "llmchat_chat_messages_total",
            format!(r#"{job},agent_id="{agent}",status="{status}""#),
            &move |_| per_step,
        );
    }
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
    out
}

pub(crate) fn openmetrics(series: &[Series]) -> String {
    let mut text = String::new();
    let mut names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
    names.dedup();
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
    busiest_hour: (i64, f64),
}

pub(crate) fn expected() -> Expected {
    let mut requests = 0.0;
    let mut hours = std::collections::BTreeMap::new();
    let mut t = FROM;
    while t < TO {
        requests += (rate(t) * STEP) as f64;
        *hours.entry(t - t.rem_euclid(3600)).or_insert(0.0) += (rate(t) * STEP) as f64;
        t += STEP;
    }
    let (hour, n) = hours
        .into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    Expected {
        requests,
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

/// A real Prometheus holding `series` (backfilled with promtool) and
/// keeping `retention`.
pub(crate) fn prometheus_with(series: &[Series], retention: &str) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("month.om");
    std::fs::write(&input, openmetrics(series)).unwrap();
    let data = dir.path().join("data");
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&data)
        .output()
        .expect("promtool (apt-get install prometheus)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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

pub(crate) fn report(args: &[&str]) -> std::process::Output {
    Command::new(BIN).arg("report").args(args).output().unwrap()
}

pub(crate) fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-6 * want.abs().max(1.0),
        "{what}: got {got}, want {want}"
    );
}

#[test]
fn monthly_report_from_a_real_prometheus() {
    let prom = prometheus_with_a_month();
    let period = [
        "--from",
        "2026-10-01T00:00:00Z",
        "--to",
        "2026-10-31T00:00:00Z",
    ];
    let mut args = vec!["--prometheus.url", prom.url.as_str(), "--format", "json"];
    args.extend_from_slice(&period);
    let out = report(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = |k: &str| {
        r[k].as_f64()
            .unwrap_or_else(|| panic!("{k} missing in {r}"))
    };
    let exp = expected();
    let seconds = (TO - FROM) as f64;
    // The report names its server and the span it covered: all of it.
    assert_eq!(r["source"]["server"], prom.url.as_str());
    assert_eq!(r["source"]["partial"], false);
    assert!(r["source"]["version"].is_string(), "{}", r["source"]);
    close(f("from"), FROM as f64, "from");

    close(f("requests"), exp.requests, "requests");
    close(f("client_errors"), exp.requests * 0.01, "4xx");
    close(f("server_errors"), exp.requests * 0.015, "5xx");
    close(f("error_ratio"), 0.025, "error ratio");
    close(f("requests_per_second"), exp.requests / seconds, "rps");
    close(f("requests_per_day"), exp.requests / 30.0, "per day");
    let mean: f64 = DURATIONS.iter().map(|(s, d)| s * d).sum();
    close(f("mean_response_seconds"), mean, "mean");
    // 95% of requests are at or below 2 s and 80% below 1 s: the 95th
    // lands on the top of (1, 2]; the 99th is 4/5 into (2, 5].
    close(f("p95_response_seconds"), 2.0, "p95");
    close(f("p99_response_seconds"), 2.0 + 3.0 * 0.8, "p99");
    // A mean over time takes every 5-minute point of [FROM, TO], both ends
    // included (Prometheus 2.x ranges are closed): 8641 points.
    let mean_of = |value: &dyn Fn(i64) -> f64| {
        let points: Vec<f64> = (0..=(TO - FROM) / STEP)
            .map(|i| value(FROM + i * STEP))
            .collect();
        points.iter().sum::<f64>() / points.len() as f64
    };
    let memory_mean = mean_of(&|t| if busy(t) { 0.95 } else { 0.85 });
    close(
        r["memory"]["mean"].as_f64().unwrap(),
        memory_mean,
        "memory mean",
    );
    close(r["memory"]["max"].as_f64().unwrap(), 0.95, "memory max");
    let cpu_mean = mean_of(&|t| if busy(t) { 0.9 } else { 0.3 });
    close(r["cpu"]["mean"].as_f64().unwrap(), cpu_mean, "cpu mean");
    close(r["cpu"]["max"].as_f64().unwrap(), 0.9, "cpu max");
    close(r["disk"]["max"].as_f64().unwrap(), 0.7, "disk max");
    let conn_mean = mean_of(&|t| if busy(t) { 85.0 } else { 20.0 });
    close(
        r["database_connections"]["mean"].as_f64().unwrap(),
        conn_mean,
        "conn mean",
    );
    close(
        r["database_connections"]["max"].as_f64().unwrap(),
        85.0,
        "conn max",
    );
    close(f("database_connections_max"), 100.0, "max_connections");
    close(f("database_ping_seconds"), 0.002, "ping");
    let peak = &r["peak_hour"];
    assert_eq!(
        peak[0].as_f64().unwrap() as i64,
        exp.busiest_hour.0,
        "peak hour"
    );
    assert_eq!(exp.busiest_hour.0, PEAK);
    close(peak[1].as_f64().unwrap(), exp.busiest_hour.1, "peak rate");
    assert_eq!(r["daily"].as_array().unwrap().len(), 30);
    close(
        r["daily"][0]["p95_seconds"].as_f64().unwrap(),
        2.0,
        "daily p95",
    );

    let agents = r["agents"].as_array().unwrap();
    assert_eq!(agents[0]["agent_id"], "gpt-4o");
    close(
        agents[0]["error_ratio"].as_f64().unwrap(),
        1.0 / 101.0,
        "gpt-4o errors",
    );
    close(
        agents[1]["error_ratio"].as_f64().unwrap(),
        5.0 / 55.0,
        "claude errors",
    );

    // checkThresholds: mean > 500 ms warning, error rate > 1% critical,
    // memory > 80% warning; plus connections > 80% of max and one agent
    // over 5% errors. Disk at 70% is not a finding.
    let findings: Vec<(String, String)> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().into(),
                f["severity"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("performance", "warning"),
        ("error_rate", "critical"),
        ("memory", "warning"),
        ("database_connections", "warning"),
        ("agent_errors", "warning"),
    ]
    .iter()
    .map(|(k, s)| (k.to_string(), s.to_string()))
    .collect();
    assert_eq!(findings, want);

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
                "**CRITICAL** Error rate too high: 2.50%",
                "Peak hour: 2026-10-15 20:00",
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
                "错误率过高: 2.50%",
                "高峰时段: 2026-10-15 20:00",
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
        args.extend_from_slice(&period);
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
/// (hourly points under two days), three days (daily points); the other
/// job's series stay out; on stdout the Markdown links no chart it did
/// not write.
#[test]
fn short_periods_one_job_and_no_phantom_chart() {
    let prom = prometheus_with_a_month();
    let at = |from: &str, to: &str, extra: &[&str]| {
        let mut args = vec![
            "--prometheus.url",
            prom.url.as_str(),
            "--format",
            "json",
            "--from",
            from,
            "--to",
            to,
        ];
        args.extend_from_slice(extra);
        let out = report(&args);
        assert!(
            out.status.success(),
            "{from}..{to}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let hour = at("2026-10-10T10:00:00Z", "2026-10-10T11:00:00Z", &[]);
    assert_eq!(
        hour["daily"].as_array().unwrap().len(),
        1,
        "{}",
        hour["daily"]
    );
    close(
        hour["requests"].as_f64().unwrap(),
        10.0 * 3600.0,
        "requests in the hour",
    );
    let half_day = at("2026-10-10T00:00:00Z", "2026-10-10T12:00:00Z", &[]);
    assert_eq!(half_day["daily"].as_array().unwrap().len(), 12);
    let three_days = at("2026-10-10T00:00:00Z", "2026-10-13T00:00:00Z", &[]);
    assert_eq!(three_days["daily"].as_array().unwrap().len(), 3);
    // The month's own test holds the exact figures of llmchat-exporter's
    // job; here, the other job is there when asked for, and only then.
    close(
        half_day["error_ratio"].as_f64().unwrap(),
        0.025,
        "own job's errors only",
    );
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
    // Markdown on stdout: no link to a chart file that does not exist.
    let md = report(&[
        "--prometheus.url",
        prom.url.as_str(),
        "--from",
        "2026-10-10T00:00:00Z",
        "--to",
        "2026-10-13T00:00:00Z",
    ]);
    let md = String::from_utf8(md.stdout).unwrap();
    assert!(md.contains("Throughput"), "{md}");
    assert!(!md.contains(".svg"), "{md}");
    assert!(md.contains("max_connections 100)"), "{md}");
}
