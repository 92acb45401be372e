//! mixed (Rust-native): one program of the kind services are made of, its
//! phases run one after another in the same process, so each starts on the
//! heap the last one left: `serde_json` documents built, printed, parsed
//! and walked; a `BTreeMap` with churn (`btree-churn`); a producer/consumer
//! `sync_channel` (`channel`); a `HashMap<String, Vec<u32>>` filled,
//! updated and half emptied; `regex` patterns compiled and run over text;
//! a burst of short threads (`short-threads`). Each phase does its share
//! of the work on `threads` threads, as the workload of its name does, at
//! a fraction of that workload's size. `MIXED_PHASES=1` prints each
//! phase's time on stderr.

use super::common::{scaled, share};
use super::{btree_churn, channel, short_threads, Outcome};
use crate::budget::run_threads;
use crate::rng::Rng;
use std::collections::HashMap;
use std::fmt::Write;

/// Each borrowed phase runs at this fraction of its own workload's size.
const PART: f64 = 0.25;

/// A phase: its name, the workload it runs, and the share of the scale it
/// is given.
type Phase = (&'static str, super::Workload, f64);

/// The phases in the order they run.
const PHASES: &[Phase] = &[
    ("json", json_documents, 1.0),
    ("btree-churn", btree_churn::run, PART),
    ("channel", channel::run, PART),
    ("hash-map", hash_map, 1.0),
    ("regex", regexes, 1.0),
    ("short-threads", short_threads::run, PART),
];

/// Runs the phases; with `MIXED_PHASES` set in the environment, prints each
/// phase's wall time (seconds) on one line on stderr, for finding which
/// phase an allocator loses in.
pub fn run(threads: usize, scale: f64) -> Outcome {
    let mut out = Outcome::default();
    let mut times = String::from("phases:");
    for &(name, phase, part) in PHASES {
        let t = std::time::Instant::now();
        let o = phase(threads, scale * part);
        write!(times, " {name}={:.4}", t.elapsed().as_secs_f64()).unwrap();
        out.ops += o.ops;
        out.checksum = out.checksum.wrapping_mul(31).wrapping_add(o.checksum);
    }
    if std::env::var_os("MIXED_PHASES").is_some() {
        eprintln!("{times}");
    }
    out
}

/// `serde_json`: documents of nested objects and arrays built as `Value`s,
/// printed, parsed back and walked.
fn json_documents(threads: usize, scale: f64) -> Outcome {
    let docs = share(scaled(3000.0, scale, threads), threads);
    let sum = run_threads(threads, |i| {
        let mut rng = Rng::new(1_400 + i as u64);
        let mut s = 0u64;
        for _ in 0..docs {
            let doc = json_value(&mut rng, 0);
            let text = serde_json::to_string(&doc).expect("a Value prints");
            let back: serde_json::Value = serde_json::from_str(&text).expect("printed JSON parses");
            s = s.wrapping_add(text.len() as u64).wrapping_add(walk(&back));
        }
        s
    });
    Outcome {
        ops: (docs * threads) as u64,
        checksum: sum,
    }
}

fn json_value(rng: &mut Rng, depth: usize) -> serde_json::Value {
    use serde_json::Value;
    if depth < 4 && rng.chance(1, 2) {
        let n = rng.range(1, 8);
        if rng.chance(1, 2) {
            let mut m = serde_json::Map::new();
            for k in 0..n {
                m.insert(
                    format!("field-{k}-{}", rng.below(1000)),
                    json_value(rng, depth + 1),
                );
            }
            return Value::Object(m);
        }
        return Value::Array((0..n).map(|_| json_value(rng, depth + 1)).collect());
    }
    match rng.below(3) {
        0 => Value::from(rng.below(1 << 20) as u64),
        1 => Value::from("x".repeat(rng.below(40))),
        _ => Value::Bool(rng.chance(1, 2)),
    }
}

fn walk(v: &serde_json::Value) -> u64 {
    use serde_json::Value;
    match v {
        Value::Null => 1,
        Value::Bool(b) => 2 + *b as u64,
        Value::Number(n) => n.as_u64().unwrap_or(3),
        Value::String(s) => s.len() as u64,
        Value::Array(a) => a.iter().fold(5, |acc, x| acc.wrapping_add(walk(x))),
        Value::Object(m) => m.iter().fold(7, |acc, (k, x)| {
            acc.wrapping_add(k.len() as u64).wrapping_add(walk(x))
        }),
    }
}

/// A `HashMap<String, Vec<u32>>`: filled, every entry's vector grown, half
/// the entries removed, the rest walked.
fn hash_map(threads: usize, scale: f64) -> Outcome {
    let entries = share(scaled(100_000.0, scale, threads), threads);
    let sum = run_threads(threads, |i| {
        let mut rng = Rng::new(1_500 + i as u64);
        let mut map: HashMap<String, Vec<u32>> = HashMap::new();
        let mut key = String::new();
        for k in 0..entries {
            key.clear();
            write!(key, "user-{i}-{k}").unwrap();
            map.insert(key.clone(), vec![k as u32; rng.below(16)]);
        }
        // The map's order differs between runs (its hasher is seeded), so
        // what is added here must not depend on it.
        for (k, v) in map.iter_mut() {
            v.extend(std::iter::repeat_n(
                k.len() as u32,
                (k.len() + v.len()) % 16,
            ));
        }
        for k in (0..entries).step_by(2) {
            key.clear();
            write!(key, "user-{i}-{k}").unwrap();
            map.remove(&key);
        }
        map.iter().fold(map.len() as u64, |a, (k, v)| {
            a.wrapping_add(k.len() as u64 + v.len() as u64 * 7)
        })
    });
    Outcome {
        ops: (entries * threads) as u64,
        checksum: sum,
    }
}

/// `regex`: patterns compiled (each `Regex` allocates its program) and run
/// over lines of text, the matches collected as `String`s.
fn regexes(threads: usize, scale: f64) -> Outcome {
    let patterns = share(scaled(200.0, scale, threads), threads);
    let sum = run_threads(threads, |i| {
        let mut rng = Rng::new(1_600 + i as u64);
        let mut text = String::new();
        for k in 0..200 {
            writeln!(
                text,
                "{k} GET /api/v{}/items/{} status={} bytes={}",
                rng.below(4),
                rng.below(100_000),
                200 + rng.below(4) * 100,
                rng.below(1 << 16)
            )
            .unwrap();
        }
        let mut s = 0u64;
        for k in 0..patterns {
            let pattern = format!(r"v{}/items/(\d+) status=(\d{{3}}) bytes=(\d+)", k % 4);
            let re = regex::Regex::new(&pattern).expect("the pattern is valid");
            let found: Vec<String> = re
                .captures_iter(&text)
                .map(|c| format!("{}:{}", &c[1], &c[2]))
                .collect();
            s = s.wrapping_add(found.iter().map(|f| f.len() as u64).sum::<u64>());
        }
        s
    });
    Outcome {
        ops: (patterns * threads) as u64,
        checksum: sum,
    }
}
