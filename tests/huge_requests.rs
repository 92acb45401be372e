//! Requests that cannot be satisfied must return null (or `Err` from `try_reserve`)
//! without crashing, and must leave the allocator and existing blocks intact. Very large
//! alignments either fail cleanly or are honoured; 1 GiB alignment must work.

use std::alloc::{GlobalAlloc, Layout};

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

/// The largest size a `Layout` with this alignment accepts.
fn largest_size(align: usize) -> usize {
    isize::MAX as usize - (align - 1)
}

/// A small allocation still works (the allocator was not left in a bad state).
fn still_works() {
    let v: Vec<u64> = (0..1000).collect();
    assert_eq!(v.iter().sum::<u64>(), 999 * 1000 / 2);
    let s = "x".repeat(100_000);
    assert_eq!(s.len(), 100_000);
}

#[test]
fn largest_valid_layouts_return_null() {
    for align in [1usize, 8, 16, 4096, 1 << 20, 1 << 30] {
        let size = largest_size(align);
        let layout = Layout::from_size_align(size, align).expect("largest valid layout");
        assert!(
            Layout::from_size_align(size + 1, align).is_err(),
            "size {size} + 1 should be too big for align {align}"
        );
        for request in [size, size / 2 + 1, 1usize << 62] {
            let layout = if request == size {
                layout
            } else {
                Layout::from_size_align(request, align).unwrap()
            };
            // SAFETY: non-zero size; a non-null result would be freed below.
            let p = unsafe { GLOBAL.alloc(layout) };
            // SAFETY: as above.
            let z = unsafe { GLOBAL.alloc_zeroed(layout) };
            for (what, ptr) in [("alloc", p), ("alloc_zeroed", z)] {
                if !ptr.is_null() {
                    // SAFETY: returned by GLOBAL for `layout`, freed once.
                    unsafe { GLOBAL.dealloc(ptr, layout) };
                }
                assert!(
                    ptr.is_null(),
                    "{what}({layout:?}) returned non-null {ptr:p}"
                );
            }
        }
    }
    still_works();
}

#[test]
fn try_reserve_of_impossible_sizes_is_err() {
    let mut v: Vec<u8> = Vec::new();
    assert!(v.try_reserve(isize::MAX as usize).is_err());
    assert!(v.try_reserve(usize::MAX).is_err());
    assert!(v.try_reserve_exact(isize::MAX as usize).is_err());
    // 64 TiB: a valid layout, but more than this machine can back.
    let r = v.try_reserve(1 << 46);
    assert!(
        r.is_err(),
        "try_reserve(64 TiB) succeeded (capacity {})",
        v.capacity()
    );
    assert_eq!(v.capacity(), 0);

    // A vector that already holds data keeps it when a huge growth fails.
    let mut w: Vec<u32> = (0..1000).collect();
    assert!(w.try_reserve(isize::MAX as usize / 4).is_err());
    assert!(w.try_reserve(1 << 44).is_err());
    assert!(w.iter().copied().eq(0..1000));
    w.push(1000);
    assert_eq!(w.len(), 1001);
    still_works();
}

#[test]
fn alignment_of_2_pow_40_fails_cleanly_or_is_honoured() {
    let align = 1usize << 40;
    let layout = Layout::from_size_align(8, align).unwrap();
    // SAFETY: non-zero size.
    let p = unsafe { GLOBAL.alloc(layout) };
    if p.is_null() {
        println!("align 2^40: null (accepted)");
    } else {
        assert_eq!(p as usize % align, 0, "align 2^40 not honoured: {p:p}");
        // SAFETY: `p` is live with 8 writable bytes, aligned to 2^40 (so to u64).
        unsafe {
            p.cast::<u64>().write(0x0123_4567_89AB_CDEF);
            assert_eq!(p.cast::<u64>().read(), 0x0123_4567_89AB_CDEF);
        }
        println!("align 2^40: {p:p}");
        // SAFETY: returned by GLOBAL for `layout`, freed once.
        unsafe { GLOBAL.dealloc(p, layout) };
    }
    still_works();
}

#[test]
fn alignment_of_1_gib_succeeds() {
    let align = 1usize << 30;
    for size in [64usize, 4096, 3 << 20] {
        let layout = Layout::from_size_align(size, align).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { GLOBAL.alloc(layout) };
        assert!(!p.is_null(), "alloc({layout:?}) returned null");
        assert_eq!(p as usize % align, 0, "1 GiB alignment not honoured: {p:p}");
        // SAFETY: `p` is live with `size` writable bytes.
        unsafe {
            std::ptr::write_bytes(p, 0x11, size);
            assert_eq!(p.add(size - 1).read(), 0x11);
            GLOBAL.dealloc(p, layout);
        }
    }
    still_works();
}

#[test]
fn failed_realloc_leaves_the_block_intact() {
    for (size, align) in [
        (1usize, 1usize),
        (64, 8),
        (3000, 16),
        (100_000, 64),
        (3 << 20, 4096),
    ] {
        let layout = Layout::from_size_align(size, align).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { GLOBAL.alloc(layout) };
        assert!(!p.is_null());
        let pattern = |i: usize| (i.wrapping_mul(31) ^ (i >> 8) ^ size) as u8;
        for i in 0..size {
            // SAFETY: `i < size`, inside the live block.
            unsafe { p.add(i).write(pattern(i)) };
        }
        for new_size in [largest_size(align), isize::MAX as usize / 2, 1 << 50] {
            // SAFETY: `p` is live and was allocated by GLOBAL with `layout`; `new_size` is
            // non-zero and, rounded up to `align`, does not overflow isize.
            let q = unsafe { GLOBAL.realloc(p, layout, new_size) };
            if !q.is_null() {
                // SAFETY: the realloc succeeded, so `q` owns the block now; free it.
                unsafe { GLOBAL.dealloc(q, Layout::from_size_align(new_size, align).unwrap()) };
                panic!("realloc({size} -> {new_size}, align {align}) returned non-null {q:p}");
            }
            for i in 0..size {
                // SAFETY: the failed realloc left `p` live and unchanged.
                let got = unsafe { p.add(i).read() };
                assert_eq!(
                    got,
                    pattern(i),
                    "byte {i} of the {size}-byte block changed after a failed realloc to {new_size}"
                );
            }
        }
        // The block can still grow normally, and then be freed.
        // SAFETY: `p` is live with `layout`; `2 * size` is a valid size.
        let q = unsafe { GLOBAL.realloc(p, layout, 2 * size) };
        assert!(!q.is_null());
        for i in 0..size {
            // SAFETY: the first `size` bytes of `q` were moved from `p`.
            assert_eq!(unsafe { q.add(i).read() }, pattern(i));
        }
        // SAFETY: `q` is live with size `2 * size` and alignment `align`.
        unsafe { GLOBAL.dealloc(q, Layout::from_size_align(2 * size, align).unwrap()) };
    }
    still_works();
}
