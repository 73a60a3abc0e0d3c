//! The inhibition rules of `stack/alertmanager.yml`, in a real
//! Alertmanager: each root cause silences the alerts it causes, and
//! nothing else.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use llmchat_tests::{free_port, repo_root};
use serde_json::{json, Value};

struct Alertmanager {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Alertmanager {
    /// The stack's own file, with only the receiver's token path made local.
    fn start() -> Alertmanager {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t").unwrap();
        let text = std::fs::read_to_string(repo_root().join("stack/alertmanager.yml"))
            .unwrap()
            .replace(
                "/run/llmchat-secrets/receiver_token",
                &token.display().to_string(),
            );
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(&config, text).unwrap();
        let port = free_port();
        let child = Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-alertmanager (apt-get install prometheus-alertmanager)");
        let am = Alertmanager {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !reqwest::blocking::get(format!("{}/-/ready", am.url))
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(Instant::now() < deadline, "alertmanager not ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        am
    }

    fn post(&self, alerts: &[Value]) {
        let resp = reqwest::blocking::Client::new()
            .post(format!("{}/api/v2/alerts", self.url))
            .json(alerts)
            .send()
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.text().unwrap());
    }

    /// Each alert's (alertname, instance) and whether it is inhibited,
    /// once Alertmanager has seen all `n` of them.
    fn inhibited(&self, n: usize) -> Vec<(String, String, bool)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let alerts: Vec<Value> = reqwest::blocking::get(format!("{}/api/v2/alerts", self.url))
                .unwrap()
                .json()
                .unwrap();
            let mut out: Vec<(String, String, bool)> = alerts
                .iter()
                .map(|a| {
                    (
                        a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                        a["labels"]["instance"].as_str().unwrap_or("").to_string(),
                        !a["status"]["inhibitedBy"]
                            .as_array()
                            .map(|v| v.is_empty())
                            .unwrap_or(true),
                    )
                })
                .collect();
            out.sort();
            // Inhibition is computed as alerts arrive: wait until it settles.
            if out.len() == n && Instant::now() > deadline - Duration::from_secs(8) {
                return out;
            }
            assert!(Instant::now() < deadline, "Alertmanager holds {out:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn alert(name: &str, labels: &[(&str, &str)]) -> Value {
    let mut l = serde_json::Map::new();
    l.insert("alertname".into(), json!(name));
    for (k, v) in labels {
        l.insert(k.to_string(), json!(v));
    }
    json!({"labels": l, "annotations": {"summary": name}})
}

const JOB: (&str, &str) = ("job", "llmchat-exporter");

fn check(alerts: &[Value], expected: &[(&str, &str, bool)]) {
    let am = Alertmanager::start();
    am.post(alerts);
    let got = am.inhibited(alerts.len());
    let mut want: Vec<(String, String, bool)> = expected
        .iter()
        .map(|(a, i, x)| (a.to_string(), i.to_string(), *x))
        .collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn every_instance_down_silences_the_per_instance_alerts() {
    check(
        &[
            alert("LLMChatAppDown", &[JOB, ("severity", "critical")]),
            alert(
                "LLMChatInstanceDown",
                &[JOB, ("instance", "host-a:9842"), ("severity", "warning")],
            ),
            alert(
                "LLMChatInstanceHighErrorRate",
                &[
                    JOB,
                    ("instance", "host-b:9842"),
                    ("severity", "critical"),
                    ("fault", "high_error_rate"),
                ],
            ),
            // Another job's instance is not this outage.
            alert(
                "LLMChatInstanceDown",
                &[
                    ("job", "other"),
                    ("instance", "host-z:9842"),
                    ("severity", "warning"),
                ],
            ),
        ],
        &[
            ("LLMChatAppDown", "", false),
            ("LLMChatInstanceDown", "host-a:9842", true),
            ("LLMChatInstanceHighErrorRate", "host-b:9842", true),
            ("LLMChatInstanceDown", "host-z:9842", false),
        ],
    );
}

#[test]
fn database_and_redis_down_silence_what_they_cause() {
    for cause in ["LLMChatDatabaseDown", "LLMChatRedisDown"] {
        check(
            &[
                alert(
                    cause,
                    &[("job", "llmchat-services"), ("severity", "critical")],
                ),
                alert(
                    "LLMChatHighErrorRate",
                    &[JOB, ("severity", "critical"), ("fault", "high_error_rate")],
                ),
                alert(
                    "LLMChatSlowResponses",
                    &[JOB, ("severity", "warning"), ("fault", "slow_response")],
                ),
                alert("LLMChatAppDown", &[JOB, ("severity", "critical")]),
                alert(
                    "LLMChatAppDegraded",
                    &[JOB, ("instance", "host-a:9842"), ("severity", "warning")],
                ),
                alert(
                    "LLMChatInstanceHighErrorRate",
                    &[
                        JOB,
                        ("instance", "host-b:9842"),
                        ("severity", "critical"),
                        ("fault", "high_error_rate"),
                    ],
                ),
                // Not caused by the database: still pages.
                alert(
                    "LLMChatDiskSpaceCritical",
                    &[
                        JOB,
                        ("instance", "host-a:9842"),
                        ("severity", "critical"),
                        ("mountpoint", "/"),
                    ],
                ),
            ],
            &[
                (cause, "", false),
                ("LLMChatHighErrorRate", "", true),
                ("LLMChatSlowResponses", "", true),
                ("LLMChatAppDown", "", true),
                ("LLMChatAppDegraded", "host-a:9842", true),
                ("LLMChatInstanceHighErrorRate", "host-b:9842", true),
                ("LLMChatDiskSpaceCritical", "host-a:9842", false),
            ],
        );
    }
}

#[test]
fn critical_silences_warning_of_the_same_fault_and_instance_only() {
    check(
        &[
            alert(
                "CriticalX",
                &[
                    JOB,
                    ("instance", "host-a:9842"),
                    ("severity", "critical"),
                    ("fault", "x"),
                ],
            ),
            alert(
                "WarningXSameHost",
                &[
                    JOB,
                    ("instance", "host-a:9842"),
                    ("severity", "warning"),
                    ("fault", "x"),
                ],
            ),
            alert(
                "WarningXOtherHost",
                &[
                    JOB,
                    ("instance", "host-b:9842"),
                    ("severity", "warning"),
                    ("fault", "x"),
                ],
            ),
            alert(
                "WarningYSameHost",
                &[
                    JOB,
                    ("instance", "host-a:9842"),
                    ("severity", "warning"),
                    ("fault", "y"),
                ],
            ),
            alert(
                "WarningNoFault",
                &[JOB, ("instance", "host-a:9842"), ("severity", "warning")],
            ),
            // Two alerts without a fault must not silence each other.
            alert(
                "CriticalNoFault",
                &[JOB, ("instance", "host-c:9842"), ("severity", "critical")],
            ),
            alert(
                "WarningNoFaultC",
                &[JOB, ("instance", "host-c:9842"), ("severity", "warning")],
            ),
        ],
        &[
            ("CriticalX", "host-a:9842", false),
            ("WarningXSameHost", "host-a:9842", true),
            ("WarningXOtherHost", "host-b:9842", false),
            ("WarningYSameHost", "host-a:9842", false),
            ("WarningNoFault", "host-a:9842", false),
            ("CriticalNoFault", "host-c:9842", false),
            ("WarningNoFaultC", "host-c:9842", false),
        ],
    );
}

#[test]
fn a_slow_fleet_silences_its_slow_instances_and_thresholds_their_twins() {
    check(
        &[
            alert(
                "LLMChatSlowResponses",
                &[JOB, ("severity", "warning"), ("fault", "slow_response")],
            ),
            alert(
                "LLMChatInstanceSlowResponses",
                &[
                    JOB,
                    ("instance", "host-c:9842"),
                    ("severity", "warning"),
                    ("fault", "slow_response"),
                ],
            ),
            alert(
                "LLMChatDiskSpaceCritical",
                &[
                    JOB,
                    ("instance", "host-a:9842"),
                    ("severity", "critical"),
                    ("mountpoint", "/"),
                ],
            ),
            alert(
                "LLMChatDiskUsageHigh",
                &[
                    JOB,
                    ("instance", "host-a:9842"),
                    ("severity", "warning"),
                    ("mountpoint", "/"),
                ],
            ),
            alert(
                "LLMChatDiskUsageHigh",
                &[
                    JOB,
                    ("instance", "host-b:9842"),
                    ("severity", "warning"),
                    ("mountpoint", "/"),
                ],
            ),
        ],
        &[
            ("LLMChatSlowResponses", "", false),
            ("LLMChatInstanceSlowResponses", "host-c:9842", true),
            ("LLMChatDiskSpaceCritical", "host-a:9842", false),
            ("LLMChatDiskUsageHigh", "host-a:9842", true),
            ("LLMChatDiskUsageHigh", "host-b:9842", false),
        ],
    );
}

#[test]
fn a_deploy_regression_silences_the_error_and_latency_alerts_of_its_job() {
    check(
        &[
            alert(
                "LLMChatDeployRegression",
                &[
                    JOB,
                    ("instance", "host-a:9842"),
                    ("severity", "critical"),
                    ("fault", "deploy_regression"),
                    ("version", "1.5.0"),
                    ("check", "http_5xx"),
                ],
            ),
            alert(
                "LLMChatHighErrorRate",
                &[JOB, ("severity", "warning"), ("fault", "high_error_rate")],
            ),
            alert(
                "LLMChatInstanceSlowResponses",
                &[
                    JOB,
                    ("instance", "host-a:9842"),
                    ("severity", "warning"),
                    ("fault", "slow_response"),
                ],
            ),
            // Not an effect of the deploy.
            alert(
                "LLMChatDiskUsageHigh",
                &[JOB, ("instance", "host-a:9842"), ("severity", "warning")],
            ),
            // Another job's errors are not this deploy's.
            alert(
                "LLMChatHighErrorRate",
                &[
                    ("job", "other"),
                    ("instance", "host-z:9842"),
                    ("severity", "warning"),
                    ("fault", "high_error_rate"),
                ],
            ),
        ],
        &[
            ("LLMChatDeployRegression", "host-a:9842", false),
            ("LLMChatHighErrorRate", "", true),
            ("LLMChatInstanceSlowResponses", "host-a:9842", true),
            ("LLMChatDiskUsageHigh", "host-a:9842", false),
            ("LLMChatHighErrorRate", "host-z:9842", false),
        ],
    );
}

#[test]
fn a_budget_page_silences_its_own_warning_only() {
    let budget = |name: &str, job: &str, severity: &str| {
        alert(
            name,
            &[("job", job), ("severity", severity), ("currency", "USD")],
        )
    };
    let alerts = [
        budget("LLMChatDailyBudgetForecast", "llmchat-exporter", "critical"),
        budget("LLMChatDailyBudgetForecast", "llmchat-exporter", "warning"),
        // Another job's budget, and the month's warning, are other news.
        budget("LLMChatDailyBudgetForecast", "staging", "warning"),
        budget(
            "LLMChatMonthlyBudgetForecast",
            "llmchat-exporter",
            "warning",
        ),
    ];
    let am = Alertmanager::start();
    am.post(&alerts);
    am.inhibited(alerts.len());
    let got: Vec<Value> = reqwest::blocking::get(format!("{}/api/v2/alerts", am.url))
        .unwrap()
        .json()
        .unwrap();
    let mut got: Vec<(String, String, String, bool)> = got
        .iter()
        .map(|a| {
            let l = |k: &str| a["labels"][k].as_str().unwrap_or("").to_string();
            let inhibited = a["status"]["inhibitedBy"]
                .as_array()
                .is_some_and(|v| !v.is_empty());
            (l("alertname"), l("job"), l("severity"), inhibited)
        })
        .collect();
    got.sort();
    let want = [
        (
            "LLMChatDailyBudgetForecast",
            "llmchat-exporter",
            "critical",
            false,
        ),
        (
            "LLMChatDailyBudgetForecast",
            "llmchat-exporter",
            "warning",
            true,
        ),
        ("LLMChatDailyBudgetForecast", "staging", "warning", false),
        (
            "LLMChatMonthlyBudgetForecast",
            "llmchat-exporter",
            "warning",
            false,
        ),
    ]
    .map(|(a, j, s, i)| (a.to_string(), j.to_string(), s.to_string(), i));
    assert_eq!(got, want);
}
