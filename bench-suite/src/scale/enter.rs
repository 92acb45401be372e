//! `scale enter`: `groups` tenants; each of `threads` threads first uses
//! every one of them (enter, allocate and free 32 B, leave), then runs
//! `passes` timed passes of: pick a random tenant (from a per-thread table
//! of random indices), `let _g = tenant.enter();`, allocate 32 B, write it,
//! free it, leave. A pass stops after `ops` operations or `budget_ms`,
//! whichever comes first (the clock is read every 256 operations), so a
//! slow engine cannot hold the run hostage.
//!
//! Printed: `ns` = the median over every (thread, pass) of the pass's time
//! per operation; `ns_min`, `ns_max`; `ops` done in all.

use super::{alloc_filled, free_filled, Line, Tenant};
use crate::rng::Rng;
use std::hint::black_box;
use std::time::{Duration, Instant};

const TABLE: usize = 1 << 16;

/// Runs the case; see the module docs.
pub fn run(groups: usize, threads: usize, passes: usize, ops: u64, budget_ms: u64) -> Line {
    let groups = groups.max(1);
    let threads = threads.max(1);
    let passes = passes.max(1);
    let ts: Vec<Tenant> = (0..groups)
        .map(|g| Tenant::new(&format!("enter-{g}"), None))
        .collect();
    let budget = Duration::from_millis(budget_ms.max(1));
    let per_thread: Vec<(Vec<f64>, u64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|w| {
                let ts = &ts;
                s.spawn(move || {
                    let mut sum = 0u64;
                    for t in ts {
                        let _g = t.enter();
                        let p = alloc_filled(32, 1);
                        // SAFETY: freed once, with the size and byte it was made with.
                        sum += unsafe { free_filled(black_box(p), 32, 1) } as u64;
                    }
                    let mut rng = Rng::new(0xE47E_0000 + w as u64);
                    let table: Vec<u32> = (0..TABLE).map(|_| rng.below(groups) as u32).collect();
                    let mut times = Vec::with_capacity(passes);
                    let mut done = 0u64;
                    for pass in 0..passes {
                        let t0 = Instant::now();
                        let mut n = 0u64;
                        while n < ops {
                            for k in 0..256u64 {
                                let i = table[((n + k) as usize + pass * 977) % TABLE];
                                let _g = black_box(&ts[i as usize]).enter();
                                let p = alloc_filled(32, 2);
                                // SAFETY: freed once, with the size and byte it was made with.
                                sum += unsafe { free_filled(black_box(p), 32, 2) } as u64;
                            }
                            n += 256;
                            if t0.elapsed() >= budget {
                                break;
                            }
                        }
                        times.push(t0.elapsed().as_nanos() as f64 / n as f64);
                        done += n;
                    }
                    (times, done, sum)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("enter thread panicked"))
            .collect()
    });
    let mut all: Vec<f64> = per_thread.iter().flat_map(|p| p.0.clone()).collect();
    all.sort_by(f64::total_cmp);
    let n = all.len();
    let median = if n % 2 == 1 {
        all[n / 2]
    } else {
        (all[n / 2 - 1] + all[n / 2]) / 2.0
    };
    let done: u64 = per_thread.iter().map(|p| p.1).sum();
    // The blocks' bytes, summed so no allocation can be optimised away (the
    // count of operations, and so the sum, depends on the clock).
    black_box(per_thread.iter().map(|p| p.2).fold(0, u64::wrapping_add));
    Line::new("enter")
        .put("groups", groups)
        .put("threads", threads)
        .put("passes", passes)
        .put("ops", done)
        .put("ns", format!("{median:.2}"))
        .put("ns_min", format!("{:.2}", all[0]))
        .put("ns_max", format!("{:.2}", all[n - 1]))
}
