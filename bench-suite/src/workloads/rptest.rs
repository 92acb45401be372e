//! rptest (rpmalloc's benchmark, as in mimalloc-bench): every thread, in
//! loops, allocates a batch of blocks of random sizes 8..16000 (small ones
//! most likely), frees part of its previous batch itself and sends the rest
//! to the next thread, which frees them. A thread whose receiver is
//! `MAX_QUEUED` batches behind frees that share itself: with an unbounded
//! inbox the blocks in flight, and so every allocator's peak RSS (15 MiB to
//! 1.9 GiB in one cell), were set by the scheduler, not the allocator.

use super::common::{scaled, share, Blk};
use super::Outcome;
use crate::budget::run_threads;
use crate::rng::Rng;
use std::sync::Mutex;

const BATCH: usize = 500;
/// Batches an inbox may hold before its sender stops adding to it.
const MAX_QUEUED: usize = 4;

pub fn run(threads: usize, scale: f64) -> Outcome {
    let loops = share(scaled(8_000.0, scale, threads), threads);
    let inboxes: Vec<Mutex<Vec<Vec<Blk>>>> = (0..threads).map(|_| Mutex::new(Vec::new())).collect();
    let sum = run_threads(threads, |i| {
        let mut rng = Rng::new(400 + i as u64);
        let mut s = 0u64;
        let mut prev: Vec<Blk> = Vec::new();
        for _ in 0..loops {
            let batch: Vec<Blk> = (0..BATCH)
                .map(|k| {
                    let sz = rng.log_size(8, 16_000);
                    s = s.wrapping_add(sz as u64);
                    Blk::new(sz, k as u64)
                })
                .collect();
            // Free a random half of the previous batch here, send the rest on.
            let mut send = Vec::with_capacity(prev.len() / 2 + 1);
            for b in prev.drain(..) {
                if rng.chance(1, 2) {
                    send.push(b);
                }
            }
            {
                let mut next = inboxes[(i + 1) % threads].lock().unwrap();
                if next.len() < MAX_QUEUED {
                    next.push(send);
                } else {
                    drop(next);
                    drop(send);
                }
            }
            let mine = std::mem::take(&mut *inboxes[i].lock().unwrap());
            drop(mine);
            prev = batch;
        }
        s
    });
    drop(inboxes);
    Outcome {
        ops: (loops * threads * BATCH) as u64,
        checksum: sum,
    }
}
