//! `scale dying`: under one parent tenant, `groups` child tenants are made
//! by `threads` threads (an equal share each); in each child one 48-byte
//! object is allocated, filled and kept, and the child is dropped at once,
//! so under memcg it dies with the object alive (a *dying* group).
//!
//! Printed, with the threads alive (started and warmed up before the first
//! reading) at each reading:
//! - `rss_per_dying` = (anonymous RSS with every object alive and every
//!   child dropped - anonymous RSS before the first child) / groups; it
//!   includes the 48-byte object itself;
//! - `root_alive`, `parent_alive`: `memcg::root().dying_descendants()` and
//!   the parent's, then; `root_freed`, `parent_freed`: the same after each
//!   thread has freed its objects and called `memcg::flush()`;
//!   `root_purged`: after `memcg::purge()` too; `root_exited`: after the
//!   threads have exited (other allocators print `-`).

use super::{
    alloc_filled, anon_rss, flush, free_filled, growth, purge, root_dying_descendants, warm_up,
    Line, Tenant,
};
use std::sync::Barrier;
use std::time::Instant;

const SIZE: usize = 48;

fn show(v: Option<usize>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// Runs the case; see the module docs.
pub fn run(groups: usize, threads: usize) -> Line {
    let groups = groups.max(1);
    let threads = threads.max(1);
    let parent = Tenant::new("dying", None);
    let mut slots: Vec<usize> = vec![0; groups];
    let chunk = groups.div_ceil(threads);
    let parts = groups.div_ceil(chunk);
    let barrier = Barrier::new(parts + 1);
    let out = std::thread::scope(|s| {
        for (c, part) in slots.chunks_mut(chunk).enumerate() {
            let (parent, barrier) = (&parent, &barrier);
            s.spawn(move || {
                warm_up();
                barrier.wait(); // ready: the first reading follows
                barrier.wait(); // go
                for (k, slot) in part.iter_mut().enumerate() {
                    let child = parent.child(&format!("d-{}", c * chunk + k));
                    *slot = {
                        let _g = child.enter();
                        alloc_filled(SIZE, 5) as usize
                    };
                    // `child`, its only handle, is dropped here: it dies.
                }
                barrier.wait(); // every child dropped, objects alive
                barrier.wait(); // read
                for slot in part.iter_mut() {
                    // SAFETY: the slot holds the block made above with
                    // `alloc_filled(SIZE, 5)`; it is freed once, here.
                    unsafe { free_filled(*slot as *mut u8, SIZE, 5) };
                    *slot = 0;
                }
                flush();
                barrier.wait(); // every object freed and flushed
                barrier.wait(); // read
            });
        }
        barrier.wait();
        let rss0 = anon_rss();
        let t0 = Instant::now();
        barrier.wait();
        barrier.wait();
        let secs = t0.elapsed().as_secs_f64();
        let rss1 = anon_rss();
        let alive = (root_dying_descendants(), parent.dying_descendants());
        barrier.wait();
        barrier.wait();
        let freed = (root_dying_descendants(), parent.dying_descendants());
        let rss2 = anon_rss();
        purge();
        let purged = root_dying_descendants();
        barrier.wait();
        (rss0, secs, rss1, rss2, alive, freed, purged)
    });
    let (rss0, secs, rss1, rss2, alive, freed, purged) = out;
    let exited = root_dying_descendants();
    let grown = growth(rss0, rss1);
    Line::new("dying")
        .put("groups", groups)
        .put("threads", parts)
        .put("rss0", rss0)
        .put("rss1", rss1)
        .put("rss2", rss2)
        .put("growth", grown)
        .put(
            "rss_per_dying",
            format!("{:.1}", grown as f64 / groups as f64),
        )
        .put("us_per_group", format!("{:.3}", secs * 1e6 / groups as f64))
        .put("root_alive", show(alive.0))
        .put("parent_alive", show(alive.1))
        .put("root_freed", show(freed.0))
        .put("parent_freed", show(freed.1))
        .put("root_purged", show(purged))
        .put("root_exited", show(exited))
        .put("live", groups * SIZE)
}
