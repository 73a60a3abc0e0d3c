//! nginx combined + $request_time lines: any bytes parse or fail cleanly.
#![no_main]
use libfuzzer_sys::fuzz_target;
use llmchat_exporter::logs::access_format::{JsonFields, Parser};
use std::sync::LazyLock;

static PARSER: LazyLock<Parser> =
    LazyLock::new(|| Parser::new("combined", &JsonFields::default()).unwrap());

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = PARSER.parse(data) {
        assert!((100..=599).contains(&r.status));
        assert!(r.duration_seconds.is_none_or(|d| d.is_finite() && d >= 0.0));
    }
});
