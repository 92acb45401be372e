//! memcg-scope: accounting groups for code running on `memcg::SlabAlloc`.
//!
//! A [`Group`] is a budget: allocations made while it is entered (with
//! [`Group::enter`], [`Group::scope`], [`Group::run`] for futures, or
//! [`thread::spawn`] for threads) are charged to it and its ancestors, and
//! limited by their `max`, `high` and `slab_max`. See the `memcg` crate for
//! a quick start.
#![deny(unsafe_op_in_unsafe_fn)]

mod enter;
mod error;
mod event;
mod fork;
mod future;
mod group;
mod prometheus;
mod stats;
pub mod thread;

pub use enter::{bypass, check, current, fallible, flush, EnterGuard};
pub use error::{BuildError, Exceeded, Limit};
pub use event::{Event, EventType};
pub use future::{GroupExt, InGroup, Run};
pub use group::{root, Group, GroupBuilder, OnExceed};
pub use memcg_alloc::groups::{set_tunables, tunables, Tunables};
pub use prometheus::prometheus;
pub use stats::{report, ClassStats, Events, Stats};
