//! glibc-thread (glibc's bench-malloc-thread, as in mimalloc-bench): every
//! thread keeps a working set of blocks and replaces a random one at each
//! step with a block of a random size, small sizes far more likely than
//! large ones (up to 32 KiB).

use super::common::{scaled, share, Blk};
use super::Outcome;
use crate::budget::run_threads;
use crate::rng::Rng;

const SLOTS: usize = 1024;

pub fn run(threads: usize, scale: f64) -> Outcome {
    let steps = share(scaled(6_000_000.0, scale, threads), threads);
    let sum = run_threads(threads, |i| {
        let mut rng = Rng::new(200 + i as u64);
        let mut slots: Vec<Option<Blk>> = (0..SLOTS).map(|_| None).collect();
        let mut s = 0u64;
        for _ in 0..steps {
            let idx = rng.below(SLOTS);
            let size = rng.log_size(8, 32 << 10);
            if let Some(old) = slots[idx].replace(Blk::new(size, idx as u64)) {
                s = s.wrapping_add(old.check());
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
