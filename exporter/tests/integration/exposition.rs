//! `/metrics` in both formats, checked by the reference tools: promtool for
//! the text format, the Python client's OpenMetrics parser for OpenMetrics.

use crate::helpers::{append, run_with_stdin, Exporter};

fn exporter_with_traffic() -> (Exporter, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let access = dir.path().join("access.log");
    append(&log, b"");
    append(&access, b"");
    let e = Exporter::start(&[
        "--collector.host",
        "--collector.logs",
        "--collector.chat",
        "--collector.access",
        "--logs.app",
        log.to_str().unwrap(),
        "--logs.access",
        access.to_str().unwrap(),
        "--logs.poll-interval",
        "100ms",
    ]);
    append(
        &log,
        b"ERROR x\n{\"level\":\"warn\"}\n{\"event\":\"chat_message\",\"agent_id\":\"a\",\"duration_ms\":5}\n",
    );
    append(
        &access,
        b"::1 - - [26/Nov/2026:11:02:03 +0000] \"GET /a/1 HTTP/1.1\" 200 5 \"-\" \"ua \\x22q\\x22\" 0.2\n",
    );
    e.expect_stable(
        "llmchat_log_errors_total",
        &[("file", log.to_str().unwrap())],
        1.0,
    );
    e.expect_stable(
        "llmchat_http_requests_total",
        &[
            ("method", "GET"),
            ("route", "/a/:id"),
            ("status_code", "200"),
        ],
        1.0,
    );
    (e, dir)
}

#[test]
fn text_format_passes_promtool_check_metrics_without_warnings() {
    let (e, _dir) = exporter_with_traffic();
    let r = e.get("/metrics");
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = r.text().unwrap();
    for family in [
        "llmchat_log_lines_total",
        "llmchat_host_memory_total_bytes",
        "llmchat_host_filesystem_size_bytes",
        "llmchat_exporter_collector_success",
        "llmchat_exporter_build_info",
        "llmchat_http_request_duration_seconds",
        "llmchat_chat_messages_total",
    ] {
        assert!(
            body.contains(&format!("# TYPE {family} ")),
            "{family} missing"
        );
    }
    assert!(!body.contains("# EOF"));
    assert!(!body.contains("# UNIT"));
    assert!(!body.contains("_created"));
    assert!(body.contains("# TYPE llmchat_log_errors_total counter"));
    let out = run_with_stdin("promtool", &["check", "metrics"], body.as_bytes());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool failed: {said}");
    assert!(said.trim().is_empty(), "promtool warned: {said}");
}

#[test]
fn openmetrics_format_parses_with_the_reference_parser() {
    let (e, _dir) = exporter_with_traffic();
    let (content_type, body) = e.scrape_openmetrics();
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(body.ends_with("# EOF\n"));
    let script = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
families = {f.name: f for f in text_string_to_metric_families(sys.stdin.read())}
for name, kind in [("llmchat_log_lines", "counter"), ("llmchat_log_errors", "counter"),
                   ("llmchat_host_memory_total_bytes", "gauge"), ("llmchat_exporter_build", "info"),
                   ("llmchat_exporter_collector_duration_seconds", "gauge"),
                   ("llmchat_http_requests", "counter"), ("llmchat_http_request_duration_seconds", "histogram"),
                   ("llmchat_http_response_size_bytes", "counter"), ("llmchat_chat_messages", "counter"),
                   ("llmchat_chat_response_duration_seconds", "histogram"), ("llmchat_log_parse_errors", "counter")]:
    assert families[name].type == kind, (name, families[name].type)
errors = [s.value for s in families["llmchat_log_errors"].samples if s.name == "llmchat_log_errors_total"]
assert errors == [1.0], errors
buckets = {s.labels["le"]: s.value for s in families["llmchat_http_request_duration_seconds"].samples if s.name.endswith("_bucket")}
assert buckets["0.1"] == 0 and buckets["0.5"] == 1 and buckets["+Inf"] == 1, buckets
print(len(families))
"#;
    let out = run_with_stdin("python3", &["-c", script], body.as_bytes());
    assert!(
        out.status.success(),
        "OpenMetrics parser rejected the scrape: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let count: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(count >= 15, "only {count} families");
}
