//! A bad deploy through the whole chain: the backend stand-in moves from
//! 1.4.2 to 1.5.0 and answers 30% 5xx. `verify-deployment` exits 1 within
//! its analysis window; `LLMChatDeployRegression` fires through the real
//! Prometheus and Alertmanager; the receiver runs the configured rollback
//! once, with the previous version in its environment, and not the
//! restart; a repeat of the same alert runs nothing.

use llmchat_common::lock;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{bin, wait_until, Options, Stack, ONE_AT_A_TIME, TOKEN};

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_bad_deploy_is_judged_alerted_and_rolled_back_once() {
    let _one = lock(&ONE_AT_A_TIME);
    let stack = Stack::start(Options {
        receivers: 1,
        alertmanagers: 1,
    });
    // The old version's baseline: the rules' hour before the analysis
    // window is a minute here (rules scaled 60 times), ending 30 s back.
    wait_until(Duration::from_secs(60), "the version in Prometheus", || {
        !stack
            .query("llmchat_app_info{version=\"1.4.2\"}")
            .is_empty()
    });
    std::thread::sleep(Duration::from_secs(45));
    assert!(
        stack.query("instance:llmchat_app_deployed:30m").is_empty(),
        "a stack that never deployed is in a deploy window"
    );

    let deployed = Instant::now();
    stack.deploy("1.5.0");
    stack.error_percent.store(30, Ordering::Release);

    // verify-deployment, as deploy.sh's step 7: a regression, exit 1,
    // before its analysis window is over.
    let out = Command::new(bin("llmchat-exporter"))
        .args(["verify-deployment", "--prometheus.url", &stack.prom_url])
        .args([
            "--version",
            "1.5.0",
            "--wait-rollout",
            "20s",
            "--analysis",
            "30s",
        ])
        .args(["--baseline", "30s", "--lookback", "5m", "--interval", "1s"])
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("http_5xx: "), "{said}");
    assert!(said.contains("previous version: 127.0.0.1:"), "{said}");
    assert!(said.contains(" 1.4.2"), "{said}");
    assert!(
        deployed.elapsed() < Duration::from_secs(20 + 30),
        "verify-deployment took {:?}",
        deployed.elapsed()
    );

    // The alert, with the fault and the versions, and the rollback.
    let until = Instant::now() + Duration::from_secs(60);
    while lines(&stack.rollbacks).is_empty() {
        assert!(
            Instant::now() < until,
            "no rollback within 60 s; firing: {:?}; regression: {:?}; window: {:?}; audit: {}",
            stack.firing(),
            stack.query("instance:llmchat_deploy_regression:value"),
            stack.query("instance:llmchat_app_deployed:30m"),
            stack.receiver_get(0, "/actions")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // What the site's rollback.sh would do.
    stack.error_percent.store(0, Ordering::Release);
    stack.deploy("1.4.2");
    let alerts = stack.query("ALERTS{alertname=\"LLMChatDeployRegression\",alertstate=\"firing\"}");
    let labels = &alerts
        .first()
        .unwrap_or_else(|| panic!("no firing LLMChatDeployRegression: {alerts:?}"))["metric"];
    assert_eq!(labels["fault"], "deploy_regression", "{labels}");
    assert_eq!(labels["version"], "1.5.0", "{labels}");
    assert_eq!(labels["previous_version"], "1.4.2", "{labels}");
    assert_eq!(lines(&stack.rollbacks), ["1.4.2 1.5.0 0"]);

    // The same alert again, as Alertmanager repeats it: no second run.
    let fingerprint = stack.receiver_get(0, "/actions?action=rollback")["audit"][0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let mut am_labels = labels.clone();
    am_labels.as_object_mut().unwrap().remove("__name__");
    am_labels.as_object_mut().unwrap().remove("alertstate");
    let repeat = json!({
        "version": "4", "groupKey": "{}:{alertname=\"LLMChatDeployRegression\"}", "truncatedAlerts": 0,
        "status": "firing", "receiver": "llmchat", "groupLabels": {}, "commonLabels": {},
        "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
        "alerts": [{"status": "firing", "labels": am_labels, "annotations": {"summary": "repeat"},
                    "startsAt": "2026-12-02T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "", "fingerprint": fingerprint}]
    });
    let status = reqwest::blocking::Client::new()
        .post(format!("{}/webhook", stack.receiver_urls[0]))
        .bearer_auth(TOKEN)
        .json(&repeat)
        .send()
        .unwrap()
        .status();
    assert_eq!(status, 200);
    wait_until(Duration::from_secs(10), "the repeat's decision", || {
        let audit = stack.receiver_get(0, "/actions?action=rollback");
        audit["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["result"] == "skipped_cooldown")
    });
    let audit: Value = stack.receiver_get(0, "/actions?action=rollback");
    let results: Vec<&str> = audit["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["result"].as_str().unwrap())
        .collect();
    assert_eq!(
        results.iter().filter(|r| **r == "succeeded").count(),
        1,
        "{results:?}"
    );
    assert_eq!(lines(&stack.rollbacks).len(), 1);
    // The errors went on until the rollback, and nothing restarted.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !lines(&stack.restarts)
            .iter()
            .any(|l| l == "LLMChatHighErrorRate"),
        "the restart ran for a bad deploy: {:?}",
        lines(&stack.restarts)
    );
}
