//! The Prometheus rules: promtool's checks and unit tests, and the
//! consistency of every alert with its runbook and its tests.

use std::collections::BTreeMap;

use llmchat_tests::{repo_root, run, said};

/// The rule files, one per concern and kind (`rules/README.md`), as
/// paths from the repository's root.
fn rule_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(repo_root().join("rules"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".rules.yml"))
        .map(|n| format!("rules/{n}"))
        .collect();
    files.sort();
    assert!(
        files.iter().any(|f| f.ends_with(".recording.rules.yml"))
            && files.iter().any(|f| f.ends_with(".alerts.rules.yml")),
        "{files:?}"
    );
    files
}

/// Every rule file's text, one after another.
fn all_rules_text() -> String {
    rule_files()
        .iter()
        .map(|f| read(f))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Always firing, severity `none`, routed to the dead man's switch: never
/// silent by design, and not a page or a ticket.
const WATCHDOG: &str = "LLMChatWatchdog";

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap()
}

/// Alert name → the text of its rule block.
fn alerts() -> BTreeMap<String, String> {
    let text = all_rules_text();
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
    let files = rule_files();
    let mut args = vec!["check", "rules"];
    args.extend(files.iter().map(String::as_str));
    let out = run("promtool", &args);
    assert!(out.status.success(), "{}", said(&out));
    assert!(said(&out).contains("SUCCESS"), "{}", said(&out));
    assert!(!said(&out).contains("WARN"), "{}", said(&out));
}

#[test]
fn promtool_unit_tests_pass() {
    let files = test_files();
    assert!(files.len() >= 5, "{files:?}");
    // One promtool per file, all at once: each evaluates the rules on one
    // thread, and the files' days of evaluations are the suite's longest
    // wait.
    let outs: Vec<_> = std::thread::scope(|scope| {
        let running: Vec<_> = files
            .iter()
            .map(|file| scope.spawn(move || run("promtool", &["test", "rules", file])))
            .collect();
        running.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for (file, out) in files.iter().zip(&outs) {
        assert!(out.status.success(), "{file}: {}", said(out));
        assert_eq!(
            said(out).matches("SUCCESS").count(),
            1,
            "{file}: {}",
            said(out)
        );
    }
}

#[test]
fn every_alert_has_severity_annotations_and_its_runbook_section() {
    let runbooks = read("docs/runbooks.md");
    let alerts = alerts();
    assert!(alerts.len() >= 25, "only {} alerts", alerts.len());
    for (name, body) in &alerts {
        let severities: &[&str] = if name == WATCHDOG {
            &["severity: none"]
        } else {
            &["severity: critical", "severity: warning", "severity: info"]
        };
        assert!(
            severities.iter().any(|s| body.contains(s)),
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
    // Each of the guide's faults has one fleet alert (and may have one
    // per-instance alert, for recovery on the faulty host).
    for fault in ["high_error_rate", "slow_response", "high_memory_usage"] {
        assert_eq!(
            alerts
                .iter()
                .filter(|(name, _)| !name.starts_with("LLMChatInstance"))
                .filter(|(_, b)| b.contains(&format!("fault: {fault}")))
                .count(),
            1,
            "fault {fault}"
        );
    }
    for (name, body) in alerts
        .iter()
        .filter(|(n, _)| n.starts_with("LLMChatInstance"))
    {
        assert!(
            body.contains("instance"),
            "{name} must keep the instance label"
        );
    }
}

/// A duration as promtool writes it (`90s`, `5m`, `2h`, `1d`, `1h30m`).
fn seconds(text: &str) -> u64 {
    humantime_like(text).unwrap_or_else(|| panic!("not a duration: {text:?}"))
}

fn humantime_like(text: &str) -> Option<u64> {
    let mut total = 0;
    let mut number = String::new();
    let mut chars = text.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().ok()?;
        number.clear();
        total += n * match c {
            's' => 1,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0
            }
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return None,
        };
    }
    number.is_empty().then_some(total)
}

/// One `alert_rule_test` entry: (eval_time in seconds, alert, silent).
type Case = (u64, String, bool);

/// The test groups of every file, each as its list of cases.
fn test_groups() -> Vec<Vec<Case>> {
    let mut groups = Vec::new();
    for file in test_files() {
        let text = read(&file);
        let mut current: Vec<Case> = Vec::new();
        let mut eval_time = 0;
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim();
            if t.starts_with("- interval:") && !current.is_empty() {
                groups.push(std::mem::take(&mut current));
            }
            if let Some(v) = t.strip_prefix("- eval_time: ") {
                eval_time = seconds(v);
            }
            if let Some(name) = t.strip_prefix("alertname: ") {
                let next = lines.get(i + 1).map(|l| l.trim()).unwrap_or_default();
                current.push((eval_time, name.to_string(), next == "exp_alerts: []"));
            }
        }
        if !current.is_empty() {
            groups.push(current);
        }
    }
    groups
}

/// Every alert fires in some test and stays silent in another; a silent
/// case counts only once the alert's `for:` has passed (before that,
/// silence proves nothing). Every critical (paging) alert also has a test
/// where it fires and then resolves.
#[test]
fn every_alert_has_firing_silent_and_paging_resolve_tests() {
    let alerts = alerts();
    let for_of = |name: &str| -> u64 {
        alerts[name]
            .lines()
            .find_map(|l| l.trim().strip_prefix("for: "))
            .map(seconds)
            .unwrap_or(0)
    };
    let mut firing = BTreeMap::<String, usize>::new();
    let mut silent = BTreeMap::<String, usize>::new();
    let mut resolves = BTreeMap::<String, usize>::new();
    for group in test_groups() {
        for (t, name, quiet) in &group {
            assert!(alerts.contains_key(name), "test of unknown alert {name}");
            if *quiet {
                if *t >= for_of(name) {
                    *silent.entry(name.clone()).or_default() += 1;
                }
            } else {
                *firing.entry(name.clone()).or_default() += 1;
                if group.iter().any(|(t2, n2, q2)| n2 == name && *q2 && t2 > t) {
                    *resolves.entry(name.clone()).or_default() += 1;
                }
            }
        }
    }
    let mut missing = Vec::new();
    for (name, body) in &alerts {
        if !firing.contains_key(name) {
            missing.push(format!("{name}: no test where it fires"));
        }
        if !silent.contains_key(name) && name != WATCHDOG {
            missing.push(format!("{name}: no silent test after its for: has passed"));
        }
        if body.contains("severity: critical") && !resolves.contains_key(name) {
            missing.push(format!(
                "{name}: pages, but no test where it fires then resolves"
            ));
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
}

#[test]
fn durations_parse_as_promtool_writes_them() {
    assert_eq!(seconds("90s"), 90);
    assert_eq!(seconds("1h30m"), 5400);
    assert_eq!(seconds("2d"), 172800);
    assert_eq!(seconds("500ms"), 0);
}

/// Every alert names, in its `dashboard` and `dashboard_panel`
/// annotations, a dashboard that exists and the panel of it that queries
/// one of the metrics the alert reads (recording rules followed to their
/// sources): the receiver's dashboard button must open where the alert's
/// data is.
#[test]
fn every_alert_links_a_dashboard_that_shows_its_data() {
    let files: Vec<serde_yaml_ng::Value> = rule_files()
        .iter()
        .map(|f| serde_yaml_ng::from_str(&read(f)).unwrap())
        .collect();
    let metric = regex::Regex::new(r"\b(llmchat_[a-z_]+|alertmanager_[a-z_]+|up)\b").unwrap();
    let mut recorded = BTreeMap::new();
    let mut alerting = Vec::new();
    for group in files
        .iter()
        .flat_map(|rules| rules["groups"].as_sequence().unwrap())
    {
        for rule in group["rules"].as_sequence().unwrap() {
            let expr = rule["expr"].as_str().unwrap().to_string();
            if let Some(name) = rule["record"].as_str() {
                recorded.insert(name.to_string(), expr);
            } else {
                alerting.push((
                    rule["alert"].as_str().unwrap().to_string(),
                    expr,
                    rule["annotations"]["dashboard"]
                        .as_str()
                        .map(str::to_string),
                    rule["annotations"]["dashboard_panel"]
                        .as_str()
                        .and_then(|p| p.parse::<u64>().ok()),
                ));
            }
        }
    }
    let dashboards: BTreeMap<String, String> = std::fs::read_dir(repo_root().join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            (v["uid"].as_str().unwrap().to_string(), text)
        })
        .collect();
    // An alert may have more than one rule (LLMChatDeployRegression: with
    // and without its fault, by whether a rollout is under way).
    let names: std::collections::BTreeSet<&str> =
        alerting.iter().map(|(name, ..)| name.as_str()).collect();
    assert_eq!(names.len(), alerts().len());
    for (name, mut expr, dashboard, panel_id) in alerting {
        let uid = dashboard.unwrap_or_else(|| panic!("{name} has no dashboard annotation"));
        let text = dashboards
            .get(&uid)
            .unwrap_or_else(|| panic!("{name}: no dashboard with uid {uid}"));
        // Recording rules read recording rules: substitute until none is
        // left, longest names first (one may be a prefix of another).
        let mut records: Vec<(&String, &String)> = recorded.iter().collect();
        records.sort_by_key(|(record, _)| std::cmp::Reverse(record.len()));
        for _ in 0..8 {
            let before = expr.clone();
            for (record, source) in &records {
                expr = expr.replace(record.as_str(), &format!("({source})"));
            }
            if expr == before {
                break;
            }
        }
        let metrics: Vec<&str> = metric.find_iter(&expr).map(|m| m.as_str()).collect();
        let panel_id = panel_id.unwrap_or_else(|| panic!("{name} has no numeric dashboard_panel"));
        let board: serde_json::Value = serde_json::from_str(text).unwrap();
        let panel = board["panels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"].as_u64() == Some(panel_id))
            .unwrap_or_else(|| panic!("{name}: {uid} has no panel {panel_id}"))
            .clone();
        if name == WATCHDOG {
            // vector(1): it reads nothing; its dashboard shows the pipeline.
            assert!(metrics.is_empty());
            continue;
        }
        let queried = |m: &str| {
            panel["targets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .any(|t| {
                    let q = t["expr"].as_str().unwrap_or_default();
                    metric.find_iter(q).any(|found| found.as_str() == m)
                })
        };
        assert!(
            metrics.iter().any(|m| queried(m)),
            "{name}: panel {panel_id} ({}) of {uid} queries none of {metrics:?}",
            panel["title"]
        );
    }
}
