//! JSON access lines with the default and nested field paths.
#![no_main]
use libfuzzer_sys::fuzz_target;
use llmchat_exporter::logs::access_format::{DurationUnit, JsonFields, Parser};
use std::sync::LazyLock;

static FLAT: LazyLock<Parser> =
    LazyLock::new(|| Parser::new("json", &JsonFields::default()).unwrap());
static NESTED: LazyLock<Parser> = LazyLock::new(|| {
    let fields = JsonFields {
        method: "req.method".into(),
        path: "req.url".into(),
        status: "res.statusCode".into(),
        duration: "responseTime".into(),
        duration_unit: DurationUnit::S,
        bytes: "res.size".into(),
    };
    Parser::new("json", &fields).unwrap()
});

fuzz_target!(|data: &[u8]| {
    for p in [&*FLAT, &*NESTED] {
        if let Ok(r) = p.parse(data) {
            assert!((100..=599).contains(&r.status));
        }
    }
});
