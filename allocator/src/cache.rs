//! A cache: a thread's front for allocating in one group (the root's, the
//! one shared by the thread's groups, or a group's dedicated one): per size class, a list of slabs with room
//! (its head is where the fast path allocates) and a list of full slabs,
//! plus the group's byte *reserve* on this thread.
//!
//! The reserve is charged to the group in batches, so the fast path only
//! adds to a thread-local number; near a limit a refill takes just what the
//! allocation needs, so limits stay exact within the other threads'
//! reserves.
//!
//! The reserve is kept as three running totals, `charged + freed - taken`:
//! allocations write only `taken` and frees only `freed`, and each compares
//! its total with a *limit* computed when the slow path last looked
//! (`take_limit`, the reserve's edge; `free_limit`, where it would pass
//! `reserve_high`). Frees only move the true edge up and allocations only
//! move the trim point up, so a stale limit errs toward the slow path,
//! which looks again. The fast paths thus do one add and one compare.
//! Only the owning thread touches a cache (statistics read the totals and
//! `live`, which are atomics written with plain stores).

use crate::atomic_stack::Link;
use crate::group::{ChargeMode, GroupNode};
use crate::meta_pool::MetaPool;
use crate::segment;
use crate::size_class::{class_size, NUM_CLASSES};
use crate::slab;
use crate::slab::{empty_slab, Slab, LIST_FULL, LIST_HEAD, LIST_ORPHAN, LIST_PARTIAL};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

/// Bytes a reserve refill asks for beyond the allocation at hand.
static RESERVE_BATCH: AtomicUsize = AtomicUsize::new(32 * 1024);

/// The most a thread keeps charged for a group whose cache it is not using
/// (an eighth of a batch): a thread keeps thousands of group caches.
pub fn saved_reserve_max() -> usize {
    reserve_batch() / 8
}

/// The largest reserve batch: 1 GiB. Reserves are counted in `current`, a
/// thread may hold two batches live and 16,384 saved at an eighth of one
/// (about 2,050 batches), and the counters are `isize`: with this bound a
/// process needs millions of threads to overflow them.
pub const RESERVE_BATCH_MAX: usize = 1 << 30;

/// Sets the reserve batch (bytes, at most [`RESERVE_BATCH_MAX`]; more is
/// taken as that); reaches every cache at its next refill. 0 is allowed:
/// every charge is then exact (and every allocation takes the slow path).
pub fn set_reserve_batch(bytes: usize) {
    RESERVE_BATCH.store(bytes.min(RESERVE_BATCH_MAX), Ordering::Relaxed);
}

/// The reserve batch (bytes).
pub fn reserve_batch() -> usize {
    RESERVE_BATCH.load(Ordering::Relaxed)
}

/// Bytes a group allocates from a thread's shared slabs, in one stretch
/// with its group cache loaded, before it gets a dedicated cache there.
pub const PROMOTE_AFTER: usize = 4 << 20;

/// Empty slabs a cache keeps per class, the allocation head included.
static EMPTY_SLABS_KEPT: AtomicUsize = AtomicUsize::new(1);

/// Sets how many empty slabs a cache keeps per class.
pub fn set_empty_slabs_kept(n: usize) {
    EMPTY_SLABS_KEPT.store(n, Ordering::Relaxed);
}

/// How many empty slabs a cache keeps per class.
pub fn empty_slabs_kept() -> usize {
    EMPTY_SLABS_KEPT.load(Ordering::Relaxed)
}

/// The slabs of one size class in one cache.
#[repr(C)]
pub struct ClassList {
    /// Slabs with room, doubly linked; [`empty_slab`] when there are none.
    pub head: *mut Slab,
    /// The class's block size, beside `head` so the fast path reads both
    /// from one line.
    pub size: usize,
    /// Slabs with no room when last looked at.
    pub full: *mut Slab,
    /// Slabs on both lists.
    pub slabs: u32,
    /// Empty slabs kept on the list besides the head.
    pub empties: u32,
}

/// See the module docs.
#[repr(C)]
pub struct Cache {
    pub link: Link,
    /// Running total of bytes handed out.
    pub taken: AtomicUsize,
    /// `taken` may grow to this without a look at the reserve.
    pub take_limit: usize,
    /// Running total of bytes freed back to the reserve.
    pub freed: AtomicUsize,
    /// `freed` may grow to this without a look at the reserve.
    pub free_limit: usize,
    /// Running total of bytes charged to `node`, less those handed back.
    pub charged: AtomicUsize,
    /// Above this, frees hand the excess reserve back.
    pub reserve_high: isize,
    /// The group this cache charges (holds a reference, except in a heap's
    /// shared cache, whose group is the loaded `GroupCache`'s).
    pub node: *mut GroupNode,
    /// What allocations from shared slabs record as their owner: `node`'s
    /// index.
    pub tag: u32,
    /// A heap's shared cache: its slabs are shared by groups and tagged.
    pub tagged: bool,
    /// Counted in statistics.
    pub live: AtomicBool,
    /// A dedicated cache made at promotion (the group was busy here): it
    /// adopts abandoned segments before it makes a slab.
    pub promoted: bool,
    pub classes: [ClassList; NUM_CLASSES],
}

// SAFETY: the only shared `Cache` is the immutable one of the placeholder
// heap; real caches are reached through their owning thread's heap, and
// other threads read only the atomics.
unsafe impl Sync for Cache {}

pub static CACHES: MetaPool = MetaPool::new(core::mem::size_of::<Cache>());

impl Cache {
    /// A cache with no slabs and no reserve.
    pub const fn empty() -> Cache {
        Cache {
            link: Link {
                next: AtomicPtr::new(null_mut()),
            },
            taken: AtomicUsize::new(0),
            take_limit: 0,
            freed: AtomicUsize::new(0),
            free_limit: 0,
            charged: AtomicUsize::new(0),
            reserve_high: 0,
            node: null_mut(),
            tag: 0,
            tagged: false,
            live: AtomicBool::new(false),
            promoted: false,
            classes: {
                let mut classes = [const {
                    ClassList {
                        head: &crate::slab::EMPTY_SLAB as *const Slab as *mut Slab,
                        size: 0,
                        full: null_mut(),
                        slabs: 0,
                        empties: 0,
                    }
                }; NUM_CLASSES];
                let mut class = 0;
                while class < NUM_CLASSES {
                    classes[class].size = class_size(class);
                    class += 1;
                }
                classes
            },
        }
    }

    /// Makes `c` an empty live cache for `node` (taking a reference on it).
    ///
    /// # Safety
    /// `c` is memory for a cache owned by the caller; `node` is live.
    pub unsafe fn init(c: *mut Cache, node: *mut GroupNode) {
        // SAFETY: the caller owns `c`; the node is live.
        unsafe {
            core::ptr::write(c, Cache::empty());
            (*c).node = node;
            (*c).tag = (*node).index;
            (*c).reserve_high = 2 * reserve_batch() as isize;
            set_limits(c);
            (*node).acquire();
            (*c).live.store(true, Ordering::Release);
        }
    }
}

/// # Safety
/// `cache` is a live cache (or the placeholder's) and `class < NUM_CLASSES`.
#[inline(always)]
pub unsafe fn class_list(cache: *mut Cache, class: usize) -> *mut ClassList {
    // SAFETY: the caller passes class < NUM_CLASSES.
    unsafe { (&raw mut (*cache).classes).cast::<ClassList>().add(class) }
}

/// Bytes charged to the group and not handed out. Another thread may
/// read a moment's mix of the totals.
#[inline(always)]
pub fn reserve(cache: &Cache) -> isize {
    let charged = cache.charged.load(Ordering::Relaxed);
    let freed = cache.freed.load(Ordering::Relaxed);
    charged
        .wrapping_add(freed)
        .wrapping_sub(cache.taken.load(Ordering::Relaxed)) as isize
}

/// Recomputes both fast-path limits from the totals as they stand.
///
/// # Safety
/// Owner thread only.
unsafe fn set_limits(cache: *mut Cache) {
    // SAFETY: owner-only.
    unsafe {
        let charged = (*cache).charged.load(Ordering::Relaxed);
        let freed = (*cache).freed.load(Ordering::Relaxed);
        let taken = (*cache).taken.load(Ordering::Relaxed);
        (*cache).take_limit = charged.wrapping_add(freed);
        // Frees may add `reserve_high - reserve` before the next look; none
        // when the reserve is above it already (a refill for a class larger
        // than a batch), so the next free trims it. (Computed from `taken`
        // alone, that room went negative and wrapped to "never trim".)
        let r = charged.wrapping_add(freed).wrapping_sub(taken) as isize;
        let room = ((*cache).reserve_high - r).max(0) as usize;
        (*cache).free_limit = freed.wrapping_add(room);
    }
}

/// Adds `delta` (wrapping, so a negative amount as `usize` subtracts) to
/// a running total only the owner writes: a load and a plain store.
#[inline(always)]
fn bump(total: &AtomicUsize, delta: usize) {
    total.store(
        total.load(Ordering::Relaxed).wrapping_add(delta),
        Ordering::Relaxed,
    );
}

/// Adds to (or takes from) the bytes charged for the reserve.
///
/// # Safety
/// Owner thread only.
unsafe fn add_charged(cache: *mut Cache, delta: isize) {
    // SAFETY: owner-only.
    unsafe {
        bump(&(*cache).charged, delta as usize);
        set_limits(cache);
    }
}

/// Charges the group for at least `need` more bytes of reserve: a batch
/// when the limits allow, else exactly what is needed. False when denied.
///
/// # Safety
/// Owner thread only; `cache` is one of its live caches.
#[inline(never)]
unsafe fn refill(cache: *mut Cache, need: isize, fallible: bool) -> bool {
    // SAFETY: owner-only; the cache's node is live (the cache holds it).
    unsafe {
        let r = reserve(&*cache);
        let deficit = (need - r).max(0) as usize;
        let batch = reserve_batch();
        (*cache).reserve_high = 2 * batch as isize;
        let node = (*cache).node;
        if GroupNode::charge(node, deficit + batch, true, ChargeMode::Probe).is_ok() {
            add_charged(cache, (deficit + batch) as isize);
            return true;
        }
        let mode = if fallible {
            ChargeMode::Fallible
        } else {
            ChargeMode::Normal
        };
        if GroupNode::charge(node, deficit, true, mode).is_ok() {
            add_charged(cache, deficit as isize);
            return true;
        }
        false
    }
}

/// Tops a low reserve up by a batch where the limits allow (quietly
/// refused otherwise). The fast path may take only the reserve as of the
/// last look, so a reserve of a few blocks would send every few
/// allocations down the slow path even while frees keep refilling it.
///
/// # Safety
/// Owner thread only; `cache` is one of its live caches.
#[inline(never)]
unsafe fn top_up(cache: *mut Cache) {
    // SAFETY: owner-only; the cache's node is live (the cache holds it).
    unsafe {
        let batch = reserve_batch();
        if GroupNode::charge((*cache).node, batch, true, ChargeMode::Probe).is_ok() {
            add_charged(cache, batch as isize);
        }
    }
}

/// Makes the (shared) cache charge `node`, with `reserve` bytes already
/// charged to it: a group's saved front loaded into the heap's shared cache.
///
/// # Safety
/// Owner thread only; `cache` holds no reserve (see [`unload`]); the caller
/// holds a reference on `node`.
pub unsafe fn load(cache: *mut Cache, node: *mut GroupNode, tag: u32, reserve: isize) {
    // SAFETY: owner-only.
    unsafe {
        (*cache).node = node;
        (*cache).tag = tag;
        (*cache).taken.store(0, Ordering::Relaxed);
        (*cache).freed.store(0, Ordering::Relaxed);
        (*cache).charged.store(reserve as usize, Ordering::Relaxed);
        (*cache).reserve_high = 2 * reserve_batch() as isize;
        set_limits(cache);
    }
}

/// Takes the reserve out of a (shared) cache, which then charges the root
/// and has no reserve; returns the reserve.
///
/// # Safety
/// Owner thread only.
pub unsafe fn unload(cache: *mut Cache) -> isize {
    // SAFETY: owner-only.
    unsafe {
        let r = reserve(&*cache);
        (*cache).taken.store(0, Ordering::Relaxed);
        (*cache).freed.store(0, Ordering::Relaxed);
        (*cache).charged.store(0, Ordering::Relaxed);
        (*cache).node = crate::group::root();
        (*cache).tag = 0;
        set_limits(cache);
        r
    }
}

/// Hands the reserve above one batch back to the group.
///
/// # Safety
/// Owner thread only.
#[inline(never)]
pub unsafe fn trim_reserve(cache: *mut Cache, keep: isize) {
    // SAFETY: owner-only; the node is live.
    unsafe {
        let r = reserve(&*cache);
        if r > keep {
            add_charged(cache, keep - r);
            GroupNode::uncharge((*cache).node, (r - keep) as usize, true);
        }
    }
}

/// Makes sure the reserve holds `bytes` for an allocation: refills it
/// (exactly near a limit, see [`refill`]) or tops up a low one. False when
/// a limit denies it.
///
/// # Safety
/// Owner thread only.
pub unsafe fn reserve_for(cache: *mut Cache, bytes: usize, fallible: bool) -> bool {
    // SAFETY: owner-only.
    unsafe {
        // Frees since the last look may have moved the reserve's edge.
        set_limits(cache);
        let r = reserve(&*cache);
        if r < bytes as isize {
            return refill(cache, bytes as isize, fallible);
        }
        if r < (reserve_batch() / 2) as isize {
            top_up(cache);
        }
        true
    }
}

/// Hands out a block of `class` from the cache's slabs with room (the
/// reserve already holds its bytes), parking full ones on the way; null
/// when none has room. Also says whether the block reads as zero past its
/// first word (carved just now from never-touched memory).
///
/// # Safety
/// Owner thread only.
pub unsafe fn pop_block(cache: *mut Cache, class: usize) -> (*mut u8, bool) {
    // SAFETY: owner-only access to the cache's lists and slabs.
    unsafe {
        let cl = class_list(cache, class);
        loop {
            let s = (*cl).head;
            if s == empty_slab() {
                return (null_mut(), false);
            }
            let mut zero = false;
            if (*s).free.is_null() {
                if !slab::carve(s) {
                    // No room left: park it on the full list, try the next.
                    unlink_partial(cl, s);
                    push_full(cl, s);
                    continue;
                }
                zero = (*s).fresh;
            }
            let b = (*s).free;
            (*s).free = slab::next_of(s, b);
            (*s).used_rel += 1;
            if !(*s).tags().is_null() {
                slab::set_tag(s, b.cast(), (*cache).tag);
            }
            bump(&(*cache).taken, (*cl).size);
            return (b.cast(), zero);
        }
    }
}

/// Puts a slab just made for `class` at the head of the cache's list.
///
/// # Safety
/// Owner thread only; `s` was made by `slab::init` for this cache.
pub unsafe fn add_slab(cache: *mut Cache, class: usize, s: *mut Slab) {
    // SAFETY: owner-only list edit.
    unsafe {
        let cl = class_list(cache, class);
        (*cl).slabs += 1;
        push_partial_front(cl, s);
    }
}

/// Whether the cache has a slab of `class` it can allocate from now.
///
/// # Safety
/// Owner thread only.
pub unsafe fn has_head(cache: *mut Cache, class: usize) -> bool {
    // SAFETY: owner-only read.
    unsafe { (*class_list(cache, class)).head != empty_slab() }
}

/// Returns freed bytes to a cache's reserve, trimming a swollen one.
///
/// # Safety
/// Owner thread only.
#[inline(always)]
pub unsafe fn credit(cache: *mut Cache, bytes: usize) {
    // SAFETY: owner-only.
    unsafe {
        let f = (*cache).freed.load(Ordering::Relaxed) + bytes;
        (*cache).freed.store(f, Ordering::Relaxed);
        if f > (*cache).free_limit {
            crate::hint::cold_path();
            credit_slow(cache);
        }
    }
}

/// `freed` passed its limit, so the reserve may be above `reserve_high`:
/// trim it to one batch. It is trimmed even when allocations since the
/// last look kept it just below, so the next look is a batch away rather
/// than a few frees.
///
/// # Safety
/// Owner thread only; `cache` is one of its live caches.
#[inline(never)]
unsafe fn credit_slow(cache: *mut Cache) {
    // SAFETY: owner-only.
    unsafe {
        trim_reserve(cache, reserve_batch() as isize);
        set_limits(cache);
    }
}

/// Puts `b`, a block of `s` another thread freed (collected, or kept in a
/// magazine until now), on the slab's free list, moving the slab on when it
/// needs it ([`after_free`]). Its group was credited when it was freed.
///
/// # Safety
/// Owner thread only; `b` is a block of `s` that was live and is counted in
/// its `used`.
#[inline]
pub unsafe fn return_block(s: *mut Slab, b: *mut crate::layout::Block) {
    // SAFETY: owner-only; the block is no longer the program's, so its first
    // word is ours to write.
    unsafe {
        slab::link(s, b, (*s).free);
        (*s).free = b;
        (*s).used_rel -= 1;
        if (*s).used_rel < 0 {
            after_free(s);
        }
    }
}

/// Blocks came back to a slab (a local free, or collected remote frees):
/// move it between lists and give it back when empty (unless it is its
/// cache's allocation head).
///
/// # Safety
/// Owner thread only.
pub unsafe fn after_free(s: *mut Slab) {
    // SAFETY: owner-only access to the slab and its cache's lists.
    unsafe {
        let cache = (*s).cache.load(Ordering::Relaxed).cast::<Cache>();
        if cache.is_null() {
            if (*s).used() == 0 {
                segment::release_slab(s);
            }
            return;
        }
        let cl = class_list(cache, (*s).class as usize);
        if (*s).list == LIST_FULL {
            unlink_full(cl, s);
            push_partial_second(cl, s);
        }
        if (*s).used() == 0 && (*cl).head != s {
            if ((*cl).empties as usize) + 1 < empty_slabs_kept() {
                (*cl).empties += 1;
            } else {
                release(cl, s);
            }
        }
    }
}

/// Unlinks an empty slab and gives its span back to the segment.
///
/// # Safety
/// Owner thread only; `s` is an empty slab on `cl`'s partial list.
unsafe fn release(cl: *mut ClassList, s: *mut Slab) {
    // SAFETY: owner-only; the slab holds no live block.
    unsafe {
        unlink_partial(cl, s);
        (*cl).slabs -= 1;
        segment::release_slab(s);
    }
}

/// Gives back every empty slab of the cache, heads included; used by purge
/// and when a cache is dropped.
///
/// # Safety
/// Owner thread only.
pub unsafe fn release_empty_slabs(cache: *mut Cache) {
    // SAFETY: owner-only walk of the cache's lists.
    unsafe {
        for class in 0..NUM_CLASSES {
            let cl = class_list(cache, class);
            let mut s = (*cl).head;
            while s != empty_slab() && !s.is_null() {
                let next = (*s).next;
                if (*s).used() == 0 {
                    release(cl, s);
                }
                s = if next.is_null() { empty_slab() } else { next };
            }
            (*cl).empties = 0;
        }
    }
}

/// Empties a cache: its reserve goes back to the group, empty slabs to the
/// segments, and the rest become orphans that go back with their last
/// block. The cache keeps its node reference (the caller drops it).
///
/// # Safety
/// Owner thread only.
pub unsafe fn empty_out(cache: *mut Cache) {
    // SAFETY: owner-only walk of the cache's lists.
    unsafe {
        trim_reserve(cache, 0);
        release_empty_slabs(cache);
        for class in 0..NUM_CLASSES {
            let cl = class_list(cache, class);
            for mut s in [(*cl).head, (*cl).full] {
                while s != empty_slab() && !s.is_null() {
                    let next = (*s).next;
                    (*s).cache.store(null_mut(), Ordering::Relaxed);
                    (*s).set_list(LIST_ORPHAN);
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

/// Moves the slabs of dedicated cache `from` that hold live blocks into
/// `to`, the thread's shared cache, as tagged slabs: when a promoted
/// group's cache goes, this thread (or the next to adopt its segments)
/// fills their room with any group's objects, instead of leaving them
/// orphans that wait for their last block. Untagged slabs gain tags
/// ([`slab::share`]) and give up their reference on the group: the return
/// value counts those, for the caller to release. A slab that gets no tag
/// array (out of memory) stays for [`empty_out`].
///
/// # Safety
/// Owner thread only; `from` is a dedicated cache of this thread, `to` its
/// shared cache.
pub unsafe fn share_slabs(from: *mut Cache, to: *mut Cache) -> usize {
    let mut released = 0;
    // SAFETY: owner-only edit of both caches' lists, on slabs the walk
    // hands over with live blocks.
    unsafe {
        walk_live_slabs(from, |cl, s, full| {
            let tagged = !(*s).tags().is_null();
            if tagged || !slab::share(s).is_null() {
                released += usize::from(!tagged);
                move_slab(cl, s, full, to);
            }
            true
        });
    }
    released
}

/// Moves the slabs of shared cache `from` whose live blocks all charge
/// `to`'s group into `to`, the group's new dedicated cache, untagged
/// ([`slab::unshare`]), looking at no more than [`CLAIM_SCAN`] slabs with
/// live blocks. Called at promotion: the blocks the group allocated before
/// it would otherwise each be freed on the slow path (their slabs are not
/// the current cache's), and their slabs' room could not serve the group.
///
/// # Safety
/// Owner thread only; `from` is this thread's shared cache, not current;
/// `to` a dedicated cache of this thread.
pub unsafe fn claim_slabs(from: *mut Cache, to: *mut Cache) {
    let mut left = CLAIM_SCAN;
    // SAFETY: owner-only edit of both caches' lists, on slabs the walk
    // hands over with live blocks; `to` holds its node.
    unsafe {
        walk_live_slabs(from, |cl, s, full| {
            if left == 0 {
                return false;
            }
            left -= 1;
            if slab::unshare(s, (*to).node, (*to).tag) {
                move_slab(cl, s, full, to);
            }
            true
        });
    }
}

/// The most slabs with live blocks [`claim_slabs`] looks at: a promotion
/// follows `PROMOTE_AFTER` bytes (256 slabs of one slice), and a thread
/// that serves many groups does not walk all their slabs.
const CLAIM_SCAN: usize = 512;

/// Calls `f(list, slab, on_full_list)` for each slab of `cache` with live
/// blocks, class by class, partial list then full, until `f` returns
/// false. `f` may move the slab it is given off its list.
///
/// # Safety
/// Owner thread only; `cache` is one of its caches.
unsafe fn walk_live_slabs(
    cache: *mut Cache,
    mut f: impl FnMut(*mut ClassList, *mut Slab, bool) -> bool,
) {
    // SAFETY: owner-only walk; `next` is read before `f` may unlink the slab.
    unsafe {
        for class in 0..NUM_CLASSES {
            let cl = class_list(cache, class);
            for full in [false, true] {
                let mut s = if full { (*cl).full } else { (*cl).head };
                while s != empty_slab() && !s.is_null() {
                    let next = (*s).next;
                    if (*s).used() > 0 && !f(cl, s, full) {
                        return;
                    }
                    s = next;
                }
            }
        }
    }
}

/// Moves slab `s` from list `cl` (its full list when `full`) to cache `to`.
///
/// # Safety
/// Owner thread only; `s` is on that list; it has live blocks, all charging
/// `to`'s group unless it is tagged.
unsafe fn move_slab(cl: *mut ClassList, s: *mut Slab, full: bool, to: *mut Cache) {
    // SAFETY: owner-only list edits.
    unsafe {
        if full {
            unlink_full(cl, s);
        } else {
            unlink_partial(cl, s);
        }
        (*cl).slabs -= 1;
        adopt_slab(to, s);
    }
}

/// Moves a slab of `class` with room and live blocks from shared cache
/// `from` to the allocation head of `to` (see `heap::reuse_slab`);
/// false when `from` has none.
///
/// # Safety
/// Owner thread only; both are caches of this thread, `from` its shared one
/// and not the current cache.
pub unsafe fn lend_slab(from: *mut Cache, to: *mut Cache, class: usize) -> bool {
    // SAFETY: owner-only edit of both caches' lists.
    unsafe {
        let cl = class_list(from, class);
        let mut s = (*cl).head;
        while s != empty_slab() && !s.is_null() {
            if (*s).used() > 0 && slab::has_room(s) {
                unlink_partial(cl, s);
                (*cl).slabs -= 1;
                // Blocks of `to`'s group only: the slab becomes `to`'s own,
                // untagged. Otherwise it keeps its tags, and `to` writes its
                // group's tag in it.
                slab::unshare(s, (*to).node, (*to).tag);
                let to_cl = class_list(to, class);
                (*s).cache.store(to.cast(), Ordering::Relaxed);
                (*to_cl).slabs += 1;
                push_partial_front(to_cl, s);
                return true;
            }
            s = (*s).next;
        }
        false
    }
}

/// Takes a slab with live blocks into the cache (adoption).
///
/// # Safety
/// Owner thread only; `s` has live blocks, no cache, and charges `cache`'s
/// group.
pub unsafe fn adopt_slab(cache: *mut Cache, s: *mut Slab) {
    // SAFETY: owner-only.
    unsafe {
        let cl = class_list(cache, (*s).class as usize);
        (*s).cache.store(cache.cast(), Ordering::Relaxed);
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
///
/// # Safety
/// Owner thread only; `s` is a slab of `cl`'s class on `cl`'s partial list.
unsafe fn set_head(cl: *mut ClassList, s: *mut Slab) {
    // SAFETY: owner-only; the sentinel is never written.
    unsafe {
        let old = (*cl).head;
        if old != empty_slab() && old != s && (*old).list == LIST_HEAD {
            (*old).set_list(LIST_PARTIAL);
        }
        if s != empty_slab() {
            if (*s).used() == 0 && (*cl).empties > 0 && (*s).carved > 0 {
                // A kept empty slab becomes the head: it is in use again.
                (*cl).empties -= 1;
            }
            (*s).set_list(LIST_HEAD);
        }
        (*cl).head = s;
    }
}

/// # Safety
/// Owner thread only; `s` is a slab of `cl`'s class on no list.
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
///
/// # Safety
/// Owner thread only; `s` is a slab of `cl`'s class on no list.
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
        (*s).set_list(LIST_PARTIAL);
        if !n.is_null() {
            (*n).prev = s;
        }
        (*h).next = s;
    }
}

/// # Safety
/// Owner thread only; `s` is on `cl`'s partial list.
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
        (*s).set_list(LIST_PARTIAL);
    }
}

/// # Safety
/// Owner thread only; `s` is a slab of `cl`'s class on no list.
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
        (*s).set_list(LIST_FULL);
    }
}

/// # Safety
/// Owner thread only; `s` is on `cl`'s full list.
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
        (*s).set_list(LIST_PARTIAL);
    }
}
