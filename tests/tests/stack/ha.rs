//! High availability: two Alertmanagers clustered on loopback, each
//! posting to its own receiver, the two receivers sharing one PostgreSQL
//! store. Prometheus sends every alert to both Alertmanagers; every
//! notification must still reach each channel exactly once, and the
//! recovery action must run once.

use llmchat_common::lock;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::harness::{wait_until, Options, Stack, ONE_AT_A_TIME};

#[test]
fn an_alertmanager_pair_over_two_receivers_on_one_store_delivers_each_notification_once() {
    let _one = lock(&ONE_AT_A_TIME);
    let stack = Stack::start(Options {
        receivers: 2,
        alertmanagers: 2,
    });
    // The pair has formed a cluster.
    wait_until(Duration::from_secs(30), "a two-member cluster", || {
        reqwest::blocking::get(format!("{}/api/v2/status", stack.am_urls[0]))
            .and_then(|r| r.json::<serde_json::Value>())
            .is_ok_and(|s| {
                s["cluster"]["peers"]
                    .as_array()
                    .is_some_and(|p| p.len() == 2)
            })
    });
    std::thread::sleep(Duration::from_secs(6));
    stack.error_percent.store(50, Ordering::Release);
    let all = ["email", "slack", "webhook"];
    // The burst pages (the error budget) on every channel; the guide's
    // fixed threshold (a warning) starts the restart.
    stack.expect_channels(
        "LLMChatErrorBudgetBurn",
        "firing",
        &all,
        Duration::from_secs(60),
    );
    // Both Alertmanagers had it from Prometheus; the second waits for the
    // first's notification log (peer timeout) and the shared store drops
    // whatever gets past.
    wait_until(
        Duration::from_secs(20),
        "both Alertmanagers to have the alert",
        || {
            stack
                .query(
                    "sum by (instance) (alertmanager_alerts_received_total{status=\"firing\"}) > 0",
                )
                .len()
                == 2
        },
    );
    std::thread::sleep(Duration::from_secs(4));
    stack.error_percent.store(0, Ordering::Release);
    stack.expect_channels(
        "LLMChatErrorBudgetBurn",
        "resolved",
        &all,
        Duration::from_secs(60),
    );
    // Anything late would have arrived by now.
    std::thread::sleep(Duration::from_secs(4));
    let mut counts: BTreeMap<(String, String, &str), usize> = BTreeMap::new();
    // (Only the chain's own alerts: host alerts depend on the machine.)
    let ours = [
        "LLMChatErrorBudgetBurn",
        "LLMChatHighErrorRate",
        "LLMChatRecoveryAction",
    ];
    for d in stack
        .deliveries()
        .into_iter()
        .filter(|d| ours.contains(&d.alertname.as_str()))
    {
        *counts
            .entry((d.alertname, d.status, d.channel))
            .or_default() += 1;
    }
    for ((alert, status, channel), n) in &counts {
        assert_eq!(*n, 1, "{alert} {status} reached {channel} {n} times");
    }
    for status in ["firing", "resolved"] {
        for channel in all {
            assert!(
                counts.contains_key(&(
                    "LLMChatErrorBudgetBurn".to_string(),
                    status.to_string(),
                    channel
                )),
                "{status} on {channel}: {counts:?}"
            );
        }
    }
    // The restart ran once: the cooldown lives in the shared store.
    let restarts = std::fs::read_to_string(&stack.restarts).unwrap();
    assert_eq!(restarts.lines().count(), 1, "{restarts}");
    // Both receivers took alerts from their Alertmanager or saw them
    // deduplicated; between them, the store holds each notification once.
    let sent = stack.receiver_get(1, "/notifications?status=sent");
    let rows = sent["notifications"].as_array().unwrap();
    let firing_emails = rows
        .iter()
        .filter(|n| {
            n["alertname"] == "LLMChatErrorBudgetBurn"
                && n["channel"] == "email"
                && n["status"] == "firing"
        })
        .count();
    assert_eq!(firing_emails, 1);
}
