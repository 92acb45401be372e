//! alloc-test (the OLTP-like allocator test, as in mimalloc-bench): every
//! thread keeps a large working set of blocks; each step picks a random slot
//! and frees it, fills it with a new block or resizes its block in place
//! (`realloc`), sizes skewed towards small.

use super::common::{scaled, share, Blk};
use super::Outcome;
use crate::budget::run_threads;
use crate::rng::Rng;

const SLOTS: usize = 1 << 15;

pub fn run(threads: usize, scale: f64) -> Outcome {
    let steps = share(scaled(12_000_000.0, scale, threads), threads);
    let sum = run_threads(threads, |i| {
        let mut rng = Rng::new(500 + i as u64);
        let mut slots: Vec<Option<Blk>> = (0..SLOTS).map(|_| None).collect();
        let mut s = 0u64;
        for _ in 0..steps {
            let idx = rng.below(SLOTS);
            let size = rng.log_size(8, 1024);
            let what = rng.below(10);
            match slots[idx].as_mut() {
                Some(b) if what < 2 => b.resize(size),
                Some(_) if what < 5 => {
                    if let Some(b) = slots[idx].take() {
                        s = s.wrapping_add(b.check());
                    }
                }
                _ => {
                    slots[idx] = Some(Blk::new(size, idx as u64));
                }
            }
            s = s.wrapping_add(size as u64);
        }
        s
    });
    Outcome {
        ops: (steps * threads) as u64,
        checksum: sum,
    }
}
