//! short-threads (Rust-native): a burst of 64 short-lived threads, each
//! pushing 5,000 boxed slices of 1..=512 bytes and removing a random third
//! as it goes, then exiting; `16 x threads` of them run at once (so the
//! 4-thread cell starts all 64 together), each wave joined before the next.
//! Thread start and exit, not the blocks, are what this measures.

use super::common::scaled;
use super::Outcome;
use crate::budget::in_budget;
use crate::rng::Rng;

const PUSHES: usize = 5_000;

pub fn run(threads: usize, scale: f64) -> Outcome {
    let total = scaled(64.0, scale, 1);
    let wave = (16 * threads).max(1);
    let mut sum = 0u64;
    let mut started = 0;
    while started < total {
        let n = wave.min(total - started);
        let handles: Vec<_> = (started..started + n)
            .map(|t| std::thread::spawn(move || in_budget(|| one_thread(t))))
            .collect();
        for h in handles {
            sum = sum.wrapping_add(h.join().expect("short thread panicked"));
        }
        started += n;
    }
    Outcome {
        ops: (total * PUSHES) as u64,
        checksum: sum,
    }
}

fn one_thread(t: usize) -> u64 {
    let mut rng = Rng::new(1_200 + t as u64);
    let mut kept: Vec<Box<[u8]>> = Vec::new();
    for k in 0..PUSHES {
        let len = rng.range(1, 512);
        kept.push(vec![(k & 0xFF) as u8; len].into_boxed_slice());
        if rng.chance(1, 3) {
            let i = rng.below(kept.len());
            kept.swap_remove(i);
        }
    }
    kept.iter().fold(kept.len() as u64, |a, b| {
        a.wrapping_add(b.len() as u64 + b[0] as u64)
    })
}
