//! mstress (mimalloc's test-stress, as in mimalloc-bench): in rounds of short-
//! lived threads, each thread allocates blocks of random sizes (now and then a
//! large one), frees random ones, keeps some to the end of the run, and swaps
//! blocks with a global transfer array, so blocks move between threads and
//! outlive the threads that made them.

use super::common::{scaled, share, Blk};
use super::Outcome;
use crate::budget::run_threads;
use crate::rng::Rng;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Mutex;

const ROUNDS: usize = 10;
const TRANSFERS: usize = 1000;

fn size(rng: &mut Rng) -> usize {
    if rng.chance(1, 100) {
        // One in a hundred is large: up to 1 MiB.
        rng.log_size(4 << 10, 1 << 20)
    } else {
        rng.log_size(8, 2048)
    }
}

pub fn run(threads: usize, scale: f64) -> Outcome {
    let steps = share(
        scaled(3_000_000.0, scale, threads * ROUNDS),
        threads * ROUNDS,
    );
    let transfer: Vec<AtomicPtr<u8>> = (0..TRANSFERS)
        .map(|_| AtomicPtr::new(ptr::null_mut()))
        .collect();
    let retained: Mutex<Vec<Blk>> = Mutex::new(Vec::new());
    let mut sum = 0u64;
    for round in 0..ROUNDS {
        sum = sum.wrapping_add(run_threads(threads, |i| {
            let mut rng = Rng::new((300 + round * 64 + i) as u64);
            let mut data: Vec<Blk> = Vec::new();
            let mut keep: Vec<Blk> = Vec::new();
            let mut s = 0u64;
            for _ in 0..steps {
                // Every step draws the same numbers whatever the state, so the
                // checksum does not depend on how the threads interleave.
                let r = rng.below(100);
                let sz = size(&mut rng);
                let pick = rng.next_u64() as usize;
                let slot = rng.below(TRANSFERS);
                let keep_it = rng.chance(1, 20);
                if r < 50 {
                    s = s.wrapping_add(sz as u64);
                    let b = Blk::new(sz, i as u64);
                    if keep_it {
                        keep.push(b);
                    } else {
                        data.push(b);
                    }
                } else if data.is_empty() {
                    continue;
                } else if r < 85 {
                    data.swap_remove(pick % data.len());
                } else {
                    let mine = data.swap_remove(pick % data.len()).into_raw();
                    let theirs = transfer[slot].swap(mine, Ordering::AcqRel);
                    if !theirs.is_null() {
                        // SAFETY: the transfer array holds `into_raw` blocks
                        // only, and `swap` hands each to exactly one taker.
                        data.push(unsafe { Blk::from_raw(theirs) });
                    }
                }
            }
            retained.lock().unwrap().append(&mut keep);
            s
        }));
    }
    drop(retained);
    for t in &transfer {
        let p = t.swap(ptr::null_mut(), Ordering::AcqRel);
        if !p.is_null() {
            // SAFETY: as above; the threads are done.
            drop(unsafe { Blk::from_raw(p) });
        }
    }
    Outcome {
        ops: (steps * threads * ROUNDS) as u64,
        checksum: sum,
    }
}
