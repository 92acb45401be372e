//! What a group costs: the slab memory of a million small objects stays
//! close to their size (in slabs of its own when isolated, in shared slabs
//! otherwise), and `bypass` charges the root instead of the group.

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

mod groups_common;
use groups_common::*;

use memcg::{Group, OnExceed};

/// The tests here read process-wide figures: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn million_small_objects_footprint() {
    let _serial = serial();
    let g = Group::builder("ovh-million-16").isolated(true).build();
    let n = 1_000_000;
    // The vector of pointers lives in the root.
    let mut objs: Vec<Box<[u8; 16]>> = Vec::with_capacity(n);
    g.scope(|| {
        for i in 0..n {
            objs.push(Box::new([i as u8; 16]));
        }
    });
    let bytes = n * 16;
    let s = g.stats();
    let cur = s.current;
    assert!(
        cur >= bytes && cur <= bytes + slack_per_thread(),
        "current {cur} for {bytes} bytes"
    );
    assert!(
        s.footprint >= bytes,
        "footprint {} below the objects' bytes",
        s.footprint
    );
    assert!(
        s.footprint * 10 <= bytes * 12,
        "footprint {} is more than 1.2 x {bytes}: {s}",
        s.footprint
    );
    let c16 = s
        .classes
        .iter()
        .find(|c| c.size == 16)
        .expect("the 16-byte class is listed");
    assert!(c16.slab_bytes >= bytes && c16.slabs > 0, "{c16:?}");
    assert_eq!(
        s.footprint,
        s.classes.iter().map(|c| c.slab_bytes).sum::<usize>() + s.large,
        "an isolated group's footprint is its slabs: {s}"
    );
    assert!(objs.iter().enumerate().all(|(i, b)| b[15] == i as u8));
    drop(objs);
    memcg::flush();
    memcg::purge();
    let s = g.stats();
    assert_eq!(s.current, 0, "{s}");
    assert!(s.footprint < bytes / 10, "the slabs went back: {s}");
}

#[test]
fn million_small_objects_in_shared_slabs() {
    let _serial = serial();
    let g = Group::new("ovh-million-16-shared");
    let n = 1_000_000;
    let mut objs: Vec<Box<[u8; 16]>> = memcg::bypass(|| Vec::with_capacity(n));
    let before = memcg::alloc_stats().active;
    g.scope(|| {
        for i in 0..n {
            objs.push(Box::new([i as u8; 16]));
        }
    });
    let bytes = n * 16;
    let s = g.stats();
    assert!(
        s.current >= bytes && s.current <= bytes + slack_per_thread(),
        "current {} for {bytes} bytes",
        s.current
    );
    assert!(s.footprint >= bytes, "{s}");
    // Slab memory the process gained for them (a busy group moves to slabs
    // of its own after its first few MiB; those before carry owner tags).
    let grown = memcg::alloc_stats().active - before;
    assert!(
        grown * 10 <= bytes * 13,
        "slabs grew {grown} for {bytes} bytes of objects"
    );
    assert!(objs.iter().enumerate().all(|(i, b)| b[15] == i as u8));
    drop(objs);
    memcg::flush();
    assert_eq!(g.stats().current, 0);
}

#[test]
fn bypass_charges_the_root() {
    let _serial = serial();
    let g = Group::builder("ovh-bypass")
        .max(MIB)
        .on_exceed(OnExceed::Fail)
        .build();
    let slack = slack_per_thread();
    let (big, small, who) = g.scope(|| {
        memcg::bypass(|| {
            let big = vec![1u8; 8 * MIB];
            let small: Vec<Box<[u8; 512]>> = (0..10_000).map(|_| Box::new([2u8; 512])).collect();
            (big, small, memcg::current())
        })
    });
    assert!(who.is_root(), "inside bypass the thread is in the root");
    assert_eq!(big.len(), 8 * MIB);
    assert_eq!(small.len(), 10_000);
    let s = g.stats();
    assert!(
        s.current <= slack,
        "the group paid for bypassed memory: {s}"
    );
    assert_eq!(s.events.max, 0, "{s}");
    assert_eq!(s.events.fail, 0, "{s}");
    assert!(g.check().is_ok());
    assert!(
        memcg::root().current() >= 8 * MIB + 10_000 * 512,
        "root {}",
        memcg::root().current()
    );
    // After bypass the group is in force again.
    let denied = g.scope(|| {
        let mut v: Vec<u8> = Vec::new();
        v.try_reserve_exact(2 * MIB).is_err()
    });
    assert!(denied);
    drop((big, small));
}
