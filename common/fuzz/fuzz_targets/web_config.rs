//! The web-config file (exporter-toolkit's format): any text is loaded or
//! refused with an error naming its key, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        llmchat_common::webconfig::fuzz_one(text);
    }
});
