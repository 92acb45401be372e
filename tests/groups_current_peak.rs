//! `current` and `peak` of a group: both start at zero, follow what is
//! allocated (size classes and page-rounded large blocks), come back down
//! when it is freed, and `reset_peak` brings the peak down to `current`.

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

mod groups_common;
use groups_common::*;

use memcg::Group;

/// A small xorshift generator, so the tests need no crates.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
}

/// What the allocator charges for an object of `n` bytes.
fn charged_size(n: usize) -> usize {
    if n > 128 * KIB {
        return n.next_multiple_of(4096);
    }
    if n <= 64 {
        return n.max(1).next_multiple_of(8);
    }
    let p = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros()); // 64 <= p < n
    let step = p / 4;
    p + (n - p).div_ceil(step) * step
}

#[test]
fn charged_size_matches_documented_classes() {
    assert_eq!(charged_size(1), 8);
    assert_eq!(charged_size(64), 64);
    assert_eq!(charged_size(65), 80);
    assert_eq!(charged_size(129), 160);
    assert_eq!(charged_size(4096), 4096);
    assert_eq!(charged_size(4097), 5120);
    assert_eq!(charged_size(256 * KIB + 1), 256 * KIB + 4096);
}

#[test]
fn new_group_starts_at_zero() {
    let g = Group::new("cp-new-group-starts-at-zero");
    assert_eq!(g.current(), 0);
    assert_eq!(g.peak(), 0);
    let s = g.stats();
    assert_eq!(s.current, 0);
    assert_eq!(s.peak, 0);
    assert_eq!(s.slab, 0);
    assert_eq!(s.large, 0);
    assert_eq!(s.footprint, 0);
    assert_eq!(s.events, memcg::Events::default());
    assert_eq!(s.events_local, memcg::Events::default());
    assert_eq!(s.dying_descendants, 0);
    assert!(s.classes.is_empty(), "{:?}", s.classes);

    let child = g.child("child").build();
    assert_eq!(child.current(), 0);
    assert_eq!(child.peak(), 0);
}

#[test]
fn mixed_objects_are_charged_and_uncharged() {
    let g = Group::new("cp-mixed-objects");
    let slack = slack_per_thread();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    // The list of objects lives in the root group.
    let mut objs: Vec<Vec<u8>> = Vec::with_capacity(100_000);
    let mut asked = 0usize;
    let mut charged = 0usize;
    let target = 50 * MIB;
    g.scope(|| {
        while asked < target {
            // About one byte in ten in small objects, the rest large.
            let n = if rng.range(0, 999) < 992 {
                rng.range(16, 4096)
            } else {
                rng.range(256 * KIB, 4 * MIB)
            };
            let mut v = Vec::<u8>::with_capacity(n);
            v.push(1);
            asked += n;
            charged += charged_size(n);
            objs.push(v);
        }
    });
    let small: usize = objs.iter().filter(|v| v.capacity() <= 4096).count();
    assert!(small > 1000, "the mix holds small objects ({small})");

    let cur = g.current();
    let tol = asked * 3 / 100 + slack;
    assert!(
        cur.abs_diff(asked) <= tol,
        "current {cur} vs asked {asked} (charged by classes {charged}), tolerance {tol}"
    );
    assert!(
        cur >= charged && cur <= charged + slack,
        "current {cur} vs class-rounded {charged} + slack {slack}"
    );
    let s = g.stats();
    assert_eq!(s.slab + s.large, s.current, "{s}");
    assert!(g.peak() >= cur);

    drop(objs);
    memcg::flush();
    let cur = g.current();
    assert!(cur < slack, "after frees and flush: current {cur}");
    assert_eq!(cur, 0, "one thread, flushed: nothing stays charged");
    let peak = g.peak();
    assert!(peak >= target, "peak {peak} below {target}");

    g.reset_peak();
    assert_eq!(
        g.peak(),
        g.current(),
        "reset_peak brings peak down to current"
    );
}

#[test]
fn peak_tracks_the_highest_point() {
    let g = Group::new("cp-peak-tracks");
    let slack = slack_per_thread();

    let a = g.scope(|| vec![7u8; 10 * MIB]);
    drop(a);
    let b = g.scope(|| vec![7u8; 4 * MIB]);
    let (cur, peak) = (g.current(), g.peak());
    assert!(cur >= 4 * MIB && cur <= 4 * MIB + slack, "current {cur}");
    assert!(peak >= 10 * MIB && peak <= 10 * MIB + slack, "peak {peak}");

    g.reset_peak();
    assert_eq!(g.peak(), g.current());
    let c = g.scope(|| vec![7u8; 2 * MIB]);
    let peak = g.peak();
    assert!(
        peak >= 6 * MIB && peak <= 6 * MIB + slack,
        "peak after reset follows new usage: {peak}"
    );
    drop((b, c));
    memcg::flush();
    assert!(g.current() < slack);
    assert!(g.peak() >= 6 * MIB);
}

#[test]
fn parent_peak_covers_children() {
    let p = Group::new("cp-parent-peak");
    let c1 = p.child("c1").build();
    let c2 = p.child("c2").build();
    let slack = slack_per_thread();

    let a = c1.scope(|| vec![1u8; 3 * MIB]);
    let b = c2.scope(|| vec![1u8; 5 * MIB]);
    let pc = p.current();
    assert!(
        pc >= 8 * MIB && pc <= 8 * MIB + 2 * slack,
        "parent current {pc}"
    );
    assert!(
        p.peak() >= pc,
        "parent peak {} below current {pc}",
        p.peak()
    );
    drop(a);
    drop(b);
    memcg::flush();
    assert!(p.current() < slack, "{}", p.current());
    assert!(p.peak() >= 8 * MIB, "{}", p.peak());
    assert!(c1.peak() >= 3 * MIB && c1.peak() < 5 * MIB, "{}", c1.peak());
}
