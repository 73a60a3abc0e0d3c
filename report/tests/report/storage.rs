//! The monthly report where Prometheus keeps less than a month: a
//! Prometheus holding the last 15 days and a VictoriaMetrics (Debian's
//! `victoria-metrics`, the long-term store of the stack's optional
//! remote_write) holding 35. The report reads either through the same
//! Prometheus-compatible API, says which server and which span it used,
//! refuses a period the server does not hold, and with `--allow-partial`
//! reports the span it found and says so.

use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::month::{expected, generate_between, Series, FROM, TO};
use crate::prometheus::{close, prometheus_with, report};
use llmchat_tests::free_port;

const DAY: i64 = 86_400;
const PERIOD: [&str; 4] = [
    "--from",
    "2026-10-01T00:00:00Z",
    "--to",
    "2026-10-31T00:00:00Z",
];

struct Victoria {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Victoria {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// VictoriaMetrics with `series` imported through its Prometheus text
/// import (timestamps in milliseconds), flushed so that queries see them.
fn victoria_with(series: &[Series]) -> Victoria {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new("victoria-metrics")
        .arg(format!(
            "-storageDataPath={}",
            dir.path().join("data").display()
        ))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg("-retentionPeriod=100y")
        // The generated series are old: do not hide the newest minutes.
        .arg("-search.latencyOffset=0s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("victoria-metrics (apt-get install victoria-metrics)");
    let vm = Victoria {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reqwest::blocking::get(format!("{}/health", vm.url))
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "victoria-metrics did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    // In chunks: one request per series keeps each body small.
    for s in series {
        let mut body = String::new();
        for (t, v) in &s.points {
            let _ = writeln!(body, "{}{{{}}} {v} {}", s.name, s.labels, t * 1000);
        }
        let resp = client
            .post(format!("{}/api/v1/import/prometheus", vm.url))
            .body(body)
            .send()
            .unwrap();
        assert!(resp.status().is_success(), "import: {}", resp.status());
    }
    let resp = client
        .get(format!("{}/internal/force_flush", vm.url))
        .send()
        .unwrap();
    assert!(resp.status().is_success());
    // Imported rows become searchable within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v: serde_json::Value = client
            .get(format!("{}/api/v1/query", vm.url))
            .query(&[
                ("query", "count(llmchat_http_requests_total)"),
                ("time", &TO.to_string()),
            ])
            .send()
            .unwrap()
            .json()
            .unwrap();
        if v["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "imported data never searchable: {v}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    vm
}

fn json_report(url: &str, extra: &[&str]) -> (std::process::Output, serde_json::Value) {
    let mut args = vec!["--prometheus.url", url, "--format", "json"];
    args.extend_from_slice(&PERIOD);
    args.extend_from_slice(extra);
    let out = report(&args);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_default();
    (out, v)
}

#[test]
fn a_month_from_long_term_storage_and_a_clear_refusal_from_a_short_prometheus() {
    // Prometheus keeps 15 days: the last 15 of the month, and no more.
    let prom = prometheus_with(&generate_between(TO - 15 * DAY, TO + 3600), "15d");
    // VictoriaMetrics keeps 35: from five days before the month.
    let vm = victoria_with(&generate_between(FROM - 5 * DAY, TO + 3600));

    // Prometheus cannot cover the month: exit 1, saying what it holds.
    let (out, _) = json_report(&prom.url, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&prom.url), "{err}");
    assert!(err.contains("2026-10-16"), "the span found: {err}");
    assert!(err.contains("--allow-partial"), "{err}");
    assert!(out.stdout.is_empty());

    // --allow-partial: the 15 days it holds, and the report says so.
    let (out, r) = json_report(&prom.url, &["--allow-partial"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(r["source"]["partial"], true);
    let from = r["from"].as_f64().unwrap();
    assert!(
        (from - (TO - 15 * DAY) as f64).abs() <= 3600.0 + 1300.0,
        "partial span starts at {from}"
    );
    assert_eq!(r["source"]["requested_from"].as_f64(), Some(FROM as f64));
    let mut md_args = vec!["--prometheus.url", prom.url.as_str(), "--allow-partial"];
    md_args.extend_from_slice(&PERIOD);
    let md = String::from_utf8(report(&md_args).stdout).unwrap();
    assert!(
        md.contains("Partial: the server holds data only for this span"),
        "{md}"
    );
    assert!(md.contains(&format!("Data: {}", prom.url)), "{md}");

    // VictoriaMetrics holds the month: the whole period, the same figures.
    let (out, r) = json_report(&vm.url, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(r["source"]["server"], vm.url.as_str());
    assert_eq!(r["source"]["partial"], false);
    assert_eq!(r["from"].as_f64(), Some(FROM as f64));
    let exp = expected();
    // VictoriaMetrics' increase() does not extrapolate as Prometheus'
    // does; within 1% is the same month.
    let requests = r["requests"].as_f64().unwrap();
    assert!(
        (requests - exp.requests).abs() <= 0.01 * exp.requests,
        "requests {requests}, expected {}",
        exp.requests
    );
    close(
        r["error_ratio"].as_f64().unwrap(),
        exp.error_ratio(),
        "error ratio",
    );
    assert_eq!(
        r["timeline"].as_array().unwrap().len(),
        30,
        "{}",
        r["timeline"]
    );
}
