//! Reserves that `tests/rel_model_scale.rs` met beyond what README's "How
//! charging works" states, each reduced to a few lines: a parent's charge
//! carrying saved reserves of many children, a saved reserve growing by
//! frees, a dedicated cache keeping its reserve after the thread moved on,
//! and `fallible` served from a reserve while the group is over its limit.
//!
//! The README says: "the reserve of the group a thread is in holds at most
//! two batches, so `current` may read up to `threads x 2 x reserve_batch`
//! above the bytes in live objects. A thread keeps the reserves of up to
//! 16,384 groups it served, each at most `reserve_batch / 8` while unused",
//! and a `Fail` allocation "fails only when `current + size > max` with
//! the other threads' unused reserves counted in `current` (the stated
//! slack)".

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

use memcg::{Group, OnExceed};
use std::hint::black_box;

const KIB: usize = 1 << 10;

fn batch() -> usize {
    memcg::tunables().reserve_batch
}

/// A parent's `current` counts the saved reserves of all its children on
/// each thread, so it reads more than `threads x 2 x reserve_batch` above
/// its live bytes, and a `Fail` parent refuses another thread's allocation
/// that fits with that slack counted (one thread, 100 children, one
/// 8-byte object each: the parent reads 438 KiB above 800 live bytes).
#[test]
fn a_parent_reads_at_most_two_batches_per_thread_above_its_live_bytes() {
    let max = 1024 * KIB;
    let parent = Group::builder("rel-scale-slack-parent")
        .max(max)
        .on_exceed(OnExceed::Fail)
        .build();
    let leaves: Vec<Group> = (0..100)
        .map(|i| parent.child(&format!("l{i}")).build())
        .collect();
    let objs: Vec<Box<u64>> = leaves.iter().map(|l| l.scope(|| Box::new(7u64))).collect();
    let live = objs.len() * 8;
    let held = parent.current() - live;
    // Two threads: this one and the one below.
    let slack = 2 * 2 * batch();
    let ask = max - live - slack;
    let l0 = leaves[0].clone();
    let got = std::thread::spawn(move || {
        l0.scope(|| {
            let mut v: Vec<u8> = Vec::new();
            v.try_reserve_exact(ask).is_ok()
        })
    })
    .join()
    .unwrap();
    assert!(
        held <= 2 * batch() && got,
        "parent: {live} bytes live, current {} (reserves {held}, one thread; documented at \
         most {}); a {ask}-byte allocation on a second thread {}",
        live + held,
        2 * batch(),
        if got { "succeeded" } else { "was refused" }
    );
    drop(objs);
}

/// Frees on a thread of a group's blocks while another group is loaded
/// there credit the group's saved reserve up to `reserve_batch / 4` before
/// it is trimmed (`heap::credit_group` trims at twice the saved maximum).
#[test]
fn an_unused_group_s_saved_reserve_stays_within_an_eighth_batch() {
    let g = Group::new("rel-scale-slack-saved");
    let h = Group::new("rel-scale-slack-saved-other");
    let mut objs: Vec<Box<[u8; 1024]>> = Vec::with_capacity(8);
    g.scope(|| {
        for _ in 0..8 {
            objs.push(Box::new([1u8; 1024]));
        }
    });
    // `h` loaded: `g`'s reserve is saved (at most batch / 8).
    let _in_h = h.enter();
    drop(black_box(Box::new(0u8)));
    let mut live = 8 * KIB;
    let mut most = g.current() - live;
    while let Some(o) = objs.pop() {
        drop(o);
        live -= KIB;
        most = most.max(g.current() - live);
    }
    assert!(
        most <= batch() / 8,
        "an unused group's saved reserve reached {most}, documented at most {}",
        batch() / 8
    );
}

/// A group with a dedicated cache on a thread (4 MiB in one stretch) keeps
/// that cache's reserve, up to two batches, after the thread moves on.
#[test]
fn an_unused_dedicated_cache_s_reserve_stays_within_an_eighth_batch() {
    let g = Group::new("rel-scale-slack-dedicated");
    let mut kept: Vec<Box<[u8; 4096]>> = Vec::with_capacity(12);
    g.scope(|| {
        for _ in 0..1100 {
            drop(black_box(Box::new([0u8; 4096])));
        }
        for _ in 0..12 {
            kept.push(Box::new([1u8; 4096]));
        }
    });
    let own_slabs = g.stats().classes.iter().any(|c| c.slabs > 0);
    let h = Group::new("rel-scale-slack-dedicated-other");
    h.scope(|| drop(black_box(Box::new(0u8))));
    let held = g.current() - 12 * 4096;
    assert!(
        own_slabs && held <= batch() / 8,
        "dedicated cache {own_slabs}: the unused group's reserve holds {held}, documented at \
         most {}",
        batch() / 8
    );
    drop(kept);
}

/// Inside `fallible`, an allocation in a `Report` group already over its
/// `max` succeeds when this thread's reserve (refilled by frees) holds its
/// bytes: no charge, so no exceed. (DESIGN: "inside `memcg::fallible(..)`
/// an exceed always fails, whatever the policy".)
#[test]
fn fallible_fails_in_a_report_group_over_its_max() {
    let g = Group::builder("rel-scale-slack-fallible")
        .max(16 * KIB)
        .build();
    let mut objs: Vec<Box<[u8; 1024]>> = Vec::with_capacity(40);
    g.scope(|| {
        for _ in 0..40 {
            objs.push(Box::new([1u8; 1024]));
        }
        objs.truncate(38); // two frees: the reserve holds 2 KiB
    });
    let got = g.scope(|| {
        memcg::fallible(|| {
            let mut v: Vec<u8> = Vec::new();
            v.try_reserve_exact(1000).is_ok().then_some(v)
        })
    });
    assert!(
        got.is_none(),
        "a fallible 1000-byte allocation succeeded with current {} > max {}",
        g.current(),
        16 * KIB
    );
}
