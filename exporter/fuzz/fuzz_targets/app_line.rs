//! App-log level classification, and the line splitter over the same bytes
//! cut at every position.
#![no_main]
use libfuzzer_sys::fuzz_target;
use llmchat_exporter::logs::level::classify;
use llmchat_tail::LineSplitter;

fuzz_target!(|data: &[u8]| {
    let _ = classify(data);
    let whole: Vec<Vec<u8>> = {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        s.feed(data, 64, |l, _| out.push(l.to_vec()));
        s.finish(|l, _| out.push(l.to_vec()));
        out
    };
    let cut = data.first().map_or(1, |b| 1 + usize::from(*b % 7));
    let mut s = LineSplitter::default();
    let mut out = Vec::new();
    for chunk in data.chunks(cut) {
        s.feed(chunk, 64, |l, _| out.push(l.to_vec()));
    }
    s.finish(|l, _| out.push(l.to_vec()));
    assert_eq!(whole, out);
});
