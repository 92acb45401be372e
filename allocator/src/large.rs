//! Large blocks: requests above the largest size class (or with alignment
//! above a page) get a mapping of their own.
//!
//! The header sits on the segment-aligned first page of the mapping and the
//! block after it, so a free finds the header with the same mask as a slab
//! (applied to the block's address less one, see `segment::head_of`).
//! Blocks aligned to a segment or more start on a segment boundary and keep
//! their header a whole segment before: the pages between are mapped but
//! never touched, as are those before any block aligned above a page.

use crate::counters;
use crate::group::{ChargeMode, GroupNode};
use crate::large_cache;
use crate::layout::{SegmentHead, KIND_LARGE, SEGMENT_SIZE};
use crate::os::{self, PAGE_SIZE};
use core::ptr::null_mut;

/// The header of a large block.
#[repr(C)]
pub struct LargeBlock {
    pub head: SegmentHead,
    /// Length of the mapping, which starts at the header.
    pub map_len: usize,
    /// From the header to the block.
    pub offset: usize,
    pub align: usize,
    /// The group charged for the block (holds a reference).
    pub node: *mut GroupNode,
    /// Bytes charged: the block's page-rounded size (the mapping may be
    /// larger: reused from the cache, or kept whole when the block shrank;
    /// the room lets it grow again in place).
    pub charged: usize,
}

fn round_page(n: usize) -> Option<usize> {
    n.checked_add(PAGE_SIZE - 1).map(|v| v & !(PAGE_SIZE - 1))
}

fn note_mapping(delta: isize) {
    counters::note_mapped(delta);
    counters::note_resident(delta);
    counters::note_active(delta);
}

/// Maps a large block (zeroed when `zero`) charged to `node` (the calling
/// thread's group) under `mode`; null when it cannot be had or a limit
/// denies it.
///
/// # Safety
/// `node` is live while the call runs.
pub unsafe fn alloc(
    size: usize,
    align: usize,
    zero: bool,
    node: *mut GroupNode,
    mode: ChargeMode,
) -> *mut u8 {
    let Some(body) = round_page(size.max(1)) else {
        return null_mut();
    };
    if body > isize::MAX as usize {
        return null_mut();
    }
    // SAFETY: the caller keeps `node` live.
    if unsafe { GroupNode::charge(node, body, false, mode) }.is_err() {
        return null_mut();
    }
    let p = map_block(body, align, zero);
    // SAFETY: `node` was just charged and is live (the thread is in it).
    unsafe {
        if p.is_null() {
            GroupNode::uncharge(node, body, false);
        } else {
            (*node).acquire();
            (*head_of_block(p)).node = node;
            (*head_of_block(p)).charged = body;
        }
    }
    p
}

fn head_of_block(p: *mut u8) -> *mut LargeBlock {
    crate::layout::head_of(p).cast()
}

/// Maps the block and writes its header (but the node).
fn map_block(body: usize, align: usize, zero: bool) -> *mut u8 {
    let (hdr, offset) = if align < SEGMENT_SIZE {
        let offset = align.max(PAGE_SIZE);
        let Some(len) = body.checked_add(offset) else {
            return null_mut();
        };
        if let Some(t) = large_cache::take(len) {
            let (reused, have) = (t.hdr, t.len);
            let b = reused.cast::<LargeBlock>();
            // SAFETY: a kept mapping is ours alone once taken; its header
            // page is mapped.
            unsafe {
                (*b).head.kind = KIND_LARGE;
                (*b).map_len = have;
                (*b).offset = offset;
                (*b).align = align;
                if zero && !t.zeroed {
                    core::ptr::write_bytes(reused.add(offset), 0, body);
                }
                return reused.add(offset);
            }
        }
        let hdr = os::map_aligned(len, SEGMENT_SIZE);
        if hdr.is_null() {
            return null_mut();
        }
        (hdr, offset)
    } else {
        let Some(total) = body
            .checked_add(align)
            .and_then(|t| t.checked_add(SEGMENT_SIZE))
        else {
            return null_mut();
        };
        let base = os::map(total);
        if base.is_null() {
            return null_mut();
        }
        let start = base as usize;
        let ptr = (start + SEGMENT_SIZE + align - 1) & !(align - 1);
        let hdr = ptr - SEGMENT_SIZE;
        let end = ptr + body;
        // SAFETY: both trimmed ranges are page-aligned parts of the fresh
        // mapping outside the kept header and block.
        unsafe {
            if hdr > start {
                os::unmap(base, hdr - start);
            }
            if start + total > end {
                os::unmap(end as *mut u8, start + total - end);
            }
        }
        (hdr as *mut u8, SEGMENT_SIZE)
    };
    let map_len = offset + body;
    let b = hdr.cast::<LargeBlock>();
    #[cfg(feature = "checks")]
    crate::ownership::set(hdr as usize, true);
    // SAFETY: the header page is ours and freshly mapped.
    unsafe {
        (*b).head.kind = KIND_LARGE;
        (*b).map_len = map_len;
        (*b).offset = offset;
        (*b).align = align;
    }
    note_mapping(map_len as isize);
    // SAFETY: offset < map_len.
    unsafe { hdr.add(offset) }
}

/// Whether `ptr` is the block of the large header `b` (and not some other
/// pointer whose header slot happens to read as large).
///
/// # Safety
/// `b` is mapped.
pub unsafe fn is_block(b: *mut LargeBlock, ptr: *mut u8) -> bool {
    // SAFETY: the caller guarantees `b` is readable.
    unsafe { b.cast::<u8>().add((*b).offset) == ptr && (*b).map_len > (*b).offset }
}

/// Usable bytes of the block: its page-rounded size, what is charged (a
/// reused mapping may hold more, kept for growth in place).
///
/// # Safety
/// `b` is the header of a live large block.
pub unsafe fn usable(b: *mut LargeBlock) -> usize {
    // SAFETY: the caller guarantees a live header.
    unsafe { (*b).charged }
}

/// Unmaps a large block.
///
/// # Safety
/// `b` is the header of a live large block, not used after this.
pub unsafe fn free(b: *mut LargeBlock) {
    // SAFETY: the caller guarantees a live header; the mapping is the
    // block's alone.
    unsafe {
        let len = (*b).map_len;
        let node = (*b).node;
        GroupNode::uncharge(node, (*b).charged, false);
        // A kept mapping is no block: a late second free of it must not
        // pass for one.
        (*b).head.kind = 0;
        if !large_cache::put(b.cast(), len) {
            #[cfg(feature = "checks")]
            crate::ownership::set(b as usize, false);
            note_mapping(-(len as isize));
            os::unmap(b.cast(), len);
        }
        GroupNode::release(node);
    }
}

/// The least tail a shrunk block gives back at any ratio (see
/// [`gives_tail_back`]).
const TAIL_BACK_MIN: usize = 1 << 20;

/// Whether a block shrunk to `new_len` bytes of its `old_len`-byte mapping
/// gives the tail back: when the block is at most a quarter of the mapping,
/// or at most half and the tail at least [`TAIL_BACK_MIN`]. A smaller tail
/// stays, as the room in a mapping reused from the cache does (up to four
/// times the block): unmapped, it would leave the freed mapping too short
/// for the size it was made for. (A program that builds a 320 KiB table and
/// a vector it shrinks to half, as `regex` does for each pattern, took the
/// table's mapping for the vector, cut it, and mapped the table afresh every
/// time: 80 page faults and three system calls a pattern.)
fn gives_tail_back(new_len: usize, old_len: usize) -> bool {
    let tail = old_len - new_len;
    new_len.saturating_mul(4) <= old_len || (new_len <= tail && tail >= TAIL_BACK_MIN)
}

/// Resizes in place or by moving the mapping (no copy); null when neither
/// works, leaving the block as it was.
///
/// # Safety
/// `b` is the header of a live large block.
pub unsafe fn realloc(b: *mut LargeBlock, new_size: usize, mode: ChargeMode) -> *mut u8 {
    // SAFETY: the caller guarantees a live header; remaps keep the contents.
    unsafe {
        let (old_len, offset, charged) = ((*b).map_len, (*b).offset, (*b).charged);
        let Some(body) = round_page(new_size.max(1)) else {
            return null_mut();
        };
        let Some(new_len) = body.checked_add(offset) else {
            return null_mut();
        };
        if new_len > isize::MAX as usize {
            return null_mut();
        }
        let hdr = b.cast::<u8>();
        let node = (*b).node;
        if body < charged {
            GroupNode::uncharge(node, charged - body, false);
            (*b).charged = body;
            if gives_tail_back(new_len, old_len) {
                os::unmap(hdr.add(new_len), old_len - new_len);
                (*b).map_len = new_len;
                note_mapping(new_len as isize - old_len as isize);
            }
            return hdr.add(offset);
        }
        // Growth is charged to the block's group, whichever group the
        // resizing thread is in.
        let grow = body - charged;
        if grow > 0 && GroupNode::charge(node, grow, false, mode).is_err() {
            return null_mut();
        }
        if new_len <= old_len {
            // Room in the mapping already.
            (*b).charged = body;
            return hdr.add(offset);
        }
        let mut nb = b;
        if !os::remap_in_place(hdr, old_len, new_len) {
            let dst = if (*b).align >= SEGMENT_SIZE {
                null_mut()
            } else {
                os::map_aligned(new_len, SEGMENT_SIZE)
            };
            if dst.is_null() {
                GroupNode::uncharge(node, grow, false);
                return null_mut();
            }
            if !os::remap_to(hdr, old_len, new_len, dst) {
                os::unmap(dst, new_len);
                GroupNode::uncharge(node, grow, false);
                return null_mut();
            }
            nb = dst.cast::<LargeBlock>();
            #[cfg(feature = "checks")]
            {
                crate::ownership::set(hdr as usize, false);
                crate::ownership::set(dst as usize, true);
            }
        }
        (*nb).map_len = new_len;
        (*nb).charged = body;
        note_mapping(new_len as isize - old_len as isize);
        nb.cast::<u8>().add(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::{gives_tail_back, TAIL_BACK_MIN};

    const KIB: usize = 1 << 10;

    #[test]
    fn a_small_tail_stays_a_quarter_or_a_large_one_goes() {
        // Half of a 320 KiB mapping: the tail is small, it stays.
        assert!(!gives_tail_back(160 * KIB, 320 * KIB));
        // A quarter or less: it goes, whatever its size.
        assert!(gives_tail_back(80 * KIB, 320 * KIB));
        assert!(!gives_tail_back(84 * KIB, 320 * KIB));
        // Half or less with a tail of at least 1 MiB: it goes.
        assert!(gives_tail_back(TAIL_BACK_MIN, 2 * TAIL_BACK_MIN));
        assert!(!gives_tail_back(TAIL_BACK_MIN + 4 * KIB, 2 * TAIL_BACK_MIN));
        // Barely smaller: it stays.
        assert!(!gives_tail_back(316 * KIB, 320 * KIB));
    }
}
