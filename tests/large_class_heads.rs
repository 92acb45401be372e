//! A vector grown by doubling passes through each size class above 8 KiB
//! once, leaving each class an empty slab kept as its allocation head.
//! Those heads hold room for 2 blocks, not 8: one block of each class from
//! 10 KiB to 128 KiB (780 KiB in all) leaves about 1.6 MiB of slabs in use,
//! not about 4.7 MiB. A test binary of its own: the figure is the
//! process's.

use std::alloc::{GlobalAlloc, Layout};

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

const KIB: usize = 1 << 10;

#[test]
fn a_block_through_each_large_class_leaves_small_heads() {
    // A fresh thread: its caches hold no slab of these classes yet.
    let grown = std::thread::spawn(|| {
        let before = memcg::alloc_stats().active;
        let sizes = [
            10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128,
        ];
        for kib in sizes {
            let l = Layout::from_size_align(kib * KIB, 8).expect("a valid layout");
            // SAFETY: a non-zero size; freed once with its layout.
            unsafe {
                let p = GLOBAL.alloc(l);
                assert!(!p.is_null());
                p.write_bytes(1, l.size());
                GLOBAL.dealloc(p, l);
            }
        }
        memcg::alloc_stats().active.saturating_sub(before)
    })
    .join()
    .expect("the thread ran");
    assert!(
        grown < 2560 * KIB,
        "{} KiB of slabs stayed in use for 780 KiB of blocks, all freed",
        grown / KIB
    );
}
