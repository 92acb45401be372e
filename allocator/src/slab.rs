//! One slab: a span of slices cut into blocks of one size class, with a local
//! free list (owner thread only). Blocks other threads free come back
//! through the segment's inbox (see `remote`).

use crate::group::GroupNode;
use crate::layout::{Block, DESC_SHIFT, SEGMENT_SIZE, SLICE_SIZE};
use crate::meta_pool::MetaPool;
use crate::os::PAGE_SIZE;
use crate::size_class::class_size;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};

/// The slab the fast path allocates from (zero: the cheapest test on the
/// free path).
pub const LIST_HEAD: u8 = 0;
/// A slab on its class's list of slabs with room, not at its head.
pub const LIST_PARTIAL: u8 = 1;
/// A slab on its class's full list.
pub const LIST_FULL: u8 = 2;
/// A slab whose cache was dropped (its group died, or its thread exited):
/// it takes no new allocations and goes back when its last block does.
pub const LIST_ORPHAN: u8 = 3;

pub const SPAN_FREE: u8 = 0;
pub const SPAN_SLAB: u8 = 1;

/// What a slab's `cache` points at: the cache whose lists hold it (a type
/// of a layer above; only its address is compared here).
pub enum ListOwner {}

/// The descriptor of one slice; the first slice of a span describes the span
/// (a slab, or free space). Owner-thread fields are plain; fields other
/// threads touch are atomic.
///
/// Two cache lines. The first holds what any thread's free reads and the
/// owner writes only when the slab is made or changes lists; the second
/// what the owner writes on every allocation and free. So a thread freeing
/// another thread's blocks (see `remote`) shares the first line with the
/// owner without pulling the second from under it.
#[repr(C, align(128))]
pub struct Slab {
    // --- line 1: read by every free, written rarely ---
    /// Slab: the key free-list links are stored under (see `slab::link`).
    pub key: usize,
    /// The cache whose lists hold this slab: a thread's root cache, its
    /// shared cache (for slabs shared by groups), or a group's dedicated
    /// cache; null for an orphan. Written by the owner only; any thread's
    /// free reads it to see whether the slab is its current cache's.
    pub cache: AtomicPtr<ListOwner>,
    /// A shared slab's owner tags: for each block, the index of the group
    /// charged for it (see `group::node_at`), written when the block is
    /// handed out. Null for a slab whose blocks all charge `owner`. Atomic
    /// because a dedicated slab gains tags while its blocks are live
    /// ([`share`]), and frees on other threads read it ([`owner_of`]).
    pub tags: AtomicPtr<u32>,
    pub start: *mut u8,
    /// The group charged for this slab's blocks when it has no tags (a
    /// dedicated slab holds a reference on it; the root's need none).
    pub owner: *mut crate::group::GroupNode,
    pub block_size: u32,
    /// `ceil(2^32 / block_size)`: a block's index is its offset times this,
    /// shifted down 32 (exact for every offset inside a slab).
    pub recip: u32,
    /// 0 on a span's first slice; on other slices the distance back to its
    /// descriptor, in bytes (so the free path subtracts without a shift).
    pub back_bytes: u32,
    /// Slices in the span (first slice only).
    pub slice_count: u32,
    pub state: u8,
    /// Slab: which list of its cache holds it ([`LIST_PARTIAL`],
    /// [`LIST_HEAD`] or [`LIST_FULL`]), so a free can tell in one load
    /// whether it needs the slow path.
    pub list: u8,
    pub class: u8,
    /// Free span: pages may be resident.
    pub dirty: bool,
    /// Slab: the span was clean when the slab was made.
    pub fresh: bool,

    // --- line 2: the owner's, written on every allocation and free ---
    pub free: *mut Block,
    /// Blocks out of the slab and not yet back on `free` ([`Slab::used`]),
    /// less `slow_below`: a local free that takes it below zero needs the
    /// slow path, so the free path's test is the sign of one decrement.
    pub used_rel: i32,
    /// See [`Slab::set_list`].
    pub slow_below: i32,
    pub capacity: u32,
    /// Blocks carved from the slab's memory so far (carving is lazy).
    pub carved: u32,
    pub next: *mut Slab,
    pub prev: *mut Slab,
    /// Free span: when it became dirty (ms).
    pub freed_at: u64,
    /// Slab: the block carving starts at, going up and wrapping to the
    /// first (see `slab::init`).
    pub carve_from: u32,
    /// Slab: a tag array taken off while blocks were live ([`unshare`]),
    /// given back when the slab is retired.
    pub old_tags: *mut u32,
}

const _: () = assert!(core::mem::offset_of!(Slab, fresh) < 64);
const _: () = assert!(core::mem::offset_of!(Slab, free) == 64);
const _: () = assert!(core::mem::size_of::<Slab>() == 128);

impl Slab {
    /// The owner tags (null when the slab has none), as the thread that
    /// owns the slab reads them: it is the only writer.
    #[inline(always)]
    pub fn tags(&self) -> *mut u32 {
        self.tags.load(Ordering::Relaxed)
    }

    /// Marks which list of its cache holds the slab, and so when a local
    /// free must take the slow path: never on the allocation head (kept
    /// even when empty), when it empties on another slab with room, and
    /// always on a full or orphaned slab.
    #[inline]
    pub fn set_list(&mut self, list: u8) {
        let used = self.used() as i32;
        self.list = list;
        self.slow_below = match list {
            LIST_HEAD => 0,
            LIST_PARTIAL => 1,
            // Above any block count.
            _ => 1 << 30,
        };
        self.used_rel = used - self.slow_below;
    }

    /// Blocks out of the slab and not yet back on its free list.
    #[inline(always)]
    pub fn used(&self) -> u32 {
        (self.used_rel + self.slow_below) as u32
    }
}

// SAFETY: the only shared `Slab` is the immutable empty sentinel; other
// descriptors live in segments and are reached through raw pointers.
unsafe impl Sync for Slab {}

/// The sentinel at the head of an empty slab list: no free blocks, so the
/// allocation fast path falls through to the slow path without a null
/// check. Never written.
pub static EMPTY_SLAB: Slab = Slab {
    back_bytes: 0,
    slice_count: 0,
    state: SPAN_SLAB,
    dirty: false,
    list: LIST_PARTIAL,
    fresh: false,
    class: 0,
    block_size: 0,
    capacity: 0,
    carved: 0,
    carve_from: 0,
    used_rel: -1,
    slow_below: 1,
    start: null_mut(),
    free: null_mut(),
    cache: AtomicPtr::new(null_mut()),
    owner: null_mut(),
    next: null_mut(),
    prev: null_mut(),
    freed_at: 0,
    key: 0,
    tags: AtomicPtr::new(null_mut()),
    old_tags: null_mut(),
    recip: 0,
};

/// The sentinel as a list head.
#[inline(always)]
pub fn empty_slab() -> *mut Slab {
    &EMPTY_SLAB as *const Slab as *mut Slab
}

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
///
/// # Safety
/// `b` is a free block of slab `s`, owned by the caller (its owner thread, or the thread giving it
/// up).
#[inline(always)]
pub unsafe fn link(s: *mut Slab, b: *mut Block, next: *mut Block) {
    // SAFETY: the caller passes a free block of slab `s`.
    unsafe { (*b).next = next as usize ^ (*s).key };
}

/// The key remote-free chains (see `remote`) are linked under: they cross
/// slabs, so they cannot use a slab's.
#[inline(always)]
pub fn chain_key() -> usize {
    SECRET.load(Ordering::Relaxed).rotate_left(17)
}

/// Reads a free-list link written by [`link`].
///
/// # Safety
/// `b` is a free block of slab `s` whose link was written by [`link`].
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

/// The first slab of a class above this block size has room for 2 blocks,
/// not 8, the next for 4, then 8: a vector grown by doubling passes through
/// each class once, and a slab of 8 such blocks (80 KiB to 512 KiB) holding
/// its one live block kept most of it resident, as the class's allocation
/// head, for nothing; a class in demand soon gets its 8.
const FEW_BLOCKS_ABOVE: usize = 8 * 1024;

/// How many slices the next slab of `class` spans when its cache already
/// holds `live` slabs of it: small first (one slice for small blocks), then
/// doubling while demand lasts, so a group that allocates little wastes
/// little and a busy one gets fewer, larger slabs. Always room for 8 blocks
/// (for blocks above [`FEW_BLOCKS_ABOVE`] bytes: 2, 4, then 8; fewer for the
/// largest classes, whose slabs stop at [`MAX_SLAB_SLICES`]).
pub fn slices_for(class: usize, live: u32) -> usize {
    let size = class_size(class);
    let blocks = if size > FEW_BLOCKS_ABOVE {
        2 << live.min(2)
    } else {
        8
    };
    let min_for_blocks = (size * blocks).div_ceil(SLICE_SIZE);
    let growth = 1usize << live.min(ALIGNED_SLICES.trailing_zeros());
    growth.max(min_for_blocks).min(MAX_SLAB_SLICES)
}

/// Owner-tag arrays: one pool per power of two from 64 bytes (16 tags) to
/// 32 KiB (8,192 tags, the most any shared slab has).
const TAG_POOLS: usize = 10;
/// The most tags a slab has (its array comes from the largest pool).
const MAX_TAGS: usize = (64 << (TAG_POOLS - 1)) / 4;
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

/// Entry `i` of tag array `tags`. Entries are atomics (each read and
/// written Relaxed, plain moves): a free on another thread may read one
/// while the owner refills the array for the same group ([`share`]).
///
/// # Safety
/// `tags` is a tag array with more than `i` entries.
#[inline(always)]
pub unsafe fn tag_at(tags: *mut u32, i: usize) -> u32 {
    // SAFETY: the caller passes an entry inside a live tag array, which is
    // only ever accessed through atomics.
    unsafe { AtomicU32::from_ptr(tags.add(i)).load(Ordering::Relaxed) }
}

/// Writes entry `i` of tag array `tags` (see [`tag_at`]).
///
/// # Safety
/// As for [`tag_at`]; the caller owns the slab.
#[inline(always)]
pub unsafe fn set_tag_at(tags: *mut u32, i: usize, tag: u32) {
    // SAFETY: as in `tag_at`.
    unsafe { AtomicU32::from_ptr(tags.add(i)).store(tag, Ordering::Relaxed) }
}

/// The index of block `b` in slab `s`.
///
/// # Safety
/// `b` points into slab `s`.
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
    // SAFETY: a tagged slab's array has an entry per block (sized from its
    // capacity in `init` or `share`), and `b` is a block of `s`.
    unsafe { set_tag_at((*s).tags(), block_index(s, b), tag) };
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
        // Acquire: a slab that gained tags while live ([`share`]) filled
        // them before publishing them. One read before the store sees null
        // and takes `owner`, which names the same group.
        let tags = (*s).tags.load(Ordering::Acquire);
        if tags.is_null() {
            (*s).owner
        } else {
            crate::group::node_at(tag_at(tags, block_index(s, b)))
        }
    }
}

/// Makes the span `d` a slab of `class` on the lists of `lists`: a shared
/// slab with owner tags when `tagged`, else one whose blocks all charge
/// `owner`. False (the span untouched) when the tags cannot be had.
///
/// # Safety
/// `d` is a span descriptor just taken by the calling (owner) thread.
pub unsafe fn init(
    d: *mut Slab,
    class: usize,
    lists: *mut ListOwner,
    owner: *mut GroupNode,
    tagged: bool,
) -> bool {
    let bs = class_size(class);
    // SAFETY: the caller owns the fresh span descriptor.
    unsafe {
        let bytes = (*d).slice_count as usize * SLICE_SIZE;
        let capacity = (bytes / bs) as u32;
        (*d).tags.store(null_mut(), Ordering::Relaxed);
        (*d).old_tags = null_mut();
        if tagged {
            let Some(pool) = tag_pool(capacity) else {
                return false;
            };
            let t = pool.alloc().cast::<u32>();
            if t.is_null() {
                return false;
            }
            (*d).tags.store(t, Ordering::Relaxed);
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
        (*d).cache.store(lists, Ordering::Relaxed);
        (*d).key = SECRET.load(Ordering::Relaxed) ^ (d as usize).rotate_left(29);
        if tagged {
            (*d).owner = crate::group::root();
        } else {
            (*d).owner = owner;
            if (*d).owner != crate::group::root() {
                (*(*d).owner).note_slab(class, bytes, true);
            }
        }
        (*d).next = null_mut();
        (*d).prev = null_mut();
        true
    }
}

/// Gives dedicated slab `s` owner tags, every one naming its group, so it
/// can join a shared cache while its blocks are live; its hold on the group
/// goes (note and return value as for [`retire`]: the caller releases the
/// reference). Null, and nothing changed, when no tag array can be had.
///
/// # Safety
/// Owner thread only; `s` is a dedicated slab (untagged, not the root's).
pub unsafe fn share(s: *mut Slab) -> *mut GroupNode {
    // SAFETY: owner-only; the tag array is ours until the Release store
    // publishes it, and every entry is written before it.
    unsafe {
        let owner = (*s).owner;
        // A slab that was shared before ([`unshare`]) takes its old array
        // back: a late reader of it reads the same group there.
        let mut t = (*s).old_tags;
        (*s).old_tags = null_mut();
        if t.is_null() {
            let Some(pool) = tag_pool((*s).capacity) else {
                return null_mut();
            };
            t = pool.alloc().cast::<u32>();
            if t.is_null() {
                return null_mut();
            }
        }
        let index = (*owner).index;
        for i in 0..(*s).capacity as usize {
            set_tag_at(t, i, index);
        }
        // `owner` stays: a free elsewhere that read the tags as null just
        // before this store reads it, and it names the same group, which its
        // live blocks keep charged (and so alive) without the reference.
        (*s).tags.store(t, Ordering::Release);
        let bytes = (*s).slice_count as usize * SLICE_SIZE;
        (*owner).note_slab((*s).class as usize, bytes, false);
        owner
    }
}

/// Takes the tags off shared slab `s` when every block ever carved from it
/// was last handed out for the group at `index` (so every live block
/// charges it): `s` becomes a dedicated slab of `node`, whose fast paths
/// write and read no tag, and takes a reference on it. False, and nothing
/// changed, otherwise. The tag array waits in `old_tags` until the slab is
/// retired: a free on another thread may have read the tags just before,
/// and still reads its entry (which names `node`).
///
/// # Safety
/// Owner thread only; `s` is a tagged slab; `node` is live and `index` its
/// record's index.
pub unsafe fn unshare(s: *mut Slab, node: *mut GroupNode, index: u32) -> bool {
    // SAFETY: owner-only; the tag entries of carved blocks were written
    // when those blocks were handed out.
    unsafe {
        let tags = (*s).tags();
        if !(*s).old_tags.is_null() {
            // Never so: `share` takes an old array back.
            return false;
        }
        // Blocks on the free list are not live: their tags are stale.
        let cap = (*s).capacity as usize;
        let mut free = [0u64; MAX_TAGS / 64];
        let mut b = (*s).free;
        while !b.is_null() {
            let i = block_index(s, b.cast());
            free[i / 64] |= 1 << (i % 64);
            b = next_of(s, b);
        }
        for k in 0..(*s).carved as usize {
            let i = ((*s).carve_from as usize + k) % cap;
            if free[i / 64] & (1 << (i % 64)) == 0 && tag_at(tags, i) != index {
                return false;
            }
        }
        // `owner` first, then the tags' Release: a free elsewhere that
        // reads the tags as null reads the new owner.
        (*s).owner = node;
        let bytes = (*s).slice_count as usize * SLICE_SIZE;
        (*node).note_slab((*s).class as usize, bytes, true);
        (*s).old_tags = tags;
        (*s).tags.store(null_mut(), Ordering::Release);
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
        let old = (*s).old_tags;
        if !old.is_null() {
            (*s).old_tags = null_mut();
            if let Some(pool) = tag_pool((*s).capacity) {
                pool.free(old.cast());
            }
        }
        let tags = (*s).tags();
        if !tags.is_null() {
            (*s).tags.store(null_mut(), Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::{slices_for, FEW_BLOCKS_ABOVE};
    use crate::layout::SLICE_SIZE;
    use crate::size_class::{class_of, class_size};

    fn blocks(size: usize, live: u32) -> usize {
        slices_for(class_of(size), live) * SLICE_SIZE / class_size(class_of(size))
    }

    #[test]
    fn large_classes_start_with_two_blocks_and_grow_to_eight() {
        for size in [10 << 10, 16 << 10, 32 << 10, 64 << 10] {
            assert!(size > FEW_BLOCKS_ABOVE);
            // Room for at least 2, 4, 8 (slices round it up), never 8 at once.
            let (first, second, third) = (blocks(size, 0), blocks(size, 1), blocks(size, 2));
            assert!((2..4).contains(&first), "{size} B, first slab: {first}");
            assert!((4..8).contains(&second), "{size} B, second slab: {second}");
            assert!((8..12).contains(&third), "{size} B, third slab: {third}");
            assert_eq!(blocks(size, 9), third, "{size} B, tenth slab");
        }
        // The largest classes stop at the slab size limit: 4 of 128 KiB.
        assert_eq!(blocks(128 << 10, 9), 4);
    }

    #[test]
    fn smaller_classes_always_have_room_for_eight() {
        for size in [16, 512, 2048, 4096, 8192] {
            assert!(blocks(size, 0) >= 8, "{size} B");
        }
    }
}
