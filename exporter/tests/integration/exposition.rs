//! `/metrics` in both formats, checked by the reference tools: promtool for
//! the text format, the Python client's OpenMetrics parser for OpenMetrics.

use crate::helpers::{append, run_with_stdin, Exporter};

fn exporter_with_traffic() -> (Exporter, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, b"");
    let e = Exporter::start(&[
        "--logs.app",
        log.to_str().unwrap(),
        "--logs.poll-interval",
        "100ms",
    ]);
    append(&log, b"ERROR x\n{\"level\":\"warn\"}\n");
    e.expect_stable(
        "llmchat_log_errors_total",
        &[("file", log.to_str().unwrap())],
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
                   ("llmchat_exporter_collector_duration_seconds", "gauge")]:
    assert families[name].type == kind, (name, families[name].type)
errors = [s.value for s in families["llmchat_log_errors"].samples if s.name == "llmchat_log_errors_total"]
assert errors == [1.0], errors
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
