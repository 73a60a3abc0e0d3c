//! LLM providers through the whole chain: the stack's chat events come
//! from two providers; mid-run the OpenAI stand-in starts answering 429 on
//! half its calls while Anthropic answers. The exporter classifies them,
//! Prometheus fires LLMChatProviderDegraded for OpenAI's rate limiting
//! alone (not before), and it reaches the warning channels.

use llmchat_common::lock;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::harness::{wait_until, Options, Stack, ONE_AT_A_TIME};

#[test]
fn a_provider_that_starts_answering_429_is_the_only_one_named_degraded() {
    let _one = lock(&ONE_AT_A_TIME);
    let stack = Stack::start(Options {
        receivers: 1,
        alertmanagers: 1,
    });
    // Healthy first: the stand-in stops its 429s, and the windows (10 s
    // at the stack's time scale) forget the ones of the start.
    stack.openai_rate_limiting.store(false, Ordering::Release);
    let any = || stack.query("ALERTS{alertname=\"LLMChatProviderDegraded\"}");
    let firing =
        || stack.query("ALERTS{alertname=\"LLMChatProviderDegraded\",alertstate=\"firing\"}");
    let calls = || {
        stack
            .query("sum(llmchat_chat_provider_calls_total{provider=\"openai\"})")
            .first()
            .and_then(|s| s["value"][1].as_str()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    wait_until(
        Duration::from_secs(60),
        "the start's 429s forgotten",
        || any().is_empty(),
    );
    let before = calls();
    let quiet_until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < quiet_until {
        assert!(any().is_empty(), "degraded before any 429: {:?}", any());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        calls() >= before + 10.0,
        "OpenAI's calls were not counted while healthy ({before} then {})",
        calls()
    );

    stack.openai_rate_limiting.store(true, Ordering::Release);
    wait_until(Duration::from_secs(90), "LLMChatProviderDegraded", || {
        !firing().is_empty()
    });
    // A few more evaluations: Anthropic never joins.
    std::thread::sleep(Duration::from_secs(5));
    let alerts = firing();
    let named: Vec<(String, String)> = alerts
        .iter()
        .map(|a| {
            (
                a["metric"]["provider"].as_str().unwrap_or("").to_string(),
                a["metric"]["error_type"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        named,
        vec![("openai".to_string(), "rate_limited".to_string())],
        "{alerts:?}"
    );
    stack.expect_channels(
        "LLMChatProviderDegraded",
        "firing",
        &["slack", "webhook"],
        Duration::from_secs(30),
    );
}
