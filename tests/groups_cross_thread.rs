//! Groups across threads: frees credit the group that owns the memory,
//! whichever thread frees it; `memcg::thread::spawn` starts the thread in
//! the caller's group; guards nest and restore; groups share slabs unless
//! isolated, and an isolated group never shares one.

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

mod groups_common;
use groups_common::*;

use memcg::Group;
use std::collections::HashSet;

/// Size of the slab slices: no two isolated groups' objects share one.
const SLICE: usize = 16 << 10;

#[test]
fn free_on_another_thread_credits_the_owner() {
    let a = Group::new("xt-credit-owner-a");
    let b = Group::new("xt-credit-owner-b");
    let slack = slack_per_thread();

    let small: Vec<Box<[u8; 256]>> = a.scope(|| (0..16384).map(|_| Box::new([1u8; 256])).collect());
    let large: Vec<Vec<u8>> = a.scope(|| (0..4).map(|_| vec![2u8; MIB]).collect());
    let in_a = a.current();
    assert!(in_a >= 8 * MIB, "{in_a}");
    memcg::flush();
    let in_a = a.current();

    let (b2, before_b) = (b.clone(), b.current());
    let b_during = std::thread::spawn(move || {
        let _in_b = b2.enter();
        drop(small);
        drop(large);
        let during = b2.current();
        memcg::flush();
        during
    })
    .join()
    .unwrap();

    assert_eq!(before_b, 0);
    assert!(
        b_during <= slack,
        "B paid for nothing it allocated: {b_during}"
    );
    assert!(b.current() <= slack, "{}", b.current());
    let now_a = a.current();
    assert!(
        now_a < slack,
        "A got its {in_a} bytes back when another thread freed them: {now_a}"
    );
}

#[test]
fn frees_for_a_group_the_thread_is_not_in_are_credited_in_batches() {
    // Another thread's frees of a group it is not in are held back (below
    // an eighth of a batch) and handed over by `flush`; a group with a
    // limit on its chain is credited at once, so its limit stays exact.
    let unlimited = Group::new("xt-batched-credit");
    let limited = Group::builder("xt-batched-credit-limited")
        .max(64 * MIB)
        .build();
    let make = |g: &Group| g.scope(|| (0..8).map(|_| Box::new([5u8; 64])).collect::<Vec<_>>());
    let (a, b) = (make(&unlimited), make(&limited));
    memcg::flush();
    let (live_a, live_b) = (unlimited.current(), limited.current());
    assert!(live_a >= 8 * 64 && live_b >= 8 * 64, "{live_a} {live_b}");
    let (ga, gb) = (unlimited.clone(), limited.clone());
    let (held, at_once, after) = std::thread::spawn(move || {
        drop(a);
        drop(b);
        let seen = (ga.current(), gb.current());
        memcg::flush();
        (seen.0, seen.1, ga.current())
    })
    .join()
    .unwrap();
    assert_eq!(held, live_a, "the credits were held back");
    assert_eq!(at_once, 0, "a limited group is credited at once");
    assert_eq!(after, 0, "flush handed the held credits over");
}

#[test]
fn objects_freed_by_many_threads_credit_their_group() {
    let a = Group::new("xt-many-freers-a");
    let slack = slack_per_thread();
    let mut batches: Vec<Vec<Box<[u8; 96]>>> = a.scope(|| {
        (0..4)
            .map(|_| (0..20_000).map(|_| Box::new([3u8; 96])).collect())
            .collect()
    });
    memcg::flush();
    let before = a.current();
    assert!(before >= 4 * 20_000 * 96, "{before}");
    let handles: Vec<_> = batches
        .drain(..)
        .enumerate()
        .map(|(i, batch)| {
            let other = Group::new(&format!("xt-many-freers-b{i}"));
            std::thread::spawn(move || {
                other.scope(|| drop(batch));
                memcg::flush();
                other.current()
            })
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap() <= slack);
    }
    assert!(a.current() < slack, "{}", a.current());
}

#[test]
fn spawn_starts_in_the_callers_group() {
    let g = Group::new("xt-spawn-group");
    let slack = slack_per_thread();
    let (path, bytes) = g.scope(|| {
        memcg::thread::spawn(|| {
            let v = vec![9u8; 2 * MIB];
            (memcg::current().path().to_string(), v)
        })
        .join()
        .unwrap()
    });
    assert_eq!(path, "/xt-spawn-group");
    let cur = g.current();
    assert!(cur >= 2 * MIB && cur <= 2 * MIB + slack, "{cur}");
    drop(bytes);
    assert!(g.current() < slack);

    // Outside any group the new thread is in the root.
    let p = memcg::thread::spawn(|| memcg::current().path().to_string())
        .join()
        .unwrap();
    assert_eq!(p, "/");
    // A plain std thread does not inherit the group.
    let p = g.scope(|| {
        std::thread::spawn(|| memcg::current().path().to_string())
            .join()
            .unwrap()
    });
    assert_eq!(p, "/");
}

#[test]
fn guards_nest_and_restore() {
    let a = Group::new("xt-nest-a");
    let b = a.child("b").build();
    let c = Group::new("xt-nest-c");
    assert!(memcg::current().is_root());
    {
        let _ga = a.enter();
        assert_eq!(memcg::current(), a);
        {
            let _gb = b.enter();
            assert_eq!(memcg::current(), b);
            {
                let _gc = c.enter();
                assert_eq!(memcg::current(), c);
                let x = std::hint::black_box(Box::new([0u8; 4000]));
                assert!(c.current() >= 4000);
                drop(x);
                let r = memcg::bypass(|| {
                    let _root = memcg::root().enter();
                    memcg::current()
                });
                assert!(r.is_root());
                assert_eq!(memcg::current(), c, "bypass restores");
                let inner = a.scope(memcg::current);
                assert_eq!(inner, a);
                assert_eq!(memcg::current(), c, "scope restores");
            }
            assert_eq!(memcg::current(), b);
        }
        assert_eq!(memcg::current(), a);
    }
    assert!(memcg::current().is_root());
    // Restores after a panic too.
    let r = std::panic::catch_unwind(|| a.scope(|| panic!("inside a group")));
    assert!(r.is_err());
    assert!(memcg::current().is_root());
}

/// Where two groups' objects lie: the 16 KiB windows holding both.
fn shared_windows(a: &Group, b: &Group) -> usize {
    let pa: Vec<Box<[u8; 48]>> = (0..200).map(|_| a.scope(|| Box::new([1u8; 48]))).collect();
    let pb: Vec<Box<[u8; 48]>> = (0..200).map(|_| b.scope(|| Box::new([2u8; 48]))).collect();
    let wa: HashSet<usize> = pa.iter().map(|x| x.as_ptr() as usize / SLICE).collect();
    let wb: HashSet<usize> = pb.iter().map(|x| x.as_ptr() as usize / SLICE).collect();
    assert!(pa.iter().all(|x| x.iter().all(|&v| v == 1)));
    assert!(pb.iter().all(|x| x.iter().all(|&v| v == 2)));
    wa.intersection(&wb).count()
}

#[test]
fn groups_share_slabs_unless_isolated() {
    // On a thread of its own, so `first` is the first group it serves.
    std::thread::spawn(|| {
        let first = Group::new("xt-shared-slab-first");
        let a = Group::new("xt-shared-slab-a");
        let b = Group::new("xt-shared-slab-b");
        assert_eq!(
            shared_windows(&first, &a),
            0,
            "a thread's first group has slabs of its own"
        );
        assert!(
            shared_windows(&a, &b) > 0,
            "two small groups interleaving allocations share slabs"
        );
        let c = Group::builder("xt-shared-slab-c").isolated(true).build();
        assert_eq!(
            shared_windows(&a, &c),
            0,
            "an isolated group shares no slab"
        );
        // Frees of interleaved objects credit each group back to zero.
        memcg::flush();
        for g in [&first, &a, &b, &c] {
            assert_eq!(g.current(), 0, "{g:?}");
        }
    })
    .join()
    .unwrap();
}

#[test]
fn isolated_groups_never_share_a_slab() {
    let a = Group::builder("xt-no-shared-slab-a").isolated(true).build();
    let b = Group::builder("xt-no-shared-slab-b").isolated(true).build();
    let mut pa: Vec<Box<[u8; 48]>> = Vec::with_capacity(1000);
    let mut pb: Vec<Box<[u8; 48]>> = Vec::with_capacity(1000);
    let mut qa: Vec<Box<[u8; 200]>> = Vec::with_capacity(1000);
    let mut qb: Vec<Box<[u8; 200]>> = Vec::with_capacity(1000);
    for i in 0..1000u32 {
        let v = i as u8;
        pa.push(a.scope(|| Box::new([v; 48])));
        pb.push(b.scope(|| Box::new([v; 48])));
        qa.push(a.scope(|| Box::new([v; 200])));
        qb.push(b.scope(|| Box::new([v; 200])));
    }
    let windows = |ptrs: &mut dyn Iterator<Item = usize>| -> HashSet<usize> {
        ptrs.map(|p| p / SLICE).collect()
    };
    let wa = windows(
        &mut pa
            .iter()
            .map(|x| x.as_ptr() as usize)
            .chain(qa.iter().map(|x| x.as_ptr() as usize)),
    );
    let wb = windows(
        &mut pb
            .iter()
            .map(|x| x.as_ptr() as usize)
            .chain(qb.iter().map(|x| x.as_ptr() as usize)),
    );
    let shared: Vec<_> = wa.intersection(&wb).collect();
    assert!(
        shared.is_empty(),
        "{} 16 KiB windows hold objects of both groups",
        shared.len()
    );
    // The contents were not mixed up either.
    for (i, (x, y)) in pa.iter().zip(&qb).enumerate() {
        assert!(x.iter().all(|&v| v == i as u8));
        assert!(y.iter().all(|&v| v == i as u8));
    }
    assert!(a.current() >= 1000 * (48 + 200));
    assert!(b.current() >= 1000 * (48 + 200));
}
