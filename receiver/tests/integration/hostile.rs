//! Hostile and broken clients against the real receiver: Alertmanager's
//! post gets through 5,000 idle, half-sent and trickling connections
//! under a 1,024-file limit; a trickled body is cut off with 408; alert
//! text cannot forge a log line.

use std::net::SocketAddr;
use std::time::Duration;

use llmchat_tests::hostile::{raise_own_open_files, raw_exchange, Attack, Hostile};

use crate::helpers::{config, edit_config, payload, wait_until, Receiver, TOKEN};

fn addr(r: &Receiver) -> SocketAddr {
    format!("127.0.0.1:{}", r.port).parse().unwrap()
}

/// A receiver taking bodies up to 64 KiB, its channels pointing nowhere
/// (every notification stays pending, which these tests do not mind).
fn receiver_config(dir: &std::path::Path) -> std::path::PathBuf {
    let store = format!("sqlite://{}", dir.join("outbox.db").display());
    let path = config(dir, &store, None, Some("http://127.0.0.1:9/hook"), None);
    edit_config(
        &path,
        &[("body_limit_bytes = 4096", "body_limit_bytes = 65536")],
    );
    path
}

#[test]
fn alertmanager_posts_through_five_thousand_hostile_connections() {
    raise_own_open_files(12_000);
    let dir = tempfile::tempdir().unwrap();
    let r = Receiver::start_wrapped(
        &["prlimit", "--nofile=1024:1024"],
        &receiver_config(dir.path()),
        0,
        &[],
        &[],
    );
    let hostile = Hostile::mixed(
        addr(&r),
        &[
            (Attack::Idle, 2000),
            (Attack::HalfHeaders, 2000),
            (Attack::SlowBody, 1000),
        ],
    );
    let resp = r.post(
        &payload(&[("LLMChatDown", "critical", "firing")]),
        Some(TOKEN),
    );
    assert_eq!(resp.status(), 200, "{}", r.log());
    assert_eq!(r.get("/-/healthy").0, 200);
    let open = r.metric("llmchat_receiver_http_connections_open").unwrap();
    assert!((1.0..=512.0).contains(&open), "{open}");
    assert!(
        r.metric(r#"llmchat_receiver_http_connections_closed_total{reason="evicted_at_cap"}"#)
            .unwrap()
            >= 4000.0
    );
    assert!(!r.log().contains("Too many open files"), "{}", r.log());
    drop(hostile);
}

#[test]
fn a_trickled_webhook_body_is_cut_off_with_408() {
    let dir = tempfile::tempdir().unwrap();
    let r = Receiver::start_with_args(
        &receiver_config(dir.path()),
        0,
        &["--web.limits.body-timeout", "1s"],
    );
    let hostile = Hostile::open(addr(&r), Attack::SlowBody, 3);
    wait_until(Duration::from_secs(10), "the slow bodies cut off", || {
        hostile.still_open() == 0
    });
    assert_eq!(
        r.metric(r#"llmchat_receiver_http_connections_closed_total{reason="body_timeout"}"#),
        Some(3.0)
    );
    // Over the limit with Expect: 100-continue: 413 before any body.
    let answer = raw_exchange(
        addr(&r),
        format!(
            "POST /webhook HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Length: 70000\r\nExpect: 100-continue\r\n\r\n"
        )
        .as_bytes(),
        Duration::from_secs(5),
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[test]
fn alert_text_cannot_forge_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let r = Receiver::start(&receiver_config(dir.path()));
    // An alertname that ends the log line and starts a forged one, with
    // a terminal escape; the webhook target refuses, so it is logged.
    let evil = r"Down\r\nBcc: victim@example.com attempts=1 \u001b[2J";
    let resp = r.post(&payload(&[(evil, "critical", "firing")]), Some(TOKEN));
    assert_eq!(resp.status(), 200);
    wait_until(
        Duration::from_secs(15),
        "the failed delivery logged",
        || r.log().contains("victim@example.com"),
    );
    let log = r.log();
    assert!(!log.contains('\u{1b}'), "an escape byte in the log:\n{log}");
    assert!(
        !log.lines().any(|l| l.starts_with("Bcc:")),
        "a forged line:\n{log}"
    );
    assert!(log.contains(r"Down\r\nBcc: victim@example.com"), "{log}");
}
