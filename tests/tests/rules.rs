//! The Prometheus rules: promtool's checks and unit tests, and the
//! consistency of every alert with its runbook and its tests.

use std::collections::BTreeMap;

use llmchat_tests::{repo_root, run, said};

const RULES: &str = "rules/llmchat.rules.yml";

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap()
}

/// Alert name → the text of its rule block.
fn alerts() -> BTreeMap<String, String> {
    let text = read(RULES);
    let mut out = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("- alert: ")
            || trimmed.starts_with("- record: ")
            || trimmed.starts_with("- name: ")
        {
            if let Some((name, body)) = current.take() {
                out.insert(name, body);
            }
            if let Some(name) = trimmed.strip_prefix("- alert: ") {
                current = Some((name.trim().to_string(), String::new()));
            }
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    if let Some((name, body)) = current {
        out.insert(name, body);
    }
    out
}

fn test_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(repo_root().join("rules/tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .map(|p| p.strip_prefix(repo_root()).unwrap().display().to_string())
        .collect();
    files.sort();
    files
}

#[test]
fn promtool_check_rules_is_clean() {
    let out = run("promtool", &["check", "rules", RULES]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(said(&out).contains("SUCCESS"), "{}", said(&out));
    assert!(!said(&out).contains("WARN"), "{}", said(&out));
}

#[test]
fn promtool_unit_tests_pass() {
    let files = test_files();
    assert!(files.len() >= 5, "{files:?}");
    let mut args = vec!["test", "rules"];
    args.extend(files.iter().map(String::as_str));
    let out = run("promtool", &args);
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(
        said(&out).matches("SUCCESS").count(),
        files.len(),
        "{}",
        said(&out)
    );
}

#[test]
fn every_alert_has_severity_annotations_and_its_runbook_section() {
    let runbooks = read("docs/runbooks.md");
    let alerts = alerts();
    assert!(alerts.len() >= 25, "only {} alerts", alerts.len());
    for (name, body) in &alerts {
        assert!(
            ["severity: critical", "severity: warning", "severity: info"]
                .iter()
                .any(|s| body.contains(s)),
            "{name} has no valid severity"
        );
        for key in ["summary:", "description:", "runbook_url:"] {
            assert!(body.contains(key), "{name} has no {key}");
        }
        assert!(
            body.contains("$value"),
            "{name}'s description lacks the measured value"
        );
        let anchor = format!("runbook_url: \"docs/runbooks.md#{}\"", name.to_lowercase());
        assert!(body.contains(&anchor), "{name}: expected {anchor}");
        assert!(
            runbooks.contains(&format!("\n## {name}\n")),
            "docs/runbooks.md has no section for {name}"
        );
        assert!(
            read("rules/README.md").contains(&format!("`{name}`")),
            "{name} missing from rules/README.md"
        );
    }
    for fault in ["high_error_rate", "slow_response", "high_memory_usage"] {
        assert_eq!(
            alerts
                .values()
                .filter(|b| b.contains(&format!("fault: {fault}")))
                .count(),
            1,
            "fault {fault}"
        );
    }
}

#[test]
fn every_alert_has_a_firing_and_a_silent_unit_test() {
    let mut firing: BTreeMap<String, usize> = BTreeMap::new();
    let mut silent: BTreeMap<String, usize> = BTreeMap::new();
    for file in test_files() {
        let text = read(&file);
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(name) = line.trim().strip_prefix("alertname: ") else {
                continue;
            };
            let next = lines.get(i + 1).map(|l| l.trim()).unwrap_or_default();
            let map = if next == "exp_alerts: []" {
                &mut silent
            } else {
                &mut firing
            };
            *map.entry(name.to_string()).or_default() += 1;
        }
    }
    for name in alerts().keys() {
        assert!(
            firing.contains_key(name),
            "{name} has no test where it fires"
        );
        assert!(
            silent.contains_key(name),
            "{name} has no test where it stays silent"
        );
    }
}
