//! Helpers shared by the group tests.
#![allow(dead_code)]

pub const MIB: usize = 1 << 20;
pub const KIB: usize = 1 << 10;

/// Charged but unused bytes one thread may hold for one group.
pub fn slack_per_thread() -> usize {
    2 * memcg::tunables().reserve_batch
}

/// Tries to allocate `n` bytes; `None` when the allocation is refused.
pub fn try_alloc(n: usize) -> Option<Vec<u8>> {
    let mut v: Vec<u8> = Vec::new();
    v.try_reserve_exact(n).ok()?;
    Some(v)
}
