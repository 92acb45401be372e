//! Fork safety for the scope crate's own locks: the registry of live groups
//! and the table of event hooks are locked across `fork()`, so a child
//! never inherits one held by a thread that does not exist there. (The
//! allocator itself takes no locks.) No code holds one of them while
//! waiting for the other, so taking both here, in this order, cannot
//! deadlock.

use crate::group::{Hook, Registry, HOOKS, REGISTRY};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::MutexGuard;

type Guard = (
    MutexGuard<'static, Registry>,
    MutexGuard<'static, BTreeMap<u64, Vec<Hook>>>,
);

thread_local! {
    // The forking thread holds the registry here between prepare and the
    // parent/child handlers (all three run on that thread).
    static HELD: Cell<Option<Guard>> = const { Cell::new(None) };
}

unsafe extern "C" fn prepare() {
    let reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    let hooks = HOOKS.lock().unwrap_or_else(|e| e.into_inner());
    let _ = HELD.try_with(|h| h.set(Some((reg, hooks))));
}

unsafe extern "C" fn release() {
    let _ = HELD.try_with(|h| drop(h.take()));
}

/// Registers the handlers (once).
pub(crate) fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        memcg_alloc::groups::at_fork(prepare, release, release);
    });
}
