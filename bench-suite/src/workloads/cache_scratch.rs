//! cache-scratch (Hoard's passive false-sharing test, as in mimalloc-bench):
//! the main thread allocates one small object per thread and hands it over;
//! each thread frees it, then repeatedly allocates a small object, writes it
//! many times and frees it. An allocator that gives the freed neighbours to
//! different threads makes them share cache lines.

use super::common::{scaled, share};
use super::Outcome;
use crate::budget::run_threads;
use std::hint::black_box;
use std::sync::Mutex;

const OBJ: usize = 8;
const ITERATIONS: usize = 1000;

pub fn run(threads: usize, scale: f64) -> Outcome {
    let reps = scaled(80_000.0, scale, 1);
    let iters = share(ITERATIONS, threads);
    let handed: Vec<Mutex<Option<Box<[u8]>>>> = (0..threads)
        .map(|_| Mutex::new(Some(vec![0u8; OBJ].into_boxed_slice())))
        .collect();
    let sum = run_threads(threads, |i| {
        drop(handed[i].lock().unwrap().take());
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
    });
    Outcome {
        ops: (iters * threads * reps) as u64,
        checksum: sum,
    }
}
