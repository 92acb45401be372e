//! Limits: `max` in Fail and Report mode, `fallible` sections, `high`,
//! `slab_max`, lowering a limit below usage, and limits of zero.

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

mod groups_common;
use groups_common::*;

use memcg::{Group, Limit, OnExceed};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// Fills `out` (whose capacity must not grow) with `chunk`-byte objects
/// until the first refused allocation; returns the bytes obtained.
fn fill(out: &mut Vec<Vec<u8>>, chunk: usize) -> usize {
    let mut got = 0;
    while out.len() < out.capacity() {
        match try_alloc(chunk) {
            Some(v) => {
                out.push(v);
                got += chunk;
            }
            None => break,
        }
    }
    got
}

// --- a minimal executor ---

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park_timeout(std::time::Duration::from_millis(10)),
        }
    }
}

/// Pending once (waking itself), then ready.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// Sets its flag when dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

// --- max, Fail mode ---

#[test]
fn fail_mode_refuses_past_max() {
    let g = Group::builder("lim-fail-refuses")
        .max(30 * MIB)
        .on_exceed(OnExceed::Fail)
        .build();
    let slack = slack_per_thread();

    let first = g.scope(|| try_alloc(20 * MIB));
    assert!(first.is_some(), "20 MiB fits in 30 MiB");
    let second = g.scope(|| try_alloc(15 * MIB));
    assert!(second.is_none(), "20 + 15 MiB is past max 30 MiB");
    let s = g.stats();
    assert!(s.events.max >= 1, "{s}");
    assert!(s.events.fail >= 1, "{s}");
    assert!(s.events_local.max >= 1 && s.events_local.fail >= 1, "{s}");
    assert!(s.current <= 30 * MIB, "{s}");

    // The refusal is reported once by `check`, then cleared (the group is
    // within max).
    let e = g.check().expect_err("a denied allocation is reported once");
    assert_eq!(e.group, "/lim-fail-refuses");
    assert_eq!(e.limit, Limit::Max);
    assert_eq!(e.request, 15 * MIB);
    assert!(g.check().is_ok());

    // Small objects fill up to max (less the reserve) and then fail too.
    let mut small: Vec<Vec<u8>> = Vec::with_capacity(4096);
    let got = g.scope(|| fill(&mut small, 4 * KIB));
    assert!(small.len() < small.capacity(), "small objects must fail");
    let cur = g.current();
    assert!(cur <= 30 * MIB, "current {cur}");
    assert!(
        20 * MIB + got + slack >= 30 * MIB - 4 * KIB,
        "small objects stopped early: got {got} beside 20 MiB, current {cur}"
    );
    // A request that fits still succeeds once room is made.
    drop(first);
    let again = g.scope(|| try_alloc(15 * MIB));
    assert!(
        again.is_some(),
        "fits after the free: current {}",
        g.current()
    );
    drop((small, again));
    memcg::flush();
    assert!(g.current() < slack, "{}", g.current());
}

#[test]
fn fail_mode_current_never_seen_above_max() {
    let max = 30 * MIB;
    let g = Group::builder("lim-fail-sampled")
        .max(max)
        .on_exceed(OnExceed::Fail)
        .build();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (g, stop, seen) = (g.clone(), stop.clone(), seen.clone());
        std::thread::spawn(move || {
            let mut samples = 0u64;
            while !stop.load(Ordering::Relaxed) {
                seen.fetch_max(g.current(), Ordering::Relaxed);
                samples += 1;
            }
            samples
        })
    };

    let mut held: Vec<Vec<u8>> = Vec::with_capacity(64);
    let mut refused = 0;
    let t0 = std::time::Instant::now();
    while t0.elapsed() < std::time::Duration::from_millis(1500) {
        for n in [8 * MIB, 12 * MIB, 20 * MIB, 300 * KIB, 64 * KIB] {
            if held.len() == held.capacity() {
                held.clear();
            }
            match g.scope(|| try_alloc(n)) {
                Some(v) => held.push(v),
                None => {
                    refused += 1;
                    held.clear();
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    let seen = seen.load(Ordering::Relaxed);
    assert!(refused > 0, "the loop must hit the limit");
    assert!(samples > 1000, "sampler ran {samples} times");
    assert!(g.peak() <= max, "peak {} above max {max}", g.peak());
    assert!(
        seen <= max,
        "a sampler saw current {seen} above max {max} ({} bytes over)",
        seen - max
    );
    let s = g.stats();
    assert!(s.events.max >= 1 && s.events.fail >= 1, "{s}");
}

#[test]
fn check_describes_denied_allocation() {
    let g = Group::builder("lim-check-describes")
        .max(4 * MIB)
        .on_exceed(OnExceed::Fail)
        .build();
    assert!(g.scope(|| try_alloc(6 * MIB)).is_none());
    let e = g.check().expect_err("a denied allocation is reported");
    assert_eq!(e.group, "/lim-check-describes");
    assert_eq!(e.limit, Limit::Max);
    assert_eq!(e.limit_bytes, 4 * MIB);
    assert_eq!(e.request, 6 * MIB);
    assert!(e.usage < MIB, "usage before the request: {}", e.usage);
    assert!(e.denied, "the allocation returned null: {e:?}");
    assert!(e.to_string().contains("denied"), "{e}");
}

// --- max, Report mode ---

#[test]
fn report_mode_marks_and_check_errs() {
    let g = Group::builder("lim-report-marks").max(10 * MIB).build();
    assert_eq!(g.on_exceed(), OnExceed::Report);
    let (v, inside) = g.scope(|| {
        let v = vec![3u8; 16 * MIB];
        (v, memcg::check())
    });
    assert_eq!(v.len(), 16 * MIB, "Report mode: the allocation succeeds");
    let e = inside.expect_err("check inside the group sees the exceed");
    assert_eq!(e.group, "/lim-report-marks");
    assert_eq!(e.limit, Limit::Max);
    assert_eq!(e.limit_bytes, 10 * MIB);
    assert!(!e.denied);
    assert!(g.check().is_err(), "still over max");
    assert!(memcg::check().is_ok(), "the root is never over");
    let s = g.stats();
    assert!(s.events.max >= 1, "{s}");
    assert_eq!(s.events.fail, 0, "{s}");
    drop(v);
    memcg::flush();
    assert!(g.check().is_ok(), "back under max after the free");
}

#[test]
fn run_cancels_future_on_exceed() {
    let g = Group::builder("lim-run-cancels").max(20 * MIB).build();
    let dropped = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let polls = Arc::new(AtomicUsize::new(0));
    let fut = {
        let (dropped, finished, polls) = (dropped.clone(), finished.clone(), polls.clone());
        async move {
            let _flag = DropFlag(dropped);
            let mut hold: Vec<Vec<u8>> = Vec::new();
            for _ in 0..10 {
                polls.fetch_add(1, Ordering::SeqCst);
                hold.push(vec![1u8; 8 * MIB]);
                YieldOnce(false).await;
            }
            finished.store(true, Ordering::SeqCst);
            hold.len()
        }
    };
    let r = block_on(g.run(fut));
    let e = r.expect_err("the future went past max");
    assert_eq!(e.group, "/lim-run-cancels");
    assert_eq!(e.limit, Limit::Max);
    assert!(
        dropped.load(Ordering::SeqCst),
        "the inner future was dropped"
    );
    assert!(!finished.load(Ordering::SeqCst));
    assert_eq!(
        polls.load(Ordering::SeqCst),
        3,
        "stopped at the first exceed"
    );
    memcg::flush();
    assert!(
        g.current() < slack_per_thread(),
        "the dropped future's memory is freed: {}",
        g.current()
    );
}

#[test]
fn run_within_limit_completes() {
    let g = Group::builder("lim-run-ok").max(20 * MIB).build();
    let r = block_on(g.run(async {
        let a = vec![1u8; 4 * MIB];
        YieldOnce(false).await;
        let b = vec![2u8; 4 * MIB];
        YieldOnce(false).await;
        a.len() + b.len()
    }));
    assert_eq!(r, Ok(8 * MIB));
    // A group already over its limit fails at the first poll.
    let big = g.scope(|| vec![0u8; 24 * MIB]);
    let ran = Arc::new(AtomicBool::new(false));
    let r2 = {
        let ran = ran.clone();
        block_on(g.run(async move {
            ran.store(true, Ordering::SeqCst);
        }))
    };
    assert!(r2.is_err(), "already over max");
    drop(big);
    memcg::flush();
    assert!(g.check().is_ok());
}

#[test]
fn in_group_charges_without_cancelling() {
    use memcg::GroupExt;
    let g = Group::builder("lim-in-group").max(4 * MIB).build();
    let v = block_on(
        async {
            let v = vec![1u8; 8 * MIB];
            YieldOnce(false).await;
            v
        }
        .in_group(&g),
    );
    assert_eq!(v.len(), 8 * MIB);
    assert!(g.current() >= 8 * MIB, "{}", g.current());
    assert!(g.check().is_err());
    drop(v);
}

#[test]
fn fallible_makes_report_mode_fail() {
    let g = Group::builder("lim-fallible").max(4 * MIB).build();
    let r = g.scope(|| memcg::fallible(|| try_alloc(8 * MIB)));
    assert!(r.is_none(), "inside fallible an exceed fails");
    let s = g.stats();
    assert!(s.events.fail >= 1 && s.events.max >= 1, "{s}");
    assert!(s.current < MIB, "{s}");
    // The same request outside `fallible` succeeds (Report mode).
    let r = g.scope(|| try_alloc(8 * MIB));
    assert!(r.is_some());
    // Small objects fail too inside `fallible`.
    drop(r);
    memcg::flush();
    let mut small: Vec<Vec<u8>> = Vec::with_capacity(4096);
    g.scope(|| memcg::fallible(|| fill(&mut small, 2 * KIB)));
    assert!(small.len() < small.capacity(), "small objects stop at max");
    assert!(g.current() <= 4 * MIB, "{}", g.current());
}

#[test]
fn fallible_serves_nothing_from_a_reserve_kept_before_a_switch() {
    // No limit yet: a thread keeps a small reserve for the group when it
    // leaves, here at least the 512 bytes of the block freed last.
    let g = Group::builder("lim-fallible-switch").build();
    // (The outer vector is the root's: the group holds 512-byte blocks only.)
    let mut keep: Vec<Vec<u8>> = Vec::with_capacity(64);
    g.scope(|| {
        for _ in 0..64 {
            keep.push(vec![1u8; 512]);
        }
        keep.pop();
    });
    // A max of exactly the live bytes: any further byte is over it.
    g.set_max(Some(63 * 512));
    let before = g.stats().events.fail;
    // Entered inside `fallible`, the kept reserve must not serve a block.
    let r = memcg::fallible(|| g.scope(|| try_alloc(512)));
    assert!(
        r.is_none(),
        "served past max from a kept reserve: {}",
        g.stats()
    );
    assert_eq!(g.stats().events.fail, before + 1);
    keep.clear();
}

// --- high ---

#[test]
fn high_counts_events_and_fails_nothing() {
    let g = Group::builder("lim-high")
        .high(4 * MIB)
        .on_exceed(OnExceed::Fail)
        .build();
    let mut held = Vec::with_capacity(16);
    for _ in 0..8 {
        let v = g.scope(|| try_alloc(MIB));
        held.push(v.expect("high never fails an allocation"));
    }
    let s = g.stats();
    assert!(s.current >= 8 * MIB, "{s}");
    assert!(s.events.high >= 1, "{s}");
    assert_eq!(s.events.max, 0, "{s}");
    assert_eq!(s.events.fail, 0, "{s}");
    assert!(g.check().is_ok());

    // Down below high and up again: one more crossing.
    let before = s.events.high;
    held.clear();
    memcg::flush();
    for _ in 0..8 {
        held.push(g.scope(|| try_alloc(MIB)).unwrap());
    }
    let after = g.stats().events.high;
    assert!(
        after > before,
        "a second upward crossing counts: {before} -> {after}"
    );
}

#[test]
fn high_counts_small_object_crossings() {
    let g = Group::builder("lim-high-small").high(MIB).build();
    let small: Vec<Box<[u8; 512]>> = g.scope(|| (0..8192).map(|_| Box::new([0u8; 512])).collect());
    let s = g.stats();
    assert!(s.current >= 4 * MIB, "{s}");
    assert!(
        s.events.high >= 1,
        "4 MiB of small objects crossed high 1 MiB: {s}"
    );
    assert_eq!(s.events.max, 0, "{s}");
    drop(small);
}

// --- slab_max ---

#[test]
fn slab_max_below_max_limits_small_objects_alone() {
    let g = Group::builder("lim-slab-max-below")
        .max(32 * MIB)
        .slab_max(4 * MIB)
        .on_exceed(OnExceed::Fail)
        .build();
    let slack = slack_per_thread();
    let mut small: Vec<Vec<u8>> = Vec::with_capacity(8192);
    let got = g.scope(|| fill(&mut small, 2 * KIB));
    assert!(
        small.len() < small.capacity(),
        "small objects stop at slab_max"
    );
    assert!(got + slack >= 4 * MIB - 2 * KIB, "stopped early: {got}");
    let s = g.stats();
    assert!(s.slab <= 4 * MIB, "{s}");
    let e = g.check().expect_err("denied");
    assert_eq!(e.limit, Limit::SlabMax);

    // Large blocks are not limited by slab_max, only by max.
    let big = g.scope(|| try_alloc(20 * MIB));
    assert!(
        big.is_some(),
        "large objects go past slab_max: {}",
        g.stats()
    );
    let big2 = g.scope(|| try_alloc(7 * MIB));
    assert!(big2.is_some(), "up to max: {}", g.stats());
    let over = g.scope(|| try_alloc(4 * MIB));
    assert!(over.is_none(), "but not past max: {}", g.stats());
    assert!(g.current() <= 32 * MIB);
    let e = g.check().expect_err("denied");
    assert_eq!(e.limit, Limit::Max);
}

#[test]
fn slab_max_at_or_above_max_only_tracks() {
    for (name, slab_max) in [
        ("lim-slab-max-equal", 4 * MIB),
        ("lim-slab-max-above", 8 * MIB),
    ] {
        let g = Group::builder(name)
            .max(4 * MIB)
            .slab_max(slab_max)
            .on_exceed(OnExceed::Fail)
            .build();
        let mut small: Vec<Vec<u8>> = Vec::with_capacity(8192);
        let got = g.scope(|| fill(&mut small, 2 * KIB));
        assert!(small.len() < small.capacity(), "{name}: stops at max");
        assert!(
            got >= 4 * MIB - slack_per_thread() - 2 * KIB,
            "{name}: {got}"
        );
        let s = g.stats();
        assert!(
            s.slab >= got && s.slab <= 4 * MIB,
            "{name}: slab tracked: {s}"
        );
        let e = g.check().expect_err("denied");
        assert_eq!(
            e.limit,
            Limit::Max,
            "{name}: the limit hit is max, not slab_max"
        );
    }
    // In Report mode slab_max at max never reports on its own.
    let g = Group::builder("lim-slab-max-report")
        .slab_max(MIB)
        .max(MIB)
        .build();
    g.set_max(Some(64 * MIB));
    g.set_slab_max(Some(64 * MIB));
    let small: Vec<Box<[u8; 1024]>> =
        g.scope(|| (0..4096).map(|_| Box::new([0u8; 1024])).collect());
    assert!(g.stats().slab >= 4 * MIB);
    assert!(g.check().is_ok(), "slab_max == max only tracks");
    assert_eq!(g.stats().events.max, 0);
    drop(small);
}

// --- changing limits ---

#[test]
fn set_max_below_usage_puts_group_over_limit() {
    let g = Group::builder("lim-set-max-below")
        .on_exceed(OnExceed::Fail)
        .build();
    assert_eq!(g.max(), None);
    let v = g.scope(|| try_alloc(8 * MIB)).unwrap();
    assert!(g.check().is_ok());
    let before = g.current();
    g.set_max(Some(4 * MIB));
    assert_eq!(g.max(), Some(4 * MIB));
    assert_eq!(g.current(), before, "nothing is freed by force");
    let e = g.check().expect_err("over the new max");
    assert_eq!(e.limit, Limit::Max);
    assert_eq!(e.limit_bytes, 4 * MIB);
    assert!(e.usage >= 8 * MIB);
    // New allocations fail in Fail mode.
    assert!(g.scope(|| try_alloc(300 * KIB)).is_none());
    // The old object is intact.
    assert_eq!(v.capacity(), 8 * MIB);
    g.set_max(None);
    assert!(g.check().is_err(), "the denied allocation is reported once");
    assert!(g.check().is_ok());
    assert!(g.scope(|| try_alloc(300 * KIB)).is_some());
    drop(v);
}

#[test]
fn zero_limits() {
    // max 0, Fail: everything fails, nothing is charged.
    let g = Group::builder("lim-zero-max-fail")
        .max(0)
        .on_exceed(OnExceed::Fail)
        .build();
    assert!(g.scope(|| try_alloc(1)).is_none());
    assert!(g.scope(|| try_alloc(300 * KIB)).is_none());
    let s = g.stats();
    assert_eq!(s.current, 0, "{s}");
    assert!(s.events.fail >= 2, "{s}");

    // max 0, Report: succeeds, reported.
    let g = Group::builder("lim-zero-max-report").max(0).build();
    let b = g.scope(|| std::hint::black_box(Box::new(5u64)));
    assert_eq!(*b, 5);
    assert!(g.check().is_err());
    drop(b);

    // slab_max 0 below max: small objects fail, large ones don't.
    let g = Group::builder("lim-zero-slab-max")
        .max(MIB)
        .slab_max(0)
        .on_exceed(OnExceed::Fail)
        .build();
    assert!(g.scope(|| try_alloc(16)).is_none());
    let large = g.scope(|| try_alloc(256 * KIB));
    assert!(large.is_some(), "{}", g.stats());
    assert_eq!(g.stats().slab, 0);

    // high 0: the first allocation crosses it.
    let g = Group::builder("lim-zero-high").high(0).build();
    let b = g.scope(|| std::hint::black_box(Box::new(5u64)));
    assert_eq!(g.stats().events.high, 1, "{}", g.stats());
    assert!(g.check().is_ok());
    drop(b);
}
