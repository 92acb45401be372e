//! cache-scratch (Hoard's passive false-sharing test, as in mimalloc-bench):
//! the main thread allocates one small object per thread and hands it over;
//! each thread frees it, then repeatedly allocates a small object, writes it
//! many times and frees it. An allocator that gives the freed neighbours to
//! different threads makes them share cache lines.

use super::cache_thrash::{touch_objects, OBJ};
use super::common::{scaled, share};
use super::Outcome;
use crate::budget::run_threads;
use std::sync::Mutex;

const ITERATIONS: usize = 1000;

pub fn run(threads: usize, scale: f64) -> Outcome {
    let reps = scaled(80_000.0, scale, 1);
    let iters = share(ITERATIONS, threads);
    let handed: Vec<Mutex<Option<Box<[u8]>>>> = (0..threads)
        .map(|_| Mutex::new(Some(vec![0u8; OBJ].into_boxed_slice())))
        .collect();
    let sum = run_threads(threads, |i| {
        drop(handed[i].lock().unwrap().take());
        touch_objects(iters, reps)
    });
    Outcome {
        ops: (iters * threads * reps) as u64,
        checksum: sum,
    }
}
