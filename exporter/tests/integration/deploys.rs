//! Versions and restarts from the backend's `/health` body
//! (`llmchat_app_info`, `llmchat_app_start_time_seconds`).

use std::time::Instant;

use crate::helpers::{sample, Exporter};
use llmchat_tests::sinks::Target;

fn start_app(backend: &Target) -> Exporter {
    let url = backend.url("");
    Exporter::start(&["--collector.app", "--app.url", &url])
}

/// The guide's HealthController body, with an uptime that follows the
/// clock from `started` as a live process's does.
fn health(version: Option<&str>, started: Instant, offset: f64) -> String {
    let mut body = serde_json::json!({"status": "healthy", "checks": []});
    if let Some(v) = version {
        body["version"] = v.into();
        body["uptime"] = (started.elapsed().as_secs_f64() + offset).into();
    }
    body.to_string()
}

fn versions(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("llmchat_app_info{"))
        .map(|l| l.to_string())
        .collect()
}

#[test]
fn versions_and_restarts_change_their_series_once_and_a_wild_version_is_unknown() {
    let backend = Target::start(Vec::new());
    let up_since = Instant::now();
    backend.set_body(&health(Some("1.4.2"), up_since, 3600.25));
    let e = start_app(&backend);

    // The start time is the same from probe to probe while uptime grows
    // with the clock (no jitter from probe latency or rounding).
    let first = e.scrape_text();
    assert_eq!(
        sample(&first, "llmchat_app_info", &[("version", "1.4.2")]),
        Some(1.0),
        "{first}"
    );
    let start = sample(&first, "llmchat_app_start_time_seconds", &[]).expect("start time");
    assert_eq!(start, start.round(), "the start time is whole seconds");
    for _ in 0..5 {
        std::thread::sleep(std::time::Duration::from_millis(700));
        backend.set_body(&health(Some("1.4.2"), up_since, 3600.25));
        let text = e.scrape_text();
        assert_eq!(
            sample(&text, "llmchat_app_start_time_seconds", &[]),
            Some(start),
            "{text}"
        );
        assert_eq!(versions(&text).len(), 1, "{text}");
    }

    // A deploy: a new version from a process started just now. The old
    // version's series is gone at once and the start time moves once.
    let restarted = Instant::now();
    backend.set_body(&health(Some("1.5.0-rc.1"), restarted, 0.5));
    let text = e.scrape_text();
    assert_eq!(
        versions(&text),
        vec![r#"llmchat_app_info{version="1.5.0-rc.1"} 1.0"#.to_string()],
        "{text}"
    );
    let new_start = sample(&text, "llmchat_app_start_time_seconds", &[]).unwrap();
    assert!(new_start > start + 3000.0, "{start} -> {new_start}");
    for _ in 0..3 {
        std::thread::sleep(std::time::Duration::from_millis(500));
        backend.set_body(&health(Some("1.5.0-rc.1"), restarted, 0.5));
        assert_eq!(
            sample(&e.scrape_text(), "llmchat_app_start_time_seconds", &[]),
            Some(new_start)
        );
    }

    // A version string outside the pattern never becomes a label value:
    // `unknown`, counted per probe, logged once.
    let wild = "build-$(id)-\u{1b}[31m-feature/very-long-branch-name";
    for _ in 0..3 {
        backend.set_body(&health(Some(wild), restarted, 0.5));
        let text = e.scrape_text();
        assert_eq!(
            versions(&text),
            vec![r#"llmchat_app_info{version="unknown"} 1.0"#.to_string()],
            "{text}"
        );
    }
    let text = e.scrape_text();
    assert!(
        sample(&text, "llmchat_app_version_rejected_total", &[]).unwrap() >= 3.0,
        "{text}"
    );
    let log = e.log();
    assert_eq!(
        log.matches("does not match app.version_pattern").count(),
        1,
        "{log}"
    );
    assert!(!log.contains('\u{1b}'), "the escape reached the log: {log}");

    // A backend that reports neither: both series absent, not zero.
    backend.set_body(&health(None, restarted, 0.0));
    let text = e.scrape_text();
    assert!(versions(&text).is_empty(), "{text}");
    assert_eq!(sample(&text, "llmchat_app_start_time_seconds", &[]), None);
    assert_eq!(sample(&text, "llmchat_app_up", &[]), Some(1.0));
}

#[test]
fn a_bad_version_pattern_exits_64_naming_the_key() {
    let out = crate::helpers::run(
        &[
            "--collector.app",
            "--app.version-pattern",
            "(1.2",
            "--config.check",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("app.version_pattern"), "{err}");
}
