//! Branch hints.

/// Marks the branch that calls it as the unlikely one (a stable stand-in
/// for `core::hint::cold_path`, newer than the supported Rust).
#[cold]
#[inline(always)]
pub fn cold_path() {}
