//! The whole-program workloads, one file each. Every workload does a fixed
//! total amount of work split among its threads (so 4 threads on 2 cores
//! oversubscribe rather than double the work) and returns a checksum that
//! depends on every allocation it made, so none can be optimised away. The
//! checksums do not depend on thread scheduling: the runner compares them
//! across allocators.

pub mod common;

pub mod alloc_test;
pub mod btree;
pub mod btree_churn;
pub mod cache_scratch;
pub mod cache_thrash;
pub mod channel;
pub mod glibc_simple;
pub mod glibc_thread;
pub mod groups;
pub mod json;
pub mod larson;
pub mod mixed;
pub mod mleak;
pub mod mstress;
pub mod rptest;
pub mod short_threads;
pub mod xmalloc;

/// What a workload reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Allocator operations (or units of work) done.
    pub ops: u64,
    /// Wrapping sum over the work's results.
    pub checksum: u64,
}

/// A workload: `run(threads, scale)`.
pub type Workload = fn(usize, f64) -> Outcome;

/// Every workload by name, in report order.
pub const ALL: &[(&str, Workload)] = &[
    ("larson", larson::run),
    ("xmalloc-test", xmalloc::run),
    ("cache-scratch", cache_scratch::run),
    ("cache-thrash", cache_thrash::run),
    ("glibc-simple", glibc_simple::run),
    ("glibc-thread", glibc_thread::run),
    ("mstress", mstress::run),
    ("rptest", rptest::run),
    ("alloc-test", alloc_test::run),
    ("mleak", mleak::run),
    ("btree", btree::run),
    ("json", json::run),
    ("groups", groups::run),
    ("channel", channel::run),
    ("short-threads", short_threads::run),
    ("btree-churn", btree_churn::run),
    ("mixed", mixed::run),
];

/// Looks a workload up by name.
pub fn find(name: &str) -> Option<Workload> {
    ALL.iter().find(|(n, _)| *n == name).map(|(_, w)| *w)
}
