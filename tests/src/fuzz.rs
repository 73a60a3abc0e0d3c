//! The fuzz targets' corpora (`*/fuzz/corpus/<target>/`) run on every
//! `cargo test`, within a bounded time: each seed as it is, then
//! mutations of them (bytes flipped, cut, repeated, spliced with another
//! seed) from a fixed random seed, so a failure repeats. cargo-fuzz
//! explores far more (see `fuzz/run-all.sh`); this keeps every seed and
//! its near neighbours passing in CI.

use std::path::Path;
use std::time::{Duration, Instant};

/// Runs `target` on every file of `corpus`, then on mutations of them
/// until `budget` has passed or 20,000 inputs have run. Returns how many
/// inputs ran.
pub fn run_corpus(corpus: &Path, budget: Duration, target: impl Fn(&[u8])) -> usize {
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(corpus)
        .unwrap_or_else(|e| panic!("{}: {e}", corpus.display()))
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "{} holds no seed", corpus.display());
    for seed in &seeds {
        target(seed);
    }
    let mut rng = fastrand::Rng::with_seed(0x11c4a7);
    let started = Instant::now();
    let mut ran = seeds.len();
    while started.elapsed() < budget && ran < 20_000 {
        let mut input = seeds[rng.usize(..seeds.len())].clone();
        for _ in 0..rng.usize(1..4) {
            mutate(&mut rng, &mut input, &seeds);
        }
        target(&input);
        ran += 1;
    }
    ran
}

fn mutate(rng: &mut fastrand::Rng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    const INTERESTING: &[u8] = b"\0\r\n\t\x1b\"'\\{}[]<>&:-#%$\xff\xc3";
    if input.is_empty() {
        input.push(INTERESTING[rng.usize(..INTERESTING.len())]);
        return;
    }
    let at = rng.usize(..input.len());
    match rng.u8(..6) {
        0 => input[at] ^= 1 << rng.u8(..8),
        1 => input.truncate(at),
        2 => input.insert(at, INTERESTING[rng.usize(..INTERESTING.len())]),
        3 => {
            let end = (at + rng.usize(1..16)).min(input.len());
            let piece = input[at..end].to_vec();
            input.splice(
                at..at,
                piece
                    .iter()
                    .cycle()
                    .take(piece.len() * rng.usize(1..64))
                    .copied(),
            );
        }
        4 => {
            let other = &seeds[rng.usize(..seeds.len())];
            let from = rng.usize(..other.len().max(1));
            input.splice(at.., other[from.min(other.len())..].iter().copied());
        }
        _ => {
            input.remove(at);
        }
    }
}
