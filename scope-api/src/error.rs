//! What the scope API answers when a limit is hit or input is bad.

use std::fmt;

/// Which limit was exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    /// `max`: all memory of the group and its descendants.
    Max,
    /// `slab_max`: small objects only (set below `max`).
    SlabMax,
}

/// A group went over a limit, or an allocation was denied by one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exceeded {
    /// Path of the group whose limit was hit (the group itself or an
    /// ancestor), e.g. `/tenants/a`; `<gone>` if it has since died.
    pub group: String,
    /// Which limit.
    pub limit: Limit,
    /// The limit's value in bytes.
    pub limit_bytes: usize,
    /// Usage of the limited quantity at that group when it was hit (or now,
    /// for a group found over its limit), in bytes.
    pub usage: usize,
    /// Bytes the allocation that hit the limit asked for (0 when the group
    /// was found over its limit without a specific allocation, e.g. after
    /// `set_max` below usage).
    pub request: usize,
    /// Whether an allocation returned null (rather than succeeding and
    /// marking the group over its limit).
    pub denied: bool,
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let limit = match self.limit {
            Limit::Max => "max",
            Limit::SlabMax => "slab_max",
        };
        write!(
            f,
            "group {} exceeded {limit} ({} bytes): usage {} bytes, request {} bytes{}",
            self.group,
            self.limit_bytes,
            self.usage,
            self.request,
            if self.denied { ", denied" } else { "" }
        )
    }
}

impl std::error::Error for Exceeded {}

/// Why a group could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// Names are non-empty, at most 64 bytes, without `/` or control
    /// characters.
    InvalidName(String),
    /// A live sibling already has this name.
    NameTaken(String),
    /// The allocator could not make the group's record.
    OutOfMemory,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::InvalidName(n) => write!(
                f,
                "invalid group name {n:?}: names are 1 to 64 bytes, without '/' or control characters"
            ),
            BuildError::NameTaken(p) => write!(f, "a live group already has the path {p}"),
            BuildError::OutOfMemory => write!(f, "out of memory for the group's record"),
        }
    }
}

impl std::error::Error for BuildError {}
