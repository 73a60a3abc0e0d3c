//! The hourly cap holds on every store backend, whatever the timing: 20
//! instances in one post, or 20 concurrent posts across two receivers on
//! one store, with `max_runs_per_hour = 2`, run the action exactly twice.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::helpers::*;
use crate::recovery::finished;

/// A receiver acting for every `host-*` instance, whose capped `restart`
/// appends the alert's instance to `ran`; `redis`: coordinate through it.
fn capped_config(dir: &Path, store: &str, redis: Option<u16>, ran: &Path) -> PathBuf {
    let path = config(dir, store, None, None, None);
    let mut text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("body_limit_bytes = 4096", "body_limit_bytes = 1048576");
    text.push_str("[recovery]\ninstance = 'instance=~\"host-.*\"'\n");
    if let Some(port) = redis {
        text.push_str(&format!("redis_url = \"redis://127.0.0.1:{port}\"\n"));
    }
    text.push_str(&format!(
        "[recovery.actions.restart]\ncooldown = \"10m\"\nmax_runs_per_hour = 2\n\
         [recovery.actions.restart.command]\n\
         argv = [\"sh\", \"-c\", \"echo $LLMCHAT_ALERT_INSTANCE >> {}\"]\n",
        ran.display()
    ));
    std::fs::write(&path, text).unwrap();
    path
}

/// One post of a fault on each of `instances`.
fn faults(instances: impl Iterator<Item = usize>) -> String {
    let alerts: Vec<_> = instances
        .map(|i| {
            json!({
                "status": "firing",
                "labels": {"alertname": "LLMChatInstanceHighErrorRate", "severity": "critical",
                           "fault": "high_error_rate", "instance": format!("host-{i}:9842")},
                "annotations": {},
                "startsAt": "2026-12-02T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": format!("fp-{i}"),
            })
        })
        .collect();
    json!({"version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0, "status": "firing",
           "receiver": "llmchat", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
           "externalURL": "http://alertmanager:9093", "alerts": alerts})
    .to_string()
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .count()
}

fn results(audit: &[serde_json::Value], result: &str) -> usize {
    audit.iter().filter(|a| a["result"] == result).count()
}

fn twenty_in_one_post(store: &str, redis: Option<u16>) {
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let r = Receiver::start(&capped_config(dir.path(), store, redis, &ran));
    assert_eq!(r.post(&faults(0..20), Some(TOKEN)).status(), 200);
    let audit = finished(&r, "restart", 20);
    assert_eq!(results(&audit, "succeeded"), 2, "{audit:?}");
    assert_eq!(results(&audit, "skipped_rate_limit"), 18, "{audit:?}");
    assert_eq!(lines(&ran), 2);
}

#[test]
fn twenty_instances_in_one_post_run_the_capped_two_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("outbox.db").display());
    twenty_in_one_post(&store, None);
}

#[test]
fn twenty_instances_in_one_post_run_the_capped_two_on_postgres() {
    let pg = llmchat_tests::services::Postgres::start();
    pg.psql_db("postgres", "CREATE DATABASE receiver");
    twenty_in_one_post(
        &format!("postgres://postgres@127.0.0.1:{}/receiver", pg.port),
        None,
    );
}

#[test]
fn twenty_instances_in_one_post_run_the_capped_two_on_redis() {
    let redis = llmchat_tests::services::Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("outbox.db").display());
    twenty_in_one_post(&store, Some(redis.port));
}

#[test]
fn twenty_concurrent_posts_across_two_receivers_on_one_store_run_two() {
    let pg = llmchat_tests::services::Postgres::start();
    pg.psql_db("postgres", "CREATE DATABASE receiver");
    let store = format!("postgres://postgres@127.0.0.1:{}/receiver", pg.port);
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let receivers: Vec<(Receiver, PathBuf)> = dirs
        .iter()
        .map(|d| {
            let ran = d.path().join("ran");
            (
                Receiver::start(&capped_config(d.path(), &store, None, &ran)),
                ran,
            )
        })
        .collect();
    std::thread::scope(|s| {
        for i in 0..20 {
            let (r, _) = &receivers[i % 2];
            s.spawn(move || {
                assert_eq!(r.post(&faults(i..i + 1), Some(TOKEN)).status(), 200);
            });
        }
    });
    // One store: both receivers' audits are the same 20 rows.
    let audit = finished(&receivers[0].0, "restart", 20);
    assert_eq!(results(&audit, "succeeded"), 2, "{audit:?}");
    assert_eq!(
        receivers.iter().map(|(_, ran)| lines(ran)).sum::<usize>(),
        2
    );
}

#[test]
fn one_post_of_many_alerts_on_one_scope_is_one_decision() {
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let store = format!("sqlite://{}", dir.path().join("outbox.db").display());
    let r = Receiver::start(&capped_config(dir.path(), &store, None, &ran));
    // 300 alerts of one instance (one scope): one decision, one run.
    let body: serde_json::Value = serde_json::from_str(&faults(0..300)).unwrap();
    let mut body = body;
    for (i, a) in body["alerts"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .enumerate()
    {
        a["labels"]["instance"] = "host-1:9842".into();
        a["labels"]["path"] = format!("/api/{i}").into();
        a["fingerprint"] = format!("fp-one-{i}").into();
    }
    assert_eq!(r.post(&body.to_string(), Some(TOKEN)).status(), 200);
    let audit = finished(&r, "restart", 1);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let audit_after = crate::recovery::audit(&r, "restart");
    assert_eq!(audit_after.len(), 1, "{audit_after:?}");
    assert_eq!(audit[0]["result"], "succeeded");
    assert!(
        audit[0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("one decision for 300 alerts"),
        "{}",
        audit[0]
    );
    assert_eq!(lines(&ran), 1);
    let lines_logged = r
        .log()
        .lines()
        .filter(|l| l.contains("recovery action"))
        .count();
    assert!(lines_logged <= 2, "{}", r.log());
}
