//! channel (Rust-native): a producer allocates `Vec<u64>` of 1..=64
//! elements and sends each through `std::sync::mpsc::sync_channel(1024)`;
//! a consumer sums and drops them, so every free is a cross-thread free.
//! With several threads there are `threads / 2` such pairs (at least one),
//! each moving its share of the messages.

use super::common::{scaled, share};
use super::Outcome;
use crate::budget::{in_budget, run_threads};
use crate::rng::Rng;
use std::sync::mpsc::sync_channel;

pub fn run(threads: usize, scale: f64) -> Outcome {
    let pairs = (threads / 2).max(1);
    let messages = share(scaled(2_000_000.0, scale, pairs), pairs);
    let sum = run_threads(pairs, |i| {
        let (tx, rx) = sync_channel::<Vec<u64>>(1024);
        std::thread::scope(|s| {
            let consumer = s.spawn(move || {
                in_budget(|| {
                    let mut sum = 0u64;
                    for v in rx {
                        sum = sum.wrapping_add(v.iter().fold(v.len() as u64, |a, &x| a ^ x));
                    }
                    sum
                })
            });
            let mut rng = Rng::new(1_100 + i as u64);
            for k in 0..messages {
                let n = rng.range(1, 64);
                let v: Vec<u64> = (0..n as u64).map(|j| j.wrapping_mul(k as u64)).collect();
                tx.send(v).expect("consumer gone");
            }
            drop(tx);
            consumer.join().expect("consumer panicked")
        })
    });
    Outcome {
        ops: (messages * pairs) as u64,
        checksum: sum,
    }
}
