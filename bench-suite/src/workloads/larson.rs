//! larson (Larson & Krishnan's server simulation, as in mimalloc-bench): each
//! thread owns an array of blocks of random sizes 8..1000 and replaces random
//! slots; after each round the threads exit and new ones take over the arrays,
//! so blocks are freed by threads other than (and outliving) their allocators.

use super::common::{scaled, share, Blk};
use super::Outcome;
use crate::budget::run_threads;
use crate::rng::Rng;
use std::sync::Mutex;

const SLOTS: usize = 1000;
const ROUNDS: usize = 10;

pub fn run(threads: usize, scale: f64) -> Outcome {
    let total = scaled(18_000_000.0, scale, ROUNDS * threads);
    let per = share(total, threads * ROUNDS);
    let mut rng = Rng::new(1);
    let arrays: Vec<Mutex<Vec<Blk>>> = (0..threads)
        .map(|_| {
            Mutex::new(
                (0..SLOTS)
                    .map(|_| Blk::new(rng.range(8, 1000), 1))
                    .collect(),
            )
        })
        .collect();
    let mut sum = 0u64;
    for round in 0..ROUNDS {
        sum = sum.wrapping_add(run_threads(threads, |i| {
            let mut slots = arrays[(i + round) % threads].lock().unwrap();
            let mut rng = Rng::new((round * 1000 + i) as u64);
            let mut s = 0u64;
            for _ in 0..per {
                let idx = rng.below(SLOTS);
                let size = rng.range(8, 1000);
                slots[idx] = Blk::new(size, idx as u64);
                s = s.wrapping_add(size as u64);
            }
            s
        }));
    }
    for a in &arrays {
        for b in a.lock().unwrap().iter() {
            sum = sum.wrapping_add(b.size() as u64);
        }
    }
    Outcome {
        ops: (per * threads * ROUNDS) as u64,
        checksum: sum,
    }
}
