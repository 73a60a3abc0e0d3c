//! LLM providers through the whole chain: the stack's chat events give the
//! OpenAI stand-in 429s on half its calls while Anthropic answers; the
//! exporter classifies them, Prometheus fires LLMChatProviderDegraded for
//! OpenAI's rate limiting alone, and it reaches the warning channels.

use std::time::Duration;

use crate::harness::{wait_until, Options, Stack, ONE_AT_A_TIME};

#[test]
fn a_provider_answering_429_is_the_only_one_named_degraded() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let stack = Stack::start(Options {
        receivers: 1,
        alertmanagers: 1,
    });
    let firing =
        || stack.query("ALERTS{alertname=\"LLMChatProviderDegraded\",alertstate=\"firing\"}");
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
