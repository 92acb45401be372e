//! The process's first use of the allocator: the settings from the
//! environment (`env_settings`) are read and applied, and the processor
//! asked for what the cache hints use (`hint::detect_write_prefetch`),
//! exactly once.
//!
//! [`ensure`] runs on the slow path that makes a thread's first heap, and
//! before the tunables are read or set through the API (so a value set in
//! code wins over the environment, as with jemalloc's `mallctl` over
//! `MALLOC_CONF`). The flag is a plain atomic: the first caller reads the
//! environment; a caller that finds it under way (another thread at the
//! same moment, or a signal handler) goes on with the defaults in force
//! rather than wait, so re-entry or a fork meanwhile cannot deadlock.
//!
//! Under `MEMCG_SHOW_STATS=1` this also calls `atexit` (which takes a lock
//! of libc's), once: at the process's first allocation, before a Rust
//! program can have spawned a thread (spawning allocates).

use crate::env_settings::{self, Defaults};
use crate::{cache, exit_report, heap};
use core::sync::atomic::{AtomicU8, Ordering};

const NOT_READ: u8 = 0;
const READING: u8 = 1;
const DONE: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(NOT_READ);

/// Reads and applies the environment's settings if no one has yet.
#[inline]
pub fn ensure() {
    if STATE.load(Ordering::Acquire) == DONE {
        return;
    }
    apply();
}

#[cold]
fn apply() {
    if STATE
        .compare_exchange(NOT_READ, READING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return;
    }
    crate::hint::detect_write_prefetch();
    let s = env_settings::read(&Defaults {
        purge_delay_ms: heap::purge_delay_ms(),
        reserve_batch: cache::reserve_batch(),
        reserve_batch_max: cache::RESERVE_BATCH_MAX,
    });
    if let Some(ms) = s.purge_delay_ms {
        heap::set_purge_delay_ms(ms);
    }
    if let Some(b) = s.reserve_batch {
        cache::set_reserve_batch(b);
    }
    if s.show_stats {
        exit_report::register();
    }
    STATE.store(DONE, Ordering::Release);
}
