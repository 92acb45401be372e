//! glibc-simple (glibc's bench-malloc-simple, as in mimalloc-bench): allocate
//! a run of blocks of one size, then free them all, for run lengths 25, 100,
//! 400 and 1600 and sizes 16, 64, 256 and 1024 bytes. Each thread does its
//! share on its own.

use super::common::{scaled, share, Blk};
use super::Outcome;
use crate::budget::run_threads;

const COUNTS: [usize; 4] = [25, 100, 400, 1600];
const SIZES: [usize; 4] = [16, 64, 256, 1024];

pub fn run(threads: usize, scale: f64) -> Outcome {
    // One pass allocates sum(COUNTS) * len(SIZES) = 8,500 blocks.
    let passes = share(scaled(3_600.0, scale, threads), threads);
    let sum = run_threads(threads, |_| {
        let mut s = 0u64;
        let mut v: Vec<Blk> = Vec::with_capacity(1600);
        for _ in 0..passes {
            for &size in &SIZES {
                for &n in &COUNTS {
                    for k in 0..n {
                        v.push(Blk::new(size, k as u64));
                    }
                    for b in v.drain(..) {
                        s = s.wrapping_add(b.check());
                    }
                }
            }
        }
        s
    });
    Outcome {
        ops: (passes * threads * 8_500) as u64,
        checksum: sum,
    }
}
