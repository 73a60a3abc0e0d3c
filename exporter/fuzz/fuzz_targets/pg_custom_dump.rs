//! The custom-format dump reader: any bytes, no panic, no allocation
//! beyond the input's own size bound.
#![no_main]
use libfuzzer_sys::fuzz_target;
use llmchat_exporter::collectors::pg_custom_dump;

fuzz_target!(|data: &[u8]| {
    let _ = pg_custom_dump::check(data);
});
