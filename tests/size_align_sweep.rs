//! A sweep over sizes (1 byte to 64 MiB) and power-of-two alignments (1 byte to 1 GiB).
//!
//! For every (size, align) pair, through both `alloc` and `alloc_zeroed`: the pointer is
//! non-null and aligned, `usable_size` is at least the requested size, the full requested
//! size can be written and read back, and `alloc_zeroed` memory reads as zero (every byte
//! up to 1 MiB, one byte per 4 KiB page and the last byte above).
//!
//! Then dirty-then-reuse: memory filled with 0xAB and freed must come back zeroed from
//! `alloc_zeroed`, for the same layout and for a slightly smaller size.
//!
//! Failures are collected and reported together, so one run shows every broken pair.

use std::alloc::{GlobalAlloc, Layout};

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
const MAX_SIZE: usize = 64 * MIB;
/// Above this size `alloc_zeroed` memory is sampled rather than read in full.
const FULL_CHECK_LIMIT: usize = MIB;
const PAGE: usize = 4 * KIB;

/// Sizes: 1..=64, 2^k - 1, 2^k, 2^k + 1, 3 * 2^k (+1), and primes, up to 64 MiB.
fn all_sizes() -> Vec<usize> {
    let mut v: Vec<usize> = (1..=64).collect();
    for k in 0..=26 {
        let p = 1usize << k;
        v.extend([p - 1, p, p + 1]);
        v.extend([3 * p, 3 * p + 1]);
    }
    v.extend([
        97, 251, 509, 1021, 2039, 4093, 8191, 16_381, 65_521, 131_071, 1_048_573, 4_194_301,
        16_777_213, 67_108_859,
    ]);
    v.retain(|&s| (1..=MAX_SIZE).contains(&s));
    v.sort_unstable();
    v.dedup();
    v
}

/// The smaller set used with alignments above one page.
fn sizes_for_big_align(align: usize) -> Vec<usize> {
    let mut v = vec![
        1,
        8,
        17,
        100,
        1000,
        PAGE - 1,
        PAGE,
        PAGE + 1,
        64 * KIB + 1,
        MIB + 1,
    ];
    if align <= 32 * MIB {
        v.extend([align - 1, align, align + 1, 3 * MIB]);
    } else {
        v.push(2 * MIB + 3);
    }
    v.retain(|&s| s <= MAX_SIZE);
    v.sort_unstable();
    v.dedup();
    v
}

struct Failures(Vec<String>);

impl Failures {
    fn push(&mut self, msg: String) {
        if self.0.len() < 10_000 {
            self.0.push(msg);
        }
    }
    fn assert_none(self, what: &str) {
        if self.0.is_empty() {
            return;
        }
        let shown: Vec<&str> = self.0.iter().take(40).map(String::as_str).collect();
        panic!(
            "{what}: {} failures (first {} shown):\n  {}",
            self.0.len(),
            shown.len(),
            shown.join("\n  ")
        );
    }
}

/// Offset of the first non-zero byte, comparing a page at a time (fast in debug builds).
fn first_nonzero(bytes: &[u8]) -> Option<usize> {
    static ZERO: [u8; PAGE] = [0; PAGE];
    for (c, chunk) in bytes.chunks(PAGE).enumerate() {
        if chunk != &ZERO[..chunk.len()] {
            let i = chunk.iter().position(|&x| x != 0).unwrap_or(0);
            return Some(c * PAGE + i);
        }
    }
    None
}

/// Checks `alloc_zeroed` memory: all bytes when small, one per page plus the last when large.
///
/// # Safety
/// `p` must be valid for reads of `size` bytes.
unsafe fn zero_violation(p: *const u8, size: usize) -> Option<usize> {
    if size <= FULL_CHECK_LIMIT {
        // SAFETY: `size` readable bytes at `p` (caller); alloc_zeroed initialised them.
        let bytes = unsafe { std::slice::from_raw_parts(p, size) };
        return first_nonzero(bytes);
    }
    let mut off = 0;
    while off < size {
        // SAFETY: `off < size`, inside the readable range.
        if unsafe { p.add(off).read() } != 0 {
            return Some(off);
        }
        off += PAGE;
    }
    // SAFETY: `size - 1 < size`.
    if unsafe { p.add(size - 1).read() } != 0 {
        return Some(size - 1);
    }
    None
}

/// One allocation through `alloc` (zeroed = false) or `alloc_zeroed`, checked and freed.
fn check_one(size: usize, align: usize, zeroed: bool, fails: &mut Failures) {
    let layout = Layout::from_size_align(size, align).expect("valid layout");
    let how = if zeroed { "alloc_zeroed" } else { "alloc" };
    let p = if zeroed {
        // SAFETY: `size >= 1`.
        unsafe { GLOBAL.alloc_zeroed(layout) }
    } else {
        // SAFETY: `size >= 1`.
        unsafe { GLOBAL.alloc(layout) }
    };
    if p.is_null() {
        fails.push(format!("{how}(size {size}, align {align}) returned null"));
        return;
    }
    if p as usize % align != 0 {
        fails.push(format!(
            "{how}(size {size}, align {align}) misaligned: {p:p}"
        ));
    }
    // SAFETY: `p` is a live block returned by the global SlabAlloc.
    let usable = unsafe { memcg::usable_size(p) };
    if usable < size {
        fails.push(format!(
            "{how}(size {size}, align {align}): usable_size {usable} < size"
        ));
    }
    if zeroed {
        // SAFETY: `p` is live with `size` bytes.
        if let Some(off) = unsafe { zero_violation(p, size) } {
            fails.push(format!(
                "alloc_zeroed(size {size}, align {align}): byte {off} not zero"
            ));
        }
    }
    let fill = if zeroed { 0xC3 } else { 0x5A };
    // SAFETY: `p` is live with `size` writable bytes.
    unsafe { std::ptr::write_bytes(p, fill, size) };
    for off in [0, size / 2, size - 1] {
        // SAFETY: `off < size`.
        let got = unsafe { p.add(off).read() };
        if got != fill {
            fails.push(format!(
                "{how}(size {size}, align {align}): byte {off} reads {got:#x} after writing {fill:#x}"
            ));
        }
    }
    // SAFETY: `p` was returned by GLOBAL for `layout` and is freed once.
    unsafe { GLOBAL.dealloc(p, layout) };
}

fn sweep(aligns: impl Iterator<Item = usize>, sizes: impl Fn(usize) -> Vec<usize>, what: &str) {
    let mut fails = Failures(Vec::new());
    let mut pairs = 0;
    for align in aligns {
        for size in sizes(align) {
            check_one(size, align, false, &mut fails);
            check_one(size, align, true, &mut fails);
            pairs += 1;
        }
    }
    println!(
        "{what}: {pairs} (size, align) pairs, {} failures",
        fails.0.len()
    );
    fails.assert_none(what);
}

#[test]
fn sweep_alignments_up_to_a_page() {
    // Sizes above 4 MiB cost page faults, not allocator work: they are swept with three
    // alignments only, which keeps the test at a few seconds.
    let sizes = all_sizes();
    sweep(
        (0..=12).map(|k| 1usize << k),
        |align| {
            if [1, 16, PAGE].contains(&align) {
                sizes.clone()
            } else {
                sizes.iter().copied().filter(|&s| s <= 4 * MIB).collect()
            }
        },
        "alignments 1..=4096",
    );
}

#[test]
fn sweep_alignments_above_a_page() {
    // 8 KiB ..= 1 GiB.
    sweep(
        (13..=30).map(|k| 1usize << k),
        sizes_for_big_align,
        "alignments 8 KiB..=1 GiB",
    );
}

/// Fill with 0xAB, free, then `alloc_zeroed` the same layout (and a slightly smaller size
/// of the same alignment) many times: recycled memory must read as zero every time.
#[test]
fn alloc_zeroed_clears_recycled_memory() {
    let layouts = [
        (1, 1),
        (8, 8),
        (24, 8),
        (100, 4),
        (1000, 8),
        (2048, 64),
        (4096, 4096),
        (40_000, 16),
        (300_000, 64),
        (3 * MIB, 4096),
    ];
    let mut fails = Failures(Vec::new());
    for (size, align) in layouts {
        let count = (16 * MIB / size).clamp(2, 16);
        let rounds = if size > MIB { 10 } else { 50 };
        let dirty = Layout::from_size_align(size, align).unwrap();
        let smaller = Layout::from_size_align(size - size / 4, align).unwrap();
        for round in 0..rounds {
            for zl in [dirty, smaller] {
                let mut blocks = Vec::with_capacity(count);
                for _ in 0..count {
                    // SAFETY: non-zero size.
                    let p = unsafe { GLOBAL.alloc(dirty) };
                    assert!(!p.is_null(), "alloc({dirty:?}) returned null");
                    // SAFETY: `p` is live with `size` writable bytes.
                    unsafe { std::ptr::write_bytes(p, 0xAB, size) };
                    blocks.push(p);
                }
                for p in blocks.drain(..) {
                    // SAFETY: allocated above with `dirty`, freed once.
                    unsafe { GLOBAL.dealloc(p, dirty) };
                }
                for _ in 0..count {
                    // SAFETY: non-zero size.
                    let p = unsafe { GLOBAL.alloc_zeroed(zl) };
                    assert!(!p.is_null(), "alloc_zeroed({zl:?}) returned null");
                    // SAFETY: `p` is live with `zl.size()` readable bytes.
                    let bytes = unsafe { std::slice::from_raw_parts(p, zl.size()) };
                    if let Some(off) = first_nonzero(bytes) {
                        fails.push(format!(
                            "round {round}: alloc_zeroed({zl:?}) after freeing dirty {dirty:?}: byte {off} is {:#x}",
                            bytes[off]
                        ));
                    }
                    // Dirty it again so the next alloc_zeroed meets dirty memory.
                    // SAFETY: `p` is live with `zl.size()` writable bytes.
                    unsafe { std::ptr::write_bytes(p, 0xAB, zl.size()) };
                    blocks.push(p);
                }
                for p in blocks.drain(..) {
                    // SAFETY: allocated above with `zl`, freed once.
                    unsafe { GLOBAL.dealloc(p, zl) };
                }
            }
        }
    }
    fails.assert_none("alloc_zeroed after dirty free");
}
