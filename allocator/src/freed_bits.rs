//! Freed-block bitmaps: a block freed into a slab that is not its cache's
//! allocation head is marked here, in the segment header, instead of being
//! linked onto the slab's free list. Linking writes the block's first word,
//! and such a block is often cold (a value of a large map, freed without
//! being read): the write costs a cache miss the program never asked for.
//! Marking writes one bit in a dense array that a run of frees shares. The
//! marks become free-list links when the slab next hands out blocks (see
//! `slab::take_freed`), at a time the blocks are about to be written anyway.
//!
//! Each slice has [`FREED_BITS_BYTES_PER_SLICE`] bytes of bitmap, one bit
//! per 16 bytes of slice; a slab of several slices uses the bitmaps of all
//! of them, which lie back to back. Only this module knows the placement.

use crate::layout::{DESC_SHIFT, FREED_BITS_BYTES_PER_SLICE, FREED_BITS_OFFSET, SEGMENT_SIZE};

/// Blocks a slab of `slices` slices can have and still be tracked here.
#[inline(always)]
pub const fn max_blocks(slices: usize) -> usize {
    slices * FREED_BITS_BYTES_PER_SLICE * 8
}

/// The bitmap of the slab whose descriptor is at `desc`.
///
/// # Safety
/// `desc` is the descriptor of a span's first slice in a live segment.
#[inline(always)]
pub unsafe fn of(desc: usize) -> *mut u64 {
    let seg = desc & !(SEGMENT_SIZE - 1);
    let slice = (desc - seg) >> DESC_SHIFT;
    (seg + FREED_BITS_OFFSET + slice * FREED_BITS_BYTES_PER_SLICE) as *mut u64
}

/// Sets bit `i`; false (nothing changed) when it was set already.
///
/// # Safety
/// `bits` is a slab's bitmap and `i` below its [`max_blocks`]; owner
/// thread only.
#[inline(always)]
pub unsafe fn set(bits: *mut u64, i: usize) -> bool {
    // SAFETY: the caller keeps `i` inside the slab's bitmap.
    unsafe {
        let w = bits.add(i / 64);
        let m = 1u64 << (i % 64);
        if *w & m != 0 {
            return false;
        }
        *w |= m;
        true
    }
}

/// Whether bit `i` is set (the `checks` feature's double-free test).
///
/// # Safety
/// As for [`set`].
#[cfg(feature = "checks")]
#[inline(always)]
pub unsafe fn get(bits: *mut u64, i: usize) -> bool {
    // SAFETY: the caller keeps `i` inside the slab's bitmap.
    unsafe { *bits.add(i / 64) & (1u64 << (i % 64)) != 0 }
}

/// Clears the bitmap's first `blocks` bits, calling `f` with the index of
/// each bit that was set, highest first.
///
/// # Safety
/// As for [`set`], with `blocks` at most the slab's [`max_blocks`].
#[inline(always)]
pub unsafe fn take_all(bits: *mut u64, blocks: usize, mut f: impl FnMut(usize)) {
    // SAFETY: the caller keeps `blocks` inside the slab's bitmap.
    unsafe {
        for wi in (0..blocks.div_ceil(64)).rev() {
            let w = bits.add(wi);
            let mut v = *w;
            if v == 0 {
                continue;
            }
            *w = 0;
            while v != 0 {
                let bit = 63 - v.leading_zeros() as usize;
                v &= !(1u64 << bit);
                f(wi * 64 + bit);
            }
        }
    }
}
