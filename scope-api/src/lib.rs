//! memcg-scope: accounting groups for code running on `memcg::SlabAlloc`.
//!
//! A [`Group`] is a budget: allocations made while it is entered (with
//! [`Group::enter`], [`Group::scope`], [`Group::run`] for futures, or
//! [`thread::spawn`] for threads) are charged to it and its ancestors, and
//! limited by their `max`, `high` and `slab_max`. See the `memcg` crate for
//! a quick start.
//!
//! Integrations, each behind a cargo feature named after the crate it
//! serves: `tracing` (`tracing::GroupLayer`, spans that name a group run
//! in it) and `allocator-api2` (`Group::allocator`, a `GroupAlloc` that
//! charges one collection to a group).
#![deny(unsafe_op_in_unsafe_fn)]

mod enter;
mod error;
mod event;
mod exit_report;
mod fork;
mod future;
mod group;
#[cfg(feature = "allocator-api2")]
mod group_alloc;
mod prometheus;
mod stats;
pub mod thread;
#[cfg(feature = "tracing")]
pub mod tracing;

pub use enter::{bypass, check, current, fallible, flush, EnterGuard};
pub use error::{BuildError, Exceeded, Limit};
pub use event::{Event, EventType};
pub use future::{GroupExt, InGroup, Run};
pub use group::{root, Group, GroupBuilder, OnExceed};
#[cfg(feature = "allocator-api2")]
pub use group_alloc::GroupAlloc;
pub use memcg_alloc::groups::{set_tunables, tunables, Tunables};
pub use prometheus::prometheus;
pub use stats::{report, ClassStats, Events, Stats};
