//! Blocks shrunk in place and freed with their new layout.
//!
//! A free whose layout asks for at most 1 KiB (alignment at most 1 KiB) finds
//! its slab by the block's address alone, which holds for blocks of up to
//! 2 KiB: a block shrunk in place keeps at least half its size, so a block
//! freed with such a layout is never larger. Here blocks of 1..2 KiB are
//! shrunk in place to layouts of at most 1 KiB, freed with those layouts,
//! and their memory must come back whole: every block reusable, no block
//! handed out twice, and the live-bytes figure back where it started.
//!
//! No test harness (`harness = false`): the allocator-wide live-bytes figure
//! must not see the harness's own threads allocating meanwhile.

use std::alloc::{GlobalAlloc, Layout};
use std::collections::HashSet;

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

const BLOCKS: usize = 300;

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

fn main() {
    blocks_shrunk_in_place_below_1_kib_free_with_their_new_layout();
    println!("blocks_shrunk_in_place_below_1_kib_free_with_their_new_layout ... ok");
}

fn blocks_shrunk_in_place_below_1_kib_free_with_their_new_layout() {
    memcg::flush();
    let before = memcg::alloc_stats().allocated;
    for size in (1025..=2048).step_by(61) {
        let big = layout(size);
        let mut blocks = Vec::with_capacity(BLOCKS);
        for i in 0..BLOCKS {
            // SAFETY: non-zero size; each block is freed once below.
            unsafe {
                let p = GLOBAL.alloc(big);
                assert!(!p.is_null());
                let usable = memcg::usable_size(p);
                // The smallest size that stays in place, capped at 1 KiB.
                let small = usable.div_ceil(2).min(1024);
                let q = GLOBAL.realloc(p, big, small);
                assert_eq!(q, p, "{size} -> {small} moved");
                std::ptr::write_bytes(q, (i % 251) as u8, small);
                blocks.push((q, small));
            }
        }
        for (i, &(p, small)) in blocks.iter().enumerate() {
            // SAFETY: live blocks of `small` bytes, written above.
            unsafe {
                let bytes = std::slice::from_raw_parts(p, small);
                assert!(bytes.iter().all(|&b| b == (i % 251) as u8));
                GLOBAL.dealloc(p, layout(small));
            }
        }
        // Every block comes back, once each.
        let again: Vec<*mut u8> = (0..BLOCKS)
            // SAFETY: non-zero size.
            .map(|_| unsafe { GLOBAL.alloc(big) })
            .collect();
        let distinct: HashSet<usize> = again.iter().map(|&p| p as usize).collect();
        assert_eq!(distinct.len(), BLOCKS);
        for p in again {
            // SAFETY: allocated just above with `big`.
            unsafe { GLOBAL.dealloc(p, big) };
        }
    }
    memcg::flush();
    assert_eq!(memcg::alloc_stats().allocated, before);
}
