//! Blocks freed by another thread come back to their owner: handed out
//! again (whole, and never twice at once), and given back to the system
//! when `flush` and `purge` run, even those the owner keeps as addresses
//! for reuse (its magazines).
//!
//! The tests take a lock so that their statistics deltas do not mix.

use std::alloc::{alloc, dealloc, GlobalAlloc, Layout};
use std::collections::HashSet;
use std::sync::Mutex;

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

static SERIAL: Mutex<()> = Mutex::new(());

const MIB: usize = 1 << 20;

/// Addresses sent to another thread, which frees them there.
struct Sent(Vec<usize>);

fn free_elsewhere(blocks: Sent, layout: Layout) {
    std::thread::spawn(move || {
        for p in blocks.0 {
            // SAFETY: each address came from `alloc(layout)` on the test
            // thread and is freed once.
            unsafe { dealloc(p as *mut u8, layout) };
        }
    })
    .join()
    .unwrap();
}

#[test]
fn remotely_freed_blocks_are_handed_out_again_whole() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let layout = Layout::from_size_align(200, 8).unwrap();
    for round in 0..20u8 {
        let first: Vec<usize> = (0..500)
            // SAFETY: a non-zero size.
            .map(|_| unsafe { alloc(layout) } as usize)
            .collect();
        assert!(first.iter().all(|&p| p != 0));
        let freed: HashSet<usize> = first.iter().copied().collect();
        free_elsewhere(Sent(first), layout);
        // The owner's next allocations take the blocks back (the frees
        // were sent when the other thread exited).
        let again: Vec<usize> = (0..500)
            // SAFETY: a non-zero size.
            .map(|_| unsafe { alloc(layout) } as usize)
            .collect();
        let distinct: HashSet<usize> = again.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            again.len(),
            "round {round}: a block handed out twice"
        );
        let reused = again.iter().filter(|p| freed.contains(p)).count();
        assert!(
            reused >= 250,
            "round {round}: only {reused} of 500 freed blocks reused"
        );
        // Every block is whole: fill each with its own byte, then check.
        for (i, &p) in again.iter().enumerate() {
            // SAFETY: `p` is a live block of 200 bytes.
            unsafe { std::ptr::write_bytes(p as *mut u8, (i as u8) ^ round, 200) };
        }
        for (i, &p) in again.iter().enumerate() {
            // SAFETY: as above; read back what was written.
            let s = unsafe { std::slice::from_raw_parts(p as *const u8, 200) };
            assert!(
                s.iter().all(|&b| b == (i as u8) ^ round),
                "round {round}: block {i} overwritten"
            );
        }
        for p in again {
            // SAFETY: allocated above with `layout`, freed once.
            unsafe { dealloc(p as *mut u8, layout) };
        }
    }
}

#[test]
fn flush_and_purge_give_back_slabs_emptied_by_remote_frees() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    memcg::flush();
    memcg::purge();
    let before = memcg::alloc_stats();
    let layout = Layout::from_size_align(256, 8).unwrap();
    // 2 MiB: one segment's worth of slabs, so the owner looks at the
    // blocks freed last first.
    let count = 2 * MIB / 256;
    let blocks: Vec<usize> = (0..count)
        // SAFETY: a non-zero size.
        .map(|_| unsafe { GLOBAL.alloc(layout) } as usize)
        .collect();
    assert!(blocks.iter().all(|&p| p != 0));
    let grown = memcg::alloc_stats();
    assert!(
        grown.active >= before.active + 3 * MIB / 2,
        "active grew by only {} bytes",
        grown.active - before.active
    );
    // One block of every 256 is freed last, so the blocks the owner looks
    // at first are spread over all the slabs: kept back, any of them
    // would hold its slab.
    let spread = |i: &usize| i % 256 == 0;
    let order: Vec<usize> = (0..count)
        .filter(|i| !spread(i))
        .chain((0..count).filter(spread))
        .map(|i| blocks[i])
        .collect();
    std::thread::spawn(move || {
        for p in order {
            // SAFETY: each address came from `GLOBAL.alloc(layout)` and is
            // freed once.
            unsafe { GLOBAL.dealloc(p as *mut u8, layout) };
        }
    })
    .join()
    .unwrap();
    memcg::flush();
    memcg::purge();
    let after = memcg::alloc_stats();
    assert!(
        after.active <= before.active + MIB,
        "active {} after, {} before: slabs emptied by remote frees stayed",
        after.active,
        before.active
    );
}
