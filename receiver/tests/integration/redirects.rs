//! No client of the receiver follows a redirect: a webhook target, a
//! Slack webhook and an `http` action that answer 3xx get nothing more
//! (no body, no secret header, no signature goes to the other host), and
//! the failure names the Location.

use std::time::Duration;

use llmchat_tests::sinks::Target;

use crate::helpers::*;
use crate::recovery::{alert, finished};

/// A target that answers every request with a redirect to `to`.
fn redirecting(to: &Target) -> Target {
    let location: &'static str = Box::leak(to.url("/stolen").into_boxed_str());
    Target::start(
        (0..50)
            .map(|_| (307, Some(("location", location))))
            .collect(),
    )
}

#[test]
fn channels_and_actions_never_follow_a_redirect() {
    let elsewhere = Target::start(Vec::new());
    let hook = redirecting(&elsewhere);
    let slack = redirecting(&elsewhere);
    let admin = redirecting(&elsewhere);
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("outbox.db").display());
    let path = config(
        dir.path(),
        &store,
        Some(&slack.url("/slack")),
        Some(&hook.url("/hook")),
        None,
    );
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!(
        "[recovery]\ndry_run = false\n[recovery.actions.restart]\ncooldown = \"0s\"\n\
         [recovery.actions.restart.http]\nurl = \"{}\"\nheaders = {{ \"x-admin-key\" = \"admin-secret\" }}\n",
        admin.url("/admin/restart")
    ));
    std::fs::write(&path, text).unwrap();
    let r = Receiver::start(&path);
    let body = alert(
        "firing",
        "fp-redirect",
        &[
            ("alertname", "LLMChatHighErrorRate"),
            ("severity", "critical"),
            ("fault", "high_error_rate"),
        ],
    );
    assert_eq!(r.post(&body, Some(TOKEN)).status(), 200);
    let runs = finished(&r, "restart", 1);
    assert_eq!(runs[0]["result"], "failed", "{}", runs[0]);
    let detail = runs[0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("redirect to") && detail.contains("/stolen"),
        "{detail}"
    );
    wait_until(Duration::from_secs(15), "both channels tried", || {
        !hook.requests().is_empty() && !slack.requests().is_empty()
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        elsewhere.requests().is_empty(),
        "a redirect was followed: {:?}",
        elsewhere.requests()
    );
    let pending = r.notifications("pending");
    let errors: Vec<&str> = pending["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["last_error"].as_str())
        .collect();
    assert!(
        errors.iter().filter(|e| e.contains("redirect to")).count() >= 2,
        "{errors:?}"
    );
}
