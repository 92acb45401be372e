//! cache-thrash (Hoard's active false-sharing test, as in mimalloc-bench):
//! every thread repeatedly allocates a small object, writes it many times and
//! frees it. An allocator that places different threads' objects in one
//! cache line makes the writes fight over it.

use super::common::{scaled, share};
use super::Outcome;
use crate::budget::run_threads;
use std::hint::black_box;

pub const OBJ: usize = 8;
const ITERATIONS: usize = 1000;

pub fn run(threads: usize, scale: f64) -> Outcome {
    let reps = scaled(80_000.0, scale, 1);
    let iters = share(ITERATIONS, threads);
    let sum = run_threads(threads, |_| touch_objects(iters, reps));
    Outcome {
        ops: (iters * threads * reps) as u64,
        checksum: sum,
    }
}

/// One thread's work, shared with cache-scratch: `iters` times, allocate
/// a small object, write it `reps` times, free it; returns a checksum.
pub fn touch_objects(iters: usize, reps: usize) -> u64 {
    let mut s = 0u64;
    for _ in 0..iters {
        let mut obj = vec![0u8; OBJ].into_boxed_slice();
        for _ in 0..reps {
            let o = black_box(&mut obj);
            for b in o.iter_mut() {
                *b = b.wrapping_add(1);
            }
        }
        s = s.wrapping_add(obj.iter().map(|&b| b as u64).sum::<u64>());
    }
    s
}
