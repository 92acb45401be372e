//! The live group tree and the allocator's figures in the Prometheus text
//! exposition format (version 0.0.4), for a `/metrics` endpoint.

use crate::stats::{live_tree, Events, Stats};
use std::fmt::Write as _;

/// The live group tree and the allocator's own figures in the Prometheus
/// text exposition format, version 0.0.4 (serve it with the content type
/// `text/plain; version=0.0.4`).
///
/// Every group sample carries a `group` label holding the group's
/// [path](crate::Group::path) (`/` for the root, `/tenants/a` below it),
/// escaped as the format asks (`\` as `\\`, `"` as `\"`, a newline as
/// `\n`): group names may hold any character but `/` and control
/// characters. Groups are listed depth first, parents before children.
///
/// | metric | type | what |
/// |---|---|---|
/// | `memcg_group_current_bytes` | gauge | [`Stats::current`]: bytes charged to the group and its descendants, per-thread reserves included |
/// | `memcg_group_peak_bytes` | gauge | [`Stats::peak`] |
/// | `memcg_group_max_bytes` | gauge | [`Stats::max`], the hard limit |
/// | `memcg_group_high_bytes` | gauge | [`Stats::high`], the soft limit |
/// | `memcg_group_slab_max_bytes` | gauge | [`Stats::slab_max`], the small-object limit |
/// | `memcg_group_slab_bytes` | gauge | [`Stats::slab`]: small-object bytes charged |
/// | `memcg_group_large_bytes` | gauge | [`Stats::large`]: large-block bytes charged |
/// | `memcg_group_footprint_bytes` | gauge | [`Stats::footprint`]: what the group's own caches hold |
/// | `memcg_group_events_total` | counter | [`Stats::events`], by `kind` (`high`, `max`, `fail`): here and in descendants |
/// | `memcg_group_events_local_total` | counter | [`Stats::events_local`], by `kind`: at this group only |
/// | `memcg_group_dying_descendants` | gauge | [`Stats::dying_descendants`] |
/// | `memcg_allocated_bytes` | gauge | `memcg_alloc::AllocStats::allocated`: bytes in live blocks |
/// | `memcg_active_bytes` | gauge | `AllocStats::active`: slabs in use and large blocks |
/// | `memcg_resident_bytes` | gauge | `AllocStats::resident`: mapped memory that may be backed |
/// | `memcg_mapped_bytes` | gauge | `AllocStats::mapped`: bytes mapped from the OS |
///
/// A limit that is not set has no sample (rather than `0` or `+Inf`): a
/// group without a `max` has no `memcg_group_max_bytes` line, and a family
/// no group has (no group with a `high`, say) has no lines at all. The
/// root has no limits.
///
/// Safe to call from any thread at any time, also while other threads build
/// and drop groups: the registry is read under its lock as
/// [`report`](crate::report) does, and each group is read through a handle
/// taken there, so a group is either listed whole or not at all. Counters
/// move while threads allocate, so the figures are approximate, as with
/// [`Group::stats`](crate::Group::stats). The text is allocated in the root
/// group, so it can be made from inside a group that refuses allocations.
///
/// ```
/// # #[global_allocator]
/// # static GLOBAL: memcg_alloc::SlabAlloc = memcg_alloc::SlabAlloc::new();
/// # fn main() {
/// let tenants = memcg_scope::Group::builder("tenants").max(1 << 30).build();
/// let _a = tenants.child("a").high(48 << 20).build();
/// let text = memcg_scope::prometheus();
/// assert!(text.contains("memcg_group_max_bytes{group=\"/tenants\"} 1073741824\n"));
/// assert!(text.contains("memcg_group_high_bytes{group=\"/tenants/a\"} 50331648\n"));
/// # }
/// ```
///
/// Part of an output:
///
/// ```text
/// # HELP memcg_group_current_bytes Bytes charged to the group and its descendants, per-thread reserves included.
/// # TYPE memcg_group_current_bytes gauge
/// memcg_group_current_bytes{group="/"} 1183744
/// memcg_group_current_bytes{group="/tenants"} 98304
/// memcg_group_current_bytes{group="/tenants/a"} 65536
/// # HELP memcg_group_max_bytes Hard limit of the group (no sample: no limit).
/// # TYPE memcg_group_max_bytes gauge
/// memcg_group_max_bytes{group="/tenants"} 1073741824
/// # HELP memcg_group_events_total Limit events at the group and its descendants, by kind (high: crossings of high; max: charges over max or slab_max; fail: allocations refused).
/// # TYPE memcg_group_events_total counter
/// memcg_group_events_total{group="/",kind="high"} 0
/// memcg_group_events_total{group="/",kind="max"} 3
/// memcg_group_events_total{group="/",kind="fail"} 1
/// # HELP memcg_allocated_bytes Bytes in live blocks (small blocks by size class, large ones page-rounded).
/// # TYPE memcg_allocated_bytes gauge
/// memcg_allocated_bytes 1064960
/// ```
pub fn prometheus() -> String {
    crate::bypass(prometheus_now)
}

fn prometheus_now() -> String {
    let groups: Vec<Stats> = live_tree().iter().map(|(g, _)| g.stats()).collect();
    let a = memcg_alloc::alloc_stats();
    let mut out = String::with_capacity(256 + groups.len() * 700);
    let gauges: [Family<Option<usize>>; 8] = [
        (
            "memcg_group_current_bytes",
            "Bytes charged to the group and its descendants, per-thread reserves included.",
            |s| Some(s.current),
        ),
        (
            "memcg_group_peak_bytes",
            "Highest current since the group was made or its peak was reset.",
            |s| Some(s.peak),
        ),
        (
            "memcg_group_max_bytes",
            "Hard limit of the group (no sample: no limit).",
            |s| s.max,
        ),
        (
            "memcg_group_high_bytes",
            "Soft limit of the group (no sample: no limit).",
            |s| s.high,
        ),
        (
            "memcg_group_slab_max_bytes",
            "Small-object limit of the group (no sample: no limit).",
            |s| s.slab_max,
        ),
        (
            "memcg_group_slab_bytes",
            "Small-object bytes charged to the group and its descendants (part of current).",
            |s| Some(s.slab),
        ),
        (
            "memcg_group_large_bytes",
            "Large-block bytes charged to the group and its descendants (part of current).",
            |s| Some(s.large),
        ),
        (
            "memcg_group_footprint_bytes",
            "Memory the group's own caches hold in slabs, plus its large blocks.",
            |s| Some(s.footprint),
        ),
    ];
    for (name, help, value) in gauges {
        group_family(&mut out, name, help, "gauge", &groups, |s, out| {
            if let Some(v) = value(s) {
                sample(out, name, &s.path, None, v as u64);
            }
        });
    }
    let events: [Family<Events>; 2] = [
        (
            "memcg_group_events_total",
            "Limit events at the group and its descendants, by kind (high: crossings of high; \
             max: charges over max or slab_max; fail: allocations refused).",
            |s| s.events,
        ),
        (
            "memcg_group_events_local_total",
            "Limit events at the group itself, by kind (high, max, fail as in memcg_group_events_total).",
            |s| s.events_local,
        ),
    ];
    for (name, help, value) in events {
        group_family(&mut out, name, help, "counter", &groups, |s, out| {
            let e = value(s);
            for (kind, n) in [("high", e.high), ("max", e.max), ("fail", e.fail)] {
                sample(out, name, &s.path, Some(kind), n);
            }
        });
    }
    let name = "memcg_group_dying_descendants";
    group_family(
        &mut out,
        name,
        "Dead descendants of the group whose objects are still alive.",
        "gauge",
        &groups,
        |s, out| sample(out, name, &s.path, None, s.dying_descendants as u64),
    );
    for (name, help, v) in [
        (
            "memcg_allocated_bytes",
            "Bytes in live blocks (small blocks by size class, large ones page-rounded).",
            a.allocated,
        ),
        (
            "memcg_active_bytes",
            "Bytes in slabs in use plus large blocks: allocated with its fragmentation.",
            a.active,
        ),
        (
            "memcg_resident_bytes",
            "Bytes of mapped memory that may be backed by physical pages.",
            a.resident,
        ),
        (
            "memcg_mapped_bytes",
            "Bytes mapped from the OS, the allocator's own metadata included.",
            a.mapped,
        ),
    ] {
        header(&mut out, name, help, "gauge");
        let _ = writeln!(out, "{name} {v}");
    }
    out
}

/// A family over the groups: its name, its help text and its figure.
type Family<T> = (&'static str, &'static str, fn(&Stats) -> T);

/// One family over the groups: `# HELP` and `# TYPE`, then the samples
/// `samples` writes for each group; nothing at all when it writes none.
fn group_family(
    out: &mut String,
    name: &str,
    help: &str,
    kind: &str,
    groups: &[Stats],
    mut samples: impl FnMut(&Stats, &mut String),
) {
    let mut lines = String::new();
    for s in groups {
        samples(s, &mut lines);
    }
    if !lines.is_empty() {
        header(out, name, help, kind);
        out.push_str(&lines);
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    // The help texts are ours: no backslash or newline to escape.
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// `name{group="path"} value` or `name{group="path",kind="kind"} value`.
fn sample(out: &mut String, name: &str, path: &str, kind: Option<&str>, value: u64) {
    out.push_str(name);
    out.push_str("{group=\"");
    escape_label_value(out, path);
    out.push('"');
    if let Some(kind) = kind {
        let _ = write!(out, ",kind=\"{kind}\"");
    }
    let _ = writeln!(out, "}} {value}");
}

/// Appends `v` escaped for a label value of the text format: backslash,
/// double quote and line feed take a backslash; everything else is kept.
fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::escape_label_value;

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        escape_label_value(&mut out, "/a\"b\\c\nd é");
        assert_eq!(out, "/a\\\"b\\\\c\\nd é");
    }
}
