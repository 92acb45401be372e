//! Bad input, each with its defined answer: impossible sizes and alignments
//! inside groups, realloc to an impossible size, limits of 0 in both
//! policies, `set_max` below usage, hooks that allocate or panic, guards
//! dropped out of order or leaked, a group used after its parent's handle
//! was dropped, and invalid group names.
//!
//! Code that runs inside a `Fail` group with a tiny limit must not make an
//! infallible allocation (Rust aborts the process on a null from one), so
//! those sections only make fallible requests and hand plain values out;
//! assertions run outside.

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

use memcg::{BuildError, EventType, Group, Limit, OnExceed};
use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// A name no other test in this binary uses.
fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "rel-bad-{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Allocates `layout` through the global allocator; the address or 0.
fn raw_alloc(layout: Layout) -> usize {
    // SAFETY: every layout used here has a non-zero size.
    unsafe { GLOBAL.alloc(layout) as usize }
}

/// Tries to make a `n`-byte vector; whether it worked.
fn try_vec(n: usize) -> Option<Vec<u8>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).ok()?;
    Some(v)
}

/// `current` of `g` once this thread's reserves are handed back.
fn settled(g: &Group) -> usize {
    memcg::flush();
    g.current()
}

// --- huge sizes and alignments ---

#[test]
fn huge_sizes_and_alignments_are_null_in_groups_and_charge_nothing() {
    let report = Group::new(&unique("huge-r"));
    let fail = Group::builder(&unique("huge-f"))
        .max(64 * MIB)
        .on_exceed(OnExceed::Fail)
        .build();
    let cases = [
        (isize::MAX as usize - 4095, 4096),
        (1usize << 62, 8),
        (1usize << 47, 1),
        (100, 1usize << 62),
        (1usize << 40, 1usize << 40),
    ];
    for g in [&report, &fail] {
        let before = settled(g);
        let results: Vec<(Layout, usize, usize)> = g.scope(|| {
            let mut out = Vec::with_capacity(cases.len());
            for (size, align) in cases {
                let layout = Layout::from_size_align(size, align).unwrap();
                let p = raw_alloc(layout);
                // SAFETY: non-zero size.
                let z = unsafe { GLOBAL.alloc_zeroed(layout) as usize };
                out.push((layout, p, z));
            }
            out
        });
        for (layout, p, z) in results {
            for ptr in [p, z] {
                if ptr != 0 {
                    // SAFETY: returned for this layout.
                    unsafe { GLOBAL.dealloc(ptr as *mut u8, layout) };
                }
                assert_eq!(ptr, 0, "{}: {layout:?} gave a block", g.path());
            }
        }
        let r = g.scope(|| {
            let mut v: Vec<u8> = Vec::new();
            (
                v.try_reserve(isize::MAX as usize).is_err(),
                v.try_reserve(usize::MAX).is_err(),
            )
        });
        assert_eq!(r, (true, true));
        assert_eq!(
            settled(g),
            before,
            "{}: a failed request stayed charged",
            g.path()
        );
        // The group still works.
        let v = g.scope(|| vec![3u8; 1000]);
        assert!(settled(g) >= before + 1000);
        drop(v);
    }
    // A request that could never fit is refused by the Fail group's limit
    // (an event) or by the OS (no event); the Report group sees no denial.
    assert!(report.check().is_ok(), "{:?}", report.check());
}

#[test]
fn realloc_to_a_huge_size_fails_and_keeps_the_data() {
    let g = Group::new(&unique("realloc-huge"));
    for size in [24usize, 3000, 100 * KIB, 300 * KIB] {
        let layout = Layout::from_size_align(size, 8).unwrap();
        let p = g.scope(|| raw_alloc(layout)) as *mut u8;
        assert!(!p.is_null());
        for i in 0..size {
            // SAFETY: `p` has `size` bytes.
            unsafe { *p.add(i) = (i * 7 + size) as u8 };
        }
        let before = settled(&g);
        for huge in [isize::MAX as usize - 7, 1usize << 62, 1usize << 46] {
            // SAFETY: a live block with its layout; `huge` rounded to 8
            // stays within isize::MAX.
            let q = g.scope(|| unsafe { GLOBAL.realloc(p, layout, huge) });
            assert!(q.is_null(), "realloc of {size} to {huge} gave {q:p}");
        }
        assert_eq!(settled(&g), before, "a failed realloc stayed charged");
        for i in 0..size {
            // SAFETY: the block is still live.
            assert_eq!(
                unsafe { *p.add(i) },
                (i * 7 + size) as u8,
                "byte {i} of {size}"
            );
        }
        // SAFETY: still live with this layout.
        unsafe { GLOBAL.dealloc(p, layout) };
    }
    // The same through Vec: `try_reserve` fails, the contents stay.
    let mut v: Vec<u32> = g.scope(|| (0..10_000).collect());
    assert!(v.try_reserve(usize::MAX / 8).is_err());
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u32));
    drop(v);
    assert_eq!(settled(&g), 0);
}

// --- limits of 0 ---

#[test]
fn max_zero_fail_refuses_every_allocation() {
    let g = Group::builder(&unique("zero-fail"))
        .max(0)
        .on_exceed(OnExceed::Fail)
        .build();
    let (small, large, tiny) = g.scope(|| {
        let small = try_vec(16).is_none();
        let large = try_vec(MIB).is_none();
        let tiny = raw_alloc(Layout::from_size_align(1, 1).unwrap()) == 0;
        (small, large, tiny)
    });
    assert!(small && large && tiny, "{small} {large} {tiny}");
    // (`memcg::check()` from inside the group: rel_check_in_fail_group.rs.)
    let e = g
        .check()
        .expect_err("a denied allocation makes check() fail");
    assert!(e.denied);
    assert_eq!(e.limit, Limit::Max);
    assert_eq!(e.limit_bytes, 0);
    assert_eq!(e.group, g.path());
    let s = g.stats();
    assert_eq!(s.events_local.fail, 3, "{s}");
    assert_eq!(s.events_local.max, 3, "{s}");
    assert_eq!(settled(&g), 0);
    // The denial is reported once; the group is not over its limit.
    assert!(g.check().is_ok());
}

#[test]
fn max_zero_report_lets_allocations_succeed_and_check_fails() {
    let g = Group::builder(&unique("zero-report")).max(0).build();
    let (b, inside) = g.scope(|| (Box::new([5u8; 100]), memcg::check()));
    assert_eq!(b[99], 5);
    let e = inside.expect_err("over a max of 0");
    assert!(!e.denied);
    assert_eq!(e.limit, Limit::Max);
    assert_eq!(e.limit_bytes, 0);
    assert!(g.stats().events.max >= 1);
    assert_eq!(g.stats().events.fail, 0);
    assert!(g.check().is_err());
    // The error's path was allocated in the group too.
    drop((b, e));
    assert_eq!(settled(&g), 0);
    // Back at 0 bytes the group is within a max of 0 again.
    assert!(g.check().is_ok(), "{:?}", g.check());
}

#[test]
fn slab_max_zero_fail_refuses_small_objects_only() {
    let g = Group::builder(&unique("slab-zero"))
        .slab_max(0)
        .on_exceed(OnExceed::Fail)
        .build();
    let (small, large) = g.scope(|| (try_vec(100).is_none(), try_vec(MIB)));
    assert!(small, "a small object under slab_max 0 should be refused");
    let large = large.expect("large blocks are not limited by slab_max");
    assert_eq!(g.stats().events_local.fail, 1);
    assert_eq!(g.check().map_err(|e| e.limit), Err(Limit::SlabMax));
    drop(large);
    assert_eq!(settled(&g), 0);
}

// --- set_max below usage ---

#[test]
fn set_max_below_usage_reports_and_frees_nothing() {
    let g = Group::new(&unique("below-report"));
    let v: Vec<u64> = g.scope(|| (0..(MIB as u64 / 8)).collect());
    let used = settled(&g);
    assert!(used >= MIB);
    g.set_max(Some(64 * KIB));
    let e = g.check().expect_err("usage above the new max");
    assert_eq!(e.limit, Limit::Max);
    assert_eq!(e.limit_bytes, 64 * KIB);
    assert_eq!(e.usage, used);
    assert_eq!(e.request, 0);
    assert!(!e.denied);
    assert_eq!(g.current(), used, "nothing is freed by force");
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64));
    drop(v);
    assert_eq!(settled(&g), 0);
    assert!(g.check().is_ok());
}

#[test]
fn set_max_below_usage_in_fail_mode_refuses_more_and_keeps_what_is_there() {
    let g = Group::builder(&unique("below-fail"))
        .on_exceed(OnExceed::Fail)
        .build();
    let v: Vec<u64> = g.scope(|| (0..(MIB as u64 / 8)).collect());
    let used = settled(&g);
    g.set_max(Some(64 * KIB));
    let (more, big) = g.scope(|| (try_vec(200 * KIB).is_none(), try_vec(4 * MIB).is_none()));
    assert!(more && big);
    assert_eq!(settled(&g), used);
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64));
    g.set_max(None);
    let w = g.scope(|| try_vec(4 * MIB)).expect("no limit any more");
    drop((v, w));
    assert_eq!(settled(&g), 0);
}

// --- hooks ---

#[test]
fn hooks_that_allocate_work_and_are_not_charged_to_the_group() {
    let g = Group::builder(&unique("hook-alloc"))
        .high(16 * KIB)
        .max(256 * KIB)
        .build();
    let log: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let l2 = log.clone();
    g.on_event(move |e| {
        // Allocates: a String, a Vec push, and a big buffer.
        let big = vec![1u8; 512 * KIB];
        let line = format!("{:?} {} {} {}", e.kind, e.group, e.current, big.len());
        l2.lock().unwrap().push(line);
    });
    let v = g.scope(|| {
        let mut v: Vec<Vec<u8>> = Vec::with_capacity(64);
        for _ in 0..64 {
            v.push(vec![0u8; 8 * KIB]);
        }
        v
    });
    let lines = log.lock().unwrap().clone();
    assert!(
        lines.iter().any(|l| l.starts_with("High ")),
        "high hook ran: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("Max ")),
        "max hook ran: {lines:?}"
    );
    // The hooks' 512 KiB buffers and strings went to the root, not here.
    let cur = settled(&g);
    assert!(
        cur < 64 * 8 * KIB + 64 * KIB,
        "hook allocations charged to the group: {cur}"
    );
    assert_eq!(g.stats().events.fail, 0);
    drop(v);
    assert_eq!(settled(&g), 0);
}

#[test]
fn hooks_that_panic_do_not_stop_the_allocation_or_the_process() {
    let g = Group::builder(&unique("hook-panic")).max(32 * KIB).build();
    let f = Group::builder(&unique("hook-panic-f"))
        .max(32 * KIB)
        .on_exceed(OnExceed::Fail)
        .build();
    let runs = Arc::new(AtomicUsize::new(0));
    for grp in [&g, &f] {
        let r = runs.clone();
        grp.on_event(move |e| {
            r.fetch_add(1, Ordering::Relaxed);
            if e.kind != EventType::High {
                panic!("hook panics on purpose ({:?})", e.kind);
            }
        });
    }
    // Report: the allocation that triggers the panicking hook succeeds.
    let v = g.scope(|| vec![9u8; 100 * KIB]);
    assert_eq!(v[100 * KIB - 1], 9);
    assert!(g.check().is_err());
    let after_first = runs.load(Ordering::Relaxed);
    assert!(after_first >= 1);
    // The hook runs (and panics) again on the next event.
    let w = g.scope(|| vec![1u8; 100 * KIB]);
    assert!(runs.load(Ordering::Relaxed) > after_first);
    // Fail: the allocation is refused, the panic is caught.
    let refused = f.scope(|| try_vec(100 * KIB).is_none());
    assert!(refused);
    assert!(f.stats().events.fail >= 1);
    // The process and the allocator carry on.
    let s: String = (0..1000).map(|i| i.to_string()).collect();
    assert!(s.len() > 1000);
    drop((v, w));
    assert_eq!(settled(&g), 0);
    assert_eq!(settled(&f), 0);
}

// --- guards ---

/// Runs `f` on a fresh thread (so a test that leaves the thread in a group
/// does not touch the others) and waits for it.
fn on_thread<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::spawn(f).join().expect("thread panicked")
}

#[test]
fn guards_dropped_out_of_order_restore_what_was_current_when_each_was_made() {
    // Observed and documented: a guard's drop returns the thread to the
    // group that was current when *that* guard was made. Dropping the outer
    // guard first moves the thread to the root; dropping the inner one then
    // moves it back into the outer group, where it stays with no guard left.
    let top = Group::new(&unique("order"));
    let a = top.child("a").build();
    let b = top.child("b").build();
    let (a2, b2) = (a.clone(), b.clone());
    let (in_root, in_a, b_bytes, a_bytes) = on_thread(move || {
        let ga = a2.enter();
        let gb = b2.enter();
        assert!(memcg::current() == b2);
        drop(ga);
        let in_root = memcg::current().is_root();
        let x = Box::new([0u8; 1000]); // charged to the root
        memcg::flush();
        let b_bytes = b2.current();
        drop(gb);
        let in_a = memcg::current() == a2;
        let y = vec![0u8; 10_000]; // charged to a
        memcg::flush();
        let a_bytes = a2.current();
        drop((x, y));
        memcg::flush();
        (in_root, in_a, b_bytes, a_bytes)
    });
    assert!(
        in_root,
        "dropping the outer guard first returns to the root"
    );
    assert!(
        in_a,
        "dropping the inner guard last returns to the outer group"
    );
    assert_eq!(b_bytes, 0, "after the outer guard's drop nothing goes to b");
    assert!(a_bytes >= 10_000, "the thread was back in a: {a_bytes}");
    // The thread has exited: nothing is left charged or dying.
    assert_eq!(a.current(), 0);
    assert_eq!(b.current(), 0);
    drop((a, b));
    assert_eq!(top.current(), 0);
    assert_eq!(top.dying_descendants(), 0);
}

#[test]
fn a_leaked_guard_keeps_the_thread_in_the_group_until_it_exits() {
    let top = Group::new(&unique("forget"));
    let a = top.child("a").build();
    let a2 = a.clone();
    drop(a);
    let (stayed, charged, kept) = on_thread(move || {
        std::mem::forget(a2.enter());
        drop(a2); // the thread's own record keeps the group alive
        let cur = memcg::current();
        let stayed = cur.path().ends_with("/a");
        let v = vec![0u8; 50_000];
        memcg::flush();
        let charged = cur.current();
        drop(v);
        // A guard made and dropped inside returns to the leaked group.
        let b = Group::new(&unique("forget-b"));
        drop(b.enter());
        let kept = memcg::current() == cur;
        (stayed, charged, kept)
    });
    assert!(stayed, "the thread stays in the group of a leaked guard");
    assert!(charged >= 50_000, "{charged}");
    assert!(kept);
    // The thread exited: the group died with it and left nothing.
    assert_eq!(top.current(), 0);
    assert_eq!(top.dying_descendants(), 0, "{}", memcg::report());
    assert!(top.children().is_empty());
}

#[test]
fn a_leaked_inner_guard_is_undone_by_the_outer_guard() {
    let top = Group::new(&unique("forget-inner"));
    let a = top.child("a").build();
    let b = top.child("b").build();
    let (a2, b2) = (a.clone(), b.clone());
    let back_in_root = on_thread(move || {
        let ga = a2.enter();
        std::mem::forget(b2.enter());
        drop(ga);
        memcg::current().is_root()
    });
    assert!(back_in_root);
    drop((a, b));
    assert_eq!(top.dying_descendants(), 0);
}

// --- a group outliving its parent's handle ---

#[test]
fn a_child_keeps_its_parent_alive_after_the_parents_handle_is_dropped() {
    let top = Group::new(&unique("orphan"));
    let p = top.child("p").max(MIB).on_exceed(OnExceed::Fail).build();
    let c = p.child("c").build();
    drop(p);
    assert_eq!(c.path(), format!("{}/p/c", top.path()));
    let parent = c.parent().expect("the parent lives on");
    assert_eq!(parent.path(), format!("{}/p", top.path()));
    assert_eq!(parent.max(), Some(MIB));
    assert_eq!(top.children().len(), 1);
    assert!(memcg::report().contains("\n"));
    // Allocations in the child charge the parent and obey its limit.
    let v = c
        .scope(|| try_vec(100 * KIB))
        .expect("within the parent's max");
    memcg::flush();
    assert!(parent.current() >= 100 * KIB);
    assert!(
        c.scope(|| try_vec(2 * MIB).is_none()),
        "parent's max applies"
    );
    assert!(parent.stats().events_local.fail >= 1);
    drop(parent);
    drop(c);
    // Both died; the child's block keeps one record until it is freed.
    assert!(top.dying_descendants() >= 1);
    drop(v);
    memcg::flush();
    assert_eq!(top.current(), 0);
    assert_eq!(top.dying_descendants(), 0, "{}", memcg::report());
    assert!(top.children().is_empty());
}

// --- names ---

#[test]
fn invalid_group_names_give_build_errors() {
    let long = "x".repeat(65);
    for bad in [
        "",
        "a/b",
        "/",
        "tab\there",
        "nl\n",
        "del\u{7f}",
        long.as_str(),
    ] {
        match Group::builder(bad).try_build() {
            Err(BuildError::InvalidName(n)) => assert_eq!(n, bad),
            other => panic!("name {bad:?}: {other:?}"),
        }
    }
    // At the limits: 64 bytes and non-ASCII names are fine.
    let ok64 = format!("{}{}", unique("n"), "y".repeat(64))
        .split_at(64)
        .0
        .to_string();
    assert_eq!(ok64.len(), 64);
    let g = Group::builder(&ok64).try_build().expect("64 bytes");
    let u = Group::new(&unique("grüße-名前"));
    assert!(u.name().starts_with("rel-bad-grüße"));
    // A live sibling's name is taken; once it dies the name is free again.
    match Group::builder(&ok64).try_build() {
        Err(BuildError::NameTaken(p)) => assert_eq!(p, format!("/{ok64}")),
        other => panic!("{other:?}"),
    }
    match g.child("c").try_build() {
        Ok(c) => match g.child("c").try_build() {
            Err(BuildError::NameTaken(p)) => assert_eq!(p, format!("/{ok64}/c")),
            other => panic!("{other:?} (with {c:?} alive)"),
        },
        Err(e) => panic!("{e}"),
    }
    drop(g);
    let again = Group::builder(&ok64).try_build().expect("free again");
    drop((again, u));
    // `build` and `Group::new` panic with the error's message.
    let r = std::panic::catch_unwind(|| Group::new("a/b"));
    assert!(r.is_err());
}
