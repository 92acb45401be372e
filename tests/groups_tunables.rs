//! Tunables set on the root reach every group's per-thread reserve. One
//! test per binary: tunables are process-wide.

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

mod groups_common;
use groups_common::*;

use memcg::{Group, Tunables};

/// A fresh thread enters `g` and allocates 8 bytes; `g`'s current, read
/// on that thread before it exits. Nothing else allocates in `g`.
fn current_after_one_small_allocation(g: &Group) -> usize {
    let g2 = g.clone();
    let cur = std::thread::spawn(move || {
        let _in = g2.enter();
        let b = std::hint::black_box(Box::new(7u64));
        let cur = g2.current();
        drop(b);
        cur
    })
    .join()
    .unwrap();
    assert!(cur >= 8);
    cur
}

#[test]
fn tunables_reach_group_reserves() {
    let default = memcg::tunables();
    assert_eq!(default.reserve_batch, 32 << 10, "documented default");

    let g = Group::new("tun-default-batch");
    let cur = current_after_one_small_allocation(&g);
    assert!(
        cur <= 2 * default.reserve_batch + 8,
        "default reserve: {cur}"
    );
    assert!(cur < MIB);
    assert_eq!(g.current(), 0, "an exiting thread gives its reserve back");

    let big = Tunables {
        reserve_batch: MIB,
        empty_slabs_kept: default.empty_slabs_kept + 1,
        purge_delay_ms: default.purge_delay_ms + 5,
    };
    memcg::set_tunables(big);
    assert_eq!(memcg::tunables(), big);

    let g = Group::new("tun-big-batch");
    let cur = current_after_one_small_allocation(&g);
    assert!(cur >= MIB, "a 1 MiB batch: current {cur}");
    assert!(cur <= 2 * MIB + 8, "{cur}");
    assert_eq!(g.current(), 0);

    // An existing cache on this thread picks the new batch up at its next
    // refill.
    let h = Group::new("tun-existing-cache");
    memcg::set_tunables(default);
    let keep = h.scope(|| Box::new(1u64));
    memcg::flush();
    memcg::set_tunables(big);
    let (keep2, cur) = h.scope(|| {
        let k = Box::new(2u64);
        (k, h.current())
    });
    assert!(
        cur >= MIB,
        "refill after the change uses the new batch: {cur}"
    );
    memcg::set_tunables(default);
    assert_eq!(memcg::tunables(), default);
    drop((keep, keep2));
    memcg::flush();
    assert_eq!(h.current(), 0);

    let g = Group::new("tun-back-to-default");
    let cur = current_after_one_small_allocation(&g);
    assert!(cur <= 2 * default.reserve_batch + 8, "{cur}");
}
