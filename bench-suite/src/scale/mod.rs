//! Group scale: what many tenants cost. Each case runs in a process of its
//! own (fresh RSS), from the `scale` binary built once per global allocator,
//! and prints one `scale=<case> alloc=<name> key=value ...` line;
//! [`report`] runs them all for memcg and jemalloc, takes medians and writes
//! the "Group scale" section of `BENCHMARKS.md`.
//!
//! - [`utilization`]: tenants keeping small objects, served in turn by
//!   worker threads that enter each tenant's group: live bytes / RSS growth,
//!   and time.
//! - [`enter`]: enter + alloc 32 B + free + leave in a random group, with few
//!   or many groups the thread has used.
//! - [`idle`]: groups built, entered once to allocate and free one object,
//!   and kept: RSS and time per group.
//! - [`dying`]: groups dropped while one object of each stays alive: RSS per
//!   dying group, and the dying count before and after the objects go.
//! - [`service`]: a tokio runtime running one task per tenant under
//!   `Group::run`, each handling small JSON requests: time and RSS growth.
//!
//! Only memcg has groups: [`Tenant`] is a group there and nothing elsewhere,
//! so jemalloc runs the same work, on the same threads, without them. Every
//! memcg-only call sits behind `#[cfg(feature = "alloc-memcg")]` in this file.
//!
//! RSS is read from `/proc/self/statm`: [`anon_rss`] is resident minus
//! shared (file-backed) pages, so code pages faulted in during a case do not
//! count as its memory; [`peak_rss`] is `getrusage`'s `ru_maxrss` (all
//! resident pages, the high-water mark), compared with [`total_rss`].

pub mod dying;
pub mod enter;
pub mod idle;
pub mod report;
pub mod service;
pub mod utilization;

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::future::Future;
use std::io::Read;

/// A tenant: its own group under memcg; nothing under other allocators.
pub struct Tenant {
    #[cfg(feature = "alloc-memcg")]
    group: memcg::Group,
}

/// While alive, the thread works for a tenant (memcg: the group's guard).
#[must_use = "the tenant's group is left when this is dropped"]
pub struct Entered {
    #[cfg(feature = "alloc-memcg")]
    _guard: memcg::EnterGuard,
}

impl Tenant {
    /// A tenant at the top level (memcg: a child of the root), with a hard
    /// limit when `max` is given.
    #[allow(unused_variables)]
    pub fn new(name: &str, max: Option<usize>) -> Tenant {
        #[cfg(feature = "alloc-memcg")]
        {
            let group = match max {
                Some(m) => memcg::Group::builder(name).max(m).build(),
                None => memcg::Group::new(name),
            };
            Tenant { group }
        }
        #[cfg(not(feature = "alloc-memcg"))]
        {
            std::hint::black_box(name);
            Tenant {}
        }
    }

    /// A tenant below this one (memcg: a child group, no limits).
    #[allow(unused_variables)]
    pub fn child(&self, name: &str) -> Tenant {
        #[cfg(feature = "alloc-memcg")]
        {
            Tenant {
                group: self.group.child(name).build(),
            }
        }
        #[cfg(not(feature = "alloc-memcg"))]
        {
            std::hint::black_box(name);
            Tenant {}
        }
    }

    /// Starts working for the tenant on this thread (`group.enter()`).
    #[inline]
    pub fn enter(&self) -> Entered {
        Entered {
            #[cfg(feature = "alloc-memcg")]
            _guard: self.group.enter(),
        }
    }

    /// Runs the tenant's future (memcg: `group.run(fut)`, which cancels it
    /// on an exceed); `None` when it was cancelled.
    ///
    /// Not an `async fn`: one would keep `fut` itself in its state until its
    /// first poll, so the spawned task would hold the future twice under
    /// memcg (there, and in the box `group.run` puts it in). As written, the
    /// task holds what `tokio::spawn(group.run(fut))` holds.
    #[allow(clippy::manual_async_fn)]
    pub fn run<F: Future>(self, fut: F) -> impl Future<Output = Option<F::Output>> {
        #[cfg(feature = "alloc-memcg")]
        {
            let run = self.group.run(fut);
            async move { run.await.ok() }
        }
        #[cfg(not(feature = "alloc-memcg"))]
        {
            async move { Some(fut.await) }
        }
    }

    /// memcg: the tenant group's dead descendants whose objects are alive.
    pub fn dying_descendants(&self) -> Option<usize> {
        #[cfg(feature = "alloc-memcg")]
        {
            Some(self.group.dying_descendants())
        }
        #[cfg(not(feature = "alloc-memcg"))]
        {
            None
        }
    }
}

/// memcg: the root group's dead descendants whose objects are alive.
pub fn root_dying_descendants() -> Option<usize> {
    #[cfg(feature = "alloc-memcg")]
    {
        Some(memcg::root().dying_descendants())
    }
    #[cfg(not(feature = "alloc-memcg"))]
    {
        None
    }
}

/// memcg: hands this thread's unused reserves back (`memcg::flush()`).
pub fn flush() {
    #[cfg(feature = "alloc-memcg")]
    memcg::flush();
}

/// memcg: returns empty slabs to the OS now (`memcg::purge()`).
pub fn purge() {
    #[cfg(feature = "alloc-memcg")]
    memcg::purge();
}

/// Allocates `size` bytes (8-aligned) and writes every byte, as a program
/// filling its objects does (an untouched block would cost no RSS).
pub fn alloc_filled(size: usize, byte: u8) -> *mut u8 {
    let l = layout(size);
    // SAFETY: `layout` never has a zero size.
    let p = unsafe { alloc(l) };
    if p.is_null() {
        handle_alloc_error(l);
    }
    // SAFETY: `p` is a fresh block of `l.size()` writable bytes.
    unsafe { p.write_bytes(byte, l.size()) };
    p
}

/// Frees a block from [`alloc_filled`] of the same `size`, checking its first
/// byte is still `byte`; returns that byte.
///
/// # Safety
/// `p` must come from `alloc_filled(size, byte)` and be freed once.
pub unsafe fn free_filled(p: *mut u8, size: usize, byte: u8) -> u8 {
    // SAFETY: the caller passes a live block of at least one byte.
    let b = unsafe { p.read() };
    assert_eq!(b, byte, "block at {p:p} was overwritten");
    // SAFETY: allocated by the global allocator with this layout, freed once.
    unsafe { dealloc(p, layout(size)) };
    b
}

/// Starts this thread's side of the allocator before a first reading: one
/// object of every size the cases use, made and freed.
pub fn warm_up() {
    for shift in 3..=11 {
        let p = alloc_filled(1 << shift, 0);
        // SAFETY: made just above with this size and byte; freed once.
        unsafe { free_filled(std::hint::black_box(p), 1 << shift, 0) };
    }
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size.max(1), 8).expect("object layout")
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

/// `(resident, shared)` pages from `/proc/self/statm`, read into a stack
/// buffer (no allocation that would move the figure it reads).
fn statm() -> (usize, usize) {
    let mut buf = [0u8; 256];
    let n = std::fs::File::open("/proc/self/statm")
        .and_then(|mut f| f.read(&mut buf))
        .expect("read /proc/self/statm");
    let text = std::str::from_utf8(&buf[..n]).expect("statm is ASCII");
    let mut f = text.split_ascii_whitespace().skip(1);
    let mut num = || -> usize { f.next().and_then(|v| v.parse().ok()).expect("statm field") };
    let resident = num();
    let shared = num();
    (resident, shared)
}

/// Anonymous resident bytes now: `/proc/self/statm` resident minus shared.
pub fn anon_rss() -> usize {
    let (r, s) = statm();
    r.saturating_sub(s) * page_size()
}

/// All resident bytes now (`/proc/self/statm` resident).
pub fn total_rss() -> usize {
    statm().0 * page_size()
}

/// The process's high-water resident bytes (`getrusage` `ru_maxrss`).
pub fn peak_rss() -> usize {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is valid for writes; RUSAGE_SELF needs nothing else.
    let r = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(r, 0, "getrusage failed");
    ru.ru_maxrss.max(0) as usize * 1024
}

/// Bytes grown from `before` to `after`, as a signed figure (RSS can shrink).
pub fn growth(before: usize, after: usize) -> i64 {
    after as i64 - before as i64
}

/// The printed result of one case: `key=value` pairs after the case name.
pub struct Line {
    text: String,
}

impl Line {
    /// A line for `case`, naming this build's allocator.
    pub fn new(case: &str) -> Line {
        Line {
            text: format!("scale={case} alloc={}", crate::ALLOCATOR),
        }
    }

    /// Adds `key=value`.
    pub fn put(mut self, key: &str, value: impl std::fmt::Display) -> Line {
        use std::fmt::Write as _;
        let _ = write!(self.text, " {key}={value}");
        self
    }

    /// The line.
    pub fn text(&self) -> &str {
        &self.text
    }
}
