//! The Grafana dashboards: their shape (schema, units, descriptions,
//! provisioning, generator in sync) statically, and, against the running
//! stack, that every panel's query parses and returns data.

use std::collections::BTreeSet;
use std::path::PathBuf;

use llmchat_tests::{repo_root, run, said};
use serde_json::Value;

use crate::harness::Stack;

pub fn dashboards() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().to_string(), v)
        })
        .collect()
}

fn panels(d: &Value) -> Vec<&Value> {
    d["panels"].as_array().unwrap().iter().collect()
}

/// A panel query as Prometheus runs it: Grafana's variables replaced as
/// "All" selects them (each variable's allValue), and $__rate_interval as
/// four scrapes of the test.
fn as_prometheus(expr: &str) -> String {
    expr.replace("$__rate_interval", "10s")
        .replace("\"$job\"", "\".*\"")
        .replace("\"$instance\"", "\".*\"")
}

/// Grafana's unit ids these dashboards may use (from Grafana's
/// valueFormats, as dashboard-linter's panel-units rule checks them), or
/// a custom `suffix:`/`prefix:` unit.
const VALID_UNITS: &[&str] = &[
    "none",
    "short",
    "percent",
    "percentunit",
    "bytes",
    "decbytes",
    "bits",
    "s",
    "ms",
    "µs",
    "ns",
    "m",
    "h",
    "d",
    "dtdurations",
    "reqps",
    "rps",
    "ops",
    "wps",
    "rpm",
    "opm",
    "Bps",
    "binBps",
    "bps",
    "cps",
    "dateTimeAsIso",
    "celsius",
    "hertz",
];

/// The rules of grafana/dashboard-linter that the issue names, checked
/// offline: template-datasource, template-job, template-instance,
/// panel-units, target-rate-interval, target-job, target-instance and
/// target-counter-agg. Plus per-instance panels beside the fleet ones.
#[test]
fn dashboards_pass_the_dashboard_linter_rules() {
    let selector =
        regex::Regex::new(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}(\[[^\]]*\])?").unwrap();
    let mut problems = Vec::new();
    for (file, d) in dashboards() {
        let vars = d["templating"]["list"].as_array().unwrap();
        let var = |name: &str| vars.iter().find(|v| v["name"] == name);
        match var("datasource") {
            Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
            _ => problems.push(format!("{file}: template-datasource")),
        }
        for name in ["job", "instance"] {
            match var(name) {
                Some(v)
                    if v["type"] == "query"
                        && v["datasource"]["uid"] == "${datasource}"
                        && v["multi"] == true
                        && v["includeAll"] == true => {}
                _ => problems.push(format!("{file}: template-{name}")),
            }
        }
        let mut per_instance = false;
        for p in panels(&d) {
            let title = p["title"].as_str().unwrap();
            let unit = p["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or("");
            if !(VALID_UNITS.contains(&unit)
                || unit.starts_with("suffix:")
                || unit.starts_with("prefix:"))
            {
                problems.push(format!("{file} / {title}: panel-units ({unit:?})"));
            }
            for t in p["targets"].as_array().unwrap() {
                let expr = t["expr"].as_str().unwrap();
                if expr.contains("by (instance")
                    || t["legendFormat"]
                        .as_str()
                        .unwrap_or("")
                        .contains("{{instance}}")
                {
                    per_instance = true;
                }
                let mut selectors = 0;
                for c in selector.captures_iter(expr) {
                    selectors += 1;
                    let (metric, matchers) = (&c[1], &c[2]);
                    let start = c.get(0).unwrap().start();
                    if expr[..start].ends_with("rate(")
                        && c.get(3).map(|r| r.as_str()) != Some("[$__rate_interval]")
                    {
                        problems.push(format!("{file} / {title}: target-rate-interval ({metric})"));
                    }
                    if !matchers.contains("job=~\"$job\"") {
                        problems.push(format!("{file} / {title}: target-job ({metric})"));
                    }
                    if !matchers.contains("instance=~\"$instance\"") {
                        problems.push(format!("{file} / {title}: target-instance ({metric})"));
                    }
                    let counter = ["_total", "_count", "_sum", "_bucket"]
                        .iter()
                        .any(|s| metric.ends_with(s));
                    if counter && c.get(3).is_none() {
                        problems.push(format!(
                            "{file} / {title}: target-counter-agg ({metric} used raw)"
                        ));
                    }
                }
                if selectors == 0 {
                    problems.push(format!(
                        "{file} / {title}: a query without a selector: {expr}"
                    ));
                }
            }
        }
        if !per_instance {
            problems.push(format!("{file}: no per-instance panel"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Alerts link to panels by id: a panel inserted at the top of a dashboard
/// gets a new id and every other panel keeps its own (ids come from
/// dashboards/panel-ids.yml, not from positions).
#[test]
fn a_panel_inserted_first_repoints_no_alert() {
    let copy = tempfile::tempdir().unwrap();
    for dir in ["dashboards", "rules"] {
        llmchat_tests::copy_dir(&repo_root().join(dir), &copy.path().join(dir));
    }
    let generator = copy.path().join("dashboards/generate.py");
    let text = std::fs::read_to_string(&generator).unwrap();
    let anchor = "host = dashboard(\"llmchat-host-logs\", \"LLMChat / Host & logs\",";
    assert!(
        text.contains(anchor),
        "the host dashboard's definition moved"
    );
    // The new panel goes before the first one of the list.
    let patched = text.replacen(
        anchor,
        "INSERTED = panel(\"stat\", \"Inserted first\", \"A panel added at the top.\", \"short\", [(\"vector(1)\", \"one\")])\n\
         _dashboard = dashboard\n\
         def dashboard(uid, title, description, panels, **kw):\n    \
             return _dashboard(uid, title, description, [INSERTED] + panels if uid == \"llmchat-host-logs\" else panels, **kw)\n\n\
         host = dashboard(\"llmchat-host-logs\", \"LLMChat / Host & logs\",",
        1,
    );
    std::fs::write(&generator, patched).unwrap();
    let out = llmchat_tests::run_in(copy.path(), "python3", &["dashboards/generate.py"]);
    assert!(out.status.success(), "{}", said(&out));
    let ids = |d: &Value| -> Vec<(String, u64)> {
        panels(d)
            .iter()
            .map(|p| {
                (
                    p["title"].as_str().unwrap().to_string(),
                    p["id"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let before: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("dashboards/host-logs.json")).unwrap(),
    )
    .unwrap();
    let after: Value = serde_json::from_str(
        &std::fs::read_to_string(copy.path().join("dashboards/host-logs.json")).unwrap(),
    )
    .unwrap();
    let (before, after) = (ids(&before), ids(&after));
    assert_eq!(after[0].0, "Inserted first", "{after:?}");
    assert!(
        before.iter().all(|(_, id)| *id != after[0].1),
        "the new panel reuses an id: {after:?}"
    );
    assert_eq!(
        &after[1..],
        &before[..],
        "a panel's id followed its position"
    );
}

#[test]
fn dashboards_are_complete_and_provisioned() {
    let all = dashboards();
    let titles: BTreeSet<String> = all
        .iter()
        .map(|(_, d)| d["title"].as_str().unwrap().to_string())
        .collect();
    for want in [
        "LLMChat / Overview",
        "LLMChat / PostgreSQL",
        "LLMChat / Redis",
        "LLMChat / Host & logs",
        "LLMChat / Alerts & recovery",
        "LLMChat / LLM usage & cost",
    ] {
        assert!(titles.contains(want), "no dashboard {want}: {titles:?}");
    }
    let mut uids = BTreeSet::new();
    for (file, d) in &all {
        assert!(
            uids.insert(d["uid"].as_str().unwrap().to_string()),
            "{file}: duplicate uid"
        );
        assert!(
            d["schemaVersion"].as_u64().unwrap() >= 39,
            "{file}: old schema"
        );
        assert!(
            !d["description"].as_str().unwrap_or("").is_empty(),
            "{file}: no description"
        );
        for p in panels(d) {
            let title = p["title"].as_str().unwrap();
            assert!(
                !p["description"].as_str().unwrap_or("").is_empty(),
                "{file} / {title}: no description"
            );
            assert!(
                !p["fieldConfig"]["defaults"]["unit"]
                    .as_str()
                    .unwrap_or("")
                    .is_empty(),
                "{file} / {title}: no unit"
            );
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{file} / {title}");
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{file} / {title}: no query");
        }
    }
    // The generator and the committed JSON agree.
    let out = run("python3", &["dashboards/generate.py", "--check"]);
    assert!(out.status.success(), "{}", said(&out));
    // Grafana's dashboard schema, as grafana-foundation-sdk publishes it:
    // every key known, every value kept.
    let files: Vec<String> = all.iter().map(|(f, _)| format!("dashboards/{f}")).collect();
    let mut args = vec!["dashboards/schema-check.py"];
    args.extend(files.iter().map(String::as_str));
    let out = run("python3", &args);
    assert!(out.status.success(), "{}", said(&out));
    // Provisioning: one Prometheus data source, one file provider whose
    // path is where docker-compose.yml mounts dashboards/.
    let ds = std::fs::read_to_string(
        repo_root().join("dashboards/provisioning/datasources/prometheus.yml"),
    )
    .unwrap();
    assert!(
        ds.contains("type: prometheus") && ds.contains("url: http://prometheus:9090"),
        "{ds}"
    );
    let prov =
        std::fs::read_to_string(repo_root().join("dashboards/provisioning/dashboards/llmchat.yml"))
            .unwrap();
    let compose = std::fs::read_to_string(repo_root().join("docker-compose.yml")).unwrap();
    let path = prov
        .lines()
        .find_map(|l| l.trim().strip_prefix("path: "))
        .expect("provider path");
    assert!(
        compose.contains(&format!("./dashboards:{path}:ro")),
        "compose does not mount dashboards/ at {path}"
    );
}

/// Every query of every panel, as a range query over the stack's life:
/// it must parse and return at least one series.
pub fn every_panel_returns_data(stack: &Stack) {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (file, d) in dashboards() {
        for p in panels(&d) {
            for t in p["targets"].as_array().unwrap() {
                let expr = as_prometheus(t["expr"].as_str().unwrap());
                checked += 1;
                match stack.query_range(&expr) {
                    Ok(series) if !series.is_empty() => {}
                    Ok(_) => {
                        failures.push(format!("{file} / {}: no series for {expr}", p["title"]))
                    }
                    Err(e) => failures.push(format!("{file} / {}: {e} in {expr}", p["title"])),
                }
            }
        }
        // Template variables: label_values(metric, label) must find values.
        for v in d["templating"]["list"].as_array().unwrap() {
            // Every variable is checked: a data source picker must offer
            // Prometheus; a query must be a label_values the test can run.
            // A variable of another kind fails here until the test learns it.
            if v["type"] == "datasource" {
                assert_eq!(v["query"], "prometheus", "variable {}", v["name"]);
                continue;
            }
            assert_eq!(v["type"], "query", "variable {}: unknown kind", v["name"]);
            let q = v["query"]["query"]
                .as_str()
                .unwrap_or_else(|| panic!("variable {} has no label_values query: {v}", v["name"]));
            assert!(
                q.starts_with("label_values("),
                "variable {}: {q}",
                v["name"]
            );
            let inner = q.trim_start_matches("label_values(").trim_end_matches(')');
            let (metric, label) = inner.rsplit_once(", ").unwrap();
            let series = stack.query(&as_prometheus(metric));
            if !series.iter().any(|s| s["metric"][label].is_string()) {
                failures.push(format!(
                    "{file} / variable {}: no values for {q}",
                    v["name"]
                ));
            }
        }
    }
    assert!(checked >= 30, "only {checked} panel queries");
    assert!(
        failures.is_empty(),
        "panels without data:\n{}",
        failures.join("\n")
    );
}
