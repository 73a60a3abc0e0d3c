//! Chat events in winston JSON lines, with their LLM usage (tokens, time
//! to first token, error type) and its price.
#![no_main]
use libfuzzer_sys::fuzz_target;
use llmchat_exporter::logs::chat_event::{ChatConfig, Parser};
use llmchat_exporter::logs::llm_usage::{Price, ERROR_TYPES};
use std::sync::LazyLock;

static CONFIG: LazyLock<ChatConfig> = LazyLock::new(|| {
    let mut c = ChatConfig::default();
    c.llm.prices.insert(
        "gpt-4o".into(),
        Price { input: 2.5, output: 10.0, cached_input: Some(1.25), currency: "USD".into() },
    );
    c
});
static PARSER: LazyLock<Parser> = LazyLock::new(|| Parser::new(CONFIG.clone()));

fuzz_target!(|data: &[u8]| {
    if let Some(Ok(e)) = PARSER.parse(data) {
        assert!(!e.agent_id.is_empty());
        assert!(e.duration_seconds.is_none_or(|d| d.is_finite() && d >= 0.0));
        let u = &e.usage;
        assert!(u.time_to_first_token_seconds.is_none_or(|d| d.is_finite() && d >= 0.0));
        assert!(u.error_type.is_none_or(|t| ERROR_TYPES.contains(&t)));
        if let Some((cost, _)) = CONFIG.llm.cost("gpt-4o", u) {
            assert!(cost.is_finite() && cost >= 0.0);
        }
    }
});
