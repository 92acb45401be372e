//! The report printed at process exit when `MEMCG_SHOW_STATS=1`: the
//! allocator's figures, then whatever the report hook adds (the scope
//! crate installs one that prints the group tree).
//!
//! The handler runs from `exit`, not on an allocation path, so the hook may
//! allocate; it must not unwind (the handler is `extern "C"`, so an unwind
//! would abort the process).

use crate::os::{self, Line};
use crate::stats::alloc_stats;
use core::fmt::Write as _;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

/// The report hook, a `fn()` (null: none).
static HOOK: AtomicPtr<()> = AtomicPtr::new(null_mut());
static REGISTERED: AtomicBool = AtomicBool::new(false);

/// Sets the function the exit report calls after the allocator's figures.
/// The last one set wins.
pub fn set_hook(hook: fn()) {
    HOOK.store(hook as *mut (), Ordering::Release);
}

/// Registers the exit report (once; later calls do nothing).
pub fn register() {
    if !REGISTERED.swap(true, Ordering::AcqRel) && !os::at_exit(at_exit) {
        os::write_stderr(b"memcg: MEMCG_SHOW_STATS: atexit failed; no report at exit\n");
    }
}

extern "C" fn at_exit() {
    let s = alloc_stats();
    let mut l = Line::new();
    let _ = write!(l, "memcg: stats at exit (MEMCG_SHOW_STATS)\n{s}\ngroups:\n");
    os::write_stderr(l.as_bytes());
    let p = HOOK.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: only `set_hook` stores here, and it stores a `fn()`.
        let hook = unsafe { core::mem::transmute::<*mut (), fn()>(p) };
        hook();
    } else {
        os::write_stderr(b"(no group was made)\n");
    }
}
