//! The four faults of the issue through the whole chain, one stack: a 5xx
//! burst in the access log, an error burst in app.log, Redis stopped,
//! PostgreSQL stopped. Each must fire its alert, reach exactly the
//! channels its severity names, run its recovery action where it has one,
//! and resolve when the fault goes. Then every dashboard panel's query
//! must return data, and the fallback route must bypass the receiver.

use llmchat_common::lock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{wait_until, Options, Stack, ONE_AT_A_TIME, TIME_SCALE};

const ALL: [&str; 3] = ["email", "slack", "webhook"];
const WARNING: [&str; 2] = ["slack", "webhook"];
const FIRE: Duration = Duration::from_secs(60);

/// Fault-to-email latency of one critical alert, and the receiver's own
/// share of it (stored → sent).
struct Latency {
    alert: &'static str,
    /// The rule's `for:`, scaled.
    hold: Duration,
    fault_to_email: Duration,
    /// Stored → accepted by the SMTP sink.
    receiver: Duration,
    /// Stored → accepted by the webhook stand-in, for comparison.
    receiver_webhook: Duration,
}

fn email_latency(
    stack: &Stack,
    alert: &'static str,
    hold_minutes: u64,
    fault_at: Instant,
) -> Latency {
    let mail = stack
        .smtp
        .mails()
        .into_iter()
        .find(|m| {
            m.data
                .contains(&format!("Subject: [LLMChat][CRITICAL] {alert}"))
        })
        .expect("the firing email");
    let sent = stack.receiver_get(0, "/notifications?status=sent");
    let row = |channel: &str| {
        sent["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["alertname"] == alert && n["channel"] == channel && n["status"] == "firing")
            .cloned()
            .unwrap_or_else(|| panic!("the {channel} outbox row of {alert}"))
    };
    let ms = |v: &Value| v.as_i64().unwrap();
    let took =
        |r: Value| Duration::from_millis((ms(&r["sent_ms"]) - ms(&r["created_ms"])).max(0) as u64);
    Latency {
        alert,
        hold: Duration::from_secs(hold_minutes * 60 / TIME_SCALE),
        fault_to_email: mail.at.duration_since(fault_at),
        receiver: took(row("email")),
        receiver_webhook: took(row("webhook")),
    }
}

#[test]
fn four_faults_alert_notify_recover_and_resolve_through_the_real_chain() {
    let _one = lock(&ONE_AT_A_TIME);
    let mut stack = Stack::start(Options {
        receivers: 1,
        alertmanagers: 1,
    });
    // Some clean traffic first, so that the ratios have a denominator.
    std::thread::sleep(Duration::from_secs(6));
    // (Host alerts such as disk or memory usage depend on the machine.)
    let ours = [
        "LLMChatHighErrorRate",
        "LLMChatLogErrorBurst",
        "LLMChatLogErrors",
        "LLMChatRedisDown",
        "LLMChatDatabaseDown",
        "LLMChatAppDown",
        "LLMChatExporterDown",
    ];
    let early: Vec<String> = stack
        .firing()
        .into_iter()
        .filter(|a| ours.contains(&a.as_str()))
        .collect();
    assert!(early.is_empty(), "alerts before any fault: {early:?}");
    let mut latencies = Vec::new();

    // 1. A 5xx burst: the error budget burns (critical, pages) and
    // LLMChatHighErrorRate (warning, fault=high_error_rate) restarts.
    stack
        .error_percent
        .store(50, std::sync::atomic::Ordering::Release);
    let t0 = Instant::now();
    stack.expect_channels("LLMChatErrorBudgetBurn", "firing", &ALL, FIRE);
    latencies.push(email_latency(&stack, "LLMChatErrorBudgetBurn", 2, t0));
    stack.expect_channels("LLMChatHighErrorRate", "firing", &WARNING, FIRE);
    wait_until(Duration::from_secs(20), "the restart action", || {
        std::fs::read_to_string(&stack.restarts).is_ok_and(|t| t.contains("LLMChatHighErrorRate"))
    });
    let audit = stack.receiver_get(0, "/actions?action=restart");
    let run = &audit["audit"][0];
    assert_eq!(run["result"], "succeeded", "{run}");
    assert_eq!(run["alertname"], "LLMChatHighErrorRate");
    // Its outcome follows on the webhook and, as the alert went there, on Slack.
    stack.expect_channels(
        "LLMChatRecoveryAction",
        "firing",
        &WARNING,
        Duration::from_secs(15),
    );
    stack
        .error_percent
        .store(0, std::sync::atomic::Ordering::Release);
    stack.expect_channels("LLMChatHighErrorRate", "resolved", &WARNING, FIRE);
    stack.expect_channels("LLMChatErrorBudgetBurn", "resolved", &ALL, FIRE);

    // 2. An error burst in app.log: LLMChatLogErrorBurst (warning) and the
    // daily digest LLMChatLogErrors (info). Its 1-hour window (a minute
    // here) ends after the next two scenarios.
    let burst_at = Instant::now();
    let mut lines = String::new();
    for i in 0..15 {
        lines.push_str(&format!(
            "2026-11-26T11:00:{i:02}.000Z ERROR [ChatService] upstream model call failed ({i})\n"
        ));
    }
    stack.write_app_log(&lines);
    stack.expect_channels("LLMChatLogErrorBurst", "firing", &WARNING, FIRE);
    stack.expect_channels("LLMChatLogErrors", "firing", &["webhook"], FIRE);

    // 3. Redis stopped: LLMChatRedisDown, critical.
    stack.redis.kill();
    let t0 = Instant::now();
    stack.expect_channels("LLMChatRedisDown", "firing", &ALL, FIRE);
    latencies.push(email_latency(&stack, "LLMChatRedisDown", 1, t0));
    stack.redis.restart();
    stack.expect_channels("LLMChatRedisDown", "resolved", &ALL, FIRE);

    // 4. PostgreSQL stopped: LLMChatDatabaseDown, critical.
    stack.pg.kill();
    let t0 = Instant::now();
    stack.expect_channels("LLMChatDatabaseDown", "firing", &ALL, FIRE);
    latencies.push(email_latency(&stack, "LLMChatDatabaseDown", 1, t0));
    stack.pg.restart();
    stack.expect_channels("LLMChatDatabaseDown", "resolved", &ALL, FIRE);

    // 2, resolved: the burst has left the (scaled) hour window.
    let window = Duration::from_secs(3600 / TIME_SCALE);
    stack.expect_channels(
        "LLMChatLogErrorBurst",
        "resolved",
        &WARNING,
        window.saturating_sub(burst_at.elapsed()) + FIRE,
    );
    // Only the restart ran: no other alert has an action.
    let restarts = std::fs::read_to_string(&stack.restarts).unwrap();
    assert_eq!(
        restarts.lines().collect::<Vec<_>>(),
        ["LLMChatHighErrorRate"]
    );

    // The fallback route: LLMChatNotificationsFailing goes from Alertmanager
    // to email directly, never through the receiver it is about.
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/api/v2/alerts", stack.am_urls[0]))
        .json(&serde_json::json!([{
            "labels": {"alertname": "LLMChatNotificationsFailing", "severity": "critical", "job": "llmchat-receiver"},
            "annotations": {"summary": "LLMChat notifications failing"}
        }]))
        .send()
        .unwrap();
    assert!(resp.status().is_success());
    wait_until(FIRE, "the fallback email from Alertmanager", || {
        stack.smtp.mails().iter().any(|m| {
            m.from.contains("alertmanager@llmchat.local")
                && m.data.contains("LLMChatNotificationsFailing")
        })
    });
    assert!(stack
        .channels("LLMChatNotificationsFailing", "firing")
        .is_empty());

    // The restore drill restored the stack's own dump into its scratch
    // database, counts matching; the backups read back.
    for (expr, what) in [
        (
            "llmchat_backup_drill_success == 1",
            "a successful restore drill",
        ),
        (
            "llmchat_backup_newest_valid{kind=\"database\"} == 1",
            "the dump read back",
        ),
        (
            "llmchat_backup_newest_valid{kind=\"application\"} == 1",
            "the archive read back",
        ),
    ] {
        wait_until(FIRE, what, || !stack.query(expr).is_empty());
    }

    crate::dashboards::every_panel_returns_data(&stack);

    // The pair's share of the fault-to-email time, for the README.
    let scrape = |f: &str| {
        let q = format!("{f}scrape_duration_seconds{{job=\"llmchat-exporter\"}}[10m])");
        let v = stack.query(&q);
        1000.0
            * v.first()
                .and_then(|s| s["value"][1].as_str())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no answer to {q}"))
    };
    eprintln!(
        "latency exporter: scrape duration median {:.1} ms, max {:.1} ms over the last 10 minutes",
        scrape("quantile_over_time(0.5, "),
        scrape("max_over_time(")
    );
    for l in &latencies {
        // for + group_wait; scrape and evaluation add up to 1 s each more.
        let floor = l.hold + Duration::from_secs(1);
        eprintln!(
            "latency {}: fault to email {} ms; for + group_wait {} ms; above that {} ms (of which up to 2000 ms scrape+eval alignment); receiver stored to sent {} ms (webhook: {} ms)",
            l.alert,
            l.fault_to_email.as_millis(),
            floor.as_millis(),
            l.fault_to_email.saturating_sub(floor).as_millis(),
            l.receiver.as_millis(),
            l.receiver_webhook.as_millis(),
        );
        assert!(
            l.receiver < Duration::from_secs(5),
            "{}: the receiver took {:?}",
            l.alert,
            l.receiver
        );
    }
}

/// The alert pipeline watched from outside: the Watchdog reaches its dead
/// man's switch, and a dead receiver is reported by a route that does not
/// pass through it (Alertmanager's own fallback email).
#[test]
fn the_watchdog_reaches_its_switch_and_a_dead_receiver_is_reported_around_it() {
    let _one = lock(&ONE_AT_A_TIME);
    let stack = Stack::start(Options {
        receivers: 1,
        alertmanagers: 1,
    });
    wait_until(FIRE, "the Watchdog at the dead man's switch", || {
        stack.deadmans_switch.requests().iter().any(|r| {
            r.json()["alerts"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|a| a["labels"]["alertname"] == "LLMChatWatchdog")
            })
        })
    });
    assert!(
        stack.channels("LLMChatWatchdog", "firing").is_empty(),
        "the Watchdog never reaches people"
    );
    let out = std::process::Command::new("kill")
        .args(["-9", &stack.receiver_pids[0].to_string()])
        .output()
        .unwrap();
    assert!(out.status.success());
    wait_until(FIRE, "LLMChatReceiverDown by the fallback email", || {
        stack.smtp.mails().iter().any(|m| {
            m.from.contains("alertmanager@llmchat.local") && m.data.contains("LLMChatReceiverDown")
        })
    });
}
