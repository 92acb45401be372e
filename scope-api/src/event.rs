//! Events and the hooks that see them.

use crate::group::Group;
use memcg_alloc::groups::{self, EventKind, GroupNode};
use std::cell::Cell;

/// What an event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Usage crossed `high` upwards.
    High,
    /// A charge went over `max` or `slab_max`.
    Max,
    /// An allocation returned null because of a limit.
    Fail,
}

/// An event, as a hook sees it.
#[derive(Clone, Debug)]
pub struct Event {
    /// What happened.
    pub kind: EventType,
    /// Path of the group where it happened (the hook's group or a
    /// descendant).
    pub group: String,
    /// That group's usage (`current`) when the hook ran.
    pub current: usize,
}

thread_local! {
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// Called by the allocator for every event at a group with hooks.
fn dispatch(level: *mut GroupNode, at: *mut GroupNode, kind: EventKind) {
    if IN_HOOK.try_with(|f| f.replace(true)).unwrap_or(true) {
        return; // a hook's own allocations never run hooks
    }
    crate::bypass(|| run_hooks(level, at, kind));
    let _ = IN_HOOK.try_with(|f| f.set(false));
}

fn run_hooks(level: *mut GroupNode, at: *mut GroupNode, kind: EventKind) {
    // SAFETY: the allocator passes live nodes (the charging thread holds
    // the group it charges, which holds its ancestors).
    let (at_id, level_id, current) = unsafe { ((*at).id, (*level).id, (*level).current()) };
    // Runs inside an allocation. The locks taken here are never held by a
    // thread that can raise an event (their holders run bypassed, in the
    // root, which has no limits) and are held across fork, so waiting for
    // them cannot deadlock.
    let hooks = crate::group::hooks_of(at_id);
    if hooks.is_empty() {
        return;
    }
    let path = Group::by_id(level_id)
        .map(|g| g.path().to_string())
        .unwrap_or_else(|| "<gone>".to_string());
    let event = Event {
        kind: match kind {
            EventKind::High => EventType::High,
            EventKind::Max => EventType::Max,
            EventKind::Fail => EventType::Fail,
        },
        group: path,
        current,
    };
    for hook in hooks {
        // A panicking hook must not unwind into the allocator.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&event)));
    }
}

/// Installs the dispatcher (once, before the first hook is registered).
pub(crate) fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| groups::set_event_sink(dispatch));
}
