//! memcg: a slab `#[global_allocator]` with cgroup-like memory budgets.
//!
//! Install the allocator, make groups with limits, and run tenant code in
//! them; every allocation is charged to the group the thread is in, and a
//! group over its limit is stopped (the allocation fails, or the group is
//! marked so the host can cancel the tenant's work) without touching the
//! others.
//!
//! ```
//! #[global_allocator]
//! static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();
//!
//! # fn main() {
//! let tenants = memcg::Group::builder("doc-tenants").max(1 << 30).build();
//! let a = tenants
//!     .child("a")
//!     .max(4 << 20)
//!     .on_exceed(memcg::OnExceed::Fail)
//!     .build();
//!
//! // Fallible allocations past the limit fail in the group...
//! let r = a.scope(|| {
//!     let mut v: Vec<u8> = Vec::new();
//!     v.try_reserve(8 << 20)
//! });
//! assert!(r.is_err());
//! assert_eq!(a.stats().events.fail, 1);
//!
//! // ...while work within it goes on.
//! let n = a.scope(|| (0..1000).map(|i| i.to_string()).collect::<Vec<_>>().len());
//! assert_eq!(n, 1000);
//! println!("{}", memcg::report());
//! # }
//! ```
//!
//! The allocator costs the same with or without groups: the root group's
//! path is the one every allocation takes. See `memcg::alloc_stats()` for
//! allocator-wide figures and [`Group::stats`] for a group's.
//!
//! An allocation denied under [`OnExceed::Fail`] returns null. Rust aborts
//! the process when an *infallible* allocation (`Box::new`, `Vec::push`)
//! gets null, so use `Fail` for code whose allocations are fallible, or
//! [`fallible`] sections, and the default [`OnExceed::Report`] with
//! [`check`] or [`Group::run`] elsewhere.
//!
//! Integrations, each behind a cargo feature named after the crate it
//! serves:
//!
//! - `tracing`: `memcg::tracing::GroupLayer`, a `tracing_subscriber::Layer`
//!   that runs a span's allocations in the group its field `memcg.group`
//!   names (`info_span!("req", memcg.group = "/tenants/a")`);
//! - `allocator-api2`: `Group::allocator()` returns a `memcg::GroupAlloc`,
//!   an `allocator_api2::alloc::Allocator` that charges one collection to a
//!   group without entering it (`hashbrown::HashMap::new_in(a.allocator())`).
//!
//! Both charge only when [`SlabAlloc`] is the global allocator.

pub use memcg_alloc::{alloc_stats, purge, set_purge_delay_ms, usable_size, AllocStats, SlabAlloc};
pub use memcg_scope::*;
