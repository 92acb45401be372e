//! btree (Rust-native): build a `BTreeMap<String, Vec<u8>>` of one million
//! entries (keys formatted from random numbers, values of random length),
//! walk it in key order, then drop the map. With several threads each
//! builds its share of the entries in a map of its own.

use super::common::{scaled, share};
use super::Outcome;
use crate::budget::run_threads;
use crate::rng::Rng;
use std::collections::BTreeMap;
use std::fmt::Write;

pub fn run(threads: usize, scale: f64) -> Outcome {
    let entries = share(scaled(1_000_000.0, scale, threads), threads);
    let sum = run_threads(threads, |i| {
        let mut rng = Rng::new(700 + i as u64);
        let mut map: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for _ in 0..entries {
            let k = rng.next_u64();
            let mut key = String::new();
            write!(key, "key-{k:016x}").unwrap();
            let len = rng.below(64);
            map.insert(key, vec![(k & 0xFF) as u8; len]);
        }
        // Walk the map in key order: every entry, its key and its value.
        let mut s = map.len() as u64;
        for (k, v) in &map {
            s = s.wrapping_add(
                k.len() as u64 + v.len() as u64 * 31 + v.first().copied().unwrap_or(0) as u64,
            );
        }
        drop(map);
        s
    });
    Outcome {
        ops: (entries * threads) as u64,
        checksum: sum,
    }
}
