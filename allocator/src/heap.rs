//! Thread heaps: each thread's segments and caches, thread start and exit,
//! adoption of abandoned segments, and purging.
//!
//! A thread's heap pointer lives in a `const`-initialised thread local with
//! no destructor, so reading it is one load; it starts at a placeholder heap
//! whose caches are empty, so the first allocation falls into the slow path,
//! which makes the real heap. Thread exit is caught by a pthread key
//! destructor (registered on that slow path), which abandons the heap's
//! segments for other threads to adopt.

use crate::atomic_stack::{self, Link};
use crate::cache::{self, Cache};
use crate::group::{self, GroupNode};
use crate::layout::{ABANDONED, HEADER_SLICES, SLICES, SLICE_SIZE};
use crate::magazine::{self, Magazines};
use crate::meta_pool::MetaPool;
use crate::os;
use crate::pending_credit::PendingCredits;
use crate::remote::{self, Outbox};
use crate::segment::{self, Segment, ABANDONED_SEGMENTS};
use crate::slab::{Slab, LIST_ORPHAN, SPAN_SLAB};
use crate::{counters, death_log, slab};
use core::cell::Cell;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, AtomicUsize, Ordering};

/// Free spans wait this long before their pages go back to the OS.
static PURGE_DELAY_MS: AtomicU64 = AtomicU64::new(10);
/// Bumped by [`purge_all`]; heaps that see it change purge everything.
static PURGE_REQUESTS: AtomicU64 = AtomicU64::new(0);
/// When the abandoned segments were last purged ([`purge_abandoned`]), in
/// `os::now_ms` time (0: never): one pass per purge delay for the whole
/// process, by whichever heap's timer comes first. A heap's own timer
/// starts at 0, so without this every new thread walked them all at its
/// first slab, and while one did they were off the stack, where a thread
/// starting beside it could find none to adopt.
static ABANDONED_PURGED_AT: AtomicU64 = AtomicU64::new(0);
/// Every this many slow-path collections, look for remote frees in every
/// segment even without a raised flag (a flag can be missed in a narrow
/// race). A missed block was credited to its group when freed; only its
/// memory waits, so the scan, whose cost grows with the heap's slabs (a
/// thousand groups keep a thousand), can be rare.
const FULL_REMOTE_SCAN_EVERY: u32 = 1024;

/// A thread's heap.
#[repr(C)]
pub struct Heap {
    pub link: Link,
    /// Counted in statistics (a thread uses it).
    pub live: AtomicBool,
    /// The cache the fast path allocates from.
    pub current: *mut Cache,
    /// The group the thread allocates in.
    pub group: *mut GroupNode,
    /// The group cache loaded into `shared` (null: none; `shared` then
    /// charges the root and is not current).
    pub active: *mut GroupCache,
    /// The group caches this thread keeps (see [`GroupTable`]); null until
    /// the thread first enters a group, so other threads pay nothing.
    pub table: *mut GroupTable,
    /// Bit `s % 64` of word `s / 64`: set `s` of the table has held an
    /// entry, so walks over the table touch only the sets used (a thread
    /// that served a few groups reads a few lines, not the whole table).
    pub used_sets: [AtomicU64; SETS / 64],
    /// Bumped on every switch to a group; a group cache's `last_used`.
    /// 32 bits, compared as wrapping ages: an entry is then 32 bytes.
    pub clock: u32,
    /// Nesting depth of `fallible` sections: over-limit charges fail.
    pub fallible: u32,
    /// Deaths in the `death_log` this heap has looked at (a count).
    pub death_seen: u64,
    /// Entries left in the current sweep for dead groups, and where it is.
    pub sweep_left: usize,
    pub sweep_at: usize,
    pub segments: *mut Segment,
    /// When this heap last purged on its timer (`os::now_ms`; 0: never).
    pub last_purge_ms: u64,
    pub purge_seen: u64,
    /// Slow-path collections of remote frees, counting towards the next
    /// full scan.
    pub remote_scans: u32,
    /// Blocks this thread freed into other threads' segments, not yet sent.
    pub outbox: Outbox,
    /// Blocks of the root cache's slabs other threads freed, kept for
    /// reuse as addresses (see `magazine`); null until the first.
    pub magazines: *mut Magazines,
    /// Raised by threads that sent remote frees to this heap's segments.
    pub pending: Pending,
    /// Credits for frees of groups this thread keeps no cache for, held
    /// back and handed over in batches (see `pending_credit`).
    pub credits: PendingCredits,
    /// The root group's cache.
    pub root: Cache,
    /// The slabs the thread's groups share (tagged), with the loaded group
    /// cache's reserve.
    pub shared: Cache,
}

/// A heap's flag that some of its segments' inboxes hold remote frees, on
/// a line of its own (other threads write it).
#[repr(C, align(64))]
pub struct Pending(AtomicBool);

/// Sets and ways of a heap's group-cache table: a thread keeps at most
/// `SETS * WAYS` group caches.
pub const SETS: usize = 2048;
pub const WAYS: usize = 8;
/// Entries of a [`GroupTable`].
pub const ENTRIES: usize = SETS * WAYS;

/// One group's front on one thread, while it is not loaded: its saved
/// reserve, or the group's dedicated cache (isolated and busy groups).
/// All zero is an empty entry.
#[repr(C)]
pub struct GroupCache {
    /// The group (holds a reference); null in an empty entry.
    pub node: *mut GroupNode,
    /// Bytes charged to `node` and not handed out, while not loaded (owner
    /// writes with plain stores; statistics read it). At most
    /// `cache::saved_reserve_max()` once saved.
    pub reserve: AtomicIsize,
    /// A dedicated cache (slabs and live reserve of its own), or null.
    pub dedicated: *mut Cache,
    /// The heap's clock when the thread last switched to the group.
    pub last_used: u32,
    /// `node`'s index (the tag its blocks in shared slabs carry), kept here
    /// so a switch to a kept group reads nothing of the group's.
    pub tag: u32,
}

const _: () = assert!(core::mem::size_of::<GroupCache>() == 32);

/// A thread's group caches: `SETS` sets of `WAYS` entries, a group's set
/// picked by its record's address, the least recently used entry of a full
/// set evicted (see [`ways_of`] for the order in memory). Mapped from the
/// OS (all zero: empty) on the thread's first
/// switch to a group.
#[repr(C)]
pub struct GroupTable {
    pub entries: [GroupCache; ENTRIES],
}

// SAFETY: the only shared heap is the immutable placeholder; real heaps are
// used by their thread, and other threads read only the atomic fields.
unsafe impl Sync for Heap {}

static PLACEHOLDER_CACHE: Cache = Cache::empty();
static PLACEHOLDER: Heap = Heap {
    link: Link {
        next: core::sync::atomic::AtomicPtr::new(null_mut()),
    },
    live: AtomicBool::new(false),
    current: &PLACEHOLDER_CACHE as *const Cache as *mut Cache,
    group: null_mut(),
    active: null_mut(),
    table: null_mut(),
    used_sets: [const { AtomicU64::new(0) }; SETS / 64],
    clock: 0,
    fallible: 0,
    death_seen: 0,
    sweep_left: 0,
    sweep_at: 0,
    segments: null_mut(),
    last_purge_ms: 0,
    purge_seen: 0,
    remote_scans: 0,
    outbox: Outbox::new(),
    magazines: null_mut(),
    pending: Pending(AtomicBool::new(false)),
    credits: PendingCredits::new(),
    root: Cache::empty(),
    shared: Cache::empty(),
};

static HEAPS: MetaPool = MetaPool::new(core::mem::size_of::<Heap>());

thread_local! {
    static HEAP: Cell<*mut Heap> = const {
        Cell::new(&PLACEHOLDER as *const Heap as *mut Heap)
    };
    /// The heap's current cache, mirrored here so the allocation fast path
    /// reaches it in one load.
    static CACHE: Cell<*mut Cache> = const {
        Cell::new(&PLACEHOLDER_CACHE as *const Cache as *mut Cache)
    };
    /// Set when the thread's heap was torn down at exit: later frees do not
    /// make a heap (one made now might never be torn down).
    static EXITED: Cell<bool> = const { Cell::new(false) };
}

/// The calling thread's current cache (the placeholder's before the first
/// allocation; its `heap` is null).
#[inline(always)]
pub fn current_cache() -> *mut Cache {
    CACHE.with(|c| c.get())
}

/// Makes `c` the heap's current cache.
///
/// # Safety
/// `h` is the calling thread's heap and `c` one of its live caches.
unsafe fn make_current(h: *mut Heap, c: *mut Cache) {
    // SAFETY: owner-only write.
    unsafe { (*h).current = c };
    CACHE.with(|t| t.set(c));
}

/// The calling thread's heap, or the placeholder.
#[inline(always)]
pub fn current() -> *mut Heap {
    HEAP.with(|h| h.get())
}

#[inline(always)]
pub fn is_placeholder(h: *mut Heap) -> bool {
    core::ptr::eq(h, &PLACEHOLDER)
}

/// Bytes held in reserves of live caches (charged, not handed out).
pub fn reserves_in_live_caches() -> isize {
    let mut sum = 0;
    HEAPS.for_each_slot(|p| {
        let h = p.cast::<Heap>();
        // SAFETY: pool records are never unmapped; only atomics are read.
        unsafe {
            if (*h).live.load(Ordering::Acquire) {
                sum += cache::reserve(&(*h).root) + cache::reserve(&(*h).shared);
                sum += (*h).credits.held() as isize;
            }
        }
    });
    cache::CACHES.for_each_slot(|p| {
        let c = p.cast::<Cache>();
        // SAFETY: as above.
        unsafe {
            if (*c).live.load(Ordering::Acquire) {
                sum += cache::reserve(&*c);
            }
        }
    });
    HEAPS.for_each_slot(|p| {
        let h = p.cast::<Heap>();
        // SAFETY: as above.
        unsafe {
            let t = (*h).table;
            if (*h).live.load(Ordering::Acquire) && !t.is_null() {
                for set in (0..SETS).filter(|&set| set_used(h, set)) {
                    for i in ways_of(set) {
                        sum += (*t).entries[i].reserve.load(Ordering::Relaxed);
                    }
                }
            }
        }
    });
    sum
}

// --- thread start and exit ---

static KEY_STATE: AtomicUsize = AtomicUsize::new(0); // key + 1, 0 = unset

fn exit_key() -> Option<libc::pthread_key_t> {
    let k = KEY_STATE.load(Ordering::Acquire);
    if k != 0 {
        return Some((k - 1) as libc::pthread_key_t);
    }
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: `key` is a valid out-pointer; the destructor is an extern "C"
    // fn that never unwinds.
    if unsafe { libc::pthread_key_create(&mut key, Some(on_thread_exit)) } != 0 {
        return None;
    }
    match KEY_STATE.compare_exchange(0, key as usize + 1, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Some(key),
        Err(won) => {
            // SAFETY: our key was never used.
            unsafe { libc::pthread_key_delete(key) };
            Some((won - 1) as libc::pthread_key_t)
        }
    }
}

/// Makes the calling thread's heap; null when out of memory.
#[cold]
pub fn init_thread() -> *mut Heap {
    if !os::page_size_ok() {
        os::fatal("memcg: the allocator needs 4 KiB pages\n");
    }
    slab::init_secret();
    let h = HEAPS.alloc().cast::<Heap>();
    if h.is_null() {
        return null_mut();
    }
    // SAFETY: a pool record is ours until freed; we initialise every field.
    unsafe {
        core::ptr::write(
            h,
            Heap {
                link: Link {
                    next: core::sync::atomic::AtomicPtr::new(null_mut()),
                },
                live: AtomicBool::new(false),
                current: null_mut(),
                group: group::root(),
                active: null_mut(),
                table: null_mut(),
                used_sets: [const { AtomicU64::new(0) }; SETS / 64],
                clock: 0,
                fallible: 0,
                death_seen: death_log::deaths(),
                sweep_left: 0,
                sweep_at: 0,
                segments: null_mut(),
                last_purge_ms: 0,
                purge_seen: PURGE_REQUESTS.load(Ordering::Relaxed),
                remote_scans: 0,
                outbox: Outbox::new(),
                magazines: null_mut(),
                pending: Pending(AtomicBool::new(false)),
                credits: PendingCredits::new(),
                root: Cache::empty(),
                shared: Cache::empty(),
            },
        );
        Cache::init(&raw mut (*h).root, group::root());
        Cache::init(&raw mut (*h).shared, group::root());
        (*h).shared.tagged = true;
        (*h).current = &raw mut (*h).root;
        CACHE.with(|t| t.set(&raw mut (*h).root));
        crate::root_charge::register();
        (*h).live.store(true, Ordering::Release);
        if let Some(key) = exit_key() {
            libc::pthread_setspecific(key, h.cast());
        }
    }
    HEAP.with(|c| c.set(h));
    h
}

extern "C" fn on_thread_exit(p: *mut libc::c_void) {
    let h = p.cast::<Heap>();
    if h.is_null() {
        return;
    }
    // Frees from later destructors now take the remote path; allocations
    // make a fresh heap, which the key's next round tears down again.
    HEAP.with(|c| c.set(&PLACEHOLDER as *const Heap as *mut Heap));
    CACHE.with(|c| c.set(&PLACEHOLDER_CACHE as *const Cache as *mut Cache));
    EXITED.with(|e| e.set(true));
    // SAFETY: `h` was this thread's heap and is no longer reachable from it.
    unsafe { abandon(h) };
}

/// Gives up a heap: empty slabs go back, its segments are abandoned for
/// adoption, the record returns to the pool.
///
/// # Safety
/// `h` is the exiting thread's heap, no longer reachable from it.
unsafe fn abandon(h: *mut Heap) {
    // SAFETY: the exiting thread owns the heap and its segments.
    unsafe {
        send_outbox(h);
        collect_remote_frees_all(h);
        magazine::release(&raw mut (*h).magazines);
        (*h).credits.hand_over_all();
        make_current(h, &raw mut (*h).root);
        (*h).group = group::root();
        let t = (*h).table;
        if !t.is_null() {
            for i in used_entries(h) {
                evict(h, i);
            }
            (*h).table = null_mut();
            free_table(t);
        }
        cache::empty_out(&raw mut (*h).root);
        cache::empty_out(&raw mut (*h).shared);
        (*h).root.live.store(false, Ordering::Release);
        (*h).shared.live.store(false, Ordering::Release);
        // Segments go whole, free spans still resident: the next thread
        // to need a span adopts them (a burst of short threads reuses the
        // same memory without faults or system calls), and the purge timer
        // of any heap gives back what waits too long (`purge_abandoned`).
        // Pushed newest first, so the segment this heap took first is the
        // first adopted: the most carved one, its slabs' free room used
        // before a newer segment's untouched spans are carved into. In
        // rounds of threads in one busy group the next thread then fills
        // the slabs this one left (`groups_slab_reuse`).
        let mut seg = (*h).segments;
        while !seg.is_null() {
            let next = (*seg).next;
            (*seg).next = null_mut();
            (*seg).prev = null_mut();
            (*seg).thread_id.store(ABANDONED, Ordering::Release);
            ABANDONED_SEGMENTS.push(seg.cast());
            seg = next;
        }
        (*h).segments = null_mut();
        // Dropping the current cache above pointed the thread at this
        // heap's root cache; point it back at the placeholder.
        CACHE.with(|c| c.set(&PLACEHOLDER_CACHE as *const Cache as *mut Cache));
        (*h).live.store(false, Ordering::Release);
        crate::root_charge::retire();
        HEAPS.free(h.cast());
    }
}

// --- segments and slabs ---

/// # Safety
/// Owner thread only; `seg` is on no heap's list.
unsafe fn link_segment(h: *mut Heap, seg: *mut Segment) {
    // SAFETY: owner-only list edit.
    unsafe {
        (*seg).prev = null_mut();
        (*seg).next = (*h).segments;
        if !(*h).segments.is_null() {
            (*(*h).segments).prev = seg;
        }
        (*h).segments = seg;
    }
}

/// # Safety
/// Owner thread only; `seg` is on `h`'s list.
unsafe fn unlink_segment(h: *mut Heap, seg: *mut Segment) {
    // SAFETY: owner-only list edit.
    unsafe {
        let (p, n) = ((*seg).prev, (*seg).next);
        if p.is_null() {
            (*h).segments = n;
        } else {
            (*p).next = n;
        }
        if !n.is_null() {
            (*n).prev = p;
        }
    }
}

/// A span for a new slab of `class`; null when out of memory.
///
/// # Safety
/// Owner thread only.
pub unsafe fn new_slab(h: *mut Heap, c: *mut Cache, class: usize) -> *mut Slab {
    // SAFETY: owner-only access to the heap's segments.
    unsafe {
        maybe_purge(h);
        sweep_dead_caches(h);
        let cl = &(*c).classes[class];
        let count = slab::slices_for(class, cl.slabs);
        let align = slab::span_align(class);
        // Resident (dirty) space first, in any segment: a slab made there
        // faults in no page, and those pages do not sit resident waiting
        // for a purge while fresh ones are touched.
        for dirty_only in [true, false] {
            let mut seg = (*h).segments;
            while !seg.is_null() {
                let d = Segment::alloc_span(seg, count, align, dirty_only);
                if !d.is_null() {
                    return activated(d);
                }
                seg = (*seg).next;
            }
        }
        for _ in 0..4 {
            let seg = adopt_one(h);
            if seg.is_null() {
                break;
            }
            let d = Segment::alloc_span(seg, count, align, false);
            if !d.is_null() {
                return activated(d);
            }
        }
        let seg = Segment::create(h as usize);
        if seg.is_null() {
            return null_mut();
        }
        link_segment(h, seg);
        activated(Segment::alloc_span(seg, count, align, false))
    }
}

/// # Safety
/// `d` is a span just taken for a slab.
unsafe fn activated(d: *mut Slab) -> *mut Slab {
    // SAFETY: `d` is a span just taken.
    unsafe { counters::note_active(((*d).slice_count as usize * SLICE_SIZE) as isize) };
    d
}

/// Takes one abandoned segment into the heap; null when there is none.
///
/// # Safety
/// `h` is the calling thread's heap.
unsafe fn adopt_one(h: *mut Heap) -> *mut Segment {
    let first = ABANDONED_SEGMENTS.take_all().cast::<Segment>();
    if first.is_null() {
        return null_mut();
    }
    // SAFETY: the taken list is ours alone; we keep the first segment and
    // push the others back in one step, in their order (so the next
    // adoption takes the next one their previous owner took, and the stack
    // does not look empty to other threads for a push per segment).
    unsafe {
        let rest = (*first).head.link.next.load(Ordering::Relaxed);
        if !rest.is_null() {
            ABANDONED_SEGMENTS.push_chain(rest, atomic_stack::last_of(rest));
        }
        adopt_segment(h, first);
    }
    first
}

/// Makes an abandoned segment this heap's: its slabs join the heap's caches,
/// empty ones go back.
///
/// # Safety
/// `h` is the calling thread's heap; `seg` was taken from the abandoned stack.
unsafe fn adopt_segment(h: *mut Heap, seg: *mut Segment) {
    // SAFETY: the segment was taken from the abandoned stack, so no other
    // heap owns it; Acquire on the take made the previous owner's writes
    // visible.
    unsafe {
        (*seg).thread_id.store(h as usize, Ordering::Release);
        link_segment(h, seg);
        // Its free spans may be resident: let this heap's purge look.
        segment::set_dirty(true);
        remote::collect(seg, null_mut(), null_mut());
        let mut i = HEADER_SLICES;
        while i < SLICES {
            let d = Segment::desc(seg, i);
            let n = (*d).slice_count as usize;
            if (*d).state == SPAN_SLAB {
                if (*d).used() == 0 {
                    segment::release_slab(d);
                } else if !(*d).tags().is_null() {
                    cache::adopt_slab(&raw mut (*h).shared, d);
                } else if (*d).owner == group::root() {
                    cache::adopt_slab(&raw mut (*h).root, d);
                } else {
                    // A dedicated slab stays an orphan: its group's cache
                    // here, if any, makes slabs of its own.
                    (*d).cache.store(null_mut(), Ordering::Relaxed);
                    (*d).set_list(LIST_ORPHAN);
                }
            }
            // Freed spans may merge with neighbours; the slices after this
            // span keep their boundaries (see `Segment::insert_free`).
            i += n.max(1);
        }
    }
}

/// Sends this thread's outbox and collects the remote frees other threads
/// sent to its segments: when its pending flag is up, or (all segments)
/// every [`FULL_REMOTE_SCAN_EVERY`] calls. Returns whether any slab regained
/// room.
///
/// # Safety
/// Owner thread only.
pub unsafe fn collect_remote_frees(h: *mut Heap) -> bool {
    // SAFETY: owner-only.
    unsafe {
        send_outbox(h);
        (*h).remote_scans = (*h).remote_scans.wrapping_add(1);
        let all = (*h).remote_scans % FULL_REMOTE_SCAN_EVERY == 0;
        collect_in_segments(h, all)
    }
}

/// # Safety
/// Owner thread only.
unsafe fn collect_remote_frees_all(h: *mut Heap) -> bool {
    // SAFETY: owner-only.
    unsafe { collect_in_segments(h, true) }
}

/// # Safety
/// Owner thread only.
unsafe fn collect_in_segments(h: *mut Heap, all: bool) -> bool {
    // SAFETY: owner-only walk of this heap's segments. Lowering the flag
    // before reading the inboxes pairs with a sender's push before its look
    // at the flag (all SeqCst): either the sender sees the flag down and
    // raises it again, or this walk sees its chain.
    unsafe {
        let flag = &(*h).pending.0;
        if !flag.load(Ordering::Relaxed) && !all {
            return false;
        }
        flag.swap(false, Ordering::SeqCst);
        let mut found = false;
        let mut seg = (*h).segments;
        while !seg.is_null() {
            // Collecting may give the segment's last slab back, never the
            // segment (that is purge's), so `next` stays valid.
            found |= remote::collect(seg, &raw mut (*h).magazines, &raw mut (*h).root);
            seg = (*seg).next;
        }
        found
    }
}

/// Whether other threads sent remote frees to this heap's segments since
/// it last collected.
///
/// # Safety
/// `h` is the calling thread's heap.
#[inline]
pub unsafe fn remote_pending(h: *mut Heap) -> bool {
    // SAFETY: the caller's heap; the flag is atomic.
    unsafe { (*h).pending.0.load(Ordering::Relaxed) }
}

/// Sends every chain of this thread's outbox.
///
/// # Safety
/// `h` is the calling thread's heap.
pub unsafe fn send_outbox(h: *mut Heap) {
    // SAFETY: the caller's heap and outbox.
    unsafe {
        if !(*h).outbox.is_empty() {
            remote::send_all(&raw mut (*h).outbox, raise_pending);
        }
    }
}

/// Frees `b`, a block of another heap's (or an abandoned) segment `seg`,
/// from the calling thread, whose heap is `h` (or the placeholder).
///
/// # Safety
/// `b` is a live block of `seg`, which `h` does not own; its group has been
/// credited.
#[inline(always)]
pub unsafe fn free_remote(h: *mut Heap, seg: *mut Segment, b: *mut crate::layout::Block) {
    // SAFETY: the outbox is the calling thread's; the placeholder has none,
    // so its frees go one block at a time.
    unsafe {
        if is_placeholder(h) {
            raise_pending(remote::send_one(seg, b));
            return;
        }
        remote::add(&raw mut (*h).outbox, seg, b, raise_pending);
    }
}

/// Raises the pending flag of the heap whose address a segment's owner word
/// held when a chain was pushed. The heap may have exited since and its
/// record been reused: a record is never unmapped, so the store is safe,
/// and a stray flag costs its heap one walk of its segments.
#[inline(never)]
fn raise_pending(to: remote::SentTo) {
    if to == 0 || to == ABANDONED {
        return;
    }
    let flag = to as *const Heap;
    // SAFETY: heap records come from `HEAPS`, whose memory stays mapped;
    // `pending` is an atomic at the same place in every record.
    unsafe {
        let f = &(*flag).pending.0;
        if !f.load(Ordering::SeqCst) {
            f.store(true, Ordering::SeqCst);
        }
    }
}

// --- purging ---

/// Sets how long free memory waits before it goes back to the OS.
pub fn set_purge_delay_ms(ms: u64) {
    PURGE_DELAY_MS.store(ms, Ordering::Relaxed);
}

/// How long free memory waits before it goes back to the OS.
pub fn purge_delay_ms() -> u64 {
    PURGE_DELAY_MS.load(Ordering::Relaxed)
}

/// # Safety
/// Owner thread only.
unsafe fn maybe_purge(h: *mut Heap) {
    // SAFETY: owner-only.
    unsafe {
        let requested = PURGE_REQUESTS.load(Ordering::Relaxed);
        if requested != (*h).purge_seen {
            (*h).purge_seen = requested;
            purge_heap(h, u64::MAX);
            return;
        }
        let own = segment::has_dirty();
        if !own && ABANDONED_SEGMENTS.is_empty() {
            return;
        }
        // Timers keep when they last ran, not when they next run: a delay
        // changed by `set_purge_delay_ms` counts at once, in both ways.
        let now = os::now_ms();
        let delay = purge_delay_ms();
        if !purge_due((*h).last_purge_ms, now, delay) {
            return;
        }
        (*h).last_purge_ms = now;
        if own {
            purge_heap(h, now.saturating_sub(delay));
        }
        let last = ABANDONED_PURGED_AT.load(Ordering::Relaxed);
        if purge_due(last, now, delay)
            && ABANDONED_PURGED_AT
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            purge_abandoned(now.saturating_sub(delay));
        }
    }
}

/// Whether a purge timer that last ran at `last` (0: never) is due at
/// `now`: at most one pass per millisecond, and per `delay`.
fn purge_due(last: u64, now: u64, delay: u64) -> bool {
    last == 0 || now.saturating_sub(last) >= delay.max(1)
}

/// Gives back the free pages of abandoned segments freed at or before
/// `older_than`, and unmaps abandoned segments left with no slab. While
/// taken off the stack the segments are this thread's alone (other threads
/// only push onto their inboxes), as if adopted for the moment: so the
/// pass also collects their inboxes. Blocks that outlived their thread and
/// were freed afterwards then empty their slabs here, and the next pass
/// gives those pages back, without waiting for a thread to adopt them.
fn purge_abandoned(older_than: u64) {
    // SAFETY: the taken list is ours alone; each segment goes back on the
    // stack or is unmapped.
    unsafe {
        // Bottom first, so that the segments go back as they came, each as
        // soon as it is purged, and keep the order adoption relies on.
        let mut seg = atomic_stack::reversed(ABANDONED_SEGMENTS.take_all()).cast::<Segment>();
        while !seg.is_null() {
            let next = (*seg)
                .head
                .link
                .next
                .load(Ordering::Relaxed)
                .cast::<Segment>();
            // Its slabs are orphans (no cache), as adoption finds them:
            // a slab this empties goes back to the segment as free space.
            remote::collect(seg, null_mut(), null_mut());
            Segment::purge(seg, older_than);
            if Segment::is_unused(seg)
                && (*seg).resident == HEADER_SLICES * SLICE_SIZE
                && (*seg).inbox.0.load(Ordering::Acquire).is_null()
            {
                Segment::destroy(seg);
            } else {
                ABANDONED_SEGMENTS.push(seg.cast());
            }
            seg = next;
        }
    }
}

/// Purges free spans freed at or before `older_than`, and unmaps segments
/// left with no slab (keeping one when purging on a timer).
///
/// # Safety
/// Owner thread only.
unsafe fn purge_heap(h: *mut Heap, older_than: u64) {
    // SAFETY: owner-only walk of this heap's segments.
    unsafe {
        let mut dirty = false;
        let mut kept_unused = older_than != u64::MAX;
        let mut seg = (*h).segments;
        while !seg.is_null() {
            let next = (*seg).next;
            dirty |= Segment::purge(seg, older_than);
            if Segment::is_unused(seg) && (*seg).resident == HEADER_SLICES * SLICE_SIZE {
                if kept_unused {
                    kept_unused = false;
                } else {
                    unlink_segment(h, seg);
                    Segment::destroy(seg);
                }
            }
            seg = next;
        }
        segment::set_dirty(dirty);
    }
}

/// Gives back everything free now: this thread's empty slabs and free
/// pages, abandoned segments' free memory (adopting them), unused segments;
/// other threads do the same at their next slow path.
pub fn purge_all() {
    let mut h = current();
    if is_placeholder(h) {
        h = init_thread();
        if h.is_null() {
            return;
        }
    }
    PURGE_REQUESTS.fetch_add(1, Ordering::Relaxed);
    crate::large_cache::purge();
    // SAFETY: `h` is this thread's heap.
    unsafe {
        (*h).purge_seen = PURGE_REQUESTS.load(Ordering::Relaxed);
        while !adopt_one(h).is_null() {}
        collect_remote_frees_all(h);
        sweep_all_dead(h);
        magazine::return_all((*h).magazines);
        cache::release_empty_slabs(&raw mut (*h).root);
        cache::release_empty_slabs(&raw mut (*h).shared);
        for g in entries(h) {
            if !(*g).dedicated.is_null() {
                cache::release_empty_slabs((*g).dedicated);
            }
        }
        purge_heap(h, u64::MAX);
    }
}

// --- groups: the thread's caches ---

/// The heap a remote free from this thread goes through: `h`, the thread's
/// own, or for a thread that has none yet (it frees what others made, as a
/// consumer does) one made now, so its frees travel in batches. An exiting
/// thread, or one out of memory, keeps the placeholder.
#[inline]
pub fn heap_for_remote_free(h: *mut Heap) -> *mut Heap {
    if !is_placeholder(h) || EXITED.with(|e| e.get()) {
        return h;
    }
    let made = init_thread();
    if made.is_null() {
        h
    } else {
        made
    }
}

/// This thread's heap, made if needed; null when out of memory.
pub fn current_or_init() -> *mut Heap {
    let h = current();
    if is_placeholder(h) {
        init_thread()
    } else {
        h
    }
}

/// Bytes of a [`GroupTable`] mapping.
const TABLE_BYTES: usize = core::mem::size_of::<GroupTable>().next_multiple_of(os::PAGE_SIZE);

/// The indices of the occupied entries of the heap's table (none before
/// its first group), set by set.
///
/// # Safety
/// Owner thread only; no entry is added while the iterator lives (evicting
/// the one just yielded is fine).
unsafe fn used_entries(h: *mut Heap) -> impl Iterator<Item = usize> {
    // SAFETY: owner-only; the table, when mapped, has ENTRIES entries.
    unsafe {
        let t = (*h).table;
        let words = if t.is_null() { 0 } else { SETS / 64 };
        // A word of the bitmap at a time: a thread that served a few
        // groups exits after a few dozen loads, not one per set.
        (0..words)
            .flat_map(move |w| {
                let mut bits = (*h).used_sets[w].load(Ordering::Relaxed);
                core::iter::from_fn(move || {
                    if bits == 0 {
                        return None;
                    }
                    let set = w * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    Some(set)
                })
            })
            .flat_map(ways_of)
            .filter(move |&i| !(*entry(h, i)).node.is_null())
    }
}

/// The occupied entries of the heap's table.
///
/// # Safety
/// As for [`used_entries`].
unsafe fn entries(h: *mut Heap) -> impl Iterator<Item = *mut GroupCache> {
    // SAFETY: as in `used_entries`.
    unsafe { used_entries(h).map(move |i| entry(h, i)) }
}

/// Whether set `set` of `h`'s table has held an entry.
#[inline]
fn set_used(h: *mut Heap, set: usize) -> bool {
    // SAFETY: heap records stay mapped; the bitmap is atomic.
    unsafe { (*h).used_sets[set / 64].load(Ordering::Relaxed) & (1 << (set % 64)) != 0 }
}

/// Tables of exited threads, kept for the next threads (at most
/// [`POOLED_TABLES`]): a thread that enters groups then starts without a
/// mapping, and finds the pages it will touch first resident. A pooled
/// table is all empty (its first word holds the pool's link) and never
/// unmapped, as popping from the stack needs.
static TABLE_POOL: crate::atomic_stack::AtomicStack = crate::atomic_stack::AtomicStack::new();
static POOLED: AtomicUsize = AtomicUsize::new(0);
const POOLED_TABLES: usize = 16;

/// A table for a heap's first group: a pooled one, or a fresh mapping.
fn take_table() -> *mut GroupTable {
    let t = TABLE_POOL.pop().cast::<GroupTable>();
    if !t.is_null() {
        POOLED.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: a pooled table is ours once popped; its first entry's
        // node word held the link.
        unsafe { (*t).entries[0].node = null_mut() };
        return t;
    }
    let t = os::map(TABLE_BYTES).cast::<GroupTable>();
    if !t.is_null() {
        counters::note_mapped(TABLE_BYTES as isize);
    }
    t
}

/// Gives back an exited heap's table, all its entries empty.
///
/// # Safety
/// `t` is a table no heap uses, every entry evicted.
unsafe fn free_table(t: *mut GroupTable) {
    if POOLED.fetch_add(1, Ordering::Relaxed) < POOLED_TABLES {
        // SAFETY: the table is ours and starts with room for a link (the
        // first entry's node word, null while pooled).
        unsafe { TABLE_POOL.push(t.cast()) };
        return;
    }
    POOLED.fetch_sub(1, Ordering::Relaxed);
    // SAFETY: nothing refers to the table any more.
    unsafe { os::unmap(t.cast(), TABLE_BYTES) };
    counters::note_mapped(-(TABLE_BYTES as isize));
}

/// The entry at `i` of the heap's (mapped) table.
///
/// # Safety
/// Owner thread only (or a reader of atomics); `h` has a table and `i < ENTRIES`.
#[inline]
unsafe fn entry(h: *mut Heap, i: usize) -> *mut GroupCache {
    // SAFETY: the caller passes i < ENTRIES and a heap with a table.
    unsafe { (&raw mut (*(*h).table).entries).cast::<GroupCache>().add(i) }
}

/// The set that `node`'s group cache goes in.
#[inline]
fn set_of(node: *mut GroupNode) -> usize {
    // From the address, not a field: a switch to a group this thread does
    // not keep touches its record only later. Records are 64 bytes in a
    // table, so groups made one after another take sets one after another.
    (node as usize >> 6) % SETS
}

/// The entries of a set: way-major (way `w` of set `s` is entry
/// `w * SETS + s`), so a thread that serves a few hundred groups touches
/// the few pages of the first way, not every page of the table.
#[inline]
fn ways_of(set: usize) -> impl Iterator<Item = usize> {
    (0..WAYS).map(move |w| w * SETS + set)
}

/// The entry of the heap's group cache for `node`, if it has one: at most
/// `WAYS` compares, whatever the number of groups.
///
/// # Safety
/// Owner thread only.
#[inline]
pub unsafe fn lookup(h: *mut Heap, node: *mut GroupNode) -> Option<usize> {
    // SAFETY: owner-only read of the table.
    unsafe {
        if (*h).table.is_null() {
            return None;
        }
        let set = set_of(node);
        ways_of(set).find(|&i| (*entry(h, i)).node == node)
    }
}

/// The heap's group cache for `node`, made if needed (evicting the set's
/// least recently used one when the set is full); null when out of memory.
///
/// # Safety
/// Owner thread only; `node` is live and not the root.
unsafe fn group_cache_for(h: *mut Heap, node: *mut GroupNode) -> *mut GroupCache {
    // SAFETY: owner-only access to the table and its records.
    unsafe {
        // The first group a thread serves shares its slabs with no one
        // until a second comes: it gets a cache of its own at once, with
        // the root's fast paths (a thread that works for one tenant writes
        // and reads no tags).
        let first = (*h).table.is_null();
        if first {
            let t = take_table();
            if t.is_null() {
                return null_mut();
            }
            (*h).table = t;
        }
        if let Some(i) = lookup(h, node) {
            return entry(h, i);
        }
        let set = set_of(node);
        let mut slot = set;
        let mut oldest = 0;
        for i in ways_of(set) {
            let g = entry(h, i);
            if (*g).node.is_null() {
                slot = i;
                break;
            }
            // Ages, not stamps: the 32-bit clock may have wrapped.
            let age = (*h).clock.wrapping_sub((*g).last_used);
            if age >= oldest {
                oldest = age;
                slot = i;
            }
        }
        let g = entry(h, slot);
        if !(*g).node.is_null() {
            evict(h, slot);
        }
        let word = &(*h).used_sets[set / 64];
        word.store(
            word.load(Ordering::Relaxed) | 1 << (set % 64),
            Ordering::Relaxed,
        );
        (*node).prefetch_info();
        let mut dedicated = null_mut();
        if first || (*node).is_isolated() {
            dedicated = cache::CACHES.alloc().cast::<Cache>();
            if !dedicated.is_null() {
                Cache::init(dedicated, node);
            } else if (*node).is_isolated() {
                return null_mut();
            }
        }
        (*node).acquire();
        (*g).node = node;
        (*g).tag = (*node).index;
        (*g).reserve.store(0, Ordering::Relaxed);
        (*g).dedicated = dedicated;
        (*g).last_used = (*h).clock;
        g
    }
}

/// Gives the loaded group a dedicated cache on this thread (see
/// `cache::PROMOTE_AFTER`), moving its reserve there and making it
/// current; null (nothing changed) when out of memory.
///
/// # Safety
/// Owner thread only; the shared cache is current with a group loaded.
pub unsafe fn promote(h: *mut Heap) -> *mut Cache {
    // SAFETY: owner-only; the loaded group cache holds its node.
    unsafe {
        let g = (*h).active;
        if g.is_null() || !(*g).dedicated.is_null() {
            return null_mut();
        }
        let d = cache::CACHES.alloc().cast::<Cache>();
        if d.is_null() {
            return null_mut();
        }
        let node = (*g).node;
        Cache::init(d, node);
        (*d).promoted = true;
        let r = cache::unload(&raw mut (*h).shared);
        (*h).active = null_mut();
        cache::load(d, node, (*g).tag, r);
        (*g).dedicated = d;
        make_current(h, d);
        if !(*node).is_isolated() {
            cache::claim_slabs(&raw mut (*h).shared, d);
        }
        d
    }
}

/// The most of `node`'s reserve a thread keeps while it is not allocating
/// in it: a thread keeps thousands of saved reserves, so at most
/// `cache::saved_reserve_max()`, and none when a level of the group's
/// chain has a limit (so a limit's slack stays one live reserve per
/// thread, whatever the number of groups below it).
///
/// # Safety
/// `node` is live.
unsafe fn saved_keep(node: *mut GroupNode) -> isize {
    // SAFETY: a live node's ancestors are live.
    if unsafe { GroupNode::chain_limited(node) } {
        0
    } else {
        cache::saved_reserve_max() as isize
    }
}

/// After a local free credited `c`, a cache of this thread that is not the
/// current one: a dedicated cache's reserve is kept within what a thread
/// keeps for a group it is not allocating in, and cut to half of that when
/// past it, so the next few such frees need no uncharge (as
/// [`credit_group`] treats a saved reserve). Null, the root's and the
/// shared cache are left alone.
///
/// # Safety
/// Owner thread only; `c` is null or one of the thread's caches, not current.
pub unsafe fn trim_away_cache(h: *mut Heap, c: *mut Cache) {
    // SAFETY: owner-only; a dedicated cache holds its node.
    unsafe {
        if c.is_null() || c == &raw mut (*h).root || c == &raw mut (*h).shared {
            return;
        }
        let keep = saved_keep((*c).node);
        if cache::reserve(&*c) > keep {
            cache::trim_reserve(c, keep / 2);
        }
    }
}

/// Cuts a dedicated cache the thread is leaving down to what a thread keeps
/// for a group it is not allocating in.
///
/// # Safety
/// Owner thread only; `c` is one of the thread's caches.
unsafe fn leave_cache(h: *mut Heap, c: *mut Cache) {
    // SAFETY: owner-only; the cache holds its node.
    unsafe {
        if c != &raw mut (*h).root && c != &raw mut (*h).shared {
            cache::trim_reserve(c, saved_keep((*c).node));
        }
    }
}

/// Saves the loaded group cache's reserve out of the shared cache.
///
/// # Safety
/// Owner thread only; the shared cache is not current.
unsafe fn unload_shared(h: *mut Heap) {
    // SAFETY: owner-only.
    unsafe {
        let g = (*h).active;
        if g.is_null() {
            return;
        }
        let r = cache::unload(&raw mut (*h).shared);
        let keep = r.min(saved_keep((*g).node));
        if r > keep {
            GroupNode::uncharge((*g).node, (r - keep) as usize, true);
        }
        (*g).reserve.store(keep, Ordering::Relaxed);
        (*h).active = null_mut();
    }
}

/// Drops the group cache in `slot`: its reserve goes back to the group,
/// a dedicated cache's empty slabs to the segments, its slabs with live
/// blocks to the shared cache (an isolated group's become orphans), and
/// its reference on the group goes.
///
/// # Safety
/// Owner thread only; the group cache is not the thread's current one.
unsafe fn evict(h: *mut Heap, slot: usize) {
    // SAFETY: owner-only; the slot holds a live record.
    unsafe {
        let g = entry(h, slot);
        if (*h).active == g {
            unload_shared(h);
        }
        let node = (*g).node;
        (*g).node = null_mut();
        let r = (*g).reserve.load(Ordering::Relaxed);
        (*g).reserve.store(0, Ordering::Relaxed);
        if r > 0 {
            GroupNode::uncharge(node, r as usize, true);
        }
        let d = (*g).dedicated;
        if !d.is_null() {
            let dn = (*d).node;
            // A promoted group's slabs join the shared cache; an isolated
            // group's never hold another group's objects.
            if !(*dn).is_isolated() {
                for _ in 0..cache::share_slabs(d, &raw mut (*h).shared) {
                    GroupNode::release(dn);
                }
            }
            cache::empty_out(d);
            (*d).live.store(false, Ordering::Release);
            cache::CACHES.free(d.cast());
            GroupNode::release(dn);
        }
        GroupNode::release(node);
    }
}

/// Before a non-isolated group's dedicated cache `c` (promoted, or a
/// thread's first group's) makes a slab of `class`, it takes one with room
/// from the thread's shared cache: those the group filled before it had
/// the cache, and those adopted from exited threads (whose dedicated slabs
/// [`evict`] shares). When there is none, a busy group's cache (promoted,
/// or one that has handed out `cache::PROMOTE_AFTER`) adopts abandoned
/// segments first, at most [`ADOPT_PER_SLAB`] per call, rather than after
/// this heap's own free spans run out: otherwise their slabs' room waits,
/// partly used, beside fresh slabs (rounds of short threads in one busy
/// group grew by a round of slabs each). A lent slab whose live blocks are
/// all the group's loses its tags (`slab::unshare`); another keeps them,
/// and `c` tags what it hands out there. The root's and the shared cache,
/// and a first group's cache before it is busy, keep the plain order (own
/// spans, then adoption, in [`new_slab`]): taking segments first there made
/// every short thread grab several, and the threads beside it map fresh
/// ones. An isolated group's cache takes
/// nothing shared. True when `c` has a slab with room for `class` now.
///
/// # Safety
/// Owner thread only; `c` is one of the thread's caches, the current one.
pub unsafe fn reuse_slab(h: *mut Heap, c: *mut Cache, class: usize) -> bool {
    // SAFETY: owner-only; a dedicated cache holds its node.
    unsafe {
        let shared = &raw mut (*h).shared;
        if c == &raw mut (*h).root || c == shared || (*(*c).node).is_isolated() {
            return false;
        }
        let busy = (*c).promoted || (*c).taken.load(Ordering::Relaxed) > cache::PROMOTE_AFTER;
        let adopts = if busy { ADOPT_PER_SLAB } else { 0 };
        for _ in 0..adopts {
            if cache::lend_slab(shared, c, class) {
                return true;
            }
            if adopt_one(h).is_null() {
                return false;
            }
        }
        cache::lend_slab(shared, c, class)
    }
}

/// The most abandoned segments [`reuse_slab`] adopts for one slab.
const ADOPT_PER_SLAB: usize = 4;

/// Credits `bytes` freed from a shared slab on this thread to `owner`: to
/// the loaded reserve, to the group's saved reserve here, or straight to
/// the group when this thread keeps no cache for it.
///
/// # Safety
/// Owner thread only; `owner` is charged at least `bytes`.
pub unsafe fn credit_group(h: *mut Heap, owner: *mut GroupNode, bytes: usize) {
    // SAFETY: owner-only access to the heap's caches.
    unsafe {
        if !(*h).active.is_null() && (*h).shared.node == owner {
            cache::credit(&raw mut (*h).shared, bytes);
            return;
        }
        if owner != group::root() {
            if let Some(i) = lookup(h, owner) {
                let g = entry(h, i);
                let d = (*g).dedicated;
                if !d.is_null() {
                    cache::credit(d, bytes);
                    if d != (*h).current {
                        leave_cache(h, d);
                    }
                    return;
                }
                // Past the most a saved reserve may hold, cut it to half
                // of that, so the next few such frees need no uncharge.
                let keep = saved_keep(owner);
                let r = (*g).reserve.load(Ordering::Relaxed) + bytes as isize;
                if r > keep {
                    (*g).reserve.store(keep / 2, Ordering::Relaxed);
                    GroupNode::uncharge(owner, (r - keep / 2) as usize, true);
                } else {
                    (*g).reserve.store(r, Ordering::Relaxed);
                }
                return;
            }
        }
        credit_later(h, owner, bytes);
    }
}

/// Credits `bytes` freed for `owner`, which this thread keeps no cache
/// for: held back with the thread's pending credits when no level of the
/// group's chain has a limit, else given to the group now (so a limit's
/// slack is unchanged).
///
/// # Safety
/// `h` is the calling thread's heap or the placeholder; `owner` is charged
/// at least `bytes`.
pub unsafe fn credit_later(h: *mut Heap, owner: *mut GroupNode, bytes: usize) {
    // SAFETY: owner-only access to the heap's credits; the charge keeps
    // `owner` and its ancestors alive.
    unsafe {
        if is_placeholder(h) || owner == group::root() {
            GroupNode::uncharge(owner, bytes, true);
        } else if (*h).credits.holds(owner) || !GroupNode::chain_limited(owner) {
            (*h).credits.add(owner, bytes, cache::saved_reserve_max());
        } else {
            GroupNode::uncharge(owner, bytes, true);
        }
    }
}

/// Points the thread's allocations at `node`'s cache; returns false (and
/// changes nothing) when out of memory.
///
/// # Safety
/// `node` is live and stays live while it is current.
pub unsafe fn set_current(node: *mut GroupNode) -> bool {
    let h = current_or_init();
    if h.is_null() {
        return false;
    }
    // SAFETY: `h` is this thread's heap.
    unsafe {
        if (*h).group == node {
            return true;
        }
        sweep_dead_caches(h);
        if node == group::root() {
            leave_cache(h, (*h).current);
            make_current(h, &raw mut (*h).root);
            (*h).group = node;
            return true;
        }
        let g = group_cache_for(h, node);
        if g.is_null() {
            return false;
        }
        (*h).clock = (*h).clock.wrapping_add(1);
        (*g).last_used = (*h).clock;
        leave_cache(h, (*h).current);
        if !(*g).dedicated.is_null() {
            // One live reserve per thread: the shared cache's goes first.
            unload_shared(h);
            make_current(h, (*g).dedicated);
        } else {
            if (*h).active != g {
                unload_shared(h);
                let r = (*g).reserve.load(Ordering::Relaxed);
                (*g).reserve.store(0, Ordering::Relaxed);
                cache::load(&raw mut (*h).shared, node, (*g).tag, r);
                (*h).active = g;
            }
            make_current(h, &raw mut (*h).shared);
        }
        (*h).group = node;
        if (*h).fallible > 0 {
            // Inside `fallible` no allocation may be served from bytes
            // charged before (see `adjust_fallible`), in whichever group.
            cache::trim_reserve((*h).current, 0);
        }
    }
    true
}

/// The group the thread allocates in.
pub fn current_node() -> *mut GroupNode {
    let h = current();
    if is_placeholder(h) {
        return group::root();
    }
    // SAFETY: `h` is this thread's heap.
    unsafe { (*h).group }
}

/// Enters or leaves a `fallible` section.
pub fn adjust_fallible(enter: bool) {
    let h = current_or_init();
    if h.is_null() {
        return;
    }
    // SAFETY: `h` is this thread's heap.
    unsafe {
        if enter {
            (*h).fallible += 1;
            if (*h).fallible == 1 {
                // Inside, an allocation over a limit must fail: none may be
                // served from bytes charged before (a reserve charged while
                // under the limit, or filled by frees since).
                cache::trim_reserve((*h).current, 0);
            }
        } else {
            (*h).fallible = (*h).fallible.saturating_sub(1);
        }
    }
}

/// Hands every reserve of this thread back to its group, drops caches of
/// dead groups, and settles frees other threads made: remote frees to this
/// thread's slabs and to abandoned segments (which this thread adopts), so
/// slabs they emptied go back.
pub fn flush() {
    let h = current();
    if is_placeholder(h) {
        return;
    }
    // SAFETY: `h` is this thread's heap.
    unsafe {
        cache::trim_reserve(&raw mut (*h).root, 0);
        if !(*h).active.is_null() {
            cache::trim_reserve(&raw mut (*h).shared, 0);
        }
        for g in entries(h) {
            let r = (*g).reserve.load(Ordering::Relaxed);
            (*g).reserve.store(0, Ordering::Relaxed);
            if r > 0 {
                GroupNode::uncharge((*g).node, r as usize, true);
            }
            if !(*g).dedicated.is_null() {
                cache::trim_reserve((*g).dedicated, 0);
            }
        }
        sweep_all_dead(h);
        send_outbox(h);
        while !adopt_one(h).is_null() {}
        collect_remote_frees_all(h);
        magazine::return_all((*h).magazines);
        (*h).credits.hand_over_all();
    }
}

/// Deaths from the log a call looks up, at most: a burst of deaths is
/// taken in over the next calls.
const DEATHS_PER_CALL: u64 = 16;
/// Sets a sweep of the whole table (after the thread lost track of the
/// log) looks at per call (their bits, in the heap's `used_sets`), and used
/// sets whose entries it checks per call: the table is covered over the
/// next `SETS / SWEEP_SETS` slow paths and switches, O(1) each.
const SWEEP_SETS: usize = 64;
const SWEEP_USED_SETS: usize = 2;

/// Drops group caches of dead groups: looks up each death the thread has
/// not seen in the `death_log` (one set of the table each), and when it has
/// lost track of the log, sweeps the whole table over its next calls.
///
/// # Safety
/// Owner thread only.
pub unsafe fn sweep_dead_caches(h: *mut Heap) {
    let end = death_log::deaths();
    // SAFETY: owner-only walk of the heap's table.
    unsafe {
        if end != (*h).death_seen {
            take_in_deaths(h, end);
        }
        if (*h).sweep_left == 0 {
            return;
        }
        if (*h).table.is_null() {
            (*h).sweep_left = 0;
            return;
        }
        let mut used = 0;
        for _ in 0..SWEEP_SETS.min((*h).sweep_left) {
            let set = (*h).sweep_at;
            (*h).sweep_at = (set + 1) % SETS;
            (*h).sweep_left -= 1;
            if set_used(h, set) {
                for i in ways_of(set) {
                    evict_if_dead(h, i);
                }
                used += 1;
                if used == SWEEP_USED_SETS {
                    break;
                }
            }
        }
    }
}

/// Looks up deaths `death_seen..end` of the log in the table, at most
/// [`DEATHS_PER_CALL`] of them; starts a whole-table sweep when they are
/// no longer all in the log.
///
/// # Safety
/// Owner thread only.
#[inline(never)]
unsafe fn take_in_deaths(h: *mut Heap, end: u64) {
    // SAFETY: owner-only access to the table; a record named by the log is
    // type-stable memory, and an entry found for it holds a reference.
    unsafe {
        let mut seq = (*h).death_seen;
        if (*h).table.is_null() {
            (*h).death_seen = end;
            return;
        }
        if end - seq > death_log::LOG {
            (*h).death_seen = end;
            (*h).sweep_left = SETS;
            return;
        }
        let stop = end.min(seq + DEATHS_PER_CALL);
        while seq < stop {
            match death_log::read(seq) {
                death_log::Death::Index(index) => {
                    // The index may have been reused by a newer group by
                    // now: `evict_if_dead` checks the entry's own record.
                    // Credits held for it go either way (early is harmless).
                    let node = group::node_at(index);
                    (*h).credits.hand_over_for(node);
                    if let Some(i) = lookup(h, node) {
                        evict_if_dead(h, i);
                    }
                }
                death_log::Death::NotYet => break,
                death_log::Death::Lost => {
                    (*h).death_seen = end;
                    (*h).sweep_left = SETS;
                    return;
                }
            }
            seq += 1;
        }
        (*h).death_seen = seq;
    }
}

/// Drops every group cache of a dead group now (`flush`).
///
/// # Safety
/// Owner thread only.
unsafe fn sweep_all_dead(h: *mut Heap) {
    // SAFETY: owner-only walk of the heap's table.
    unsafe {
        (*h).death_seen = death_log::deaths();
        (*h).sweep_left = 0;
        for i in used_entries(h) {
            evict_if_dead(h, i);
        }
    }
}

/// # Safety
/// Owner thread only; `h` has a table and `i < ENTRIES`.
unsafe fn evict_if_dead(h: *mut Heap, i: usize) {
    // SAFETY: owner-only; an entry's node is held by it.
    unsafe {
        let g = entry(h, i);
        if !(*g).node.is_null() && (*(*g).node).is_dead() && (*g).node != (*h).group {
            evict(h, i);
        }
    }
}

/// Drops this thread's group cache for `node`, if it keeps one (its group
/// is dying: its last handle is going, on this thread).
///
/// # Safety
/// Owner thread only; `node` is not the thread's group.
pub unsafe fn forget(h: *mut Heap, node: *mut GroupNode) {
    // SAFETY: owner-only.
    unsafe {
        if let Some(i) = lookup(h, node) {
            evict(h, i);
        }
    }
}
