//! The group tree: children charge their ancestors, an ancestor's `max`
//! bounds its children together, and events are counted at the level whose
//! limit was hit (`events_local`) and on every ancestor (`events`).

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

mod groups_common;
use groups_common::*;

use memcg::{Events, Group, Limit, OnExceed};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn children_charge_the_parent() {
    let p = Group::new("hier-charge-parent");
    let c1 = p.child("c1").build();
    let c2 = p.child("c2").build();
    let gc = c1.child("gc").build();
    assert_eq!(gc.path(), "/hier-charge-parent/c1/gc");
    let slack = slack_per_thread();

    let a = c1.scope(|| vec![1u8; 4 * MIB]);
    let b = c2.scope(|| vec![1u8; 6 * MIB]);
    let c = gc.scope(|| vec![1u8; 3 * MIB]);
    let smalls: Vec<Box<[u8; 128]>> =
        gc.scope(|| (0..8192).map(|_| Box::new([2u8; 128])).collect());

    let (pc, c1c, c2c, gcc) = (p.current(), c1.current(), c2.current(), gc.current());
    // The boxes and the vector holding them.
    let in_gc = 3 * MIB + 8192 * 128 + 8192 * 8;
    assert!(gcc >= in_gc && gcc <= in_gc + slack, "grandchild {gcc}");
    assert!(
        c1c >= 4 * MIB + in_gc && c1c <= 4 * MIB + in_gc + 2 * slack,
        "c1 {c1c}"
    );
    assert!(c2c >= 6 * MIB && c2c <= 6 * MIB + slack, "c2 {c2c}");
    assert!(
        pc >= c1c + c2c && pc <= c1c + c2c + slack,
        "parent {pc} vs {c1c} + {c2c}"
    );
    assert!(p.stats().slab >= gc.stats().slab);
    assert!(p.stats().large >= 13 * MIB, "{}", p.stats());

    drop((a, b, c, smalls));
    memcg::flush();
    assert_eq!(p.current(), 0, "{}", p.stats());
    assert_eq!(gc.current(), 0);
    assert!(p.peak() >= 13 * MIB);
}

#[test]
fn parent_max_bounds_children_together() {
    let max = 20 * MIB;
    let p = Group::builder("hier-parent-bounds")
        .max(max)
        .on_exceed(OnExceed::Fail)
        .build();
    let kids: Vec<Group> = (0..2)
        .map(|i| {
            p.child(&format!("kid{i}"))
                .on_exceed(OnExceed::Fail)
                .build()
        })
        .collect();
    // Bytes the two threads hold, raised after an allocation and lowered
    // before a free, so a sample never exceeds what is live.
    let held = Arc::new(AtomicUsize::new(0));
    let held_max = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    let workers: Vec<_> = kids
        .iter()
        .enumerate()
        .map(|(i, kid)| {
            let (kid, held, held_max, stop) =
                (kid.clone(), held.clone(), held_max.clone(), stop.clone());
            std::thread::spawn(move || {
                let sizes = [64 * KIB, 256 * KIB, MIB, 3 * MIB, 16 * KIB, 2 * MIB + 4096];
                let mut mine: Vec<Vec<u8>> = Vec::with_capacity(256);
                let mut failures = 0u64;
                let mut k = i;
                kid.scope(|| {
                    while !stop.load(Ordering::Relaxed) {
                        k += 1;
                        let n = sizes[k % sizes.len()];
                        if mine.len() == mine.capacity() {
                            for v in mine.drain(..) {
                                held.fetch_sub(v.capacity(), Ordering::SeqCst);
                                drop(v);
                            }
                        }
                        match try_alloc(n) {
                            Some(v) => {
                                let now = held.fetch_add(n, Ordering::SeqCst) + n;
                                held_max.fetch_max(now, Ordering::SeqCst);
                                mine.push(v);
                            }
                            None => {
                                failures += 1;
                                // Free about half of what this thread holds.
                                let keep = mine.len() / 2;
                                for v in mine.drain(keep..) {
                                    held.fetch_sub(v.capacity(), Ordering::SeqCst);
                                    drop(v);
                                }
                            }
                        }
                    }
                    for v in mine.drain(..) {
                        held.fetch_sub(v.capacity(), Ordering::SeqCst);
                        drop(v);
                    }
                    memcg::flush();
                });
                failures
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let failures: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();

    let slack = 2 * slack_per_thread();
    let held_max = held_max.load(Ordering::SeqCst);
    assert!(failures > 0, "the children must run into the parent's max");
    assert!(
        held_max <= max + slack,
        "the children held {held_max} together, parent max {max}"
    );
    assert!(held_max >= max / 2, "the children got little: {held_max}");
    let s = p.stats();
    assert!(s.events_local.max >= 1 && s.events_local.fail >= 1, "{s}");
    assert_eq!(
        s.events.fail, s.events_local.fail,
        "no limit below the parent: {s}"
    );
    for kid in &kids {
        let ks = kid.stats();
        assert_eq!(ks.events_local, Events::default(), "{ks}");
        assert_eq!(ks.events, Events::default(), "{ks}");
    }
    assert_eq!(p.current(), 0, "both threads freed and flushed: {s}");
}

#[test]
fn events_land_at_the_right_level() {
    let gp = Group::new("hier-events-level");
    let p = gp.child("p").max(8 * MIB).on_exceed(OnExceed::Fail).build();
    let c = p.child("c").max(16 * MIB).on_exceed(OnExceed::Fail).build();

    // Past the parent's max, within the child's: an exceed at the parent.
    assert!(c.scope(|| try_alloc(10 * MIB)).is_none());
    let (ps, cs, gps) = (p.stats(), c.stats(), gp.stats());
    assert_eq!(ps.events_local.max, 1, "{ps}");
    assert_eq!(ps.events_local.fail, 1, "{ps}");
    assert_eq!(ps.events.max, 1, "{ps}");
    assert_eq!(cs.events_local, Events::default(), "{cs}");
    assert_eq!(cs.events, Events::default(), "{cs}");
    assert_eq!(gps.events_local, Events::default(), "{gps}");
    assert_eq!(gps.events.max, 1, "{gps}");
    assert_eq!(gps.events.fail, 1, "{gps}");
    let e = c.check().expect_err("denied");
    assert_eq!(e.group, "/hier-events-level/p");
    assert_eq!(e.limit, Limit::Max);

    // Past the child's own max: an exceed at the child.
    c.set_max(Some(4 * MIB));
    assert!(c.scope(|| try_alloc(6 * MIB)).is_none());
    let (ps, cs, gps) = (p.stats(), c.stats(), gp.stats());
    assert_eq!(cs.events_local.max, 1, "{cs}");
    assert_eq!(cs.events_local.fail, 1, "{cs}");
    assert_eq!(cs.events.max, 1, "{cs}");
    assert_eq!(ps.events_local.max, 1, "unchanged at the parent: {ps}");
    assert_eq!(ps.events.max, 2, "hierarchical at the parent: {ps}");
    assert_eq!(gps.events.max, 2, "{gps}");
    assert_eq!(gps.events.fail, 2, "{gps}");
    let e = c.check().expect_err("denied");
    assert_eq!(e.group, "/hier-events-level/p/c");

    // high at the parent, crossed by a child's allocation.
    p.set_high(Some(MIB));
    let v = c.scope(|| try_alloc(2 * MIB)).expect("within every max");
    let ps = p.stats();
    assert_eq!(ps.events_local.high, 1, "{ps}");
    assert_eq!(c.stats().events_local.high, 0);
    assert_eq!(gp.stats().events.high, 1);
    drop(v);
}

#[test]
fn hierarchical_events_include_descendants() {
    let top = Group::new("hier-events-sum");
    let mut leaves = Vec::new();
    for i in 0..3 {
        let mid = top.child(&format!("mid{i}")).build();
        for j in 0..2 {
            let leaf = mid
                .child(&format!("leaf{j}"))
                .max(MIB)
                .on_exceed(OnExceed::Fail)
                .build();
            for _ in 0..=(i + j) {
                assert!(leaf.scope(|| try_alloc(2 * MIB)).is_none());
            }
            leaves.push((mid.clone(), leaf));
        }
    }
    let mut total = 0;
    for (mid, leaf) in &leaves {
        let ls = leaf.stats();
        assert_eq!(ls.events.max, ls.events_local.max, "{ls}");
        assert!(ls.events_local.max >= 1);
        total += ls.events_local.max;
        let ms = mid.stats();
        assert_eq!(ms.events_local, Events::default(), "{ms}");
        let below: u64 = leaves
            .iter()
            .filter(|(m, _)| m == mid)
            .map(|(_, l)| l.stats().events_local.max)
            .sum();
        assert_eq!(ms.events.max, below, "{ms}");
    }
    let ts = top.stats();
    assert_eq!(ts.events.max, total, "{ts}");
    assert_eq!(ts.events.fail, total, "{ts}");
    assert_eq!(ts.events_local, Events::default(), "{ts}");
    // Each (i, j) leaf failed i + j + 1 times.
    assert_eq!(
        total,
        (0..3)
            .flat_map(|i| (0..2).map(move |j| i + j + 1))
            .sum::<u64>()
    );
}
