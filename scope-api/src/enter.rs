//! Which group the thread allocates in: entering, leaving, bypass,
//! fallible sections, checks and flushes.

use crate::error::{Exceeded, Limit};
use crate::group::{root, Group};
use memcg_alloc::groups::{self, LimitKind, UNLIMITED};
use std::cell::RefCell;
use std::marker::PhantomData;

thread_local! {
    /// The group the thread is in (`None`: the root). Kept beside the
    /// allocator's own pointer so `current()` can hand out a handle.
    static CURRENT: RefCell<Option<Group>> = const { RefCell::new(None) };
}

/// Switches the thread to `g` (`None`: the root) and returns the group it
/// was in, to be handed back to `switch_to` to restore it. O(1) in the
/// number of groups; never panics and never allocates through the global
/// allocator.
///
/// When the switch cannot be made (out of memory for the thread's cache
/// record) the thread stays where it is, which is safe (it keeps charging
/// that group), and the handle returned is that group's, so restoring it
/// changes nothing.
pub(crate) fn switch_to(g: Option<Group>) -> Option<Group> {
    match try_switch_to(g) {
        Ok(prev) => prev,
        Err(_) => CURRENT.try_with(|c| c.borrow().clone()).ok().flatten(),
    }
}

/// [`switch_to`] that says whether the switch was made: `Ok(previous)`,
/// or `Err(g)` (the thread stays in its group).
pub(crate) fn try_switch_to(g: Option<Group>) -> Result<Option<Group>, Option<Group>> {
    let node = g.as_ref().map_or_else(groups::root_node, Group::node_ptr);
    // SAFETY: the node is kept alive by the handle stored in CURRENT (or is
    // the root) for as long as it is the thread's group.
    if !unsafe { groups::set_thread_group(node) } {
        return Err(g);
    }
    // During thread teardown the slot may be gone; the allocator's pointer
    // was switched all the same. The slot is never borrowed across code
    // that could switch (only `current` borrows it, to clone a handle).
    Ok(CURRENT.try_with(move |c| c.replace(g)).unwrap_or(None))
}

/// While alive, the thread's allocations are charged to a group; dropping
/// it returns the thread to the group that was current when it was made.
///
/// Guards nest. Not `Send`: a guard belongs to the thread that made it.
///
/// ```compile_fail
/// fn assert_send<T: Send>(_: T) {}
/// let g = memcg_scope::Group::new("compile-fail-doc");
/// assert_send(g.enter());
/// ```
#[must_use = "the group is left when the guard is dropped"]
pub struct EnterGuard {
    prev: Option<Group>,
    _not_send: PhantomData<*const ()>,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        let prev = self.prev.take();
        // The handle returned here may be the group's last one: drop it
        // after the switch, outside the thread-local borrow.
        drop(switch_to(prev));
    }
}

impl Group {
    /// Enters the group on this thread until the guard is dropped.
    pub fn enter(&self) -> EnterGuard {
        let target = if self.is_root() {
            None
        } else {
            Some(self.clone())
        };
        EnterGuard {
            prev: switch_to(target),
            _not_send: PhantomData,
        }
    }

    /// Runs `f` in the group.
    pub fn scope<R>(&self, f: impl FnOnce() -> R) -> R {
        let _g = self.enter();
        f()
    }

    /// `Err` when this group (or an ancestor) is over `max` or `slab_max`
    /// now, or when an allocation made in it was denied since the last
    /// check.
    pub fn check(&self) -> Result<(), Exceeded> {
        // Most checks find nothing: that answer takes a few loads, with no
        // switch and no handle cloned (`Group::run` checks after every poll).
        if !self.node().denied_pending() && self.first_over().is_none() {
            return Ok(());
        }
        // The error is built in the root: the group may be refusing every
        // allocation.
        crate::bypass(|| self.check_now())
    }

    /// The first level, from this group up, over `max` or `slab_max` now:
    /// the level, the limit, its value and the usage. Reads the records
    /// only, and usage only where a limit is set (the root has none, and
    /// its usage is a sum over threads).
    fn first_over(&self) -> Option<(&Group, Limit, usize, usize)> {
        let mut level = Some(self);
        while let Some(g) = level {
            let n = g.node();
            let max = n.max();
            if max != UNLIMITED {
                let cur = n.current();
                if cur > max {
                    return Some((g, Limit::Max, max, cur));
                }
            }
            let slab_max = n.slab_max();
            if slab_max < max {
                let slab = n.slab();
                if slab > slab_max {
                    return Some((g, Limit::SlabMax, slab_max, slab));
                }
            }
            level = g.inner.parent.as_ref();
        }
        None
    }

    fn check_now(&self) -> Result<(), Exceeded> {
        if self.node().take_denied() {
            if let Some(e) = self.last_exceeded() {
                return Err(e);
            }
        }
        match self.first_over() {
            Some((level, limit, limit_bytes, usage)) => Err(over(level, limit, limit_bytes, usage)),
            None => Ok(()),
        }
    }

    /// The last exceed caused by allocations made in this group.
    pub fn last_exceeded(&self) -> Option<Exceeded> {
        let info = self.node().last_exceed()?;
        crate::bypass(|| self.describe(info))
    }

    fn describe(&self, info: memcg_alloc::groups::ExceedInfo) -> Option<Exceeded> {
        Some(Exceeded {
            group: Group::by_id(info.level_id)
                .map(|g| g.path().to_string())
                .unwrap_or_else(|| "<gone>".to_string()),
            limit: match info.limit {
                LimitKind::Max => Limit::Max,
                LimitKind::SlabMax => Limit::SlabMax,
            },
            limit_bytes: info.limit_value,
            usage: info.usage,
            request: info.request,
            denied: info.denied,
        })
    }
}

fn over(level: &Group, limit: Limit, limit_bytes: usize, usage: usize) -> Exceeded {
    Exceeded {
        group: level.path().to_string(),
        limit,
        limit_bytes,
        usage,
        request: 0,
        denied: false,
    }
}

/// The group the calling thread allocates in.
pub fn current() -> Group {
    CURRENT
        .try_with(|c| c.borrow().clone())
        .ok()
        .flatten()
        .unwrap_or_else(root)
}

/// Runs `f` with its allocations charged to the root group, outside every
/// limit.
///
/// This is a trust boundary: code that can call `bypass` can allocate
/// without limit. Give tenants code paths, not this function.
pub fn bypass<R>(f: impl FnOnce() -> R) -> R {
    let prev = switch_to(None);
    struct Restore(Option<Option<Group>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(p) = self.0.take() {
                drop(switch_to(p));
            }
        }
    }
    let _restore = Restore(Some(prev));
    f()
}

/// Runs `f` with every over-limit allocation failing (returning null),
/// whatever the group's policy: `try_reserve` gets `Err` instead of the
/// group being marked over its limit.
pub fn fallible<R>(f: impl FnOnce() -> R) -> R {
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            groups::fallible_section(false);
        }
    }
    groups::fallible_section(true);
    let _leave = Leave;
    f()
}

/// [`Group::check`] for the calling thread's group.
pub fn check() -> Result<(), Exceeded> {
    current().check()
}

/// Hands the calling thread's unused reserves back to their groups, so
/// `current` counts only live objects (up to other threads' reserves);
/// sends the blocks this thread freed into other threads' slabs on their
/// way, and takes in those other threads sent to this thread's slabs.
/// Credits this thread holds back for groups with no limit that it freed
/// other threads' objects of go to their groups too. (Frees are credited
/// when they happen, or held back that way; only the memory travels. After
/// every thread has flushed twice, no freed block waits anywhere.)
pub fn flush() {
    groups::flush();
}
