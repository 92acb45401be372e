//! The group tree: hierarchical counters, limits, events and lifetimes.
//!
//! A [`GroupNode`] is the allocator's record of an accounting group. Charges
//! walk from a node to the root with lock-free atomics and roll back when a
//! limit denies them. Nodes are small records from the allocator's own pool:
//! slabs, large blocks and per-thread caches hold a reference on the node
//! they charged, so a group whose last handle is gone (*dead*) keeps only
//! this record while its objects live (*dying*); its charge stays counted
//! in its ancestors, and the record goes back to the pool with the last
//! object. Names, hooks and the rest of a group's state live in the scope
//! crate and are freed at death.

use crate::atomic_stack::{AtomicStack, Link};
use crate::death_log;
use crate::meta_pool::MetaPool;
use crate::os;
use crate::root_charge;
use crate::size_class::NUM_CLASSES;
use core::ptr::null_mut;
use core::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};

/// No limit.
pub const UNLIMITED: usize = usize::MAX;

/// Which limit an exceed hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// The hard limit on all memory.
    Max,
    /// The limit on small objects (slab memory).
    SlabMax,
}

/// What happened to a group (for events and hooks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// Usage crossed `high` upwards.
    High,
    /// A charge went over `max` (or `slab_max`) at this level.
    Max,
    /// An allocation returned null because of a limit at this level.
    Fail,
}

/// Event counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventCounts {
    pub high: u64,
    pub max: u64,
    pub fail: u64,
}

#[derive(Default)]
struct EventCounters {
    high: AtomicU64,
    max: AtomicU64,
    fail: AtomicU64,
}

impl EventCounters {
    fn bump(&self, kind: EventKind) {
        let c = match kind {
            EventKind::High => &self.high,
            EventKind::Max => &self.max,
            EventKind::Fail => &self.fail,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
    fn read(&self) -> EventCounts {
        EventCounts {
            high: self.high.load(Ordering::Relaxed),
            max: self.max.load(Ordering::Relaxed),
            fail: self.fail.load(Ordering::Relaxed),
        }
    }
}

/// The last exceed seen by charges made in a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExceedInfo {
    /// The id of the group whose limit was hit (the group or an ancestor).
    pub level_id: u64,
    pub limit: LimitKind,
    /// That level's usage of the limited quantity when the charge came.
    pub usage: usize,
    /// The limit's value.
    pub limit_value: usize,
    /// Bytes the allocation asked for.
    pub request: usize,
    /// Whether the allocation was denied (returned null).
    pub denied: bool,
}

/// The record of one group: what charges and frees touch, and what a dead
/// group keeps while its objects live. 64 bytes, from a table indexed by
/// [`GroupNode::index`] (the owner tag a shared slab keeps per block).
///
/// Lifetime: the record lives while it is referenced (`refs`: the handle,
/// per-thread caches, children, large blocks, dedicated slabs) or charged
/// (`current > 0`: live small objects and reserves pin it by their bytes,
/// with no per-object count). The group's other state (`GroupInfo`) goes
/// at death.
#[repr(C, align(64))]
pub struct GroupNode {
    /// The group's limits, events and exceed record; null once dead. While
    /// the record is free its first word is the free stack's link.
    info: AtomicPtr<GroupInfo>,
    pub parent: *mut GroupNode,
    /// Bytes charged here and below (small-object charges include reserves).
    current: AtomicUsize,
    /// Large-block bytes charged here and below (the rest of `current` is
    /// small objects and reserves).
    large: AtomicUsize,
    /// Per-class usage of the group's dedicated slabs; null until its first.
    classes: AtomicPtr<ClassUsage>,
    /// Unique for the process's life (indexes are reused, ids never).
    pub id: u64,
    refs: AtomicU32,
    /// Dead descendants whose records are still held by live objects.
    dying: AtomicU32,
    /// Where the record sits in the node table; 0 is the root.
    pub index: u32,
    dead: AtomicBool,
    /// Set by whoever frees the record (exactly one does).
    freed: AtomicBool,
    /// The group's small objects get slabs of their own.
    isolated: AtomicBool,
    /// Hooks are registered for this group (the scope crate dispatches).
    pub has_hooks: AtomicBool,
}

const _: () = assert!(core::mem::size_of::<GroupNode>() == 64);

/// What a live group has beyond its [`GroupNode`]: limits, peak, and what
/// `Group::run` reads after every poll. Events and the last exceed are in
/// an [`EventRecord`] made at the group's first event, so a group that
/// never meets a limit pays 64 bytes here. Freed when the group dies.
#[repr(C)]
pub struct GroupInfo {
    /// The pool's free-list link while the record is free.
    #[allow(dead_code)]
    link: Link,
    peak: AtomicUsize,
    max: AtomicUsize,
    high: AtomicUsize,
    slab_max: AtomicUsize,
    /// Bumped on every exceed caused by a charge made in this group.
    exceed_seq: AtomicU64,
    /// Null until the group's first event or exceed.
    record: AtomicPtr<EventRecord>,
    fail_mode: AtomicBool,
    denied_pending: AtomicBool,
}

const _: () = assert!(core::mem::size_of::<GroupInfo>() == 64);

/// A group's event counts and its last exceed, made at its first event.
#[repr(C)]
struct EventRecord {
    /// The pool's free-list link while the record is free.
    #[allow(dead_code)]
    link: Link,
    events: EventCounters,
    events_local: EventCounters,
    last_level: AtomicU64,
    last_usage: AtomicUsize,
    last_limit: AtomicUsize,
    last_request: AtomicUsize,
    last_kind: AtomicU8,
    last_denied: AtomicBool,
}

impl GroupInfo {
    /// The group's event record, if it has one.
    fn record(&self) -> Option<&EventRecord> {
        // SAFETY: a published record lives as long as its info.
        unsafe { self.record.load(Ordering::Acquire).as_ref() }
    }

    /// The group's event record, made now if needed; `None` only when out
    /// of memory (the event then goes uncounted).
    fn record_or_make(&self) -> Option<&EventRecord> {
        if let Some(r) = self.record() {
            return Some(r);
        }
        let fresh = RECORDS.alloc().cast::<EventRecord>();
        if fresh.is_null() {
            return None;
        }
        // SAFETY: a pool slot of the record's size, ours until published.
        unsafe { core::ptr::write(fresh, record_init()) };
        match self
            .record
            .compare_exchange(null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire)
        {
            // SAFETY: just published; it lives as long as this info.
            Ok(_) => Some(unsafe { &*fresh }),
            Err(winner) => {
                // SAFETY: `fresh` was never published.
                unsafe { RECORDS.free(fresh.cast()) };
                // SAFETY: the winner's record lives as long as this info.
                Some(unsafe { &*winner })
            }
        }
    }
}

/// Frees an info record and its event record.
///
/// # Safety
/// `info` came from `INFOS`, is no longer reachable from its node, and no
/// thread reads it any more (its group is dead).
unsafe fn free_info(info: *mut GroupInfo) {
    // SAFETY: as the caller promises.
    unsafe {
        let r = (*info).record.load(Ordering::Acquire);
        if !r.is_null() {
            RECORDS.free(r.cast());
        }
        INFOS.free(info.cast());
    }
}

/// Slab bytes and slabs of a group's dedicated slabs, per class.
#[repr(C)]
pub struct ClassUsage {
    /// The pool's free-list link while the record is free.
    #[allow(dead_code)]
    link: Link,
    bytes: [AtomicUsize; NUM_CLASSES],
    slabs: [AtomicUsize; NUM_CLASSES],
}

// SAFETY: all shared fields are atomics; `id`, `index` and `parent` are
// written before the node is published and never after.
unsafe impl Sync for GroupNode {}
// SAFETY: as above.
unsafe impl Send for GroupNode {}
// SAFETY: atomics only.
unsafe impl Sync for GroupInfo {}
// SAFETY: atomics only.
unsafe impl Sync for EventRecord {}
// SAFETY: atomics only.
unsafe impl Sync for ClassUsage {}

static INFOS: MetaPool = MetaPool::new(core::mem::size_of::<GroupInfo>());
static RECORDS: MetaPool = MetaPool::new(core::mem::size_of::<EventRecord>());
static CLASS_USAGES: MetaPool = MetaPool::new(core::mem::size_of::<ClassUsage>());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

// --- the node table: index -> record ---

/// Records per table chunk (a chunk is mapped when its first is needed).
const CHUNK_NODES: usize = 4096;
const CHUNKS: usize = 1024;
/// At most this many group records exist at once (live and dying).
pub const MAX_NODES: usize = CHUNK_NODES * CHUNKS;

static NODE_CHUNKS: [AtomicPtr<GroupNode>; CHUNKS] = [const { AtomicPtr::new(null_mut()) }; CHUNKS];
/// Indexes below this have been handed out at least once (0 is the root).
static NEXT_INDEX: AtomicUsize = AtomicUsize::new(1);
/// Freed records, for reuse (type-stable: chunks are never unmapped).
static FREE_NODES: AtomicStack = AtomicStack::new();

/// The record at `index`; the root for 0.
///
/// # Safety
/// `index` was handed out (it is 0 or a tag written for a live block).
#[inline]
#[allow(dead_code)]
pub unsafe fn node_at(index: u32) -> *mut GroupNode {
    if index == 0 {
        return root();
    }
    let i = index as usize;
    let chunk = NODE_CHUNKS[i / CHUNK_NODES].load(Ordering::Acquire);
    // SAFETY: a handed-out index lies in a chunk that was published before it.
    unsafe { chunk.add(i % CHUNK_NODES) }
}

/// A record never used before; null when the table is full or out of memory.
fn fresh_node() -> *mut GroupNode {
    let i = NEXT_INDEX.fetch_add(1, Ordering::Relaxed);
    if i >= MAX_NODES {
        return null_mut();
    }
    let slot = &NODE_CHUNKS[i / CHUNK_NODES];
    let mut chunk = slot.load(Ordering::Acquire);
    if chunk.is_null() {
        let bytes = CHUNK_NODES * core::mem::size_of::<GroupNode>();
        let mem = os::map(bytes).cast::<GroupNode>();
        if mem.is_null() {
            return null_mut();
        }
        match slot.compare_exchange(null_mut(), mem, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                crate::counters::note_mapped(bytes as isize);
                chunk = mem;
            }
            Err(won) => {
                // SAFETY: our mapping was never published.
                unsafe { os::unmap(mem.cast(), bytes) };
                chunk = won;
            }
        }
    }
    // SAFETY: the slot lies in the chunk; the index is ours alone.
    unsafe {
        let n = chunk.add(i % CHUNK_NODES);
        (*n).index = i as u32;
        n
    }
}

/// A function the scope crate installs to run hooks: `(level, at, kind)`:
/// an event of `kind` happened at `level` and is seen at `at` (`level` or
/// one of its ancestors).
pub type EventSink = fn(*mut GroupNode, *mut GroupNode, EventKind);
static EVENT_SINK: AtomicPtr<()> = AtomicPtr::new(null_mut());

/// Installs the function that dispatches events to hooks.
pub fn set_event_sink(f: EventSink) {
    EVENT_SINK.store(f as *mut (), Ordering::Release);
}

fn emit(level: *mut GroupNode, node: *mut GroupNode, kind: EventKind) {
    // SAFETY: node is live (the caller holds it).
    if unsafe { !(*node).has_hooks.load(Ordering::Relaxed) } {
        return;
    }
    let f = EVENT_SINK.load(Ordering::Acquire);
    if !f.is_null() {
        // SAFETY: only `set_event_sink` stores here, always an EventSink.
        let f: EventSink = unsafe { core::mem::transmute::<*mut (), EventSink>(f) };
        f(level, node, kind);
    }
}

const fn zero_counters() -> EventCounters {
    EventCounters {
        high: AtomicU64::new(0),
        max: AtomicU64::new(0),
        fail: AtomicU64::new(0),
    }
}

const fn info_init() -> GroupInfo {
    GroupInfo {
        link: Link {
            next: AtomicPtr::new(null_mut()),
        },
        peak: AtomicUsize::new(0),
        max: AtomicUsize::new(UNLIMITED),
        high: AtomicUsize::new(UNLIMITED),
        slab_max: AtomicUsize::new(UNLIMITED),
        exceed_seq: AtomicU64::new(0),
        record: AtomicPtr::new(null_mut()),
        fail_mode: AtomicBool::new(false),
        denied_pending: AtomicBool::new(false),
    }
}

const fn record_init() -> EventRecord {
    EventRecord {
        link: Link {
            next: AtomicPtr::new(null_mut()),
        },
        events: zero_counters(),
        events_local: zero_counters(),
        last_level: AtomicU64::new(0),
        last_usage: AtomicUsize::new(0),
        last_limit: AtomicUsize::new(0),
        last_request: AtomicUsize::new(0),
        last_kind: AtomicU8::new(0),
        last_denied: AtomicBool::new(false),
    }
}

const fn node_init(id: u64, index: u32, parent: *mut GroupNode, info: *mut GroupInfo) -> GroupNode {
    GroupNode {
        info: AtomicPtr::new(info),
        parent,
        current: AtomicUsize::new(0),
        large: AtomicUsize::new(0),
        classes: AtomicPtr::new(null_mut()),
        id,
        refs: AtomicU32::new(1),
        dying: AtomicU32::new(0),
        index,
        dead: AtomicBool::new(false),
        freed: AtomicBool::new(false),
        isolated: AtomicBool::new(false),
        has_hooks: AtomicBool::new(false),
    }
}

struct RootCell(core::cell::UnsafeCell<GroupNode>);
// SAFETY: GroupNode is Sync (atomics only after construction).
unsafe impl Sync for RootCell {}
struct RootInfo(core::cell::UnsafeCell<GroupInfo>);
// SAFETY: GroupInfo is atomics only.
unsafe impl Sync for RootInfo {}
static ROOT_INFO: RootInfo = RootInfo(core::cell::UnsafeCell::new(info_init()));
static ROOT: RootCell = RootCell(core::cell::UnsafeCell::new(node_init(
    0,
    0,
    null_mut(),
    ROOT_INFO.0.get(),
)));

/// The root group's node (never dies).
#[inline(always)]
pub fn root() -> *mut GroupNode {
    ROOT.0.get()
}

/// Adds `bytes` to `a` unless that takes it over `limit`; the old value
/// either way.
fn add_within(a: &AtomicUsize, bytes: usize, limit: usize) -> Result<usize, usize> {
    if limit == UNLIMITED {
        return Ok(a.fetch_add(bytes, Ordering::Relaxed));
    }
    let mut old = a.load(Ordering::Relaxed);
    loop {
        match old.checked_add(bytes) {
            Some(new) if new <= limit => {}
            _ => return Err(old),
        }
        match a.compare_exchange_weak(old, old + bytes, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return Ok(old),
            Err(cur) => old = cur,
        }
    }
}

/// Adds `bytes` to a level's `current` unless that takes it over `max`,
/// or its small-object part (`current - large`) over `slab_max`.
fn add_within_slab(
    lvl: &GroupNode,
    bytes: usize,
    max: usize,
    slab_max: usize,
) -> Result<usize, (LimitKind, usize, usize)> {
    let mut old = lvl.current.load(Ordering::Relaxed);
    loop {
        let small = old.saturating_sub(lvl.large.load(Ordering::Relaxed));
        match old.checked_add(bytes) {
            Some(new) if new <= max => {}
            _ => return Err((LimitKind::Max, old, max)),
        }
        if small + bytes > slab_max {
            return Err((LimitKind::SlabMax, small, slab_max));
        }
        match lvl.current.compare_exchange_weak(
            old,
            old + bytes,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => return Ok(old),
            Err(cur) => old = cur,
        }
    }
}

/// Why a charge was refused.
#[derive(Clone, Copy, Debug)]
pub struct Denied;

/// How a charge treats limits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ChargeMode {
    /// Refuse at any limit, quietly (a reserve refill probing for a batch).
    Probe,
    /// Events and hooks; refuse when the exceeding level is in Fail mode.
    Normal,
    /// Events and hooks; refuse at any limit (inside `fallible`).
    Fallible,
}

impl GroupNode {
    /// Creates a child of `parent` (which must be live); null when out of
    /// memory or when `MAX_NODES` records exist.
    ///
    /// # Safety
    /// `parent` is a live node.
    pub unsafe fn create(parent: *mut GroupNode) -> *mut GroupNode {
        let info = INFOS.alloc().cast::<GroupInfo>();
        if info.is_null() {
            return null_mut();
        }
        let mut p = FREE_NODES.pop().cast::<GroupNode>();
        if p.is_null() {
            p = fresh_node();
        }
        if p.is_null() {
            // SAFETY: the info record was never published.
            unsafe { INFOS.free(info.cast()) };
            return null_mut();
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        // SAFETY: a table record is ours until freed (its index was set when
        // first handed out); the parent is live and gets a reference for the
        // child.
        unsafe {
            core::ptr::write(info, info_init());
            let index = (*p).index;
            core::ptr::write(p, node_init(id, index, parent, info));
            (*parent).acquire();
        }
        p
    }

    pub fn acquire(&self) {
        self.refs.fetch_add(1, Ordering::Relaxed);
    }

    /// Starts loading the group's info into the cache: a thread switching
    /// to a group it does not keep charges it soon after, and the charge
    /// reads the limits there.
    #[inline]
    pub fn prefetch_info(&self) {
        crate::hint::prefetch(self.info.load(Ordering::Relaxed));
    }

    /// The group's info; null once dead.
    #[inline]
    fn info(&self) -> Option<&GroupInfo> {
        // SAFETY: info records are type-stable pool memory; a live group's
        // info is freed only at its death, after which nothing charges it.
        unsafe { self.info.load(Ordering::Acquire).as_ref() }
    }

    /// Drops a reference; the last one frees a dead, uncharged record.
    ///
    /// # Safety
    /// The caller owns one reference to `node`, not used after this.
    pub unsafe fn release(node: *mut GroupNode) {
        if node == root() {
            return;
        }
        // SAFETY: the caller's reference keeps `node` alive until the
        // decrement.
        unsafe {
            if (*node).refs.fetch_sub(1, Ordering::SeqCst) == 1 {
                Self::maybe_free(node);
            }
        }
    }

    /// Frees the record when it is dead, unreferenced and uncharged; of the
    /// threads that see all three, exactly one frees it. SeqCst on `refs`,
    /// `current` and `dead` makes the last change to any of them see the
    /// others' final values.
    ///
    /// # Safety
    /// `node` is a live record (not yet freed).
    unsafe fn maybe_free(node: *mut GroupNode) {
        // SAFETY: the record is type-stable table memory; the `freed` swap
        // picks one freer.
        unsafe {
            let n = &*node;
            if !n.dead.load(Ordering::SeqCst)
                || n.refs.load(Ordering::SeqCst) != 0
                || n.current.load(Ordering::SeqCst) != 0
                || n.freed.swap(true, Ordering::AcqRel)
            {
                return;
            }
            let parent = n.parent;
            let mut a = parent;
            while !a.is_null() {
                (*a).dying.fetch_sub(1, Ordering::Relaxed);
                a = (*a).parent;
            }
            let cu = n.classes.swap(null_mut(), Ordering::AcqRel);
            if !cu.is_null() {
                CLASS_USAGES.free(cu.cast());
            }
            FREE_NODES.push(node.cast());
            Self::release(parent);
        }
    }

    /// Marks the group dead (its last handle is gone), frees its info, and
    /// drops the handle's reference. Threads drop their caches for it at
    /// their next chance; its record stays while its objects do.
    ///
    /// # Safety
    /// `node` is a live, non-root node whose handle reference the caller
    /// owns; no thread is in the group or in a descendant.
    pub unsafe fn kill(node: *mut GroupNode) {
        // SAFETY: the caller's reference keeps the node alive here.
        unsafe {
            if (*node).dead.swap(true, Ordering::SeqCst) {
                return;
            }
            let mut a = (*node).parent;
            while !a.is_null() {
                (*a).dying.fetch_add(1, Ordering::Relaxed);
                a = (*a).parent;
            }
            let info = (*node).info.swap(null_mut(), Ordering::AcqRel);
            if !info.is_null() {
                free_info(info);
            }
            // Threads drop their caches of it when they read the log.
            death_log::record((*node).index);
            Self::release(node);
        }
    }

    /// Whether the group or an ancestor below the root has `max` or
    /// `slab_max` set.
    ///
    /// # Safety
    /// `node` is live.
    pub unsafe fn chain_limited(node: *mut GroupNode) -> bool {
        let mut n = node;
        // SAFETY: ancestors of a live node are live.
        unsafe {
            while !n.is_null() && n != root() {
                if let Some(i) = (*n).info() {
                    if i.max.load(Ordering::Relaxed) != UNLIMITED
                        || i.slab_max.load(Ordering::Relaxed) != UNLIMITED
                    {
                        return true;
                    }
                }
                n = (*n).parent;
            }
        }
        false
    }

    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    // --- charging ---

    /// Charges `bytes` here and on every ancestor; small-object charges
    /// also count against `slab_max`. Rolls back and returns `Err` when a
    /// limit refuses it (see `ChargeMode`).
    ///
    /// # Safety
    /// `node` is live (the caller holds a reference) and not dead.
    pub unsafe fn charge(
        node: *mut GroupNode,
        bytes: usize,
        small: bool,
        mode: ChargeMode,
    ) -> Result<(), Denied> {
        /// Levels whose peak and high crossing are applied once the whole
        /// walk has succeeded (a refused charge leaves no trace but its
        /// max and fail events). Deeper trees apply the rest at once.
        const DEFERRED: usize = 16;
        // Each level's usage before the charge; the levels themselves are
        // found again by the parent links. Not initialised: a charge is
        // the hot part of a refill, and zeroing would cost a `memset`.
        let mut deferred = [core::mem::MaybeUninit::<usize>::uninit(); DEFERRED];
        let mut ndeferred = 0;
        let mut exceeded: Option<(*mut GroupNode, LimitKind, usize, usize)> = None;
        let mut n = node;
        // SAFETY: ancestors of a live node are live (each holds a reference
        // on its parent).
        unsafe {
            while !n.is_null() {
                let lvl = &*n;
                let (max, slab_max, fail_mode) = match lvl.info() {
                    Some(i) => (
                        i.max.load(Ordering::Relaxed),
                        i.slab_max.load(Ordering::Relaxed),
                        i.fail_mode.load(Ordering::Relaxed),
                    ),
                    None => (UNLIMITED, UNLIMITED, false),
                };
                if n == root() {
                    // No limits, no events, no peak kept per charge: the
                    // root's charge is a per-thread sum (see `root_charge`).
                    root_charge::add(bytes as isize);
                    if !small {
                        lvl.large.fetch_add(bytes, Ordering::Relaxed);
                    }
                    break;
                }
                // The counter is raised only within its limits (CAS), so no
                // reader ever sees a refused charge.
                let mut hit = None;
                let mut old = 0;
                if small && slab_max < max {
                    match add_within_slab(lvl, bytes, max, slab_max) {
                        Ok(o) => old = o,
                        Err(h) => hit = Some(h),
                    }
                } else {
                    match add_within(&lvl.current, bytes, max) {
                        Ok(o) => old = o,
                        Err(o) => hit = Some((LimitKind::Max, o, max)),
                    }
                }
                if hit.is_none() && !small {
                    lvl.large.fetch_add(bytes, Ordering::Relaxed);
                }
                if let Some((kind, usage, limit)) = hit {
                    let refuse = match mode {
                        ChargeMode::Probe | ChargeMode::Fallible => true,
                        ChargeMode::Normal => fail_mode,
                    };
                    if mode != ChargeMode::Probe {
                        Self::count_event(n, EventKind::Max);
                    }
                    if refuse {
                        Self::rollback(node, n, bytes, small);
                        if mode != ChargeMode::Probe {
                            Self::count_event(n, EventKind::Fail);
                            Self::note_exceed(node, n, kind, usage, limit, bytes, true);
                        }
                        return Err(Denied);
                    }
                    // Report: the charge stands, over the limit.
                    if !small {
                        lvl.large.fetch_add(bytes, Ordering::Relaxed);
                    }
                    old = lvl.current.fetch_add(bytes, Ordering::Relaxed);
                    if exceeded.is_none() {
                        exceeded = Some((n, kind, usage, limit));
                    }
                }
                if ndeferred < DEFERRED {
                    deferred[ndeferred].write(old);
                    ndeferred += 1;
                } else {
                    Self::note_growth(n, old, old + bytes);
                }
                n = lvl.parent;
            }
            let mut lvl = node;
            for old in &deferred[..ndeferred] {
                // SAFETY (of the read): the first `ndeferred` were written.
                let old = old.assume_init();
                Self::note_growth(lvl, old, old + bytes);
                lvl = (*lvl).parent;
            }
            if let Some((lvl, kind, usage, limit)) = exceeded {
                Self::note_exceed(node, lvl, kind, usage, limit, bytes, false);
            }
        }
        Ok(())
    }

    /// Peak and upward `high` crossing of a charge that stood.
    ///
    /// # Safety
    /// `n` is a live record.
    unsafe fn note_growth(n: *mut GroupNode, old: usize, new: usize) {
        // SAFETY: as in `charge`.
        unsafe {
            let Some(info) = (*n).info() else { return };
            // A load first: most charges do not raise the peak, and a plain
            // read costs no locked instruction.
            if new > info.peak.load(Ordering::Relaxed) {
                info.peak.fetch_max(new, Ordering::Relaxed);
            }
            let high = info.high.load(Ordering::Relaxed);
            if old <= high && new > high {
                Self::count_event(n, EventKind::High);
            }
        }
    }

    /// Undoes a charge from `node` up to, not including, `stop`.
    ///
    /// # Safety
    /// `node`..`stop` (exclusive) is a chain of live records each charged `bytes` by the caller.
    unsafe fn rollback(node: *mut GroupNode, stop: *mut GroupNode, bytes: usize, small: bool) {
        let mut n = node;
        // SAFETY: as in `charge` (the charge being undone keeps them live).
        unsafe {
            while n != stop {
                (*n).current.fetch_sub(bytes, Ordering::Relaxed);
                if !small {
                    (*n).large.fetch_sub(bytes, Ordering::Relaxed);
                }
                n = (*n).parent;
            }
        }
    }

    /// Takes back `bytes` here and on every ancestor. A dead record whose
    /// charge this brings to zero may be freed: the caller must not use
    /// `node` after this.
    ///
    /// # Safety
    /// `node` was charged at least `bytes` (which keeps it alive).
    pub unsafe fn uncharge(node: *mut GroupNode, bytes: usize, small: bool) {
        if bytes == 0 {
            return;
        }
        let mut n = node;
        let mut emptied = false;
        // SAFETY: the bytes being taken back keep every level alive until
        // its decrement; a level is read before it is decremented.
        unsafe {
            while !n.is_null() {
                let next = (*n).parent;
                if !small {
                    (*n).large.fetch_sub(bytes, Ordering::Relaxed);
                }
                if n == root() {
                    root_charge::add(-(bytes as isize));
                    break;
                }
                let old = (*n).current.fetch_sub(bytes, Ordering::SeqCst);
                if n == node {
                    emptied = old == bytes;
                }
                n = next;
            }
            // Only the origin can be the lowest level emptied: an ancestor
            // holds at least what its descendants do, and the record's
            // freeing releases its parent in turn.
            if emptied && (*node).dead.load(Ordering::SeqCst) {
                Self::maybe_free(node);
            }
        }
    }

    /// Counts an event at `level` (local) and on it and its ancestors
    /// (hierarchical), then runs hooks.
    ///
    /// # Safety
    /// `level` is a live record.
    unsafe fn count_event(level: *mut GroupNode, kind: EventKind) {
        // SAFETY: as in `charge`.
        unsafe {
            if let Some(r) = (*level).info().and_then(GroupInfo::record_or_make) {
                r.events_local.bump(kind);
            }
            let mut a = level;
            while !a.is_null() {
                if let Some(r) = (*a).info().and_then(GroupInfo::record_or_make) {
                    r.events.bump(kind);
                }
                emit(level, a, kind);
                a = (*a).parent;
            }
        }
    }

    /// # Safety
    /// `level` is a live record.
    #[allow(clippy::too_many_arguments)]
    unsafe fn note_exceed(
        origin: *mut GroupNode,
        level: *mut GroupNode,
        kind: LimitKind,
        usage: usize,
        limit: usize,
        request: usize,
        denied: bool,
    ) {
        // SAFETY: both nodes are live (as in `charge`).
        unsafe {
            let Some(o) = (*origin).info() else { return };
            // Without a record (out of memory) the exceed is still seen
            // through `exceed_seq`, with no details.
            if let Some(r) = o.record_or_make() {
                r.last_level.store((*level).id, Ordering::Relaxed);
                r.last_kind.store(kind as u8, Ordering::Relaxed);
                r.last_usage.store(usage, Ordering::Relaxed);
                r.last_limit.store(limit, Ordering::Relaxed);
                r.last_request.store(request, Ordering::Relaxed);
                r.last_denied.store(denied, Ordering::Relaxed);
            }
            if denied {
                o.denied_pending.store(true, Ordering::Relaxed);
            }
            o.exceed_seq.fetch_add(1, Ordering::Release);
        }
    }

    // --- reading and setting (a dead group reads as unlimited and quiet) ---

    pub fn current(&self) -> usize {
        if core::ptr::eq(self, root()) {
            return root_charge::total().max(0) as usize;
        }
        self.current.load(Ordering::Relaxed)
    }
    /// Small-object bytes charged here and below (reserves included).
    pub fn slab(&self) -> usize {
        self.current()
            .saturating_sub(self.large.load(Ordering::Relaxed))
    }
    /// Large-block bytes charged here and below.
    pub fn large(&self) -> usize {
        self.large.load(Ordering::Relaxed)
    }
    pub fn peak(&self) -> usize {
        let Some(i) = self.info() else { return 0 };
        if core::ptr::eq(self, root()) {
            // The root's peak is kept by its readers: the highest sum seen.
            i.peak.fetch_max(self.current(), Ordering::Relaxed);
        }
        i.peak.load(Ordering::Relaxed)
    }
    pub fn reset_peak(&self) {
        if let Some(i) = self.info() {
            i.peak.store(self.current(), Ordering::Relaxed);
        }
    }
    fn read(&self, f: impl Fn(&GroupInfo) -> &AtomicUsize) -> usize {
        self.info()
            .map_or(UNLIMITED, |i| f(i).load(Ordering::Relaxed))
    }
    fn write(&self, v: usize, f: impl Fn(&GroupInfo) -> &AtomicUsize) {
        if let Some(i) = self.info() {
            f(i).store(v, Ordering::Relaxed);
        }
    }
    pub fn max(&self) -> usize {
        self.read(|i| &i.max)
    }
    pub fn high(&self) -> usize {
        self.read(|i| &i.high)
    }
    pub fn slab_max(&self) -> usize {
        self.read(|i| &i.slab_max)
    }
    pub fn set_max(&self, v: usize) {
        self.write(v, |i| &i.max)
    }
    pub fn set_high(&self, v: usize) {
        self.write(v, |i| &i.high)
    }
    pub fn set_slab_max(&self, v: usize) {
        self.write(v, |i| &i.slab_max)
    }
    pub fn set_fail_mode(&self, fail: bool) {
        if let Some(i) = self.info() {
            i.fail_mode.store(fail, Ordering::Relaxed);
        }
    }
    pub fn fail_mode(&self) -> bool {
        self.info()
            .is_some_and(|i| i.fail_mode.load(Ordering::Relaxed))
    }
    pub fn set_isolated(&self, on: bool) {
        self.isolated.store(on, Ordering::Relaxed);
    }
    pub fn is_isolated(&self) -> bool {
        self.isolated.load(Ordering::Relaxed)
    }
    pub fn events(&self) -> EventCounts {
        self.info()
            .and_then(GroupInfo::record)
            .map_or_else(EventCounts::default, |r| r.events.read())
    }
    pub fn events_local(&self) -> EventCounts {
        self.info()
            .and_then(GroupInfo::record)
            .map_or_else(EventCounts::default, |r| r.events_local.read())
    }
    pub fn dying_descendants(&self) -> usize {
        self.dying.load(Ordering::Relaxed) as usize
    }
    pub fn exceed_seq(&self) -> u64 {
        self.info()
            .map_or(0, |i| i.exceed_seq.load(Ordering::Acquire))
    }
    /// The last exceed caused by charges made in this group.
    pub fn last_exceed(&self) -> Option<ExceedInfo> {
        let i = self.info()?;
        if i.exceed_seq.load(Ordering::Acquire) == 0 {
            return None;
        }
        let r = i.record()?;
        Some(ExceedInfo {
            level_id: r.last_level.load(Ordering::Relaxed),
            limit: if r.last_kind.load(Ordering::Relaxed) == LimitKind::SlabMax as u8 {
                LimitKind::SlabMax
            } else {
                LimitKind::Max
            },
            usage: r.last_usage.load(Ordering::Relaxed),
            limit_value: r.last_limit.load(Ordering::Relaxed),
            request: r.last_request.load(Ordering::Relaxed),
            denied: r.last_denied.load(Ordering::Relaxed),
        })
    }
    /// Whether an allocation was denied since the mark was last taken
    /// (a read: the mark stays).
    pub fn denied_pending(&self) -> bool {
        self.info()
            .is_some_and(|i| i.denied_pending.load(Ordering::Relaxed))
    }
    /// Takes the "an allocation was denied" mark.
    pub fn take_denied(&self) -> bool {
        self.info()
            .is_some_and(|i| i.denied_pending.swap(false, Ordering::Relaxed))
    }

    /// Slab bytes and slabs of this group's dedicated slabs, per class.
    pub fn class_usage(&self, class: usize) -> (usize, usize) {
        // SAFETY: a usage record lives as long as the node record.
        match unsafe { self.classes.load(Ordering::Acquire).as_ref() } {
            Some(u) => (
                u.bytes[class].load(Ordering::Relaxed),
                u.slabs[class].load(Ordering::Relaxed),
            ),
            None => (0, 0),
        }
    }

    /// Notes a dedicated slab of `bytes` made (`+`, taking a reference the
    /// slab holds) or given back (`-`; the caller releases the reference).
    pub fn note_slab(&self, class: usize, bytes: usize, made: bool) {
        let mut u = self.classes.load(Ordering::Acquire);
        if u.is_null() {
            let fresh = CLASS_USAGES.alloc().cast::<ClassUsage>();
            if fresh.is_null() {
                // Out of memory for statistics: the slab still counts in
                // `refs`, only its per-class figure is lost.
                if made {
                    self.acquire();
                }
                return;
            }
            // SAFETY: the record is ours until published; all-zero counters.
            unsafe {
                core::ptr::write_bytes(fresh.cast::<u8>(), 0, core::mem::size_of::<ClassUsage>());
            }
            match self.classes.compare_exchange(
                null_mut(),
                fresh,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => u = fresh,
                Err(won) => {
                    // SAFETY: never published.
                    unsafe { CLASS_USAGES.free(fresh.cast()) };
                    u = won;
                }
            }
        }
        // SAFETY: published usage records live as long as the node record.
        let u = unsafe { &*u };
        if made {
            u.bytes[class].fetch_add(bytes, Ordering::Relaxed);
            u.slabs[class].fetch_add(1, Ordering::Relaxed);
            self.acquire();
        } else {
            u.bytes[class].fetch_sub(bytes, Ordering::Relaxed);
            u.slabs[class].fetch_sub(1, Ordering::Relaxed);
        }
    }
}
