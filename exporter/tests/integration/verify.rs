//! `llmchat-exporter verify-deployment` against a real Prometheus holding
//! deploys backfilled with promtool, one job per case: a clean deploy, a
//! bad one, one at night, a half rollout; and an unreachable server.

use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::helpers::BIN;
use llmchat_tests::prometheus::prometheus_with_recent;
use llmchat_tests::prometheus::Series;

const STEP: i64 = 15;
/// Versions change this long before the data ends.
const DEPLOYED_AGO: i64 = 20 * 60;
/// History before the deploy.
const HISTORY: i64 = 2 * 3600;

/// How one job behaves before and after the deploy, per instance.
struct Case {
    job: &'static str,
    /// Requests a second per instance.
    rate: f64,
    /// 5xx share before and after.
    errors: (f64, f64),
    /// Every request's latency bucket before and after (an `le`).
    latency: (f64, f64),
    /// An agent's chat error share before and after.
    chat_errors: (f64, f64),
    /// Instances that move to the new version (the others stay).
    deployed: &'static [&'static str],
}

const INSTANCES: [&str; 2] = ["host-a:9842", "host-b:9842"];
const BUCKETS: [f64; 4] = [0.25, 0.5, 1.0, 2.5];

fn counter(
    name: &str,
    labels: String,
    from: i64,
    to: i64,
    per_step: impl Fn(i64) -> f64,
) -> Series {
    let mut total = 0.0;
    let mut points = Vec::new();
    let mut t = from;
    while t <= to {
        points.push((t, total));
        total += per_step(t);
        t += STEP;
    }
    Series {
        name: name.into(),
        labels,
        points,
    }
}

fn gauge(name: &str, labels: String, from: i64, to: i64) -> Series {
    Series {
        name: name.into(),
        labels,
        points: (0..)
            .map(|i| from + i * STEP)
            .take_while(|t| *t <= to)
            .map(|t| (t, 1.0))
            .collect(),
    }
}

fn series(cases: &[Case], end: i64) -> Vec<Series> {
    let start = end - HISTORY - DEPLOYED_AGO;
    let deploy = end - DEPLOYED_AGO;
    let mut out = Vec::new();
    for c in cases {
        for instance in INSTANCES {
            let at = format!(r#"job="{}",instance="{instance}""#, c.job);
            let moves = c.deployed.contains(&instance);
            let after = move |t: i64| moves && t >= deploy;
            if moves {
                out.push(gauge(
                    "llmchat_app_info",
                    format!(r#"{at},version="1.4.2""#),
                    start,
                    deploy - STEP,
                ));
                out.push(gauge(
                    "llmchat_app_info",
                    format!(r#"{at},version="1.5.0""#),
                    deploy,
                    end,
                ));
            } else {
                out.push(gauge(
                    "llmchat_app_info",
                    format!(r#"{at},version="1.4.2""#),
                    start,
                    end,
                ));
            }
            out.push(gauge("llmchat_app_up", at.clone(), start, end));
            let n = c.rate * STEP as f64;
            let (e0, e1) = c.errors;
            out.push(counter(
                "llmchat_http_requests_total",
                format!(r#"{at},status_code="200""#),
                start,
                end,
                |t| n * (1.0 - if after(t) { e1 } else { e0 }),
            ));
            out.push(counter(
                "llmchat_http_requests_total",
                format!(r#"{at},status_code="502""#),
                start,
                end,
                |t| n * if after(t) { e1 } else { e0 },
            ));
            for le in BUCKETS.iter().copied().chain([f64::INFINITY]) {
                let label = if le.is_infinite() {
                    "+Inf".to_string()
                } else {
                    le.to_string()
                };
                let (l0, l1) = c.latency;
                out.push(counter(
                    "llmchat_http_request_duration_seconds_bucket",
                    format!(r#"{at},le="{label}""#),
                    start,
                    end,
                    |t| {
                        if le >= if after(t) { l1 } else { l0 } {
                            n
                        } else {
                            0.0
                        }
                    },
                ));
            }
            let (c0, c1) = c.chat_errors;
            let messages = 0.5 * STEP as f64;
            out.push(counter(
                "llmchat_chat_messages_total",
                format!(r#"{at},agent_id="support",status="error""#),
                start,
                end,
                |t| messages * if after(t) { c1 } else { c0 },
            ));
            out.push(counter(
                "llmchat_chat_messages_total",
                format!(r#"{at},agent_id="support",status="success""#),
                start,
                end,
                |t| messages * (1.0 - if after(t) { c1 } else { c0 }),
            ));
        }
    }
    out
}

fn verify(url: &str, job: &str, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args(["verify-deployment", "--prometheus.url", url, "--job", job])
        .args([
            "--version",
            "1.5.0",
            "--wait-rollout",
            "0s",
            "--analysis",
            "10m",
            "--baseline",
            "1h",
        ])
        .args(extra)
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn check<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no {name} check: {v}"))
}

#[test]
fn verify_deployment_judges_deploys_from_a_real_prometheus() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let end = now - now % STEP - STEP;
    let both: &[&str] = &INSTANCES;
    let cases = [
        Case {
            job: "clean",
            rate: 10.0,
            errors: (0.005, 0.005),
            latency: (0.25, 0.25),
            chat_errors: (0.01, 0.01),
            deployed: both,
        },
        Case {
            job: "bad",
            rate: 10.0,
            errors: (0.005, 0.09),
            latency: (0.25, 2.5),
            chat_errors: (0.01, 0.3),
            deployed: both,
        },
        Case {
            job: "night",
            rate: 0.01,
            errors: (0.0, 0.3),
            latency: (0.25, 0.25),
            chat_errors: (0.0, 0.0),
            deployed: both,
        },
        Case {
            job: "half",
            rate: 10.0,
            errors: (0.005, 0.005),
            latency: (0.25, 0.25),
            chat_errors: (0.01, 0.01),
            deployed: &["host-a:9842"],
        },
    ];
    let prom = prometheus_with_recent(&series(&cases, end));
    let deploy = (end - DEPLOYED_AGO) as f64;

    // A clean deploy: exit 0, every check passes, the change found to the
    // step, the previous version named.
    let out = verify(&prom.url, "clean", &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let v = json(&out);
    assert_eq!(v["verdict"], "pass");
    assert_eq!(v["instances"], serde_json::json!(INSTANCES));
    assert_eq!(v["previous_versions"]["host-a:9842"], "1.4.2");
    assert!(
        (v["rollout"]["from"].as_f64().unwrap() - deploy).abs() <= STEP as f64,
        "{v}"
    );
    assert!(
        (v["baseline"]["to"].as_f64().unwrap() - deploy).abs() <= STEP as f64,
        "{v}"
    );
    assert_eq!(
        v["analysis"]["to"].as_f64().unwrap() - v["analysis"]["from"].as_f64().unwrap(),
        600.0
    );
    for name in ["http_5xx", "latency_p95", "chat_errors", "health"] {
        assert_eq!(check(&v, name)["result"], "pass", "{name}: {v}");
    }
    let ratio = check(&v, "http_5xx")["new"].as_f64().unwrap();
    assert!((ratio - 0.005).abs() < 0.001, "{ratio}");
    // Both analysis instances' 20 requests a second for 10 minutes.
    let n = v["new_requests"].as_f64().unwrap();
    assert!((n - 12_000.0).abs() < 600.0, "{n}");

    // A bad deploy: exit 1, each failed check named with both values.
    let out = verify(&prom.url, "bad", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("REGRESSION (exit 1)"), "{text}");
    assert!(
        text.contains("http_5xx: 9.00% against 0.50% before (limit 1.50%)"),
        "{text}"
    );
    assert!(
        text.contains("chat_errors (agent support): 30.00% against 1.00% before"),
        "{text}"
    );
    assert!(text.contains("latency_p95: 2.42"), "{text}");
    assert!(text.contains(" s against 0.23"), "{text}");
    assert!(
        text.contains("estimated from the histogram's buckets"),
        "{text}"
    );
    let out = verify(&prom.url, "bad", &["--lang", "zh"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("结论: 性能回退 (exit 1)"), "{text}");
    assert!(text.contains("5xx 比例"), "{text}");

    // At night: a third of the requests fail, but there are 12 of them;
    // inconclusive, saying how many there were and how many it needs.
    let out = verify(&prom.url, "night", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("too little traffic to judge: 12 requests in the analysis window and 72 in the baseline, 100 needed in each"), "{text}");

    // Half a rollout: exit 3, naming the straggler and what it runs.
    let out = verify(&prom.url, "half", &["--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", said(&out));
    let v = json(&out);
    assert_eq!(v["verdict"], "rollout_unfinished");
    assert_eq!(
        v["stragglers"],
        serde_json::json!([{"instance": "host-b:9842", "version": "1.4.2"}])
    );
    assert!(
        v["reasons"][0]
            .as_str()
            .unwrap()
            .contains("host-b:9842 runs 1.4.2"),
        "{v}"
    );
    // Only the instance that moved: it passes.
    let out = verify(&prom.url, "half", &["--instance", "host-a:9842"]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    // An instance that reports nothing is a straggler too.
    let out = verify(&prom.url, "half", &["--instance", "host-c:9842"]);
    assert_eq!(out.status.code(), Some(3), "{}", said(&out));
    assert!(
        said(&out).contains("host-c:9842 reports no version"),
        "{}",
        said(&out)
    );
}

#[test]
fn verify_deployment_exit_codes_for_bad_flags_and_an_unreachable_prometheus() {
    let port = llmchat_tests::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let out = verify(&url, "j", &[]);
    assert_eq!(out.status.code(), Some(4), "{}", said(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unreachable") && err.contains("connection refused"),
        "{err}"
    );
    assert!(err.contains(&url), "{err}");
    assert!(out.stdout.is_empty());

    for bad in [
        &["--analysis", "soon"][..],
        &["--max-5xx-factor=-1"],
        &["--format", "yaml"],
    ] {
        let out = verify(&url, "j", bad);
        assert_eq!(out.status.code(), Some(64), "{bad:?}: {}", said(&out));
        let flag = bad[0].split('=').next().unwrap();
        assert!(said(&out).contains(flag), "{bad:?}: {}", said(&out));
    }
    let out = Command::new(BIN)
        .args(["verify-deployment", "--prometheus.url", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", said(&out));
    assert!(said(&out).contains("--version"), "{}", said(&out));
}
