//! btree-churn (Rust-native): build a `BTreeMap<String, Vec<u8>>` of
//! 300,000 entries, remove a random third of them, then walk what is left
//! in key order and drop the map: a long-lived map with churn. With several
//! threads each builds its share of the entries in a map of its own.

use super::common::{scaled, share};
use super::Outcome;
use crate::budget::run_threads;
use crate::rng::Rng;
use std::collections::BTreeMap;
use std::fmt::Write;

pub fn run(threads: usize, scale: f64) -> Outcome {
    let entries = share(scaled(300_000.0, scale, threads), threads);
    let sum = run_threads(threads, |i| {
        let mut rng = Rng::new(1_300 + i as u64);
        let mut keys: Vec<u64> = Vec::with_capacity(entries);
        let mut map: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for _ in 0..entries {
            let k = rng.next_u64();
            keys.push(k);
            let mut key = String::new();
            write!(key, "key-{k:016x}").unwrap();
            let len = rng.below(64);
            map.insert(key, vec![(k & 0xFF) as u8; len]);
        }
        let mut removed = 0u64;
        let mut key = String::new();
        for &k in &keys {
            if rng.chance(1, 3) {
                key.clear();
                write!(key, "key-{k:016x}").unwrap();
                removed += map.remove(key.as_str()).map_or(0, |v| v.len() as u64 + 1);
            }
        }
        drop(keys);
        let mut s = map.len() as u64 ^ removed;
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
