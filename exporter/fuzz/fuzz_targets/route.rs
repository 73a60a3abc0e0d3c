//! Route normalisation: any target, bounded output.
#![no_main]
use libfuzzer_sys::fuzz_target;
use llmchat_exporter::logs::route::Normalizer;
use std::sync::{LazyLock, Mutex};

static ROUTES: LazyLock<Mutex<Normalizer>> =
    LazyLock::new(|| Mutex::new(Normalizer::new(&[], 50).unwrap()));

fuzz_target!(|data: &[u8]| {
    let mut n = ROUTES.lock().unwrap();
    let id = n.route(Some(data));
    assert!(!n.name(id).is_empty());
    assert!(n.len() <= 51);
});
