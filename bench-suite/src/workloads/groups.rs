//! groups: every thread is a tenant running in a group of its own (with a far
//! limit), doing request-like work: format strings, fill a hash map with
//! buffers, sort, drop. Only memcg (and the tracking peer) have groups; the
//! other allocators run the same work without them.

use super::common::{scaled, share};
use super::Outcome;
use crate::budget::{in_own_group, run_threads};
use crate::rng::Rng;
use std::collections::HashMap;

pub fn run(threads: usize, scale: f64) -> Outcome {
    let requests = share(scaled(24_000.0, scale, threads), threads);
    let sum = run_threads(threads, |i| {
        in_own_group(i, || {
            let mut rng = Rng::new(900 + i as u64);
            let mut s = 0u64;
            for _ in 0..requests {
                let n = 50 + rng.below(150);
                let mut words: Vec<String> = (0..n)
                    .map(|_| format!("w{:x}", rng.next_u64() >> rng.below(56)))
                    .collect();
                let mut map: HashMap<u64, Vec<u8>> = HashMap::with_capacity(n / 2);
                for w in &words {
                    let len = 8 + rng.below(256);
                    map.insert(rng.next_u64(), vec![w.len() as u8; len]);
                }
                words.sort_unstable();
                s = s.wrapping_add(words.iter().map(|w| w.len() as u64).sum::<u64>());
                s = s.wrapping_add(map.values().map(|v| v.len() as u64).sum::<u64>());
            }
            s
        })
    });
    Outcome {
        ops: (requests * threads) as u64,
        checksum: sum,
    }
}
