//! `llmchat-exporter report` is the `llmchat-report` crate's command (its
//! own tests, in `report/tests/`, run it against a real Prometheus): the
//! subcommand keeps its flags, its exit codes and its one-line errors.

use std::process::Command;

use crate::helpers::{free_port, BIN};

fn report(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("report")
        .args(args)
        .env("TZ", "UTC")
        .output()
        .unwrap()
}

#[test]
fn the_report_subcommand_runs_the_report_crate_with_its_exit_codes() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let out = report(&["--prometheus.url", &url, "--range", "30d"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("llmchat-exporter report: "), "{err}");
    assert!(err.contains("connection refused"), "{err}");
    assert!(out.stdout.is_empty());

    let out = report(&["--prometheus.url", &url, "--timezone", "Mars/Olympus"]);
    assert_eq!(out.status.code(), Some(64), "a bad flag");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--timezone"));

    let out = report(&["--prometheus.url", &url, "--format", "yaml"]);
    assert_eq!(out.status.code(), Some(64), "a value clap refuses");
}
