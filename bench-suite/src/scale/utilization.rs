//! `scale util`: `tenants` tenants each keep about `bytes` bytes of small
//! objects (sizes 8..2048 B, every power of two equally likely), built up in
//! `rounds` visits. In round r, worker w of `threads` serves the tenants t
//! with (t + r) % threads == w, in order, so each tenant is served in turn by
//! every worker; a visit enters the tenant (`let _g = tenant.enter();`),
//! allocates its share of the tenant's objects and fills them. Nothing is
//! freed until the end.
//!
//! Printed: `live` (the sum of requested sizes kept), the anonymous RSS
//! before the tenants are made, with the workers started and warmed up
//! (`rss0`), once they are made (`rss1`) and at
//! the end with every object alive and the workers still running (`rss2`);
//! `util` = live / (rss2 - rss0) (so the groups themselves count against
//! memcg), and `secs` from before the tenants are made until the last visit.

use super::{alloc_filled, anon_rss, free_filled, growth, warm_up, Line, Tenant};
use crate::rng::Rng;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, OnceLock};
use std::time::Instant;

/// The object sizes: 8, 16, ..., 2048.
const SIZES: [usize; 9] = [8, 16, 32, 64, 128, 256, 512, 1024, 2048];

/// Runs the case; see the module docs.
pub fn run(tenants: usize, bytes: usize, threads: usize, rounds: usize) -> Line {
    let threads = threads.max(1);
    let rounds = rounds.max(1);
    // The plan, made before the first reading: every object's size, tenant
    // by tenant (`start[t]..start[t + 1]`), and a touched slot for each.
    let mut sizes: Vec<u16> = Vec::new();
    let mut start: Vec<usize> = Vec::with_capacity(tenants + 1);
    for t in 0..tenants {
        start.push(sizes.len());
        let mut rng = Rng::new(0x7E4A_0000 + t as u64);
        let mut kept = 0;
        while kept < bytes {
            let s = SIZES[rng.below(SIZES.len())];
            sizes.push(s as u16);
            kept += s;
        }
    }
    start.push(sizes.len());
    let slots: Vec<AtomicUsize> = (0..sizes.len()).map(|_| AtomicUsize::new(0)).collect();
    let live: usize = sizes.iter().map(|&s| s as usize).sum();
    let names: Vec<String> = (0..tenants).map(|t| format!("tenant-{t}")).collect();

    let barrier = Barrier::new(threads + 1);
    let ts: OnceLock<Vec<Tenant>> = OnceLock::new();
    let (rss0, rss1, rss2, secs) = std::thread::scope(|s| {
        for w in 0..threads {
            let (ts, sizes, start, slots, barrier) = (&ts, &sizes, &start, &slots, &barrier);
            s.spawn(move || {
                warm_up();
                barrier.wait(); // ready: the first reading follows
                barrier.wait(); // go: the tenants are made
                let ts = ts.get().expect("tenants made before go");
                for r in 0..rounds {
                    for (t, tenant) in ts.iter().enumerate() {
                        if (t + r) % threads != w {
                            continue;
                        }
                        let (a, b) = (start[t], start[t + 1]);
                        let n = b - a;
                        let (lo, hi) = (a + n * r / rounds, a + n * (r + 1) / rounds);
                        let _g = tenant.enter();
                        for (size, slot) in sizes[lo..hi].iter().zip(&slots[lo..hi]) {
                            let p = alloc_filled(*size as usize, t as u8);
                            slot.store(p as usize, Ordering::Relaxed);
                        }
                    }
                }
                barrier.wait(); // done: the last reading follows
                barrier.wait(); // read, with this thread alive
            });
        }
        barrier.wait();
        let rss0 = anon_rss();
        let t0 = Instant::now();
        let _ = ts.set(names.iter().map(|n| Tenant::new(n, None)).collect());
        let rss1 = anon_rss();
        barrier.wait();
        barrier.wait();
        let secs = t0.elapsed().as_secs_f64();
        let rss2 = anon_rss();
        barrier.wait();
        (rss0, rss1, rss2, secs)
    });

    let mut check = 0u64;
    for t in 0..tenants {
        let (a, b) = (start[t], start[t + 1]);
        for (size, slot) in sizes[a..b].iter().zip(&slots[a..b]) {
            let p = slot.load(Ordering::Relaxed) as *mut u8;
            // SAFETY: the slot holds the block allocated for it with
            // `alloc_filled(size, t as u8)`; each is freed once, here.
            let byte = unsafe { free_filled(p, *size as usize, t as u8) };
            check = check
                .wrapping_mul(31)
                .wrapping_add(byte as u64 + *size as u64);
        }
    }
    drop(ts);
    let grown = growth(rss0, rss2);
    Line::new("util")
        .put("tenants", tenants)
        .put("bytes", bytes)
        .put("threads", threads)
        .put("rounds", rounds)
        .put("objects", sizes.len())
        .put("live", live)
        .put("rss0", rss0)
        .put("rss1", rss1)
        .put("rss2", rss2)
        .put("groups_rss", growth(rss0, rss1))
        .put("growth", grown)
        .put("util", format!("{:.4}", live as f64 / grown.max(1) as f64))
        .put("secs", format!("{secs:.4}"))
        .put("checksum", format!("{check:016x}"))
}
