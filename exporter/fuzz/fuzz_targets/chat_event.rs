//! Chat events in winston JSON lines.
#![no_main]
use libfuzzer_sys::fuzz_target;
use llmchat_exporter::logs::chat_event::{ChatConfig, Parser};
use std::sync::LazyLock;

static PARSER: LazyLock<Parser> = LazyLock::new(|| Parser::new(ChatConfig::default()));

fuzz_target!(|data: &[u8]| {
    if let Some(Ok(e)) = PARSER.parse(data) {
        assert!(!e.agent_id.is_empty());
        assert!(e.duration_seconds.is_none_or(|d| d.is_finite() && d >= 0.0));
    }
});
