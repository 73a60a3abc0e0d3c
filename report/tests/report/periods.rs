//! `llmchat-exporter report` over the same month: the golden reports in
//! both languages, an unreachable Prometheus, every period and a single
//! job, local days and hours.

use crate::month::*;
use crate::prometheus::*;
use llmchat_tests::free_port;

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
            llmchat_tests::repo_root().join(format!("report/tests/golden/report-{lang}.md"));
        llmchat_tests::assert_golden(&golden, &md);
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
