//! The receiver under an alert storm: a Slack backlog of 10,000 warnings
//! (paced at one message a second) never delays a new critical alert's
//! email and webhook, Slack sends it next, and the outbox gauges say how
//! far behind each channel is throughout.

use std::time::{Duration, Instant};

use llmchat_tests::sinks::{SmtpSink, Target};

use crate::helpers::{config, edit_config, wait_until, Receiver, TOKEN};

/// `n` warning alerts in one Alertmanager post, named `Storm<first+i>`.
fn warnings(first: usize, n: usize) -> String {
    let alerts: Vec<String> = (first..first + n)
        .map(|i| {
            format!(
                r#"{{"status":"firing","labels":{{"alertname":"Storm{i}","severity":"warning","instance":"host-{i}:9842"}},"annotations":{{"summary":"storm"}},"startsAt":"2026-12-02T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"storm-{i}"}}"#
            )
        })
        .collect();
    format!(
        r#"{{"version":"4","groupKey":"storm","truncatedAlerts":0,"status":"firing","receiver":"llmchat","groupLabels":{{}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://alertmanager:9093","alerts":[{}]}}"#,
        alerts.join(",")
    )
}

#[test]
fn a_slack_backlog_of_ten_thousand_warnings_does_not_delay_a_page() {
    let smtp = SmtpSink::start();
    let slack = Target::start(Vec::new());
    let hook = Target::start(Vec::new());
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("outbox.db").display());
    let path = config(
        dir.path(),
        &store,
        Some(&slack.url("/slack")),
        Some(&hook.url("/hook")),
        Some(smtp.port),
    );
    // Slack's real pace, and posts big enough for a thousand alerts.
    edit_config(
        &path,
        &[
            (
                "slack_interval = \"300ms\"",
                "slack_interval = \"1s\"\nmax_messages_per_minute = 1000000",
            ),
            ("body_limit_bytes = 4096", "body_limit_bytes = 4194304"),
        ],
    );
    let r = Receiver::start(&path);
    for k in 0..10 {
        let resp = r.post(&warnings(k * 1000, 1000), Some(TOKEN));
        assert_eq!(resp.status(), 200);
    }
    // The gauges see the backlog while Slack works through it.
    wait_until(Duration::from_secs(10), "the Slack backlog counted", || {
        r.metric(r#"llmchat_receiver_outbox_pending{channel="slack"}"#)
            .is_some_and(|n| n > 9000.0)
    });
    std::thread::sleep(Duration::from_secs(2));
    let age = r
        .metric(r#"llmchat_receiver_outbox_oldest_pending_age_seconds{channel="slack"}"#)
        .unwrap();
    assert!(age >= 1.0, "oldest pending Slack message {age} s old");

    let page = crate::helpers::payload(&[("LLMChatPage", "critical", "firing")]);
    let posted = Instant::now();
    assert_eq!(r.post(&page, Some(TOKEN)).status(), 200);
    let mut email_at = None;
    let mut hook_at = None;
    let mut slack_at = None;
    while posted.elapsed() < Duration::from_secs(10) && slack_at.is_none() {
        if email_at.is_none() && smtp.mails().iter().any(|m| m.data.contains("LLMChatPage")) {
            email_at = Some(posted.elapsed());
        }
        if hook_at.is_none()
            && hook
                .requests()
                .iter()
                .any(|q| String::from_utf8_lossy(&q.body).contains("LLMChatPage"))
        {
            hook_at = Some(posted.elapsed());
        }
        if slack
            .requests()
            .iter()
            .any(|q| String::from_utf8_lossy(&q.body).contains("LLMChatPage"))
        {
            slack_at = Some(posted.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let within = |at: Option<Duration>, limit: u64, what: &str| {
        let at = at.unwrap_or_else(|| panic!("no {what} within 10 s"));
        assert!(
            at <= Duration::from_secs(limit),
            "{what} after {at:?}, over {limit} s"
        );
    };
    within(email_at, 2, "email");
    within(hook_at, 2, "webhook");
    // Slack: its 1 s pace plus 2 s.
    within(slack_at, 3, "Slack message");
    // The warnings are still queued behind it: the page jumped the queue.
    let slack_sent = slack.requests().len();
    assert!(slack_sent < 100, "{slack_sent} Slack messages sent already");
}

#[test]
fn a_post_over_the_alert_bound_keeps_the_pages_and_counts_the_rest() {
    let smtp = SmtpSink::start();
    let hook = Target::start(Vec::new());
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("outbox.db").display());
    let path = config(
        dir.path(),
        &store,
        None,
        Some(&hook.url("/hook")),
        Some(smtp.port),
    );
    edit_config(
        &path,
        &[(
            "body_limit_bytes = 4096",
            "body_limit_bytes = 4194304\nmax_alerts_per_post = 1000",
        )],
    );
    let r = Receiver::start(&path);
    // 1,400 warnings, then 100 critical alerts last in the post.
    let mut body: serde_json::Value = serde_json::from_str(&warnings(0, 1500)).unwrap();
    for a in body["alerts"].as_array_mut().unwrap().iter_mut().skip(1400) {
        a["labels"]["severity"] = "critical".into();
    }
    assert_eq!(r.post(&body.to_string(), Some(TOKEN)).status(), 200);
    assert_eq!(
        r.metric("llmchat_receiver_alerts_folded_total"),
        Some(500.0)
    );
    let received = |severity: &str| {
        r.metric(&format!(
            r#"llmchat_receiver_alerts_received_total{{status="firing",severity="{severity}"}}"#
        ))
    };
    // Every page kept; warnings up to the bound.
    assert_eq!(received("critical"), Some(100.0));
    assert_eq!(received("warning"), Some(900.0));
    // The critical group's email lists 100 and says what was left out.
    wait_until(Duration::from_secs(15), "the critical email", || {
        !smtp.mails().is_empty()
    });
    let mail = smtp.mails()[0].data.clone();
    assert!(
        mail.contains("[CRITICAL:100]"),
        "{}",
        &mail[..mail.len().min(2000)]
    );
    assert!(
        mail.contains("500"),
        "the email does not count the folded alerts"
    );
}

#[test]
fn past_the_per_minute_budget_a_post_goes_to_slack_as_one_digest() {
    let slack = Target::start(Vec::new());
    let hook = Target::start(Vec::new());
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("outbox.db").display());
    let path = config(
        dir.path(),
        &store,
        Some(&slack.url("/slack")),
        Some(&hook.url("/hook")),
        None,
    );
    edit_config(
        &path,
        &[
            (
                "slack_interval = \"300ms\"",
                "slack_interval = \"10ms\"\nmax_messages_per_minute = 60",
            ),
            ("body_limit_bytes = 4096", "body_limit_bytes = 4194304"),
        ],
    );
    let r = Receiver::start(&path);
    assert_eq!(r.post(&warnings(0, 500), Some(TOKEN)).status(), 200);
    wait_until(
        Duration::from_secs(30),
        "61 Slack messages, 500 webhooks",
        || slack.requests().len() == 61 && hook.requests().len() == 500,
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(slack.requests().len(), 61);
    assert_eq!(
        r.metric("llmchat_receiver_notifications_folded_total"),
        Some(440.0)
    );
    let digest = slack
        .requests()
        .into_iter()
        .map(|q| String::from_utf8_lossy(&q.body).into_owned())
        .find(|b| b.contains("more alerts of this group"))
        .expect("a Slack digest");
    // 440 folded: the first shown, 439 more, and a link to all of them.
    assert!(digest.contains("439 more alerts"), "{digest}");
    assert!(
        digest.contains("http://alertmanager:9093/#/alerts"),
        "{digest}"
    );
    // The webhook, unpaced, got every alert.
    assert_eq!(hook.requests().len(), 500);
}

/// A receiver with one post slot and 1 s to wait for a slot or for room
/// (plus `extra` in `[web]`), whose SQLite outbox another process holds
/// locked for 3 s (the receiver waits up to its busy_timeout of 5 s).
struct LockedStore {
    receiver: Receiver,
    base: String,
    locker: std::process::Child,
}

impl LockedStore {
    fn start(dir: &std::path::Path, extra: &str) -> Self {
        let db = dir.join("outbox.db");
        let path = config(
            dir,
            &format!("sqlite://{}", db.display()),
            None,
            Some("http://127.0.0.1:9/hook"),
            None,
        );
        edit_config(
            &path,
            &[(
                "body_limit_bytes = 4096\n",
                &format!("body_limit_bytes = 65536\nmax_concurrent_posts = 1\n{extra}[web.limits]\nbody_timeout = \"1s\"\n"),
            )],
        );
        let receiver = Receiver::start(&path);
        let mut locker = std::process::Command::new("python3")
            .arg("-c")
            .arg(format!(
                "import sqlite3, time, sys\nc = sqlite3.connect({:?}, isolation_level=None)\nc.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\ntime.sleep(3)\nc.execute('ROLLBACK')\n",
                db.display().to_string()
            ))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(locker.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "locked");
        LockedStore {
            base: receiver.base.clone(),
            receiver,
            locker,
        }
    }

    /// Posts one alert from a thread: (status, time taken).
    fn post(
        &self,
        name: String,
        severity: &'static str,
    ) -> std::thread::JoinHandle<(u16, Duration)> {
        let body = crate::helpers::payload(&[(name.as_str(), severity, "firing")]);
        let base = self.base.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let status = reqwest::blocking::Client::new()
                .post(format!("{base}/webhook"))
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(body)
                .timeout(Duration::from_secs(20))
                .send()
                .unwrap()
                .status()
                .as_u16();
            (status, started.elapsed())
        })
    }

    fn wait_for_the_lock_to_go(mut self) {
        self.locker.wait().unwrap();
    }
}

/// Posts waiting for the store's commit leave their parse slot: with one
/// slot and the store locked for 3 s, four warning posts all wait for the
/// commit (within `web.commit_queue_bytes`) and are stored (200) once the
/// lock goes, instead of queueing for the slot and getting 503 after 1 s.
/// One group commit takes them all, which is what keeps the throughput
/// under a storm (README, "Receiver throughput").
#[test]
fn posts_waiting_for_the_store_leave_their_parse_slot() {
    let dir = tempfile::tempdir().unwrap();
    let store = LockedStore::start(dir.path(), "");
    let post = |name, severity| store.post(name, severity);
    let posts: Vec<_> = (0..4)
        .map(|i| {
            let p = post(format!("Warning{i}"), "warning");
            std::thread::sleep(Duration::from_millis(100));
            p
        })
        .collect();
    // While they wait, the queue shows their bodies' bytes.
    let one = crate::helpers::payload(&[("Warning0", "warning", "firing")]).len() as f64;
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        store.receiver.metric("llmchat_receiver_commit_queue_bytes"),
        Some(4.0 * one)
    );
    let done: Vec<(u16, Duration)> = posts.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(done.iter().all(|(status, _)| *status == 200), "{done:?}");
    // They waited for the lock, not for one another's slot.
    assert!(
        done.iter().all(|(_, took)| *took > Duration::from_secs(2)),
        "{done:?}"
    );
    assert_eq!(
        store.receiver.metric("llmchat_receiver_commit_queue_bytes"),
        Some(0.0)
    );
    store.wait_for_the_lock_to_go();
}

/// The byte budget and the room kept for pages: with the store locked, a
/// warning post of almost 64 KiB fills the commit queue's budget of
/// 64 KiB; the next warning holds the one slot while it waits for room,
/// and it and the warnings queued behind it get 503 at the wait's end; a
/// post with a critical alert takes the kept slot and the room kept for
/// one post, and is stored (200) once the lock goes.
#[test]
fn a_page_does_not_queue_behind_warning_posts() {
    let dir = tempfile::tempdir().unwrap();
    let store = LockedStore::start(dir.path(), "commit_queue_bytes = 65536\n");
    let post = |name, severity| store.post(name, severity);
    // The name appears four times in its alert: padded so the post is 50
    // bytes short of the budget, less than any other post here.
    let empty = crate::helpers::payload(&[("Warning0", "warning", "firing")]).len();
    let first = post(
        format!("Warning0{}", "x".repeat((65536 - 50 - empty) / 4)),
        "warning",
    );
    std::thread::sleep(Duration::from_millis(200));
    let queued: Vec<_> = (1..4)
        .map(|i| post(format!("Warning{i}"), "warning"))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let page = post("ThePage".into(), "critical");
    let page = page.join().unwrap();
    let queued: Vec<u16> = queued.into_iter().map(|h| h.join().unwrap().0).collect();
    assert_eq!(page.0, 200, "the page waited {:?}", page.1);
    assert_eq!(queued, vec![503, 503, 503]);
    assert_eq!(first.join().unwrap().0, 200);
    store.wait_for_the_lock_to_go();
}
