//! Delivery end to end: routing by severity, real SMTP, retries with
//! Retry-After, HMAC, deduplication, crash recovery, and a real
//! Alertmanager in front.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::helpers::{
    config, config_with_max_age, free_port, payload, start_alertmanager, wait_until, Receiver,
    SmtpSink, Target, HMAC_SECRET, TOKEN,
};

pub(crate) fn sqlite(dir: &std::path::Path) -> String {
    format!("sqlite://{}", dir.join("outbox.db").display())
}

fn verify_hmac(body: &[u8], header: &str) {
    let mut mac = Hmac::<Sha256>::new_from_slice(HMAC_SECRET.as_bytes()).unwrap();
    mac.update(body);
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(header, want, "HMAC signature");
}

#[test]
fn severities_route_to_their_channels_and_email_is_multipart() {
    let dir = tempfile::tempdir().unwrap();
    let slack = Target::start(vec![]);
    let hook = Target::start(vec![]);
    let smtp = SmtpSink::start();
    let cfg = config(
        dir.path(),
        &sqlite(dir.path()),
        Some(&slack.url("/services/T000/B000/XXXX")),
        Some(&hook.url("/hook")),
        Some(smtp.port),
    );
    let r = Receiver::start(&cfg);
    let body = payload(&[
        ("LLMChatHighErrorRate", "critical", "firing"),
        ("LLMChatSlowResponses", "warning", "firing"),
        ("LLMChatLogErrors", "info", "firing"),
    ]);
    let resp = r.post(&body, Some(TOKEN));
    assert_eq!(resp.status(), 200);
    let ack: serde_json::Value = resp.json().unwrap();
    // critical: 3 channels, warning: 2, info: 1.
    assert_eq!(ack["stored"], 6);
    wait_until(Duration::from_secs(15), "all sends", || {
        hook.requests().len() == 3 && slack.requests().len() == 2 && smtp.mails().len() == 1
    });
    let mail = &smtp.mails()[0];
    assert!(mail.from.contains("alerts@llmchat.test"), "{}", mail.from);
    let mut to = mail.to.clone();
    to.sort();
    assert_eq!(to, ["lead@llmchat.test", "oncall@llmchat.test"]);
    assert!(
        mail.data
            .contains("Subject: [LLMChat][CRITICAL] LLMChatHighErrorRate"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("multipart/alternative"));
    assert!(mail.data.contains("Content-Type: text/plain"));
    assert!(mail.data.contains("Content-Type: text/html"));
    assert!(mail.data.contains("LLMChatHighErrorRate description"));
    let names: Vec<String> = slack
        .requests()
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap().to_string())
        .collect();
    assert!(names.contains(&"[LLMChat][CRITICAL] LLMChatHighErrorRate".to_string()));
    assert!(names.contains(&"[LLMChat][WARNING] LLMChatSlowResponses".to_string()));
    let att = &slack.requests()[0].json()["attachments"][0];
    assert!(att["color"].as_str().unwrap().starts_with('#'));
    // The links are buttons; the graph link is Prometheus' generatorURL.
    let buttons: Vec<String> = att["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().unwrap().clone())
        .map(|e| e["url"].as_str().unwrap().to_string())
        .collect();
    assert!(
        buttons.contains(&"http://prometheus:9090/graph?g0.expr=x".to_string()),
        "{buttons:?}"
    );
    for req in hook.requests() {
        assert_eq!(req.path, "/hook");
        assert_eq!(req.header("X-Team"), Some("sre"));
        verify_hmac(&req.body, req.header("X-LLMChat-Signature").unwrap());
    }
    let infos: Vec<_> = hook
        .requests()
        .iter()
        .filter(|r| r.json()["severity"] == "info")
        .cloned()
        .collect();
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].json()["alertname"], "LLMChatLogErrors");

    // Resolved: Slack turns green, the subject says RESOLVED.
    let resolved = payload(&[("LLMChatHighErrorRate", "critical", "resolved")]);
    assert_eq!(r.post(&resolved, Some(TOKEN)).status(), 200);
    wait_until(Duration::from_secs(15), "resolved sends", || {
        smtp.mails().len() == 2
    });
    assert!(smtp.mails()[1]
        .data
        .contains("Subject: [LLMChat][RESOLVED] LLMChatHighErrorRate"));
    wait_until(Duration::from_secs(15), "resolved slack", || {
        slack.requests().len() == 3
    });
    assert_eq!(
        slack.requests()[2].json()["attachments"][0]["color"],
        "#2eb886"
    );
}

#[test]
fn failures_retry_with_backoff_and_honour_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Target::start(vec![
        (500, None),
        (429, Some(("Retry-After", "2"))),
        (200, None),
    ]);
    let cfg = config(
        dir.path(),
        &sqlite(dir.path()),
        None,
        Some(&hook.url("/hook")),
        None,
    );
    let r = Receiver::start(&cfg);
    assert_eq!(
        r.post(
            &payload(&[("LLMChatLogErrors", "info", "firing")]),
            Some(TOKEN)
        )
        .status(),
        200
    );
    wait_until(Duration::from_secs(20), "three attempts", || {
        hook.requests().len() >= 3
    });
    r.wait_until_drained();
    let reqs = hook.requests();
    assert_eq!(reqs.len(), 3, "exactly three attempts");
    let gap1 = reqs[1].at - reqs[0].at;
    let gap2 = reqs[2].at - reqs[1].at;
    // Backoff after the 500: 200 ms ± 20%; after the 429: its Retry-After.
    assert!(
        gap1 >= Duration::from_millis(150) && gap1 < Duration::from_millis(1500),
        "{gap1:?}"
    );
    assert!(gap2 >= Duration::from_millis(1900), "{gap2:?}");
    for req in &reqs {
        verify_hmac(&req.body, req.header("X-LLMChat-Signature").unwrap());
        assert_eq!(req.body, reqs[0].body, "the same document each time");
    }
    wait_until(Duration::from_secs(5), "recorded as sent", || {
        r.notifications("sent")["notifications"]
            .as_array()
            .unwrap()
            .len()
            == 1
    });
    let sent = &r.notifications("sent")["notifications"][0];
    assert_eq!(sent["attempts"], 3);
    let metrics = reqwest::blocking::get(format!("{}/metrics", r.base))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains(
            "llmchat_receiver_notifications_total{channel=\"webhook\",result=\"failed\"} 2"
        ),
        "{metrics}"
    );
    assert!(metrics
        .contains("llmchat_receiver_notifications_total{channel=\"webhook\",result=\"sent\"} 1"));
}

#[test]
fn the_same_payload_twice_is_sent_once_per_channel() {
    let dir = tempfile::tempdir().unwrap();
    let slack = Target::start(vec![]);
    let hook = Target::start(vec![]);
    let cfg = config(
        dir.path(),
        &sqlite(dir.path()),
        Some(&slack.url("/s")),
        Some(&hook.url("/h")),
        None,
    );
    let r = Receiver::start(&cfg);
    let body = payload(&[("LLMChatSlowResponses", "warning", "firing")]);
    let first: serde_json::Value = r.post(&body, Some(TOKEN)).json().unwrap();
    let second: serde_json::Value = r.post(&body, Some(TOKEN)).json().unwrap();
    assert_eq!(first["stored"], 2);
    assert_eq!(second["stored"], 0);
    assert_eq!(second["duplicates"], 2);
    wait_until(Duration::from_secs(10), "sends", || {
        slack.requests().len() == 1 && hook.requests().len() == 1
    });
    r.wait_until_drained();
    assert_eq!(slack.requests().len(), 1);
    assert_eq!(hook.requests().len(), 1);
}

#[test]
fn a_notification_accepted_before_a_crash_is_delivered_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    // The target is down at first: the notification stays pending.
    let port = free_port();
    let cfg = config(
        dir.path(),
        &sqlite(dir.path()),
        None,
        Some(&format!("http://127.0.0.1:{port}/h")),
        None,
    );
    let r = Receiver::start(&cfg);
    let receiver_port = r.port;
    assert_eq!(
        r.post(
            &payload(&[("LLMChatAppDown", "critical", "firing")]),
            Some(TOKEN)
        )
        .status(),
        200
    );
    wait_until(Duration::from_secs(10), "a failed attempt", || {
        r.notifications("pending")["notifications"][0]["attempts"]
            .as_i64()
            .unwrap_or(0)
            >= 1
    });
    r.kill(); // SIGKILL: no chance to flush anything
    let hook = Target::start_on(port);
    let r = Receiver::start_on(&cfg, receiver_port);
    wait_until(Duration::from_secs(20), "delivery after restart", || {
        hook.requests().len() == 1
    });
    r.wait_until_drained();
    assert_eq!(hook.requests().len(), 1, "exactly once");
    assert_eq!(hook.requests()[0].json()["alertname"], "LLMChatAppDown");
    assert_eq!(
        r.notifications("sent")["notifications"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn a_real_alertmanager_delivers_through_the_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Target::start(vec![]);
    let slack = Target::start(vec![]);
    let cfg = config(
        dir.path(),
        &sqlite(dir.path()),
        Some(&slack.url("/s")),
        Some(&hook.url("/h")),
        None,
    );
    let r = Receiver::start(&cfg);
    let (mut am, am_url) = start_alertmanager(
        dir.path(),
    format!(
        "route:\n  receiver: llmchat\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
         receivers:\n  - name: llmchat\n    webhook_configs:\n      - url: {}/webhook\n        send_resolved: true\n        http_config:\n          authorization:\n            credentials: {TOKEN}\n",
        r.base
    ),
    );
    let post_named = |name: &str, ends_at: Option<&str>| {
        let mut alert = serde_json::json!({
            "labels": {"alertname": name, "severity": "warning", "instance": "host-a:9842"},
            "annotations": {"summary": "Memory usage above 90%", "description": "95% of memory is in use"},
            "generatorURL": "http://prometheus:9090/graph"
        });
        if let Some(e) = ends_at {
            alert["endsAt"] = serde_json::json!(e);
        }
        let resp = reqwest::blocking::Client::new()
            .post(format!("{am_url}/api/v2/alerts"))
            .json(&serde_json::json!([alert]))
            .send()
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
    };
    let post = |ends_at: Option<&str>| post_named("LLMChatHighMemoryUsage", ends_at);
    post(None);
    wait_until(Duration::from_secs(30), "firing notification", || {
        hook.requests()
            .iter()
            .any(|r| r.json()["status"] == "firing")
    });
    let firing = hook
        .requests()
        .into_iter()
        .find(|r| r.json()["status"] == "firing")
        .unwrap();
    assert_eq!(firing.json()["alertname"], "LLMChatHighMemoryUsage");
    assert_eq!(firing.json()["severity"], "warning");
    // warning: Slack and webhook, no email.
    wait_until(Duration::from_secs(10), "slack", || {
        !slack.requests().is_empty()
    });
    let past = "2020-01-01T00:00:00Z";
    post(Some(past));
    wait_until(Duration::from_secs(30), "resolved notification", || {
        hook.requests()
            .iter()
            .any(|r| r.json()["status"] == "resolved")
    });
    // A marker alert through the same chain: once it has arrived, anything
    // the first group would still have caused has arrived too.
    post_named("LLMChatMarker", None);
    wait_until(Duration::from_secs(30), "the marker", || {
        hook.requests()
            .iter()
            .any(|r| r.json()["alertname"] == "LLMChatMarker")
            && slack
                .requests()
                .iter()
                .any(|r| r.json().to_string().contains("LLMChatMarker"))
    });
    // Exactly one firing and one resolved notification per channel.
    let statuses: Vec<String> = hook
        .requests()
        .iter()
        .map(|r| r.json())
        .filter(|j| j["alertname"] == "LLMChatHighMemoryUsage")
        .map(|j| j["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(statuses, ["firing", "resolved"]);
    let to_slack = slack
        .requests()
        .iter()
        .filter(|r| r.json().to_string().contains("LLMChatHighMemoryUsage"))
        .count();
    assert_eq!(to_slack, 2, "Slack: one firing and one resolved message");
    let _ = am.kill();
    let _ = am.wait();
}

#[test]
fn two_receivers_sharing_one_postgres_store_send_once() {
    let pg = llmchat_tests::services::Postgres::start();
    pg.psql_db("postgres", "CREATE DATABASE receiver");
    let store = format!("postgres://postgres@127.0.0.1:{}/receiver", pg.port);
    let slack = Target::start(vec![]);
    let hook = Target::start(vec![]);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Receiver::start(&config(
        dir_a.path(),
        &store,
        Some(&slack.url("/s")),
        Some(&hook.url("/h")),
        None,
    ));
    let b = Receiver::start(&config(
        dir_b.path(),
        &store,
        Some(&slack.url("/s")),
        Some(&hook.url("/h")),
        None,
    ));
    // Both members of an Alertmanager HA pair post the same group.
    let body = payload(&[
        ("LLMChatHighErrorRate", "critical", "firing"),
        ("LLMChatSlowResponses", "warning", "firing"),
    ]);
    let (ra, rb) = std::thread::scope(|s| {
        let ta = s.spawn(|| {
            a.post(&body, Some(TOKEN))
                .json::<serde_json::Value>()
                .unwrap()
        });
        let tb = s.spawn(|| {
            b.post(&body, Some(TOKEN))
                .json::<serde_json::Value>()
                .unwrap()
        });
        (ta.join().unwrap(), tb.join().unwrap())
    });
    // critical -> slack + webhook (no email configured), warning -> slack + webhook.
    assert_eq!(
        ra["stored"].as_i64().unwrap() + rb["stored"].as_i64().unwrap(),
        4,
        "{ra} {rb}"
    );
    wait_until(Duration::from_secs(15), "sends", || {
        slack.requests().len() == 2 && hook.requests().len() == 2
    });
    // One store: when it holds nothing to send, neither replica can send.
    a.wait_until_drained();
    assert_eq!(slack.requests().len(), 2);
    assert_eq!(hook.requests().len(), 2);
    let mut names: Vec<String> = hook
        .requests()
        .iter()
        .map(|r| r.json()["alertname"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["LLMChatHighErrorRate", "LLMChatSlowResponses"]);
    assert_eq!(
        pg.psql_db(
            "receiver",
            "SELECT count(*) FROM notifications WHERE state = 'sent'"
        ),
        "4"
    );
}

#[test]
fn failures_past_max_age_and_permanent_rejections_are_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    // Slack keeps failing with 503; the webhook target rejects with 400.
    let slack = Target::start(vec![(503, None); 100]);
    let hook = Target::start(vec![(400, None)]);
    let cfg = config_with_max_age(
        dir.path(),
        &sqlite(dir.path()),
        Some(&slack.url("/s")),
        Some(&hook.url("/h")),
        None,
        "1s",
    );
    let r = Receiver::start(&cfg);
    assert_eq!(
        r.post(
            &payload(&[("LLMChatSlowResponses", "warning", "firing")]),
            Some(TOKEN)
        )
        .status(),
        200
    );
    wait_until(Duration::from_secs(20), "both dead-lettered", || {
        r.notifications("dead")["notifications"]
            .as_array()
            .unwrap()
            .len()
            == 2
    });
    let dead = r.notifications("dead");
    let errors: Vec<(String, String)> = dead["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["channel"].as_str().unwrap().into(),
                n["last_error"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        errors.contains(&("webhook".into(), "HTTP 400 Bad Request".into())),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|(c, e)| c == "slack" && e.starts_with("HTTP 503")),
        "{errors:?}"
    );
    // The 400 is final at once; the 503 was retried until max_age.
    assert_eq!(hook.requests().len(), 1);
    assert!(slack.requests().len() >= 2);
    wait_until(Duration::from_secs(5), "dead gauge", || {
        reqwest::blocking::get(format!("{}/metrics", r.base))
            .unwrap()
            .text()
            .unwrap()
            .contains("llmchat_receiver_outbox_dead 2")
    });
}
