//! Group death: a group whose last handle is dropped dies; objects still
//! alive keep it as a dying descendant of its ancestors, their bytes stay
//! charged there until freed, and then it drains away.

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

mod groups_common;
use groups_common::*;

use memcg::Group;
use std::time::{Duration, Instant};

/// What the allocator charges for an object of `n` bytes.
fn charged_size(n: usize) -> usize {
    if n > 128 * KIB {
        return n.next_multiple_of(4096);
    }
    if n <= 64 {
        return n.max(1).next_multiple_of(8);
    }
    let p = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
    let step = p / 4;
    p + (n - p).div_ceil(step) * step
}

/// Waits (briefly) for `f` to hold, flushing and purging meanwhile.
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    loop {
        memcg::flush();
        memcg::purge();
        if f() {
            return true;
        }
        if t0.elapsed() > Duration::from_secs(2) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn deleted_groups_leave_survivors_charged_to_the_parent() {
    let parent = Group::new("death-deletion-parent");
    let children = 100;
    let mut survivors: Vec<Vec<u8>> = Vec::new();
    for batch in 0..children / 10 {
        let mut handles = Vec::new();
        for c in 0..10 {
            let id = batch * 10 + c;
            let child = parent.child(&format!("child{id}")).build();
            for t in 0..2 {
                let g = child.clone();
                handles.push(std::thread::spawn(move || {
                    let _in = g.enter();
                    drop(g);
                    let mut kept = Vec::new();
                    let mut all = Vec::new();
                    for i in 0..300usize {
                        let n = 16 + (i * 37 + id * 11 + t * 5) % 3000;
                        all.push(vec![i as u8; n]);
                    }
                    all.push(vec![1u8; 200 * KIB]);
                    for (i, v) in all.into_iter().enumerate() {
                        if i % 4 == 0 {
                            kept.push(v);
                        }
                    }
                    kept
                }));
            }
            // The child's last handles are the threads'.
            drop(child);
        }
        for h in handles {
            survivors.extend(h.join().unwrap());
        }
    }
    let expected: usize = survivors.iter().map(|v| charged_size(v.capacity())).sum();
    let cur = parent.current();
    let tol = expected / 100 + 64 * KIB;
    assert!(
        cur.abs_diff(expected) <= tol,
        "parent current {cur}, surviving objects {expected}, tolerance {tol}"
    );
    let s = parent.stats();
    assert!(parent.children().is_empty(), "the children are dead");
    assert!(
        s.dying_descendants > 0 && s.dying_descendants <= children,
        "{s}"
    );

    drop(survivors);
    let drained = eventually(|| parent.current() == 0 && parent.dying_descendants() == 0);
    assert!(drained, "after the survivors are freed: {}", parent.stats());
}

#[test]
fn dead_groups_drain_when_their_objects_go() {
    let parent = Group::new("death-dying-parent");
    let slack = slack_per_thread();
    let mut objects: Vec<Vec<Box<[u8; 1000]>>> = Vec::new();
    let mut larges: Vec<Vec<u8>> = Vec::new();
    for i in 0..30 {
        let g = parent.child(&format!("dying{i}")).build();
        objects.push(g.scope(|| (0..100).map(|_| Box::new([i as u8; 1000])).collect()));
        larges.push(g.scope(|| vec![i as u8; 256 * KIB]));
        drop(g);
    }
    memcg::flush();
    let per_group = 100 * charged_size(1000) + charged_size(100 * 8) + charged_size(256 * KIB);
    let cur = parent.current();
    assert!(
        cur >= 30 * per_group && cur <= 30 * per_group + slack,
        "parent current {cur}, objects {}",
        30 * per_group
    );
    assert!(parent.children().is_empty());
    assert_eq!(parent.dying_descendants(), 30, "{}", parent.stats());
    assert!(memcg::report().contains("dying 30"), "{}", memcg::report());

    // Free half of the groups' objects.
    let rest_small = objects.split_off(15);
    let rest_large = larges.split_off(15);
    drop(objects);
    drop(larges);
    let half = eventually(|| parent.dying_descendants() == 15);
    assert!(half, "half freed: {}", parent.stats());
    let cur = parent.current();
    assert!(
        cur >= 15 * per_group && cur <= 15 * per_group + slack,
        "parent current {cur}"
    );

    drop(rest_small);
    drop(rest_large);
    let drained = eventually(|| parent.dying_descendants() == 0 && parent.current() == 0);
    assert!(drained, "all freed: {}", parent.stats());
}

#[test]
fn objects_freed_on_another_thread_drain_a_dead_group() {
    let parent = Group::new("death-remote-free-parent");
    let g = parent.child("dead").build();
    let objs: Vec<Box<[u8; 64]>> = g.scope(|| (0..10_000).map(|_| Box::new([0u8; 64])).collect());
    drop(g);
    memcg::flush();
    assert_eq!(parent.dying_descendants(), 1);
    assert!(parent.current() >= 10_000 * 64);
    std::thread::spawn(move || drop(objs)).join().unwrap();
    let drained = eventually(|| parent.dying_descendants() == 0 && parent.current() == 0);
    assert!(drained, "{}", parent.stats());
}

#[test]
fn a_dead_groups_name_can_be_reused() {
    let parent = Group::new("death-name-reuse");
    let g = parent.child("again").build();
    let keep = g.scope(|| vec![1u8; 4 * KIB]);
    drop(g);
    // The old group is dead (though dying): its path is free again.
    let g2 = parent.child("again").build();
    assert_eq!(g2.current(), 0);
    assert!(parent.current() >= 4 * KIB);
    drop(keep);
    drop(g2);
    assert!(eventually(|| parent.dying_descendants() == 0));
}
