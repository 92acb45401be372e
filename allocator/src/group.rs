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

use crate::atomic_stack::Link;
use crate::meta_pool::MetaPool;
use crate::size_class::NUM_CLASSES;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering};

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

/// The record of one group. See the module docs.
#[repr(C)]
pub struct GroupNode {
    link: Link,
    pub id: u64,
    pub parent: *mut GroupNode,
    refs: AtomicUsize,
    dead: AtomicBool,
    /// Bytes charged here and below (small-object charges include reserves).
    current: AtomicUsize,
    /// Small-object bytes charged here and below.
    slab: AtomicUsize,
    peak: AtomicUsize,
    max: AtomicUsize,
    high: AtomicUsize,
    slab_max: AtomicUsize,
    fail_mode: AtomicBool,
    events: EventCounters,
    events_local: EventCounters,
    /// Dead descendants whose records are still held by live objects.
    dying: AtomicUsize,
    /// Bumped on every exceed caused by a charge made in this group.
    exceed_seq: AtomicU64,
    denied_pending: AtomicBool,
    last_denied: AtomicBool,
    last_level: AtomicU64,
    last_kind: AtomicU8,
    last_usage: AtomicUsize,
    last_limit: AtomicUsize,
    last_request: AtomicUsize,
    /// Slab bytes of this group's own caches, per class (not hierarchical).
    class_bytes: [AtomicUsize; NUM_CLASSES],
    class_slabs: [AtomicUsize; NUM_CLASSES],
    /// Hooks are registered for this group (the scope crate dispatches).
    pub has_hooks: AtomicBool,
    /// The group's small objects get slabs of their own.
    isolated: AtomicBool,
}

// SAFETY: all shared fields are atomics; `id` and `parent` are written
// before the node is published and never after.
unsafe impl Sync for GroupNode {}
// SAFETY: as above.
unsafe impl Send for GroupNode {}

static NODES: MetaPool = MetaPool::new(core::mem::size_of::<GroupNode>());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Bumped when a group dies, so threads know to drop caches of dead groups.
pub static DEATH_EPOCH: AtomicU64 = AtomicU64::new(0);

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

const fn node_init(id: u64, parent: *mut GroupNode) -> GroupNode {
    GroupNode {
        link: Link {
            next: AtomicPtr::new(null_mut()),
        },
        id,
        parent,
        refs: AtomicUsize::new(1),
        dead: AtomicBool::new(false),
        current: AtomicUsize::new(0),
        slab: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
        max: AtomicUsize::new(UNLIMITED),
        high: AtomicUsize::new(UNLIMITED),
        slab_max: AtomicUsize::new(UNLIMITED),
        fail_mode: AtomicBool::new(false),
        events: zero_counters(),
        events_local: zero_counters(),
        dying: AtomicUsize::new(0),
        exceed_seq: AtomicU64::new(0),
        denied_pending: AtomicBool::new(false),
        last_denied: AtomicBool::new(false),
        last_level: AtomicU64::new(0),
        last_kind: AtomicU8::new(0),
        last_usage: AtomicUsize::new(0),
        last_limit: AtomicUsize::new(0),
        last_request: AtomicUsize::new(0),
        class_bytes: [const { AtomicUsize::new(0) }; NUM_CLASSES],
        class_slabs: [const { AtomicUsize::new(0) }; NUM_CLASSES],
        has_hooks: AtomicBool::new(false),
        isolated: AtomicBool::new(false),
    }
}

struct RootCell(core::cell::UnsafeCell<GroupNode>);
// SAFETY: GroupNode is Sync (atomics only after construction).
unsafe impl Sync for RootCell {}
static ROOT: RootCell = RootCell(core::cell::UnsafeCell::new(node_init(0, null_mut())));

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
    /// memory.
    ///
    /// # Safety
    /// `parent` is a live node.
    pub unsafe fn create(parent: *mut GroupNode) -> *mut GroupNode {
        let p = NODES.alloc().cast::<GroupNode>();
        if p.is_null() {
            return null_mut();
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        // SAFETY: a pool record is ours until freed; the parent is live and
        // gets a reference for the child.
        unsafe {
            core::ptr::write(p, node_init(id, parent));
            (*parent).acquire();
        }
        p
    }

    pub fn acquire(&self) {
        self.refs.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops a reference; the last one frees the record and releases the
    /// parent.
    ///
    /// # Safety
    /// The caller owns one reference to `node`, not used after this.
    pub unsafe fn release(node: *mut GroupNode) {
        let mut n = node;
        // SAFETY: the caller's reference keeps `n` alive until the
        // decrement; whoever takes the count to zero frees it.
        unsafe {
            while n != root() && (*n).refs.fetch_sub(1, Ordering::AcqRel) == 1 {
                let parent = (*n).parent;
                if (*n).dead.load(Ordering::Relaxed) {
                    let mut a = parent;
                    while !a.is_null() {
                        (*a).dying.fetch_sub(1, Ordering::Relaxed);
                        a = (*a).parent;
                    }
                }
                NODES.free(n.cast());
                n = parent;
            }
        }
    }

    /// Marks the group dead (its last handle is gone) and drops the handle's
    /// reference. Threads drop their caches for it at their next chance.
    ///
    /// # Safety
    /// `node` is a live, non-root node whose handle reference the caller owns.
    pub unsafe fn kill(node: *mut GroupNode) {
        // SAFETY: the caller's reference keeps the node alive here.
        unsafe {
            if (*node).dead.swap(true, Ordering::AcqRel) {
                return;
            }
            let mut a = (*node).parent;
            while !a.is_null() {
                (*a).dying.fetch_add(1, Ordering::Relaxed);
                a = (*a).parent;
            }
            DEATH_EPOCH.fetch_add(1, Ordering::Release);
            Self::release(node);
        }
    }

    pub fn set_isolated(&self, on: bool) {
        self.isolated.store(on, Ordering::Relaxed);
    }
    pub fn is_isolated(&self) -> bool {
        self.isolated.load(Ordering::Relaxed)
    }

    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    // --- charging ---

    /// Charges `bytes` here and on every ancestor; small-object charges
    /// also count against `slab_max`. Rolls back and returns `Err` when a
    /// limit refuses it (see [`ChargeMode`]).
    ///
    /// # Safety
    /// `node` is live (the caller holds a reference).
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
        let mut deferred: [(*mut GroupNode, usize, usize); DEFERRED] =
            [(null_mut(), 0, 0); DEFERRED];
        let mut ndeferred = 0;
        let mut exceeded: Option<(*mut GroupNode, LimitKind, usize, usize)> = None;
        let mut n = node;
        // SAFETY: ancestors of a live node are live (each holds a reference
        // on its parent).
        unsafe {
            while !n.is_null() {
                let lvl = &*n;
                let max = lvl.max.load(Ordering::Relaxed);
                let slab_max = lvl.slab_max.load(Ordering::Relaxed);
                // Limited counters are raised only within their limit (CAS),
                // so no reader ever sees a refused charge.
                let mut hit = None;
                if small {
                    if slab_max < max {
                        if let Err(old) = add_within(&lvl.slab, bytes, slab_max) {
                            hit = Some((LimitKind::SlabMax, old, slab_max));
                        }
                    } else {
                        lvl.slab.fetch_add(bytes, Ordering::Relaxed);
                    }
                }
                let mut old = 0;
                if hit.is_none() {
                    match add_within(&lvl.current, bytes, max) {
                        Ok(o) => old = o,
                        Err(o) => {
                            if small {
                                lvl.slab.fetch_sub(bytes, Ordering::Relaxed);
                            }
                            hit = Some((LimitKind::Max, o, max));
                        }
                    }
                }
                if let Some((kind, usage, limit)) = hit {
                    let refuse = match mode {
                        ChargeMode::Probe | ChargeMode::Fallible => true,
                        ChargeMode::Normal => lvl.fail_mode.load(Ordering::Relaxed),
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
                    if small {
                        lvl.slab.fetch_add(bytes, Ordering::Relaxed);
                    }
                    old = lvl.current.fetch_add(bytes, Ordering::Relaxed);
                    if exceeded.is_none() {
                        exceeded = Some((n, kind, usage, limit));
                    }
                }
                if ndeferred < DEFERRED {
                    deferred[ndeferred] = (n, old, old + bytes);
                    ndeferred += 1;
                } else {
                    Self::note_growth(n, old, old + bytes);
                }
                n = lvl.parent;
            }
            for &(lvl, old, new) in &deferred[..ndeferred] {
                Self::note_growth(lvl, old, new);
            }
            if let Some((lvl, kind, usage, limit)) = exceeded {
                Self::note_exceed(node, lvl, kind, usage, limit, bytes, false);
            }
        }
        Ok(())
    }

    /// Peak and upward `high` crossing of a charge that stood.
    unsafe fn note_growth(n: *mut GroupNode, old: usize, new: usize) {
        // SAFETY: as in `charge`.
        unsafe {
            let lvl = &*n;
            lvl.peak.fetch_max(new, Ordering::Relaxed);
            let high = lvl.high.load(Ordering::Relaxed);
            if old <= high && new > high {
                Self::count_event(n, EventKind::High);
            }
        }
    }

    /// Undoes a charge from `node` up to, not including, `stop`.
    unsafe fn rollback(node: *mut GroupNode, stop: *mut GroupNode, bytes: usize, small: bool) {
        let mut n = node;
        // SAFETY: as in `charge`.
        unsafe {
            while n != stop {
                (*n).current.fetch_sub(bytes, Ordering::Relaxed);
                if small {
                    (*n).slab.fetch_sub(bytes, Ordering::Relaxed);
                }
                n = (*n).parent;
            }
        }
    }

    /// Takes back `bytes` here and on every ancestor.
    ///
    /// # Safety
    /// `node` is live and was charged at least `bytes`.
    pub unsafe fn uncharge(node: *mut GroupNode, bytes: usize, small: bool) {
        let mut n = node;
        // SAFETY: as in `charge`.
        unsafe {
            while !n.is_null() {
                (*n).current.fetch_sub(bytes, Ordering::Relaxed);
                if small {
                    (*n).slab.fetch_sub(bytes, Ordering::Relaxed);
                }
                n = (*n).parent;
            }
        }
    }

    /// Counts an event at `level` (local) and on it and its ancestors
    /// (hierarchical), then runs hooks.
    unsafe fn count_event(level: *mut GroupNode, kind: EventKind) {
        // SAFETY: as in `charge`.
        unsafe {
            (*level).events_local.bump(kind);
            let mut a = level;
            while !a.is_null() {
                (*a).events.bump(kind);
                emit(level, a, kind);
                a = (*a).parent;
            }
        }
    }

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
            let o = &*origin;
            o.last_level.store((*level).id, Ordering::Relaxed);
            o.last_kind.store(kind as u8, Ordering::Relaxed);
            o.last_usage.store(usage, Ordering::Relaxed);
            o.last_limit.store(limit, Ordering::Relaxed);
            o.last_request.store(request, Ordering::Relaxed);
            o.last_denied.store(denied, Ordering::Relaxed);
            if denied {
                o.denied_pending.store(true, Ordering::Relaxed);
            }
            o.exceed_seq.fetch_add(1, Ordering::Release);
        }
    }

    // --- reading and setting ---

    pub fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }
    pub fn slab(&self) -> usize {
        self.slab.load(Ordering::Relaxed)
    }
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }
    pub fn reset_peak(&self) {
        self.peak.store(self.current(), Ordering::Relaxed);
    }
    pub fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }
    pub fn high(&self) -> usize {
        self.high.load(Ordering::Relaxed)
    }
    pub fn slab_max(&self) -> usize {
        self.slab_max.load(Ordering::Relaxed)
    }
    pub fn set_max(&self, v: usize) {
        self.max.store(v, Ordering::Relaxed);
    }
    pub fn set_high(&self, v: usize) {
        self.high.store(v, Ordering::Relaxed);
    }
    pub fn set_slab_max(&self, v: usize) {
        self.slab_max.store(v, Ordering::Relaxed);
    }
    pub fn set_fail_mode(&self, fail: bool) {
        self.fail_mode.store(fail, Ordering::Relaxed);
    }
    pub fn fail_mode(&self) -> bool {
        self.fail_mode.load(Ordering::Relaxed)
    }
    pub fn events(&self) -> EventCounts {
        self.events.read()
    }
    pub fn events_local(&self) -> EventCounts {
        self.events_local.read()
    }
    pub fn dying_descendants(&self) -> usize {
        self.dying.load(Ordering::Relaxed)
    }
    pub fn exceed_seq(&self) -> u64 {
        self.exceed_seq.load(Ordering::Acquire)
    }
    /// The last exceed caused by charges made in this group.
    pub fn last_exceed(&self) -> Option<ExceedInfo> {
        if self.exceed_seq() == 0 {
            return None;
        }
        Some(ExceedInfo {
            level_id: self.last_level.load(Ordering::Relaxed),
            limit: if self.last_kind.load(Ordering::Relaxed) == LimitKind::SlabMax as u8 {
                LimitKind::SlabMax
            } else {
                LimitKind::Max
            },
            usage: self.last_usage.load(Ordering::Relaxed),
            limit_value: self.last_limit.load(Ordering::Relaxed),
            request: self.last_request.load(Ordering::Relaxed),
            denied: self.last_denied.load(Ordering::Relaxed),
        })
    }
    /// Takes the "an allocation was denied" mark.
    pub fn take_denied(&self) -> bool {
        self.denied_pending.swap(false, Ordering::Relaxed)
    }

    /// Slab bytes and slabs of this group's own caches, per class.
    pub fn class_usage(&self, class: usize) -> (usize, usize) {
        (
            self.class_bytes[class].load(Ordering::Relaxed),
            self.class_slabs[class].load(Ordering::Relaxed),
        )
    }

    /// Notes a slab of `bytes` made (`+`) or given back (`-`) for this group.
    pub fn note_slab(&self, class: usize, bytes: usize, made: bool) {
        if made {
            self.class_bytes[class].fetch_add(bytes, Ordering::Relaxed);
            self.class_slabs[class].fetch_add(1, Ordering::Relaxed);
            self.acquire();
        } else {
            self.class_bytes[class].fetch_sub(bytes, Ordering::Relaxed);
            self.class_slabs[class].fetch_sub(1, Ordering::Relaxed);
        }
    }
}
