//! `memcg::prometheus()`: the output parses as the Prometheus text format
//! (with a parser of that format, not ours) and its figures are those of
//! `Group::stats()` and `alloc_stats()`.

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

mod groups_common;
use groups_common::*;

use memcg::{Group, OnExceed, Stats};
use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{MetricsExposition, PrometheusType, PrometheusValue};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

type Exposition = MetricsExposition<PrometheusType, PrometheusValue>;

fn parse(text: &str) -> Exposition {
    parse_prometheus(text).unwrap_or_else(|e| panic!("not the text format ({e:?}):\n{text}"))
}

/// The value of `family`'s sample whose labels are `labels`, if any.
fn value(x: &Exposition, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let f = x.families.get(family)?;
    let mut found = None;
    for s in f.iter_samples() {
        let set = s.get_labelset().unwrap();
        let names: Vec<&String> = set.iter_names().collect();
        if names.len() != labels.len() {
            continue;
        }
        if labels
            .iter()
            .all(|(k, v)| set.get_label_value(k) == Some(*v))
        {
            assert!(found.is_none(), "{family}{labels:?} twice");
            found = Some(match &s.value {
                PrometheusValue::Gauge(n) => n.as_f64(),
                PrometheusValue::Counter(c) => c.value.as_f64(),
                v => panic!("{family}: unexpected value {v:?}"),
            });
        }
    }
    found
}

fn group_value(x: &Exposition, family: &str, path: &str) -> Option<f64> {
    value(x, family, &[("group", path)])
}

fn event(x: &Exposition, family: &str, path: &str, kind: &str) -> f64 {
    value(x, family, &[("group", path), ("kind", kind)])
        .unwrap_or_else(|| panic!("no {family}{{group={path:?},kind={kind:?}}}"))
}

/// Every figure of `s` is in `x` as `prometheus()` documents it.
fn assert_matches(x: &Exposition, s: &Stats) {
    let p = s.path.as_str();
    let n = |v: usize| Some(v as f64);
    let g = |family: &str| group_value(x, family, p);
    assert_eq!(g("memcg_group_current_bytes"), n(s.current), "{s}");
    assert_eq!(g("memcg_group_peak_bytes"), n(s.peak), "{s}");
    assert_eq!(g("memcg_group_max_bytes"), s.max.map(|v| v as f64), "{s}");
    assert_eq!(g("memcg_group_high_bytes"), s.high.map(|v| v as f64), "{s}");
    assert_eq!(
        g("memcg_group_slab_max_bytes"),
        s.slab_max.map(|v| v as f64),
        "{s}"
    );
    assert_eq!(g("memcg_group_slab_bytes"), n(s.slab), "{s}");
    assert_eq!(g("memcg_group_large_bytes"), n(s.large), "{s}");
    assert_eq!(g("memcg_group_footprint_bytes"), n(s.footprint), "{s}");
    assert_eq!(
        g("memcg_group_dying_descendants"),
        n(s.dying_descendants),
        "{s}"
    );
    for (family, e) in [
        ("memcg_group_events_total", s.events),
        ("memcg_group_events_local_total", s.events_local),
    ] {
        assert_eq!(event(x, family, p, "high"), e.high as f64, "{s}");
        assert_eq!(event(x, family, p, "max"), e.max as f64, "{s}");
        assert_eq!(event(x, family, p, "fail"), e.fail as f64, "{s}");
    }
}

#[test]
fn output_parses_and_matches_group_stats() {
    let tenants = Group::builder("prom-tenants").max(1 << 30).build();
    let a = tenants
        .child("a")
        .max(256 * KIB)
        .high(128 * KIB)
        .slab_max(192 * KIB)
        .on_exceed(OnExceed::Fail)
        .build();
    let deep = a.child("deep").build();
    let odd = Group::new("q\"uo\\te é ✓"); // a name needing escapes
    let gone = tenants.child("gone").build();

    // Events: cross `high`, then a refused allocation over `max`.
    let kept = a.scope(|| {
        let v = try_alloc(160 * KIB).expect("under max");
        assert!(try_alloc(MIB).is_none(), "over max");
        v
    });
    let in_deep = deep.scope(|| vec![1u8; 3000]);
    let in_odd = odd.scope(|| vec![2u8; 200 * KIB]);
    // A group dropped with a live object: a dying descendant of tenants.
    let survivor = gone.scope(|| vec![3u8; 5000]);
    drop(gone);
    // The other test's `prometheus()` calls hold handles of every live
    // group while they build their text, so the last handle of `gone` may
    // be one of theirs: its death comes when that call ends.
    let t0 = std::time::Instant::now();
    while tenants.dying_descendants() == 0 {
        assert!(t0.elapsed().as_secs() < 10, "the dropped group never died");
        std::thread::yield_now();
    }
    memcg::flush();

    let text = memcg::prometheus();
    let x = parse(&text);
    let stats: Vec<Stats> = [
        memcg::root(),
        tenants.clone(),
        a.clone(),
        deep.clone(),
        odd.clone(),
    ]
    .iter()
    .map(Group::stats)
    .collect();

    for s in &stats[1..] {
        assert_matches(&x, s);
    }
    let [_, t, sa, sd, so] = &stats[..] else {
        unreachable!()
    };
    assert!(
        sa.events.high >= 1 && sa.events.max >= 1 && sa.events.fail >= 1,
        "{sa}"
    );
    assert!(t.events.fail >= 1 && t.events_local.fail == 0, "{t}");
    assert_eq!(t.dying_descendants, 1, "{t}");
    assert_eq!(sd.max, None);
    assert!(so.large > 0, "{so}");
    // The escaped name comes back whole from the parser.
    assert_eq!(so.path, "/q\"uo\\te é ✓");
    assert!(text.contains(r#"{group="/q\"uo\\te é ✓"}"#), "{text}");

    // The root: listed as `/`, no limit samples.
    assert!(group_value(&x, "memcg_group_current_bytes", "/").unwrap() > 0.0);
    for family in [
        "memcg_group_max_bytes",
        "memcg_group_high_bytes",
        "memcg_group_slab_max_bytes",
    ] {
        assert_eq!(group_value(&x, family, "/"), None, "{family}");
    }
    // No group sample for the dead group.
    assert_eq!(
        group_value(&x, "memcg_group_current_bytes", "/prom-tenants/gone"),
        None
    );

    // The allocator's own figures.
    for family in [
        "memcg_allocated_bytes",
        "memcg_active_bytes",
        "memcg_resident_bytes",
        "memcg_mapped_bytes",
    ] {
        let v = value(&x, family, &[]).unwrap_or_else(|| panic!("no {family}"));
        assert!(v > 0.0, "{family} {v}");
    }
    assert!(value(&x, "memcg_mapped_bytes", &[]) >= value(&x, "memcg_allocated_bytes", &[]));

    // Types, and one HELP and one TYPE line per family.
    for (name, f) in &x.families {
        assert!(name.starts_with("memcg_"), "{name}");
        let want = if name.ends_with("_total") {
            PrometheusType::Counter
        } else {
            PrometheusType::Gauge
        };
        assert_eq!(f.family_type, want, "{name}");
        assert!(!f.help.is_empty(), "{name}");
        for tag in ["HELP", "TYPE"] {
            let head = format!("# {tag} {name} ");
            assert_eq!(text.matches(&head).count(), 1, "{head}");
        }
    }
    assert_eq!(x.families.len(), 15, "{:?}", x.families.keys());

    drop((kept, in_deep, in_odd, survivor));
}

/// Called while other threads build, enter and drop groups, the output
/// always parses and lists only whole groups.
#[test]
fn safe_while_groups_come_and_go() {
    let parent = Group::new("prom-churn");
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|t| {
            let parent = parent.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let g = parent.child(&format!("t{t}-{i}")).max(64 * KIB).build();
                    let nested = g.child("n").build();
                    let v = nested.scope(|| vec![0u8; 1000]);
                    drop((g, nested));
                    drop(v);
                    i += 1;
                }
                i
            })
        })
        .collect();
    for _ in 0..200 {
        let text = memcg::prometheus();
        let x = parse(&text);
        assert!(group_value(&x, "memcg_group_current_bytes", "/prom-churn").is_some());
        // Every group listed in one family is listed in the others.
        let groups = |family: &str| {
            let mut v: Vec<String> = x.families[family]
                .iter_samples()
                .map(|s| {
                    s.get_labelset()
                        .unwrap()
                        .get_label_value("group")
                        .unwrap()
                        .to_string()
                })
                .collect();
            v.sort();
            v.dedup();
            v
        };
        assert_eq!(
            groups("memcg_group_current_bytes"),
            groups("memcg_group_events_total")
        );
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        assert!(w.join().unwrap() > 0);
    }
}
