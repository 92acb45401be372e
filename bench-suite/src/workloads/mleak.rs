//! mleak (mimalloc-bench's leak test): every thread allocates runs of blocks
//! of random sizes and frees them, except one in a hundred which it leaks, so
//! the heap grows slowly with scattered live blocks for the whole run.

use super::common::{scaled, share, Blk};
use super::Outcome;
use crate::budget::run_threads;
use crate::rng::Rng;

const RUN: usize = 1000;

pub fn run(threads: usize, scale: f64) -> Outcome {
    let runs = share(scaled(10_000.0, scale, threads), threads);
    let sum = run_threads(threads, |i| {
        let mut rng = Rng::new(600 + i as u64);
        let mut s = 0u64;
        let mut v: Vec<Blk> = Vec::with_capacity(RUN);
        for _ in 0..runs {
            for k in 0..RUN {
                let sz = rng.log_size(8, 1024);
                s = s.wrapping_add(sz as u64);
                v.push(Blk::new(sz, k as u64));
            }
            for b in v.drain(..) {
                if rng.chance(1, 100) {
                    // Leaked on purpose: never freed.
                    let _ = b.into_raw();
                }
            }
        }
        s
    });
    Outcome {
        ops: (runs * threads * RUN) as u64,
        checksum: sum,
    }
}
