//! The address arithmetic every layer shares: segments of 4 MiB aligned to
//! their size, cut into 16 KiB slices whose descriptors fill the segment's
//! first slices; the header a small segment and a large block both start
//! with; and `head_of`, which finds it from any block's address.

use crate::atomic_stack::Link;

pub const SEGMENT_SHIFT: usize = 22;
pub const SEGMENT_SIZE: usize = 1 << SEGMENT_SHIFT;
pub const SLICE_SHIFT: usize = 14;
pub const SLICE_SIZE: usize = 1 << SLICE_SHIFT;
pub const SLICES: usize = SEGMENT_SIZE / SLICE_SIZE;
/// Bytes of one slice descriptor (a power of two, so `ptr -> slab` is
/// shifts and masks).
pub const DESC_SHIFT: usize = 7;
/// Slices taken by the segment header: the descriptor array, whose first
/// entries (describing the header's own slices, never slabs) hold the
/// segment's fields instead.
pub const HEADER_SLICES: usize = (SLICES << DESC_SHIFT).div_ceil(SLICE_SIZE);
/// Slices available for slabs.
pub const USABLE_SLICES: usize = SLICES - HEADER_SLICES;

/// `thread_id` of an abandoned segment (never a heap address: heaps are
/// 64-byte aligned).
pub const ABANDONED: usize = 1;

pub const KIND_SMALL: u8 = 1;
pub const KIND_LARGE: u8 = 2;

/// A free block: its first word links to the next, stored encoded (see
/// `slab::link` and `slab::next_of`).
#[repr(C)]
pub struct Block {
    pub next: usize,
}

/// The start shared by small segments and large blocks: what a free reads
/// first to tell them apart.
#[repr(C)]
pub struct SegmentHead {
    /// Link in the abandoned-segment stack.
    pub link: Link,
    pub kind: u8,
}

/// The segment (or large-block header) that `ptr` belongs to.
#[inline(always)]
pub fn head_of(ptr: *mut u8) -> *mut SegmentHead {
    // From the byte before: slab memory never starts a segment (the header
    // comes first), and a large block aligned to a segment or more keeps its
    // header a whole segment before it, so no block needs a second case.
    ((ptr as usize).wrapping_sub(1) & !(SEGMENT_SIZE - 1)) as *mut SegmentHead
}
