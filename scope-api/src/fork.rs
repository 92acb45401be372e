//! Fork safety for the scope crate's own lock: the registry of live groups
//! is locked across `fork()`, so a child never inherits it held by a thread
//! that does not exist there. (The allocator itself takes no locks.)

use crate::group::{Registry, REGISTRY};
use std::cell::Cell;
use std::sync::MutexGuard;

type Guard = MutexGuard<'static, Registry>;

thread_local! {
    // The forking thread holds the registry here between prepare and the
    // parent/child handlers (all three run on that thread).
    static HELD: Cell<Option<Guard>> = const { Cell::new(None) };
}

unsafe extern "C" fn prepare() {
    let g = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    let _ = HELD.try_with(|h| h.set(Some(g)));
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
