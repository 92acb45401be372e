//! Budgeted mode: the workload runs under byte accounting with a limit far
//! above its needs, so the figures show the cost of accounting, not of denial.
//!
//! - memcg: with `--group`, every thread of the workload runs inside one group
//!   with a far `max`; without it, in the root group.
//! - cap: the `cap` crate always counts every byte in one global atomic and
//!   checks its (far) limit.
//! - tracking: `tracking-allocator` over jemalloc always writes a header before
//!   each block and calls the tracker below on every allocation and free; with
//!   `--group` each thread also enters a registered allocation group.
//! - the others: no accounting; `--group` changes nothing.

use std::sync::atomic::{AtomicBool, Ordering};

/// The limit of the budgeted modes: far above any workload here.
pub const FAR_LIMIT: usize = 1 << 46;

static GROUP_MODE: AtomicBool = AtomicBool::new(false);

#[cfg(feature = "alloc-memcg")]
static BUDGET: std::sync::OnceLock<memcg::Group> = std::sync::OnceLock::new();

/// Prepares the selected allocator's accounting; `group_mode` asks for the
/// workload to run inside a budget group. Call once at the start of `main`.
pub fn setup(group_mode: bool) {
    GROUP_MODE.store(group_mode, Ordering::Relaxed);
    #[cfg(feature = "alloc-tracking")]
    {
        let _ = tracking_allocator::AllocationRegistry::set_global_tracker(tracker::Counters);
        tracking_allocator::AllocationRegistry::enable_tracking();
    }
    #[cfg(feature = "alloc-memcg")]
    if group_mode {
        let g = memcg::Group::builder("budget").max(FAR_LIMIT).build();
        let _ = BUDGET.set(g);
    }
}

/// Whether `--group` was given.
pub fn group_mode() -> bool {
    GROUP_MODE.load(Ordering::Relaxed)
}

/// Runs `f` on this thread inside the budget group, if there is one.
pub fn in_budget<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(feature = "alloc-memcg")]
    if let Some(g) = BUDGET.get() {
        return g.scope(f);
    }
    #[cfg(feature = "alloc-tracking")]
    if group_mode() {
        if let Some(mut token) = tracking_allocator::AllocationGroupToken::register() {
            let _guard = token.enter();
            return f();
        }
    }
    f()
}

/// Runs `f` in a new group of its own (a tenant), where the allocator has
/// groups: memcg (a child of the budget group when there is one) and the
/// tracking peer. Elsewhere `f` runs as it is.
pub fn in_own_group<R>(index: usize, f: impl FnOnce() -> R) -> R {
    #[cfg(feature = "alloc-memcg")]
    {
        let name = format!("tenant-{index}");
        let g = match BUDGET.get() {
            Some(b) => b.child(&name).max(FAR_LIMIT).build(),
            None => memcg::Group::builder(&name).max(FAR_LIMIT).build(),
        };
        g.scope(f)
    }
    #[cfg(feature = "alloc-tracking")]
    {
        let _ = index;
        match tracking_allocator::AllocationGroupToken::register() {
            Some(mut token) => {
                let _guard = token.enter();
                f()
            }
            None => f(),
        }
    }
    #[cfg(not(any(feature = "alloc-memcg", feature = "alloc-tracking")))]
    {
        let _ = index;
        f()
    }
}

/// Bytes the accounting layer currently holds against the budget (memcg group
/// mode: the group's `current`; cap: its counter; tracking: its counters).
pub fn accounted() -> Option<usize> {
    #[cfg(feature = "alloc-memcg")]
    {
        BUDGET.get().map(|g| g.current())
    }
    #[cfg(feature = "alloc-tracking")]
    {
        Some(tracker::total())
    }
    #[cfg(not(any(feature = "alloc-memcg", feature = "alloc-tracking")))]
    {
        None
    }
}

/// Runs `f(i)` on `threads` scoped threads (each inside the budget) and
/// returns the wrapping sum of their results.
pub fn run_threads<F>(threads: usize, f: F) -> u64
where
    F: Fn(usize) -> u64 + Sync,
{
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| s.spawn(move || in_budget(|| f(i))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("workload thread panicked"))
            .fold(0u64, u64::wrapping_add)
    })
}

#[cfg(feature = "alloc-tracking")]
mod tracker {
    //! Per-group byte counters updated on every allocation and free: the
    //! accounting a `tracking-allocator` user installs.
    use std::sync::atomic::{AtomicIsize, Ordering};
    use tracking_allocator::{AllocationGroupId, AllocationTracker};

    const SLOTS: usize = 64;
    static BYTES: [AtomicIsize; SLOTS] = [const { AtomicIsize::new(0) }; SLOTS];

    pub struct Counters;

    impl AllocationTracker for Counters {
        fn allocated(&self, _addr: usize, _size: usize, wrapped: usize, group: AllocationGroupId) {
            BYTES[group.as_usize().get() % SLOTS].fetch_add(wrapped as isize, Ordering::Relaxed);
        }

        fn deallocated(
            &self,
            _addr: usize,
            _size: usize,
            wrapped: usize,
            source: AllocationGroupId,
            _current: AllocationGroupId,
        ) {
            BYTES[source.as_usize().get() % SLOTS].fetch_sub(wrapped as isize, Ordering::Relaxed);
        }
    }

    pub fn total() -> usize {
        BYTES
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum::<isize>()
            .max(0) as usize
    }
}
