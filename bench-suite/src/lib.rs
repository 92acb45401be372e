//! The allocator comparison suite of memcg.
//!
//! - `workload`: whole-program workloads (ports of mimalloc-bench's and a few
//!   Rust-native ones), built once per global allocator by cargo feature.
//! - `pairs_probe`: N malloc/free pairs through `&dyn GlobalAlloc`, run under
//!   cachegrind by the runner to count instructions per pair.
//! - `scale`: one group-scale case per process ([`scale`]): many tenants'
//!   memory utilization and time, enter cost, idle and dying groups, a tokio
//!   service; memcg with groups, the others running the same work without.
//! - `runner`: builds the binaries, runs everything, writes `BENCHMARKS.md`
//!   (`runner --group-scale`: the "Group scale" section, see [`scale::report`]).
//! - `benches/compare.rs`: criterion micro benches of every allocator side by side.
//!
//! Exactly one `alloc-*` feature selects the global allocator of `workload` and
//! `pairs_probe`; the binaries install it with [`global_allocator!`].

pub mod budget;
pub mod build;
pub mod rng;
pub mod scale;
pub mod workloads;

/// The `alloc-*` feature this build was made with.
pub const ALLOCATOR: &str = if cfg!(feature = "alloc-memcg") {
    "memcg"
} else if cfg!(feature = "alloc-system") {
    "system"
} else if cfg!(feature = "alloc-jemalloc") {
    "jemalloc"
} else if cfg!(feature = "alloc-mimalloc") {
    "mimalloc"
} else if cfg!(feature = "alloc-snmalloc") {
    "snmalloc"
} else if cfg!(feature = "alloc-cap") {
    "cap"
} else if cfg!(feature = "alloc-tracking") {
    "tracking"
} else {
    "none"
};

const FEATURES_ON: usize = cfg!(feature = "alloc-memcg") as usize
    + cfg!(feature = "alloc-system") as usize
    + cfg!(feature = "alloc-jemalloc") as usize
    + cfg!(feature = "alloc-mimalloc") as usize
    + cfg!(feature = "alloc-snmalloc") as usize
    + cfg!(feature = "alloc-cap") as usize
    + cfg!(feature = "alloc-tracking") as usize;

const _: () = assert!(
    FEATURES_ON == 1,
    "memcg-bench: enable exactly one alloc-* feature (use --no-default-features)"
);

/// Installs the global allocator chosen by the `alloc-*` feature. Invoke once,
/// at the top level of a binary of this package; call [`budget::setup`] at the
/// start of `main` (the tracking peer needs its tracker installed).
#[macro_export]
macro_rules! global_allocator {
    () => {
        #[cfg(feature = "alloc-memcg")]
        #[global_allocator]
        static GLOBAL: ::memcg::SlabAlloc = ::memcg::SlabAlloc::new();

        #[cfg(feature = "alloc-system")]
        #[global_allocator]
        static GLOBAL: ::std::alloc::System = ::std::alloc::System;

        #[cfg(feature = "alloc-jemalloc")]
        #[global_allocator]
        static GLOBAL: ::tikv_jemallocator::Jemalloc = ::tikv_jemallocator::Jemalloc;

        #[cfg(feature = "alloc-mimalloc")]
        #[global_allocator]
        static GLOBAL: ::mimalloc::MiMalloc = ::mimalloc::MiMalloc;

        #[cfg(feature = "alloc-snmalloc")]
        #[global_allocator]
        static GLOBAL: ::snmalloc_rs::SnMalloc = ::snmalloc_rs::SnMalloc;

        #[cfg(feature = "alloc-cap")]
        #[global_allocator]
        static GLOBAL: ::cap::Cap<::std::alloc::System> =
            ::cap::Cap::new(::std::alloc::System, $crate::budget::FAR_LIMIT);

        #[cfg(feature = "alloc-tracking")]
        #[global_allocator]
        static GLOBAL: ::tracking_allocator::Allocator<::tikv_jemallocator::Jemalloc> =
            ::tracking_allocator::Allocator::from_allocator(::tikv_jemallocator::Jemalloc);
    };
}
