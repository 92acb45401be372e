//! One (thread, group) cache: per size class, a list of slabs with room
//! (its head is where the fast path allocates) and a list of full slabs.
//!
//! Only the owning thread touches a cache.

use crate::heap::{self, Heap};
use crate::segment::{empty_slab, Slab, LIST_FULL, LIST_HEAD, LIST_PARTIAL};
use crate::size_class::NUM_CLASSES;
use crate::slab;
use core::ptr::null_mut;

/// The slabs of one size class in one cache.
#[repr(C)]
pub struct ClassList {
    /// Slabs with room, doubly linked; [`empty_slab`] when there are none.
    pub head: *mut Slab,
    /// Slabs with no room when last looked at.
    pub full: *mut Slab,
    /// Slabs on both lists.
    pub slabs: u32,
}

/// See the module docs.
#[repr(C)]
pub struct Cache {
    pub heap: *mut Heap,
    pub classes: [ClassList; NUM_CLASSES],
}

// SAFETY: the only shared `Cache` is the immutable one of the placeholder
// heap; real caches are reached through their owning thread's heap.
unsafe impl Sync for Cache {}

impl Cache {
    /// A cache with no slabs.
    pub const EMPTY: Cache = Cache {
        heap: null_mut(),
        classes: [const {
            ClassList {
                head: &crate::segment::EMPTY_SLAB as *const Slab as *mut Slab,
                full: null_mut(),
                slabs: 0,
            }
        }; NUM_CLASSES],
    };
}

/// Allocates a block of `class`: the fast path.
///
/// # Safety
/// `heap` is the calling thread's heap (or the placeholder), `cache` its
/// current cache, `class < NUM_CLASSES`.
#[inline(always)]
pub unsafe fn alloc(heap: *mut Heap, cache: *mut Cache, class: usize) -> *mut u8 {
    // SAFETY: owner-only access to the cache and its head slab; the
    // placeholder's head is the empty sentinel, whose `free` is null, so it
    // is never written.
    unsafe {
        let cl = (&raw mut (*cache).classes).cast::<ClassList>().add(class);
        let s = (*cl).head;
        let b = (*s).free;
        if !b.is_null() {
            (*s).free = (*b).next;
            (*s).used += 1;
            heap::add_allocated(heap, (*s).block_size as isize);
            return b.cast();
        }
        alloc_slow(heap, cache, class).0
    }
}

/// Allocates a zeroed block of `class`, clearing only what is not known zero.
///
/// # Safety
/// As for [`alloc`].
pub unsafe fn alloc_zeroed(heap: *mut Heap, cache: *mut Cache, class: usize) -> *mut u8 {
    // SAFETY: as in `alloc`; the block is ours to write once popped.
    unsafe {
        let cl = (&raw mut (*cache).classes).cast::<ClassList>().add(class);
        let s = (*cl).head;
        let b = (*s).free;
        let (p, zero) = if !b.is_null() {
            let zero = (*s).free_is_zero;
            (*s).free = (*b).next;
            (*s).used += 1;
            heap::add_allocated(heap, (*s).block_size as isize);
            (b.cast::<u8>(), zero)
        } else {
            alloc_slow(heap, cache, class)
        };
        if !p.is_null() {
            let len = if zero {
                core::mem::size_of::<usize>()
            } else {
                crate::size_class::class_size(class)
            };
            core::ptr::write_bytes(p, 0, len);
        }
        p
    }
}

/// The slow path: refill the head slab, move on to the next, or make a new
/// one. Returns the block and whether it reads as zero past its first word.
#[inline(never)]
unsafe fn alloc_slow(heap: *mut Heap, cache: *mut Cache, class: usize) -> (*mut u8, bool) {
    // SAFETY: owner-only access to the thread's heap, cache and slabs.
    unsafe {
        if heap::is_placeholder(heap) {
            let h = heap::init_thread();
            if h.is_null() {
                return (null_mut(), false);
            }
            return alloc_slow(h, (*h).current, class);
        }
        let cl = (&raw mut (*cache).classes).cast::<ClassList>().add(class);
        loop {
            let s = (*cl).head;
            if s != empty_slab() {
                if (*s).free.is_null() && slab::collect_remote(s) == 0 && !slab::carve(s) {
                    // No room left: park it on the full list and try the next.
                    unlink_partial(cl, s);
                    push_full(cl, s);
                    continue;
                }
                let b = (*s).free;
                let zero = (*s).free_is_zero;
                (*s).free = (*b).next;
                (*s).used += 1;
                heap::add_allocated(heap, (*s).block_size as isize);
                return (b.cast(), zero);
            }
            if heap::collect_remote_frees(heap) && (*cl).head != empty_slab() {
                continue;
            }
            let s = heap::new_slab(heap, class);
            if s.is_null() {
                return (null_mut(), false);
            }
            slab::init(s, class, cache);
            (*cl).slabs += 1;
            push_partial_front(cl, s);
        }
    }
}

/// A local free that left a slab empty or found it on the full list.
///
/// # Safety
/// Owner thread only; `s` is a slab of this thread with a cache.
#[inline(never)]
pub unsafe fn local_free_slow(heap: *mut Heap, s: *mut Slab) {
    // SAFETY: owner-only access to the slab and its cache's lists.
    unsafe {
        let cache = (*s).cache;
        let cl = (&raw mut (*cache).classes)
            .cast::<ClassList>()
            .add((*s).class as usize);
        if (*s).list == LIST_FULL {
            unlink_full(cl, s);
            push_partial_second(cl, s);
        }
        if (*s).used == 0 && (*cl).head != s {
            release(heap, cl, s);
        }
    }
}

/// Collected remote frees changed a slab's state: move it between lists
/// and give it back when empty (unless it is the allocation head).
///
/// # Safety
/// Owner thread only.
pub unsafe fn after_collect(heap: *mut Heap, s: *mut Slab) {
    // SAFETY: as in `local_free_slow`.
    unsafe { local_free_slow(heap, s) }
}

/// Unlinks an empty slab and gives its span back to the segment.
unsafe fn release(heap: *mut Heap, cl: *mut ClassList, s: *mut Slab) {
    // SAFETY: owner-only; the slab holds no live block.
    unsafe {
        unlink_partial(cl, s);
        (*cl).slabs -= 1;
        heap::release_slab(heap, s);
    }
}

/// Gives back every empty slab of the cache, heads included; used by purge
/// and thread exit.
///
/// # Safety
/// Owner thread only.
pub unsafe fn release_empty_slabs(heap: *mut Heap, cache: *mut Cache) {
    // SAFETY: owner-only walk of the cache's lists.
    unsafe {
        for class in 0..NUM_CLASSES {
            let cl = (&raw mut (*cache).classes).cast::<ClassList>().add(class);
            let mut s = (*cl).full;
            while !s.is_null() {
                let next = (*s).next;
                if slab::collect_remote(s) > 0 {
                    unlink_full(cl, s);
                    push_partial_second(cl, s);
                }
                s = next;
            }
            let mut s = (*cl).head;
            while s != empty_slab() && !s.is_null() {
                let next = (*s).next;
                slab::collect_remote(s);
                if (*s).used == 0 {
                    release(heap, cl, s);
                }
                s = if next.is_null() { empty_slab() } else { next };
            }
        }
    }
}

/// Detaches every slab from the cache (they stay in their segments, which
/// the caller abandons); the cache is left empty.
///
/// # Safety
/// Owner thread only; call after [`release_empty_slabs`].
pub unsafe fn detach_all(cache: *mut Cache) {
    // SAFETY: owner-only walk of the cache's lists.
    unsafe {
        for class in 0..NUM_CLASSES {
            let cl = (&raw mut (*cache).classes).cast::<ClassList>().add(class);
            for mut s in [(*cl).head, (*cl).full] {
                while s != empty_slab() && !s.is_null() {
                    let next = (*s).next;
                    (*s).cache = null_mut();
                    (*s).list = LIST_PARTIAL;
                    (*s).next = null_mut();
                    (*s).prev = null_mut();
                    s = next;
                }
            }
            (*cl).head = empty_slab();
            (*cl).full = null_mut();
            (*cl).slabs = 0;
        }
    }
}

/// Takes an adopted slab into the cache.
///
/// # Safety
/// Owner thread only; `s` has live blocks and no cache.
pub unsafe fn adopt_slab(cache: *mut Cache, s: *mut Slab) {
    // SAFETY: owner-only.
    unsafe {
        let cl = (&raw mut (*cache).classes)
            .cast::<ClassList>()
            .add((*s).class as usize);
        (*s).cache = cache;
        (*cl).slabs += 1;
        if slab::has_room(s) {
            push_partial_second(cl, s);
        } else {
            push_full(cl, s);
        }
    }
}

// --- list plumbing (owner thread only) ---

/// Makes `s` (or the empty sentinel) the allocation head, keeping the
/// slabs' `list` marks right.
unsafe fn set_head(cl: *mut ClassList, s: *mut Slab) {
    // SAFETY: owner-only; the sentinel is never written.
    unsafe {
        let old = (*cl).head;
        if old != empty_slab() && old != s && (*old).list == LIST_HEAD {
            (*old).list = LIST_PARTIAL;
        }
        if s != empty_slab() {
            (*s).list = LIST_HEAD;
        }
        (*cl).head = s;
    }
}

unsafe fn push_partial_front(cl: *mut ClassList, s: *mut Slab) {
    // SAFETY: owner-only list edit.
    unsafe {
        let h = (*cl).head;
        (*s).prev = null_mut();
        (*s).next = if h == empty_slab() { null_mut() } else { h };
        if h != empty_slab() {
            (*h).prev = s;
        }
        set_head(cl, s);
    }
}

/// Inserts after the head, so the slab being allocated from stays first.
unsafe fn push_partial_second(cl: *mut ClassList, s: *mut Slab) {
    // SAFETY: owner-only list edit.
    unsafe {
        let h = (*cl).head;
        if h == empty_slab() {
            push_partial_front(cl, s);
            return;
        }
        let n = (*h).next;
        (*s).prev = h;
        (*s).next = n;
        (*s).list = LIST_PARTIAL;
        if !n.is_null() {
            (*n).prev = s;
        }
        (*h).next = s;
    }
}

unsafe fn unlink_partial(cl: *mut ClassList, s: *mut Slab) {
    // SAFETY: owner-only list edit; `s` is on the partial list.
    unsafe {
        let (p, n) = ((*s).prev, (*s).next);
        if p.is_null() {
            set_head(cl, if n.is_null() { empty_slab() } else { n });
        } else {
            (*p).next = n;
        }
        if !n.is_null() {
            (*n).prev = p;
        }
        (*s).next = null_mut();
        (*s).prev = null_mut();
        (*s).list = LIST_PARTIAL;
    }
}

unsafe fn push_full(cl: *mut ClassList, s: *mut Slab) {
    // SAFETY: owner-only list edit.
    unsafe {
        let h = (*cl).full;
        (*s).prev = null_mut();
        (*s).next = h;
        if !h.is_null() {
            (*h).prev = s;
        }
        (*cl).full = s;
        (*s).list = LIST_FULL;
    }
}

unsafe fn unlink_full(cl: *mut ClassList, s: *mut Slab) {
    // SAFETY: owner-only list edit; `s` is on the full list.
    unsafe {
        let (p, n) = ((*s).prev, (*s).next);
        if p.is_null() {
            (*cl).full = n;
        } else {
            (*p).next = n;
        }
        if !n.is_null() {
            (*n).prev = p;
        }
        (*s).next = null_mut();
        (*s).prev = null_mut();
        (*s).list = LIST_PARTIAL;
    }
}
