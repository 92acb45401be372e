//! memcg: a slab `#[global_allocator]` with cgroup-like memory budgets.
pub use memcg_alloc::{alloc_stats, purge, set_purge_delay_ms, usable_size, AllocStats, SlabAlloc};
