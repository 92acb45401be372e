//! `memcg::alloc_stats()` sanity. Figures are compared as deltas from a starting point,
//! with tolerances, because the test harness and the runtime allocate too.
//!
//! The tests in this file take a lock so that they do not disturb each other's deltas.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::Mutex;

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

const MIB: usize = 1 << 20;
/// Slack for allocations made by the harness or other threads and for slab granularity.
const SLACK: usize = 4 * MIB;
/// Slack for frees by the harness's other threads while this test allocates.
const NOISE: usize = 256 << 10;

static SERIAL: Mutex<()> = Mutex::new(());

fn mib(bytes: usize) -> f64 {
    bytes as f64 / MIB as f64
}

fn show(label: &str, s: memcg::AllocStats) {
    println!(
        "{label:>14}: allocated {:8.2} MiB  active {:8.2} MiB  resident {:8.2} MiB  mapped {:8.2} MiB",
        mib(s.allocated),
        mib(s.active),
        mib(s.resident),
        mib(s.mapped)
    );
}

/// Orderings that hold at every moment.
fn check_invariants(label: &str, s: memcg::AllocStats) {
    assert!(
        s.active >= s.allocated,
        "{label}: active {} < allocated {}",
        s.active,
        s.allocated
    );
    assert!(
        s.mapped >= s.resident,
        "{label}: mapped {} < resident {}",
        s.mapped,
        s.resident
    );
    assert!(
        s.mapped >= s.active,
        "{label}: mapped {} < active {}",
        s.mapped,
        s.active
    );
}

/// Allocates `total` bytes in blocks of `block`, touching every block; frees them and
/// purges; checks the figures at each step.
fn grow_and_shrink(block: usize, total: usize, align: usize) {
    let layout = Layout::from_size_align(block, align).unwrap();
    let count = total / block;
    let mut ptrs: Vec<*mut u8> = Vec::with_capacity(count);

    memcg::purge();
    let s0 = memcg::alloc_stats();
    show("start", s0);
    check_invariants("start", s0);

    for i in 0..count {
        // SAFETY: non-zero size.
        let p = unsafe { GLOBAL.alloc(layout) };
        assert!(!p.is_null(), "alloc({layout:?}) returned null");
        // SAFETY: `p` is live with `block` writable bytes; every page gets written.
        unsafe { std::ptr::write_bytes(p, i as u8, block) };
        ptrs.push(p);
    }
    let s1 = memcg::alloc_stats();
    show("peak", s1);
    check_invariants("peak", s1);

    let d_allocated = s1.allocated.saturating_sub(s0.allocated);
    let d_active = s1.active.saturating_sub(s0.active);
    let d_resident = s1.resident.saturating_sub(s0.resident);
    let d_mapped = s1.mapped.saturating_sub(s0.mapped);
    println!(
        "{:>14}: allocated +{:.2} MiB  active +{:.2} MiB  resident +{:.2} MiB  mapped +{:.2} MiB",
        "growth",
        mib(d_allocated),
        mib(d_active),
        mib(d_resident),
        mib(d_mapped)
    );
    assert!(
        d_allocated + NOISE >= total,
        "allocated grew by {d_allocated} bytes after allocating {total}"
    );
    // Live blocks may first fill slabs that were already active, hence the slack.
    assert!(
        d_active + SLACK >= d_allocated,
        "active grew by {d_active} bytes, less than allocated ({d_allocated})"
    );
    // Every live byte was written, so it is resident (a few MiB may have been resident
    // already in cached empty slabs).
    assert!(
        d_resident + SLACK >= total,
        "resident grew by only {d_resident} bytes for {total} written bytes"
    );

    for p in ptrs.drain(..) {
        // SAFETY: allocated above with `layout`, freed once.
        unsafe { GLOBAL.dealloc(p, layout) };
    }
    let s2 = memcg::alloc_stats();
    show("freed", s2);
    check_invariants("freed", s2);
    memcg::purge();
    let s3 = memcg::alloc_stats();
    show("purged", s3);
    check_invariants("purged", s3);

    assert!(
        s2.allocated <= s0.allocated + SLACK,
        "allocated {} did not come back near the start ({}) after freeing",
        s2.allocated,
        s0.allocated
    );
    assert!(
        s3.resident <= s0.resident + SLACK,
        "resident {:.2} MiB after free + purge, started at {:.2} MiB",
        mib(s3.resident),
        mib(s0.resident)
    );
    assert!(
        s3.active <= s0.active + SLACK,
        "active {:.2} MiB after free + purge, started at {:.2} MiB",
        mib(s3.active),
        mib(s0.active)
    );
}

#[test]
fn small_blocks_64_mib_in_1_kib() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    grow_and_shrink(1024, 64 * MIB, 8);
}

#[test]
fn large_blocks_64_mib_in_4_mib() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    grow_and_shrink(4 * MIB, 64 * MIB, 4096);
}

#[test]
fn odd_sized_blocks_are_counted_at_least_at_their_size() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    grow_and_shrink(1000, 32 * MIB, 1);
    grow_and_shrink(24_577, 32 * MIB, 16);
}
