//! One slab: a span of slices cut into blocks of one size class, with a local
//! free list (owner thread only) and an atomic list of remote frees.

use crate::group::GroupNode;
use crate::meta_pool::MetaPool;
use crate::os::PAGE_SIZE;
use crate::segment::{Block, Slab, DESC_SHIFT, LIST_PARTIAL, SEGMENT_SIZE, SLICE_SIZE};
use crate::size_class::class_size;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Process-wide secret mixed into every slab's free-list key.
static SECRET: AtomicUsize = AtomicUsize::new(0);

/// Picks the free-list secret (once, before the first slab exists).
pub fn init_secret() {
    if SECRET.load(Ordering::Relaxed) != 0 {
        return;
    }
    let mut v: usize = 0;
    // SAFETY: getrandom writes at most the given length into `v`.
    let got = unsafe {
        libc::getrandom(
            (&raw mut v).cast(),
            core::mem::size_of::<usize>(),
            libc::GRND_NONBLOCK,
        )
    };
    if got != core::mem::size_of::<usize>() as isize {
        v = (crate::os::now_ms() as usize).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (&raw const v as usize);
    }
    let _ = SECRET.compare_exchange(0, v | 1, Ordering::Relaxed, Ordering::Relaxed);
}

/// Stores a free-list link: the next block's address XOR the slab's key,
/// so a buffer overflow or a use after free that reads or writes a free
/// block's first word does not see or plant a plain pointer.
#[inline(always)]
pub unsafe fn link(s: *mut Slab, b: *mut Block, next: *mut Block) {
    // SAFETY: the caller passes a free block of slab `s`.
    unsafe { (*b).next = next as usize ^ (*s).key };
}

/// Reads a free-list link written by [`link`].
#[inline(always)]
pub unsafe fn next_of(s: *mut Slab, b: *mut Block) -> *mut Block {
    // SAFETY: the caller passes a free block of slab `s`.
    unsafe { ((*b).next ^ (*s).key) as *mut Block }
}

/// A slab of a class of at most [`ALIGNED_MAX_BLOCK`] bytes spans at most
/// this many slices and starts at a multiple of it (see
/// `segment::aligned_slab_of`).
pub const ALIGNED_SLICES: usize = 4;

/// The largest block size of the classes with aligned slabs: twice the
/// largest request a layout can name for them, since a block shrunk in
/// place keeps at least half its size.
pub const ALIGNED_MAX_BLOCK: usize = 2 * crate::size_class::SMALL_LOOKUP_MAX;

// Their slabs never need more: room for 8 blocks fits one slice, and
// growth stops at ALIGNED_SLICES.
const _: () = assert!(ALIGNED_MAX_BLOCK * 8 <= SLICE_SIZE);

/// The slice multiple a slab of `class` starts at: [`ALIGNED_SLICES`] for
/// the classes with aligned slabs, else 1.
pub fn span_align(class: usize) -> usize {
    if class_size(class) <= ALIGNED_MAX_BLOCK {
        ALIGNED_SLICES
    } else {
        1
    }
}

/// Most slices a slab spans.
const MAX_SLAB_SLICES: usize = 32;

/// How many slices the next slab of `class` spans when its cache already
/// holds `live` slabs of it: small first (one slice for small blocks), then
/// doubling while demand lasts, so a group that allocates little wastes
/// little and a busy one gets fewer, larger slabs. Always room for 8 blocks
/// (4 for the largest classes).
pub fn slices_for(class: usize, live: u32) -> usize {
    let size = class_size(class);
    let min_for_blocks = (size * 8).div_ceil(SLICE_SIZE);
    let growth = 1usize << live.min(ALIGNED_SLICES.trailing_zeros());
    growth.max(min_for_blocks).min(MAX_SLAB_SLICES)
}

/// Owner-tag arrays: one pool per power of two from 64 bytes (16 tags) to
/// 32 KiB (8,192 tags, the most any shared slab has).
const TAG_POOLS: usize = 10;
static TAG_POOL: [MetaPool; TAG_POOLS] = {
    let mut pools = [const { MetaPool::new(64) }; TAG_POOLS];
    let mut k = 0;
    while k < TAG_POOLS {
        pools[k] = MetaPool::new(64 << k);
        k += 1;
    }
    pools
};

/// The pool for a slab of `capacity` blocks, if any is large enough.
fn tag_pool(capacity: u32) -> Option<&'static MetaPool> {
    let bytes = (capacity as usize * 4).max(64).next_power_of_two();
    TAG_POOL.get((bytes / 64).trailing_zeros() as usize)
}

/// The index of block `b` in slab `s`.
#[inline(always)]
pub unsafe fn block_index(s: *mut Slab, b: *mut u8) -> usize {
    // SAFETY: the caller passes a block of `s`.
    unsafe { (((b as usize - (*s).start as usize) as u64 * (*s).recip as u64) >> 32) as usize }
}

/// Records that block `b` of the shared slab `s` charges group `tag`.
///
/// # Safety
/// `s` has tags; `b` is a block of it just handed out by its owner thread.
#[inline]
pub unsafe fn set_tag(s: *mut Slab, b: *mut u8, tag: u32) {
    // SAFETY: the tag array has a slot per block.
    unsafe { *(*s).tags.add(block_index(s, b)) = tag };
}

/// The group charged for live block `b` of slab `s`.
///
/// # Safety
/// `b` is a live block of `s`.
#[inline]
pub unsafe fn owner_of(s: *mut Slab, b: *mut u8) -> *mut GroupNode {
    // SAFETY: the block is live, so its tag (written when it was handed out,
    // before the block could reach another thread) names a charged record.
    unsafe {
        let tags = (*s).tags;
        if tags.is_null() {
            (*s).owner
        } else {
            crate::group::node_at(*tags.add(block_index(s, b)))
        }
    }
}

/// Makes the span `d` a slab of `class` for `cache`: a shared slab with
/// owner tags when `tagged`, else one whose blocks all charge the cache's
/// group. False (the span untouched) when the tags cannot be had.
///
/// # Safety
/// `d` is a span descriptor just taken by the calling (owner) thread.
pub unsafe fn init(
    d: *mut Slab,
    class: usize,
    cache: *mut crate::cache::Cache,
    tagged: bool,
) -> bool {
    let bs = class_size(class);
    // SAFETY: the caller owns the fresh span descriptor.
    unsafe {
        let bytes = (*d).slice_count as usize * SLICE_SIZE;
        let capacity = (bytes / bs) as u32;
        (*d).tags = null_mut();
        if tagged {
            let Some(pool) = tag_pool(capacity) else {
                return false;
            };
            let t = pool.alloc().cast::<u32>();
            if t.is_null() {
                return false;
            }
            (*d).tags = t;
        }
        (*d).class = class as u8;
        (*d).block_size = bs as u32;
        (*d).recip = ((1u64 << 32).div_ceil(bs as u64)) as u32;
        (*d).capacity = capacity;
        (*d).carved = 0;
        // Colour the slab: start carving at a block picked by its slice, so
        // the first blocks of different slabs (the busiest ones while a heap
        // is young) fall in different cache sets instead of all on the
        // slice-aligned start. Alignment is untouched: blocks stay at
        // multiples of the block size from the start.
        // Aligned slabs start only at every ALIGNED_SLICES-th slice: count
        // those, or three colours in four would go unused.
        let slice = ((d as usize & (SEGMENT_SIZE - 1)) >> DESC_SHIFT) / span_align(class);
        let colour = (slice * 37) % 64;
        (*d).carve_from = ((colour * 64 / bs) as u32) % (*d).capacity;
        (*d).used_rel = 0;
        (*d).slow_below = 0;
        (*d).free = null_mut();
        (*d).set_list(LIST_PARTIAL);
        (*d).remote.store(null_mut(), Ordering::Relaxed);
        (*d).cache.store(cache, Ordering::Relaxed);
        (*d).key = SECRET.load(Ordering::Relaxed) ^ (d as usize).rotate_left(29);
        if tagged {
            (*d).owner = crate::group::root();
        } else {
            (*d).owner = (*cache).node;
            if (*d).owner != crate::group::root() {
                (*(*d).owner).note_slab(class, bytes, true);
            }
        }
        (*d).next = null_mut();
        (*d).prev = null_mut();
        true
    }
}

/// Undoes what [`init`] took: the tag array, or a dedicated slab's hold on
/// its group. Returns the group whose reference the caller must release
/// (null when none).
///
/// # Safety
/// Owner thread only; `s` is an empty slab being given back.
pub unsafe fn retire(s: *mut Slab) -> *mut GroupNode {
    // SAFETY: owner-only; nothing refers to the slab's tags any more.
    unsafe {
        let tags = (*s).tags;
        if !tags.is_null() {
            (*s).tags = null_mut();
            if let Some(pool) = tag_pool((*s).capacity) {
                pool.free(tags.cast());
            }
            return null_mut();
        }
        let owner = (*s).owner;
        if owner == crate::group::root() {
            return null_mut();
        }
        let bytes = (*s).slice_count as usize * SLICE_SIZE;
        (*owner).note_slab((*s).class as usize, bytes, false);
        owner
    }
}

/// Carves the next batch of never-used blocks onto the (empty) free list;
/// returns false when the slab is fully carved.
///
/// # Safety
/// Owner thread only; `free` must be empty.
pub unsafe fn carve(s: *mut Slab) -> bool {
    // SAFETY: owner-only; blocks carved lie inside the slab's span.
    unsafe {
        let left = (*s).capacity - (*s).carved;
        if left == 0 {
            return false;
        }
        let bs = (*s).block_size as usize;
        let cap = (*s).capacity;
        // Blocks are carved in the order carve_from, carve_from + 1, ...,
        // wrapping to 0; a batch stops at the end rather than wrap.
        let at = ((*s).carve_from + (*s).carved) % cap;
        let n = ((PAGE_SIZE / bs).max(4) as u32).min(left).min(cap - at);
        let first = (*s).start.add(at as usize * bs);
        let mut p = first;
        for _ in 1..n {
            let next = p.add(bs);
            link(s, p.cast(), next.cast());
            p = next;
        }
        link(s, p.cast(), null_mut());
        (*s).free = first.cast();
        (*s).carved += n;
        true
    }
}

/// Moves remote frees to the local free list; returns how many.
///
/// # Safety
/// Owner thread only.
pub unsafe fn collect_remote(s: *mut Slab) -> u32 {
    // SAFETY: owner-only for the plain fields; the swap takes the remote
    // list whole, and Acquire pairs with the freers' Release pushes.
    unsafe {
        if (*s).remote.load(Ordering::Relaxed).is_null() {
            return 0;
        }
        let head = (*s).remote.swap(null_mut(), Ordering::Acquire);
        let mut n = 1;
        let mut tail = head;
        loop {
            let next = next_of(s, tail);
            if next.is_null() {
                break;
            }
            tail = next;
            n += 1;
        }
        link(s, tail, (*s).free);
        (*s).free = head;
        (*s).used_rel -= n as i32;
        n
    }
}

/// Pushes a block freed by a thread that does not own the slab.
///
/// # Safety
/// `b` is a live block of `s`; nothing of the slab may be touched after this
/// returns (its owner may release it at once).
#[inline]
pub unsafe fn push_remote(s: *mut Slab, b: *mut Block) {
    // SAFETY: the slab outlives its live block `b`, which we still hold
    // until the CAS publishes it.
    unsafe {
        let mut head = (*s).remote.load(Ordering::Relaxed);
        loop {
            if head == b {
                crate::os::fatal(
                    "memcg: double free detected (block freed twice from another thread)\n",
                );
            }
            link(s, b, head);
            match (*s)
                .remote
                .compare_exchange_weak(head, b, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }
}

/// Whether the slab can hand out a block without new memory.
///
/// # Safety
/// Owner thread only.
pub unsafe fn has_room(s: *mut Slab) -> bool {
    // SAFETY: owner-only read.
    unsafe { !(*s).free.is_null() || (*s).carved < (*s).capacity }
}

/// With `checks`: aborts unless `b` is the start of a block of `s` that is
/// not already on its local free list.
///
/// # Safety
/// Owner thread only; `s` is a live slab.
#[cfg(feature = "checks")]
pub unsafe fn check_free(s: *mut Slab, b: *mut Block) {
    // SAFETY: owner-only walk of the slab's free list.
    unsafe {
        let off = (b as usize).wrapping_sub((*s).start as usize);
        let bs = (*s).block_size as usize;
        if off >= (*s).capacity as usize * bs || off % bs != 0 {
            crate::os::fatal("memcg: free of a pointer that is not the start of a block\n");
        }
        let mut p = (*s).free;
        while !p.is_null() {
            if p == b {
                crate::os::fatal("memcg: double free detected (block already free)\n");
            }
            p = next_of(s, p);
        }
    }
}
