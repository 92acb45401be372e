//! Churn: 100,000 groups made, used and dropped with some objects escaping
//! them, and 10,000 threads each running in a group. Afterwards the
//! allocator's own memory is bounded and no dying group is left.
//!
//! The bound: once everything is freed and purged, `alloc_stats().mapped`
//! is at most 64 MiB above where it was before the churn. What is mapped
//! then is segments kept for reuse and the allocator's metadata; 100,000
//! dead groups must not each leave a cache table, a slab or a record
//! behind (even 1 KiB each would be 100 MiB).

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

use memcg::Group;
use std::sync::Mutex;

const MIB: usize = 1 << 20;
const BOUND: usize = 64 * MIB;

/// The tests measure process-wide figures: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn mapped_after_purge() -> usize {
    memcg::flush();
    memcg::purge();
    memcg::alloc_stats().mapped
}

#[test]
fn hundred_thousand_groups_leave_bounded_metadata_and_no_dying_group() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let top = Group::new(&format!("rel-churn-groups-{}", std::process::id()));
    // Warm up: the first group and its structures.
    top.child("warm").build().scope(|| drop(vec![0u8; 1000]));
    let before = mapped_after_purge();

    const GROUPS: usize = 100_000;
    let mut escaped: Vec<Box<[u8]>> = Vec::with_capacity(GROUPS / 10 + 1);
    let mut escaped_groups = 0;
    for i in 0..GROUPS {
        let g = top.child(&format!("g{i}")).build();
        let kept = g.scope(|| {
            let a = vec![i as u8; 16 + i % 200].into_boxed_slice();
            let b = vec![1u8; 1000 + i % 3000].into_boxed_slice();
            let s = format!("group {i}");
            assert!(s.len() > 6);
            let big = (i % 1000 == 0).then(|| vec![2u8; 200_000].into_boxed_slice());
            drop((b, big));
            // One group in ten lets an object escape.
            (i % 10 == 0).then_some(a)
        });
        if let Some(k) = kept {
            escaped.push(k);
            escaped_groups += 1;
        }
        drop(g);
    }
    memcg::flush();
    let dying = top.dying_descendants();
    let mid = memcg::alloc_stats().mapped;
    assert!(
        dying >= escaped_groups,
        "{dying} dying groups, {escaped_groups} with live objects"
    );
    assert!(top.children().is_empty());

    // The escaped objects are intact; free them.
    for (n, k) in escaped.iter().enumerate() {
        let i = n * 10;
        assert_eq!(k.len(), 16 + i % 200);
        assert!(k.iter().all(|&b| b == i as u8));
    }
    drop(escaped);
    memcg::flush();
    assert_eq!(top.current(), 0, "{}", memcg::report());
    assert_eq!(
        top.dying_descendants(),
        0,
        "dying groups left after their objects were freed and the thread flushed"
    );
    let after = mapped_after_purge();
    eprintln!(
        "groups: {GROUPS} made, {escaped_groups} with escaped objects, {dying} dying at most; \
         mapped {:.1} MiB before, {:.1} MiB with the escaped objects alive, {:.1} MiB after",
        before as f64 / MIB as f64,
        mid as f64 / MIB as f64,
        after as f64 / MIB as f64
    );
    assert!(
        after <= before + BOUND,
        "mapped grew by {} bytes (bound {BOUND})",
        after - before
    );
}

#[test]
fn ten_thousand_threads_each_in_a_group() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let top = Group::new(&format!("rel-churn-threads-{}", std::process::id()));
    let groups: Vec<Group> = (0..100)
        .map(|i| top.child(&format!("t{i}")).build())
        .collect();
    let before = mapped_after_purge();

    const THREADS: usize = 10_000;
    const AT_ONCE: usize = 8;
    let mut escaped: Vec<Vec<u64>> = Vec::new();
    for batch in 0..THREADS / AT_ONCE {
        let handles: Vec<_> = (0..AT_ONCE)
            .map(|j| {
                let i = batch * AT_ONCE + j;
                let g = &groups[i % groups.len()];
                g.scope(|| {
                    memcg::thread::spawn(move || {
                        let me = memcg::current();
                        let v: Vec<u64> = (0..(i % 500) as u64).collect();
                        let s: Vec<String> = (0..20).map(|k| k.to_string()).collect();
                        assert_eq!(s.len(), 20);
                        (me.name().to_string(), (i % 7 == 0).then_some(v))
                    })
                })
            })
            .collect();
        for (j, h) in handles.into_iter().enumerate() {
            let i = batch * AT_ONCE + j;
            let (name, kept) = h.join().expect("thread panicked");
            assert_eq!(
                name,
                format!("t{}", i % groups.len()),
                "thread {i} in the wrong group"
            );
            escaped.extend(kept);
        }
    }
    // Every thread has exited: its reserves went back. What is charged is
    // the escaped vectors.
    let live: usize = escaped.iter().map(|v| v.capacity() * 8).sum();
    let charged: usize = groups.iter().map(Group::current).sum();
    assert!(charged >= live, "{charged} < {live}");
    drop(escaped);
    memcg::flush();
    for g in &groups {
        assert_eq!(g.current(), 0, "{}", g.stats());
    }
    drop(groups);
    memcg::flush();
    assert_eq!(top.current(), 0);
    // Every thread that cached these groups has exited and this one has
    // flushed: no group should be left dying.
    let dying_after_flush = top.dying_descendants();
    let after = mapped_after_purge();
    let dying_after_purge = top.dying_descendants();
    eprintln!(
        "threads: {THREADS} in 100 groups; mapped {:.1} MiB before, {:.1} MiB after; \
         dying after flush {dying_after_flush}, after purge {dying_after_purge}",
        before as f64 / MIB as f64,
        after as f64 / MIB as f64
    );
    assert!(
        after <= before + BOUND,
        "mapped grew by {} bytes (bound {BOUND})",
        after - before
    );
    assert_eq!(dying_after_purge, 0, "{}", memcg::report());
    assert_eq!(
        dying_after_flush, 0,
        "dead groups still counted after their objects were freed, their threads exited \
         and this thread flushed"
    );
}
