//! README promises that had no test of their own: basic auth, the send
//! timeout against a target that never answers, Slack's spacing, and 503
//! meaning the store and nothing else.

use std::io::Read;
use std::net::TcpListener;
use std::time::Duration;

use crate::helpers::*;

/// Basic auth (Alertmanager's `http_config.basic_auth`): the right pair is
/// taken, a wrong password or a bearer token where only basic auth is set
/// gets 401 with the challenge header.
#[test]
fn basic_auth_takes_the_right_pair_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("outbox.db").display());
    let cfg = dir.path().join("receiver.toml");
    std::fs::write(
        &cfg,
        format!(
            "[web]\nbasic_username = \"alertmanager\"\nbasic_password = \"s3cret-pass\"\n\n[store]\nurl = \"{store}\"\n"
        ),
    )
    .unwrap();
    let r = Receiver::start(&cfg);
    let body = payload(&[("LLMChatHighErrorRate", "critical", "firing")]);
    let post = |user: &str, password: &str| {
        reqwest::blocking::Client::new()
            .post(format!("{}/webhook", r.base))
            .basic_auth(user, Some(password))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .unwrap()
    };
    assert_eq!(post("alertmanager", "s3cret-pass").status(), 200);
    let wrong = post("alertmanager", "s3cret-pasS");
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("llmchat-receiver"));
    assert_eq!(post("someone", "s3cret-pass").status(), 401);
    assert_eq!(r.post(&body, Some("s3cret-pass")).status(), 401);
}

/// A webhook target that accepts the connection and never answers: each
/// attempt ends at `delivery.timeout` (2 s here) as a retryable failure,
/// counted and recorded, and the worker goes on.
#[test]
fn a_target_that_never_answers_costs_one_timeout_per_attempt() {
    let hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let hole_url = format!("http://{}/hook", hole.local_addr().unwrap());
    // Accept and hold every connection, reading what arrives, answering nothing.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in hole.incoming().flatten() {
            let mut s = stream.try_clone().unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            });
            held.push(stream);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("outbox.db").display());
    let r = Receiver::start(&config(dir.path(), &store, None, Some(&hole_url), None));
    let started = std::time::Instant::now();
    assert_eq!(
        r.post(
            &payload(&[("LLMChatHighErrorRate", "critical", "firing")]),
            Some(TOKEN)
        )
        .status(),
        200
    );
    wait_until(Duration::from_secs(30), "a failed attempt", || {
        r.metric("llmchat_receiver_notifications_total{channel=\"webhook\",result=\"failed\"}")
            .is_some_and(|v| v >= 1.0)
    });
    // Not before the timeout: the attempt waited for an answer that never came.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let pending = r.notifications("pending");
    let row = &pending["notifications"][0];
    assert!(row["attempts"].as_i64().unwrap() >= 1, "{pending}");
    let error = row["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        error.contains("timed out") || error.contains("timeout"),
        "{pending}"
    );
    // The receiver itself stays responsive meanwhile.
    assert_eq!(
        reqwest::blocking::get(format!("{}/-/ready", r.base))
            .unwrap()
            .status(),
        200
    );
}

/// Slack allows about one message a second per webhook: consecutive
/// messages are at least `delivery.slack_interval` (300 ms here) apart.
#[test]
fn slack_messages_are_spaced_by_the_slack_interval() {
    let slack = Target::start(vec![]);
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("outbox.db").display());
    let r = Receiver::start(&config(
        dir.path(),
        &store,
        Some(&slack.url("/s")),
        None,
        None,
    ));
    let alerts: Vec<String> = (0..4).map(|i| format!("LLMChatSpaced{i}")).collect();
    let list: Vec<(&str, &str, &str)> = alerts
        .iter()
        .map(|a| (a.as_str(), "warning", "firing"))
        .collect();
    assert_eq!(r.post(&payload(&list), Some(TOKEN)).status(), 200);
    wait_until(Duration::from_secs(30), "four Slack messages", || {
        slack.requests().len() == 4
    });
    let at: Vec<_> = slack.requests().iter().map(|q| q.at).collect();
    for pair in at.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= Duration::from_millis(290), "messages {gap:?} apart");
    }
}

/// 503 means "the store could not take it, retry" (store_faults.rs proves
/// that side) and nothing else: with every channel's target refusing
/// connections, the shared Redis gone and the recovery command failing,
/// every alert is still taken with 200 and stored, bad requests get their
/// own 4xx, and /health stays 200.
#[test]
fn only_the_store_makes_the_receiver_answer_503() {
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("outbox.db").display());
    let cfg = config(
        dir.path(),
        &store,
        Some(&format!("http://127.0.0.1:{dead}/slack")),
        Some(&format!("http://127.0.0.1:{dead}/hook")),
        Some(dead),
    );
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "[recovery]\nredis_url = \"redis://127.0.0.1:{dead}\"\n\
         [recovery.actions.restart]\ncooldown = \"0s\"\n[recovery.actions.restart.command]\nargv = [\"false\"]\n"
    ));
    std::fs::write(&cfg, text).unwrap();
    let r = Receiver::start(&cfg);

    let mut statuses = Vec::new();
    for i in 0..10 {
        let name = format!("LLMChatDown{i}");
        let body = payload(&[(name.as_str(), "critical", "firing")])
            .replace(r#""instance":"#, r#""fault":"high_error_rate","instance":"#);
        statuses.push(r.post(&body, Some(TOKEN)).status().as_u16());
        assert_eq!(r.get("/health").0, 200);
    }
    assert_eq!(statuses, vec![200; 10]);
    let client = reqwest::blocking::Client::new();
    let webhook = format!("{}/webhook", r.base);
    let send = |req: reqwest::blocking::RequestBuilder| req.send().unwrap().status().as_u16();
    let json = |body: String| {
        client
            .post(&webhook)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
    };
    assert_eq!(send(json("{not json".into())), 400);
    assert_eq!(
        send(json(format!("{{\"pad\":\"{}\"}}", "x".repeat(8192)))),
        413
    );
    assert_eq!(send(client.post(&webhook).body("{}")), 401);
    assert_eq!(send(client.get(&webhook).bearer_auth(TOKEN)), 405);
    assert_eq!(r.get("/health").0, 200);

    // Taken means stored: three channels for each critical alert.
    let pending = r.notifications("pending")["notifications"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(pending, 30);
    // And every decision was made (and refused: no Redis), not dropped.
    wait_until(Duration::from_secs(30), "ten recovery decisions", || {
        r.metric(r#"llmchat_receiver_recovery_actions_total{action="restart",result="skipped_unavailable"}"#)
            == Some(10.0)
    });
    assert_eq!(r.get("/health").0, 200);
}
