//! Slack through the Web API: a message posted on firing is updated in
//! place on resolve (and replied to in its thread), whichever receiver
//! of a pair, or which run of one, sees the resolve; Slack's rate limits
//! and error codes are honoured.

use std::path::{Path, PathBuf};
use std::time::Duration;

use llmchat_tests::sinks::{SlackAnswer, SlackApi, SLACK_CHANNEL_ID};
use serde_json::Value;

use crate::helpers::*;

const BOT_TOKEN: &str = "xoxb-test-bot-token-0123456789";

/// A receiver whose only channel is Slack's Web API (warning alerts go to
/// Slack and the webhook; no webhook is configured).
fn slack_config(dir: &Path, store: &str, api: &SlackApi, extra: &str) -> PathBuf {
    let path = config(dir, store, None, None, None);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!(
        "[channels.slack]\nbot_token = \"{BOT_TOKEN}\"\nchannel = \"#alerts\"\napi_url = \"{}\"\n\n\
         [notify]\nrunbook_base_url = \"https://git.example.com/monitor/blob/main/\"\ngrafana_url = \"https://grafana.example.com\"\n\n{extra}",
        api.url()
    ));
    std::fs::write(&path, text).unwrap();
    path
}

fn firing() -> String {
    payload(&[("LLMChatSlowResponses", "warning", "firing")])
}

fn resolved() -> String {
    payload(&[("LLMChatSlowResponses", "warning", "resolved")])
}

/// Every call's (method, body), in order (refused ones included).
fn calls(api: &SlackApi) -> Vec<(String, Value)> {
    api.calls().into_iter().map(|(m, b, _)| (m, b)).collect()
}

/// Waits for the firing post, then posts the resolve, and checks the
/// update in place and the thread reply; `post_resolve` sends it.
/// `refused` updates are answered 429 or ok:false by the script first.
fn assert_updated_in_place(api: &SlackApi, first_calls: usize, post_resolve: impl FnOnce()) {
    assert_updated_in_place_after(api, first_calls, 0, post_resolve)
}

fn assert_updated_in_place_after(
    api: &SlackApi,
    first_calls: usize,
    refused: usize,
    post_resolve: impl FnOnce(),
) {
    wait_until(Duration::from_secs(20), "the firing message", || {
        calls(api).len() >= first_calls
    });
    let posted = calls(api);
    let (method, first) = posted.last().unwrap();
    assert_eq!(method, "chat.postMessage");
    assert_eq!(first["channel"], "#alerts");
    assert_eq!(first["attachments"][0]["color"], "#f2a900");
    let ts = "1700000000.000001";
    post_resolve();
    wait_until(Duration::from_secs(20), "the update and the reply", || {
        calls(api).len() >= first_calls + refused + 2
    });
    let after = calls(api);
    for (method, refused) in &after[first_calls..first_calls + refused] {
        assert_eq!(method, "chat.update");
        assert_eq!(refused["ts"], "1700000000.000001");
    }
    let first_calls = first_calls + refused;
    let (method, update) = &after[first_calls];
    assert_eq!(method, "chat.update", "{after:?}");
    assert_eq!(update["channel"], SLACK_CHANNEL_ID);
    assert_eq!(update["ts"], ts);
    assert_eq!(update["attachments"][0]["color"], "#2eb886");
    assert_eq!(
        update["attachments"][0]["blocks"][0]["text"]["text"],
        "Resolved after 30 min: LLMChatSlowResponses"
    );
    let (method, reply) = &after[first_calls + 1];
    assert_eq!(method, "chat.postMessage");
    assert_eq!(reply["thread_ts"], ts);
    assert_eq!(reply["channel"], SLACK_CHANNEL_ID);
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .starts_with("Resolved after 30 min: LLMChatSlowResponses"),
        "{reply}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(calls(api).len(), first_calls + 2, "nothing more is sent");
}

#[test]
fn resolve_updates_the_message_in_place_also_after_429_and_ok_false() {
    for (script, first_calls) in [
        (vec![], 1),
        (vec![SlackAnswer::RateLimited(1)], 2),
        (vec![SlackAnswer::Error("ratelimited")], 2),
        (vec![SlackAnswer::Error("internal_error")], 2),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let api = SlackApi::start(script.clone());
        let store = format!("sqlite://{}", dir.path().join("outbox.db").display());
        let r = Receiver::start(&slack_config(dir.path(), &store, &api, ""));
        let started = std::time::Instant::now();
        assert_eq!(r.post(&firing(), Some(TOKEN)).status(), 200);
        assert_updated_in_place(&api, first_calls, || {
            assert_eq!(r.post(&resolved(), Some(TOKEN)).status(), 200);
        });
        if matches!(script.first(), Some(SlackAnswer::RateLimited(_))) {
            assert!(
                started.elapsed() >= Duration::from_secs(1),
                "Retry-After honoured"
            );
        }
        // The bot token goes in the Authorization header, never in a log.
        assert!(api
            .calls()
            .iter()
            .all(|(_, _, auth)| auth == &format!("Bearer {BOT_TOKEN}")));
        assert!(!r.log().contains(BOT_TOKEN));
    }
}

#[test]
fn resolve_after_a_restart_updates_the_message_posted_before_it() {
    let dir = tempfile::tempdir().unwrap();
    // The first update is rate limited, and retried after Retry-After.
    let api = SlackApi::start(vec![SlackAnswer::Ok, SlackAnswer::RateLimited(1)]);
    let store = format!("sqlite://{}", dir.path().join("outbox.db").display());
    let cfg = slack_config(dir.path(), &store, &api, "");
    let first = Receiver::start(&cfg);
    assert_eq!(first.post(&firing(), Some(TOKEN)).status(), 200);
    wait_until(Duration::from_secs(15), "the firing message", || {
        calls(&api).len() == 1
    });
    first.kill();
    let second = Receiver::start(&cfg);
    assert_updated_in_place_after(&api, 1, 1, || {
        assert_eq!(second.post(&resolved(), Some(TOKEN)).status(), 200);
    });
}

#[test]
fn resolve_posted_to_the_other_receiver_of_a_pair_updates_the_message() {
    let pg = llmchat_tests::services::Postgres::start();
    pg.psql_db("postgres", "CREATE DATABASE receiver");
    let store = format!("postgres://postgres@127.0.0.1:{}/receiver", pg.port);
    // The first update gets ok:false ratelimited, and is retried.
    let api = SlackApi::start(vec![SlackAnswer::Ok, SlackAnswer::Error("ratelimited")]);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Receiver::start(&slack_config(dir_a.path(), &store, &api, ""));
    let b = Receiver::start(&slack_config(dir_b.path(), &store, &api, ""));
    assert_eq!(a.post(&firing(), Some(TOKEN)).status(), 200);
    assert_updated_in_place_after(&api, 1, 1, || {
        assert_eq!(b.post(&resolved(), Some(TOKEN)).status(), 200);
    });
}

#[test]
fn permanent_slack_errors_dead_letter_at_once() {
    for code in ["channel_not_found", "invalid_auth", "not_in_channel"] {
        let dir = tempfile::tempdir().unwrap();
        let api = SlackApi::start(vec![SlackAnswer::Error(code)]);
        let store = format!("sqlite://{}", dir.path().join("outbox.db").display());
        let r = Receiver::start(&slack_config(dir.path(), &store, &api, ""));
        assert_eq!(r.post(&firing(), Some(TOKEN)).status(), 200);
        wait_until(Duration::from_secs(15), "dead-lettered", || {
            r.notifications("dead")["notifications"]
                .as_array()
                .is_some_and(|l| l.len() == 1)
        });
        let dead = &r.notifications("dead")["notifications"][0];
        assert_eq!(dead["attempts"], 1, "{code}: not retried");
        assert_eq!(
            dead["last_error"],
            format!("Slack chat.postMessage: {code}")
        );
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(api.calls().len(), 1, "{code}: one call");
    }
}

#[test]
fn a_recovery_outcome_is_a_reply_in_the_alerts_thread() {
    let dir = tempfile::tempdir().unwrap();
    let api = SlackApi::start(vec![]);
    let store = format!("sqlite://{}", dir.path().join("outbox.db").display());
    let r = Receiver::start(&slack_config(
        dir.path(),
        &store,
        &api,
        "[recovery]\ndry_run = true\n[recovery.actions.restart.command]\nargv = [\"true\"]\n",
    ));
    let body = payload(&[("LLMChatHighErrorRate", "warning", "firing")]).replace(
        "\"instance\":\"host-a:9842\"",
        "\"instance\":\"host-a:9842\",\"fault\":\"high_error_rate\"",
    );
    assert_eq!(r.post(&body, Some(TOKEN)).status(), 200);
    wait_until(Duration::from_secs(15), "the alert and its outcome", || {
        calls(&api).len() >= 2
    });
    let all = calls(&api);
    assert!(all[0].1.get("thread_ts").is_none(), "{all:?}");
    let (method, outcome) = &all[1];
    assert_eq!(method, "chat.postMessage");
    assert_eq!(outcome["thread_ts"], "1700000000.000001");
    assert_eq!(outcome["text"], "[LLMChat][INFO] LLMChatRecoveryAction");
}
