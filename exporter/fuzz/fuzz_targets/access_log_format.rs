//! Any log_format string (first line) compiled and run on any line (the rest).
#![no_main]
use libfuzzer_sys::fuzz_target;
use llmchat_exporter::logs::access_format::{JsonFields, Parser};

fuzz_target!(|data: &[u8]| {
    let Some(nl) = data.iter().position(|b| *b == b'\n') else {
        return;
    };
    let Ok(format) = std::str::from_utf8(&data[..nl]) else {
        return;
    };
    if format == "json" {
        return;
    }
    if let Ok(parser) = Parser::new(format, &JsonFields::default()) {
        if let Ok(r) = parser.parse(&data[nl + 1..]) {
            assert!((100..=599).contains(&r.status));
        }
    }
});
