//! `scale idle`: `groups` tenants built by `threads` threads (each an equal
//! share), each entered once right after it is built to allocate, fill and
//! free one 64-byte object, then kept (idle) until the end.
//!
//! Printed: `rss_per_group` = (anonymous RSS with every tenant kept and the
//! threads still alive - anonymous RSS before the first one) / groups;
//! `us_per_group` = the wall time of building and first use / groups; and
//! `drop_us_per_group`, the time to drop them all afterwards. The slots that
//! keep the tenants are made and touched, and the threads started and warmed
//! up, before the first reading.

use super::{alloc_filled, anon_rss, free_filled, growth, warm_up, Line, Tenant};
use std::hint::black_box;
use std::sync::Barrier;
use std::time::Instant;

/// Runs the case; see the module docs.
pub fn run(groups: usize, threads: usize) -> Line {
    let groups = groups.max(1);
    let threads = threads.max(1);
    let mut slots: Vec<Option<Tenant>> = (0..groups).map(|_| None).collect();
    let chunk = groups.div_ceil(threads);
    // `chunks_mut` makes this many parts, one per thread (fewer than
    // `threads` when groups < threads).
    let parts = groups.div_ceil(chunk);
    let barrier = Barrier::new(parts + 1);
    let (rss0, secs, rss1, check) = std::thread::scope(|s| {
        let handles: Vec<_> = slots
            .chunks_mut(chunk)
            .enumerate()
            .map(|(c, part)| {
                let barrier = &barrier;
                s.spawn(move || {
                    warm_up();
                    barrier.wait(); // ready: the first reading follows
                    barrier.wait(); // go
                    let mut sum = 0u64;
                    for (k, slot) in part.iter_mut().enumerate() {
                        let t = Tenant::new(&format!("idle-{}", c * chunk + k), None);
                        {
                            let _g = t.enter();
                            let p = alloc_filled(64, 3);
                            // SAFETY: freed once, with the size and byte it was made with.
                            sum += unsafe { free_filled(black_box(p), 64, 3) } as u64;
                        }
                        *slot = Some(t);
                    }
                    barrier.wait(); // done: the reading follows
                    barrier.wait(); // read, with this thread alive
                    sum
                })
            })
            .collect();
        barrier.wait();
        let rss0 = anon_rss();
        let t0 = Instant::now();
        barrier.wait();
        barrier.wait();
        let secs = t0.elapsed().as_secs_f64();
        let rss1 = anon_rss();
        barrier.wait();
        let check: u64 = handles
            .into_iter()
            .map(|h| h.join().expect("idle thread panicked"))
            .sum();
        (rss0, secs, rss1, check)
    });
    let kept = slots.iter().filter(|s| s.is_some()).count();
    let t1 = Instant::now();
    drop(slots);
    let drop_secs = t1.elapsed().as_secs_f64();
    let grown = growth(rss0, rss1);
    Line::new("idle")
        .put("groups", groups)
        .put("threads", parts)
        .put("kept", kept)
        .put("rss0", rss0)
        .put("rss1", rss1)
        .put("growth", grown)
        .put(
            "rss_per_group",
            format!("{:.1}", grown as f64 / groups as f64),
        )
        .put("us_per_group", format!("{:.3}", secs * 1e6 / groups as f64))
        .put(
            "drop_us_per_group",
            format!("{:.3}", drop_secs * 1e6 / groups as f64),
        )
        .put("checksum", check)
}
