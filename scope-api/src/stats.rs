//! Group statistics (`memory.stat`-like) and the report of the live tree.

use crate::group::{live_groups, root, Group};
use memcg_alloc::groups::{EventCounts, UNLIMITED};
use std::collections::HashMap;
use std::fmt::{self, Write as _};

/// Event counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Events {
    /// Upward crossings of `high`.
    pub high: u64,
    /// Charges over `max` or `slab_max`.
    pub max: u64,
    /// Allocations that returned null because of a limit.
    pub fail: u64,
}

impl From<EventCounts> for Events {
    fn from(e: EventCounts) -> Self {
        Events {
            high: e.high,
            max: e.max,
            fail: e.fail,
        }
    }
}

/// One size class of a group's own caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassStats {
    /// Block size of the class, in bytes.
    pub size: usize,
    /// Slabs of this class the group's caches hold (on every thread,
    /// including slabs left by exited threads or dropped caches).
    pub slabs: usize,
    /// Bytes of those slabs.
    pub slab_bytes: usize,
}

/// A snapshot of a group's counters. Counters move while threads allocate,
/// so figures taken then are approximate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Path of the group.
    pub path: String,
    /// Bytes charged to the group and its descendants, including per-thread
    /// reserves.
    pub current: usize,
    /// Highest `current` since creation or `reset_peak`.
    pub peak: usize,
    /// Hard limit.
    pub max: Option<usize>,
    /// Soft limit.
    pub high: Option<usize>,
    /// Small-object limit.
    pub slab_max: Option<usize>,
    /// Small-object bytes charged (part of `current`, reserves included).
    pub slab: usize,
    /// Large-block bytes charged (part of `current`).
    pub large: usize,
    /// Memory the group's own caches hold in slabs, plus `large`: what the
    /// group costs the process, fragmentation included.
    pub footprint: usize,
    /// Events here and in descendants.
    pub events: Events,
    /// Events at this group only.
    pub events_local: Events,
    /// Dead descendants whose objects are still alive.
    pub dying_descendants: usize,
    /// Per size class, for classes the group's own caches use.
    pub classes: Vec<ClassStats>,
}

impl Group {
    /// The group's statistics now.
    ///
    /// The snapshot is allocated in the root group, so it can be taken from
    /// inside a group that refuses allocations.
    pub fn stats(&self) -> Stats {
        crate::bypass(|| self.stats_now())
    }

    fn stats_now(&self) -> Stats {
        let n = self.node();
        let classes: Vec<ClassStats> = (0..memcg_alloc::groups::NUM_CLASSES)
            .filter_map(|c| {
                let (bytes, slabs) = n.class_usage(c);
                (slabs > 0).then(|| ClassStats {
                    size: memcg_alloc::groups::class_size(c),
                    slabs,
                    slab_bytes: bytes,
                })
            })
            .collect();
        let current = n.current();
        let slab = n.slab();
        let large = current.saturating_sub(slab);
        let opt = |v: usize| (v != UNLIMITED).then_some(v);
        Stats {
            path: self.path().to_string(),
            current,
            peak: n.peak(),
            max: opt(n.max()),
            high: opt(n.high()),
            slab_max: opt(n.slab_max()),
            slab,
            large,
            footprint: classes
                .iter()
                .map(|c| c.slab_bytes)
                .sum::<usize>()
                .max(slab)
                + large,
            events: n.events().into(),
            events_local: n.events_local().into(),
            dying_descendants: n.dying_descendants(),
            classes,
        }
    }

    /// Dead descendants whose objects are still alive.
    pub fn dying_descendants(&self) -> usize {
        self.node().dying_descendants()
    }
}

fn limit(v: Option<usize>) -> String {
    v.map_or_else(|| "max".to_string(), |v| v.to_string())
}

impl fmt::Display for Stats {
    /// `key value` lines, like cgroup v2's `memory.stat` and friends.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "path {}", self.path)?;
        writeln!(f, "current {}", self.current)?;
        writeln!(f, "peak {}", self.peak)?;
        writeln!(f, "max {}", limit(self.max))?;
        writeln!(f, "high {}", limit(self.high))?;
        writeln!(f, "slab_max {}", limit(self.slab_max))?;
        writeln!(f, "slab {}", self.slab)?;
        writeln!(f, "large {}", self.large)?;
        writeln!(f, "footprint {}", self.footprint)?;
        writeln!(f, "events.high {}", self.events.high)?;
        writeln!(f, "events.max {}", self.events.max)?;
        writeln!(f, "events.fail {}", self.events.fail)?;
        writeln!(f, "events_local.high {}", self.events_local.high)?;
        writeln!(f, "events_local.max {}", self.events_local.max)?;
        writeln!(f, "events_local.fail {}", self.events_local.fail)?;
        write!(f, "dying_descendants {}", self.dying_descendants)?;
        for c in &self.classes {
            write!(f, "\nclass.{}.slabs {}", c.size, c.slabs)?;
            write!(f, "\nclass.{}.slab_bytes {}", c.size, c.slab_bytes)?;
        }
        Ok(())
    }
}

fn human(n: usize) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The tree of live groups, one line each: current, peak, max and events.
pub fn report() -> String {
    crate::bypass(report_now)
}

fn report_now() -> String {
    let mut out = String::new();
    for (g, depth) in live_tree() {
        let s = g.stats();
        let name = if g.is_root() { "/" } else { g.name() };
        let _ = writeln!(
            out,
            "{:indent$}{name:<w$} current {:>10}  peak {:>10}  max {:>10}  events high {} max {} fail {}{}",
            "",
            human(s.current),
            human(s.peak),
            s.max.map_or_else(|| "-".to_string(), human),
            s.events.high,
            s.events.max,
            s.events.fail,
            if s.dying_descendants > 0 {
                format!("  dying {}", s.dying_descendants)
            } else {
                String::new()
            },
            indent = depth * 2,
            w = 16usize.saturating_sub(depth * 2),
        );
    }
    out
}

/// The root and every live group, depth first (parents before children,
/// siblings in creation order), each with its depth (0 for the root).
/// Handles are taken under the registry lock and returned after it, so
/// groups built or dropped meanwhile on other threads are either listed
/// (and kept alive by the returned handle) or not.
pub(crate) fn live_tree() -> Vec<(Group, usize)> {
    let groups = live_groups();
    // Children by parent id, in creation order: one pass, not one scan
    // of every group per group.
    let mut children: HashMap<u64, Vec<&Group>> = HashMap::new();
    for g in &groups {
        if let Some(p) = &g.inner.parent {
            children.entry(p.node().id).or_default().push(g);
        }
    }
    // Depth first, with a stack of our own (a deep tree must not overflow
    // the thread's).
    let root = root();
    let mut out = Vec::with_capacity(groups.len() + 1);
    let mut stack: Vec<(&Group, usize)> = vec![(&root, 0)];
    while let Some((g, depth)) = stack.pop() {
        out.push((g.clone(), depth));
        if let Some(kids) = children.get(&g.node().id) {
            stack.extend(kids.iter().rev().map(|&c| (c, depth + 1)));
        }
    }
    out
}
