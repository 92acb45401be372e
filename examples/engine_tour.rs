//! A tour of the engine: ordinary std code running on `memcg::SlabAlloc`.
//!
//! Builds a `HashMap<String, Vec<u32>>` of 200,000 entries, a `BTreeMap`, long strings and
//! sorted vectors; four threads build vectors and send them over channels to a fifth
//! thread that frees them. Prints `memcg::alloc_stats()` before, at the peak, and after
//! everything is dropped and `memcg::purge()` has returned empty memory to the OS.
//!
//! Run: `cargo run --release --example engine_tour`

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

const ENTRIES: usize = 200_000;
const PRODUCERS: usize = 4;
const BATCHES_PER_PRODUCER: usize = 2_000;

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

fn print_stats(label: &str) -> memcg::AllocStats {
    let s = memcg::alloc_stats();
    println!(
        "{label:<24} allocated {:8.1} MiB | active {:8.1} MiB | resident {:8.1} MiB | mapped {:8.1} MiB",
        mib(s.allocated),
        mib(s.active),
        mib(s.resident),
        mib(s.mapped)
    );
    s
}

/// A small deterministic generator so that runs are comparable.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// What the single-threaded part keeps alive until the peak is measured.
struct Working {
    map: HashMap<String, Vec<u32>>,
    tree: BTreeMap<u64, String>,
    text: String,
    sorted: Vec<u64>,
}

fn build_collections() -> Working {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);

    // HashMap<String, Vec<u32>>: 200k keys, vectors of 0..=15 elements.
    let mut map: HashMap<String, Vec<u32>> = HashMap::new();
    for i in 0..ENTRIES {
        let len = (rng.next() % 16) as usize;
        let v: Vec<u32> = (0..len as u32).map(|k| k ^ i as u32).collect();
        map.insert(format!("key-{i:06}-{:x}", rng.next() % 4096), v);
    }
    // Grow some values, shrink others: realloc in both directions.
    for (i, v) in map.values_mut().enumerate() {
        if i % 3 == 0 {
            v.extend(0..32);
        } else if i % 3 == 1 {
            v.truncate(1);
            v.shrink_to_fit();
        }
    }

    // BTreeMap<u64, String>: many small nodes and strings.
    let mut tree = BTreeMap::new();
    for _ in 0..100_000 {
        let k = rng.next();
        tree.insert(k, format!("{k:016x}"));
    }
    // Remove half of them again.
    let keys: Vec<u64> = tree.keys().copied().step_by(2).collect();
    for k in keys {
        tree.remove(&k);
    }

    // String building: one growing string.
    let mut text = String::new();
    for i in 0..200_000 {
        let _ = write!(text, "{i},");
    }

    // Sorting: 1M random numbers.
    let mut sorted: Vec<u64> = (0..1_000_000).map(|_| rng.next()).collect();
    sorted.sort_unstable();
    assert!(sorted.windows(2).all(|w| w[0] <= w[1]));

    Working {
        map,
        tree,
        text,
        sorted,
    }
}

/// Four producers build vectors; one consumer frees them (cross-thread frees).
/// Returns (vectors, elements) seen by the consumer.
fn producers_and_consumer() -> (usize, u64) {
    let (tx, rx) = mpsc::channel::<Vec<u64>>();
    let consumer = thread::spawn(move || {
        let mut count = 0usize;
        let mut elements = 0u64;
        for v in rx {
            count += 1;
            elements += v.len() as u64;
            drop(v);
        }
        (count, elements)
    });
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut rng = XorShift(0x1234_5678 + p as u64);
                for _ in 0..BATCHES_PER_PRODUCER {
                    let len = 1 + (rng.next() % 2000) as usize;
                    let v: Vec<u64> = (0..len as u64).collect();
                    tx.send(v).expect("consumer alive");
                }
            })
        })
        .collect();
    drop(tx);
    for p in producers {
        p.join().expect("producer panicked");
    }
    consumer.join().expect("consumer panicked")
}

fn main() {
    let t0 = Instant::now();
    println!("memcg engine tour: std collections and threads on memcg::SlabAlloc\n");
    let start = print_stats("start");

    let working = build_collections();
    println!(
        "\nbuilt: {} map entries, {} tree entries, {} KiB of text, {} sorted numbers",
        working.map.len(),
        working.tree.len(),
        working.text.len() >> 10,
        working.sorted.len()
    );
    let (vectors, elements) = producers_and_consumer();
    println!(
        "threads: {PRODUCERS} producers sent {vectors} vectors ({elements} elements) to a consumer that freed them\n"
    );
    let peak = print_stats("peak (collections live)");

    drop(working);
    let dropped = print_stats("after drop");
    memcg::purge();
    let purged = print_stats("after purge");

    println!(
        "\npeak - start: allocated {:+.1} MiB, resident {:+.1} MiB",
        mib(peak.allocated) - mib(start.allocated),
        mib(peak.resident) - mib(start.resident)
    );
    println!(
        "purge returned {:.1} MiB of resident memory to the OS",
        mib(dropped.resident.saturating_sub(purged.resident))
    );
    println!("done in {:.2?}", t0.elapsed());
}
