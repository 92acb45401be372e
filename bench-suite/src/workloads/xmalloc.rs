//! xmalloc-test (Lever & Boreham's producer/consumer test, as in
//! mimalloc-bench): every thread allocates batches of small blocks and pushes
//! them onto a shared stack, then pops whichever batch is on top (usually
//! another thread's) and frees it.

use super::common::{scaled, share, Blk};
use super::Outcome;
use crate::budget::run_threads;
use crate::rng::Rng;
use std::sync::Mutex;

const BATCH: usize = 256;

pub fn run(threads: usize, scale: f64) -> Outcome {
    let batches = share(scaled(96_000.0, scale, threads), threads);
    let stack: Mutex<Vec<Vec<Blk>>> = Mutex::new(Vec::new());
    let sum = run_threads(threads, |i| {
        let mut rng = Rng::new(100 + i as u64);
        let mut s = 0u64;
        for _ in 0..batches {
            let batch: Vec<Blk> = (0..BATCH)
                .map(|k| {
                    let size = rng.log_size(8, 128);
                    s = s.wrapping_add(size as u64);
                    Blk::new(size, k as u64)
                })
                .collect();
            let popped = {
                let mut st = stack.lock().unwrap();
                st.push(batch);
                if st.len() > 1 {
                    st.pop()
                } else {
                    None
                }
            };
            drop(popped);
        }
        s
    });
    drop(stack);
    Outcome {
        ops: (batches * threads * BATCH) as u64,
        checksum: sum,
    }
}
