//! The report tests' Prometheus (`llmchat_tests::prometheus`, the
//! month's blocks made once per content and kept in Cargo's scratch
//! directory) and the report binary run against it.

use std::process::Command;

pub(crate) use llmchat_tests::prometheus::Prometheus;

use crate::month::*;

const BIN: &str = env!("CARGO_BIN_EXE_llmchat-report");

pub(crate) fn prometheus_with_a_month() -> Prometheus {
    prometheus_with(&generate(), "100y")
}

/// A Prometheus holding `series` and keeping `retention`; the blocks are
/// cached in Cargo's scratch directory for integration tests.
pub(crate) fn prometheus_with(series: &[Series], retention: &str) -> Prometheus {
    llmchat_tests::prometheus::prometheus_with(
        series,
        retention,
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
    )
}

/// The report in UTC unless a test says otherwise: the machine's zone is
/// the default, and a developer's must not change a result.
pub(crate) fn report(args: &[&str]) -> std::process::Output {
    report_in("UTC", args)
}

/// The report with `TZ` set to `zone` (the machine's zone, as it sees it).
pub(crate) fn report_in(zone: &str, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
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

pub(crate) const MONTH: [&str; 4] = [
    "--from",
    "2026-10-01T00:00:00Z",
    "--to",
    "2026-10-31T00:00:00Z",
];

pub(crate) fn json(prom: &Prometheus, extra: &[&str]) -> serde_json::Value {
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
