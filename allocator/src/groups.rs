//! The accounting entry points the scope crate builds on: which group the
//! thread allocates in, `fallible` sections, reserves, and tunables.
//!
//! Group records ([`GroupNode`]) are raw pointers here; the scope crate
//! owns one reference per live group and wraps them in safe handles.

pub use crate::group::{
    root as root_node, set_event_sink, EventCounts, EventKind, EventSink, ExceedInfo, GroupNode,
    LimitKind, UNLIMITED,
};
pub use crate::os::at_fork;
pub use crate::size_class::{class_size, NUM_CLASSES};
use crate::{cache, exit_report, first_use, heap};

pub use crate::cache::RESERVE_BATCH_MAX;

/// Makes a child record of `parent`; null when out of memory. The caller
/// owns the returned reference and gives it up with [`GroupNode::kill`].
///
/// # Safety
/// `parent` is live.
pub unsafe fn create_node(parent: *mut GroupNode) -> *mut GroupNode {
    // SAFETY: forwarded contract.
    unsafe { GroupNode::create(parent) }
}

/// Makes `node`'s small objects live in slabs of its own (`true`) or in
/// slabs shared with other groups (`false`, the default). Takes effect for
/// caches made after the call; set it before the group's first allocation.
pub fn set_isolated(node: &GroupNode, isolated: bool) {
    node.set_isolated(isolated);
}

/// Points the calling thread's allocations at `node`; false (nothing
/// changed) when out of memory.
///
/// # Safety
/// `node` is live, and stays live while it is the thread's group.
pub unsafe fn set_thread_group(node: *mut GroupNode) -> bool {
    // SAFETY: forwarded contract.
    unsafe { heap::set_current(node) }
}

/// The group the calling thread allocates in.
pub fn thread_group() -> *mut GroupNode {
    heap::current_node()
}

/// Enters (`true`) or leaves (`false`) a section where any over-limit
/// allocation fails.
pub fn fallible_section(enter: bool) {
    heap::adjust_fallible(enter);
}

/// Hands the calling thread's reserves back to their groups.
pub fn flush() {
    heap::flush();
}

/// Drops the calling thread's cache of `node` now, handing its reserve
/// back: the group's last handle is going on this thread. Other threads drop
/// theirs over their next slow paths and switches, at `flush`, or at exit.
///
/// # Safety
/// `node` is a live record (the caller still holds its reference) and not
/// the calling thread's group.
pub unsafe fn forget_group(node: *mut GroupNode) {
    let h = heap::current();
    if !heap::is_placeholder(h) {
        // SAFETY: `h` is this thread's heap; the caller's contract.
        unsafe { heap::forget(h, node) };
    }
}

/// Allocator-wide tunables; set on the root, they reach every per-group
/// cache, now (at its next refill or free) and later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tunables {
    /// Bytes a cache's reserve takes from its group beyond the allocation
    /// at hand; a reserve holds at most twice this. Default 32 KiB (or
    /// `MEMCG_RESERVE_BATCH`), at most [`RESERVE_BATCH_MAX`].
    pub reserve_batch: usize,
    /// Empty slabs a cache keeps per size class (the allocation head
    /// counts; 0 behaves as 1 between purges).
    pub empty_slabs_kept: usize,
    /// How long free pages wait before they go back to the OS. Default
    /// 10 ms (or `MEMCG_PURGE_DELAY_MS`).
    pub purge_delay_ms: u64,
}

/// The tunables in force.
pub fn tunables() -> Tunables {
    first_use::ensure();
    Tunables {
        reserve_batch: cache::reserve_batch(),
        empty_slabs_kept: cache::empty_slabs_kept(),
        purge_delay_ms: heap::purge_delay_ms(),
    }
}

/// Sets the tunables. A `reserve_batch` above [`RESERVE_BATCH_MAX`] is
/// taken as that.
pub fn set_tunables(t: Tunables) {
    first_use::ensure();
    cache::set_reserve_batch(t.reserve_batch);
    cache::set_empty_slabs_kept(t.empty_slabs_kept);
    heap::set_purge_delay_ms(t.purge_delay_ms);
}

/// Sets the function the report printed at exit under `MEMCG_SHOW_STATS=1`
/// calls after the allocator's figures (the scope crate's prints the group
/// tree). It runs from `exit` and may allocate; it must not unwind.
pub fn set_exit_report(hook: fn()) {
    exit_report::set_hook(hook);
}
