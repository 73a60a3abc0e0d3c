//! Alertmanager's webhook body: any bytes are taken or refused with a
//! message, and what is taken routes and renders, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    llmchat_receiver::routing::fuzz_one(data);
});
