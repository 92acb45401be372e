//! The API surface: names and paths, builder errors, defaults, `Stats`
//! display, `report`, event hooks, and the root's fixed limits.

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

mod groups_common;
use groups_common::*;

use memcg::{BuildError, Event, EventType, Group, OnExceed};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[test]
fn names_and_paths() {
    let tenants = Group::new("api-tenants");
    let a = tenants.child("a").build();
    let deep = a.child("deep").build();
    assert_eq!(tenants.name(), "api-tenants");
    assert_eq!(tenants.path(), "/api-tenants");
    assert_eq!(a.name(), "a");
    assert_eq!(a.path(), "/api-tenants/a");
    assert_eq!(deep.path(), "/api-tenants/a/deep");
    assert_eq!(a.parent(), Some(tenants.clone()));
    assert_eq!(tenants.parent(), Some(memcg::root()));
    let root = memcg::root();
    assert!(root.is_root());
    assert_eq!(root.path(), "/");
    assert_eq!(root.name(), "");
    assert_eq!(root.parent(), None);
    assert_eq!(tenants.children(), vec![a.clone()]);
    assert_eq!(a.stats().path, "/api-tenants/a");
    // Names may hold spaces and non-ASCII characters.
    let odd = tenants.child("tenant ü 1").build();
    assert_eq!(odd.path(), "/api-tenants/tenant ü 1");
}

#[test]
fn new_group_has_no_limits() {
    let g = Group::new("api-defaults");
    assert_eq!(g.max(), None);
    assert_eq!(g.high(), None);
    assert_eq!(g.slab_max(), None);
    assert_eq!(g.on_exceed(), OnExceed::Report);
    let s = g.stats();
    assert_eq!((s.max, s.high, s.slab_max), (None, None, None));

    let h = Group::builder("api-builder-limits")
        .max(64 * MIB)
        .high(48 * MIB)
        .slab_max(16 * MIB)
        .on_exceed(OnExceed::Fail)
        .build();
    assert_eq!(h.max(), Some(64 * MIB));
    assert_eq!(h.high(), Some(48 * MIB));
    assert_eq!(h.slab_max(), Some(16 * MIB));
    assert_eq!(h.on_exceed(), OnExceed::Fail);
    let s = h.stats();
    assert_eq!(
        (s.max, s.high, s.slab_max),
        (Some(64 * MIB), Some(48 * MIB), Some(16 * MIB))
    );
    h.set_max(None);
    h.set_high(Some(MIB));
    h.set_slab_max(None);
    h.set_on_exceed(OnExceed::Report);
    assert_eq!(
        (h.max(), h.high(), h.slab_max(), h.on_exceed()),
        (None, Some(MIB), None, OnExceed::Report)
    );
}

#[test]
fn bad_names_are_refused() {
    for bad in ["", "a/b", "/", "tab\there", &"x".repeat(65)] {
        match Group::builder(bad).try_build() {
            Err(BuildError::InvalidName(n)) => assert_eq!(n, bad),
            Err(e) => panic!("{bad:?}: wrong error {e:?}"),
            Ok(g) => panic!("{bad:?}: built {}", g.path()),
        }
    }
    let p = Group::new("api-bad-names-parent");
    assert!(matches!(
        p.child("x/y").try_build(),
        Err(BuildError::InvalidName(_))
    ));
    assert!(Group::builder(&"x".repeat(64)).try_build().is_ok());
}

#[test]
#[should_panic]
fn empty_name_panics() {
    let _ = Group::new("");
}

#[test]
#[should_panic]
fn slash_in_name_panics() {
    let _ = Group::builder("api-a/b").max(MIB).build();
}

#[test]
fn duplicate_live_path_is_taken() {
    let g = Group::new("api-dup");
    match Group::builder("api-dup").try_build() {
        Err(BuildError::NameTaken(p)) => assert_eq!(p, "/api-dup"),
        other => panic!(
            "expected NameTaken, got {:?}",
            other.map(|g| g.path().to_string())
        ),
    }
    // The same name under another parent is fine.
    let other = g.child("api-dup").build();
    assert_eq!(other.path(), "/api-dup/api-dup");
    assert!(matches!(
        g.child("api-dup").try_build(),
        Err(BuildError::NameTaken(_))
    ));
    // Clones keep it alive; when the last handle goes the name is free.
    let g2 = g.clone();
    drop(other);
    drop(g);
    assert!(matches!(
        Group::builder("api-dup").try_build(),
        Err(BuildError::NameTaken(_))
    ));
    drop(g2);
    let again = Group::builder("api-dup").try_build();
    assert!(again.is_ok());
}

#[test]
fn duplicate_names_raced_from_threads_build_once() {
    for round in 0..1000 {
        let name = format!("api-dup-race-{round}");
        let barrier = Arc::new(std::sync::Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (name, barrier) = (name.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    Group::builder(&name).try_build()
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let built = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(
            built, 1,
            "round {round}: {built} live groups got the path /{name}"
        );
    }
}

#[test]
fn stats_display_lines() {
    let g = Group::builder("api-display").max(8 * MIB).build();
    let v = g.scope(|| vec![0u8; MIB]);
    let text = g.stats().to_string();
    for key in [
        "path /api-display",
        "current ",
        "peak ",
        "max 8388608",
        "high max",
        "slab_max max",
        "slab ",
        "large ",
        "footprint ",
        "events.high ",
        "events.max ",
        "events.fail ",
        "events_local.max ",
        "dying_descendants 0",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(key)),
            "no line starting {key:?} in:\n{text}"
        );
    }
    let cur: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("current "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(cur >= MIB);
    drop(v);
}

#[test]
fn report_lists_live_groups() {
    let a = Group::new("api-report-a");
    let b = a.child("api-report-b").build();
    let c = Group::builder("api-report-c").max(MIB).build();
    let text = memcg::report();
    for g in [&a, &b, &c] {
        assert!(text.contains(g.name()), "{} not in:\n{text}", g.name());
    }
    assert!(text.lines().next().unwrap().starts_with('/'), "{text}");
    // The child is listed under (after) its parent, indented deeper.
    let la = text
        .lines()
        .position(|l| l.contains("api-report-a"))
        .unwrap();
    let lb = text
        .lines()
        .position(|l| l.contains("api-report-b"))
        .unwrap();
    assert!(lb > la);
    let indent = |i: usize| {
        text.lines().nth(i).unwrap().len() - text.lines().nth(i).unwrap().trim_start().len()
    };
    assert!(indent(lb) > indent(la), "{text}");
    drop(b);
    assert!(!memcg::report().contains("api-report-b"));
}

#[test]
fn hooks_see_high_max_and_fail() {
    let parent = Group::new("api-hooks-parent");
    let g = parent
        .child("g")
        .high(MIB)
        .max(4 * MIB)
        .on_exceed(OnExceed::Fail)
        .build();
    let seen: Arc<Mutex<Vec<Event>>> = Arc::new(Mutex::new(Vec::new()));
    let seen_parent: Arc<Mutex<Vec<Event>>> = Arc::new(Mutex::new(Vec::new()));
    {
        let seen = seen.clone();
        // This hook allocates (the event's path is cloned into the vector).
        g.on_event(move |e| seen.lock().unwrap().push(e.clone()));
        let seen_parent = seen_parent.clone();
        parent.on_event(move |e| seen_parent.lock().unwrap().push(e.clone()));
    }
    let v = g.scope(|| try_alloc(2 * MIB)).expect("within max");
    {
        let s = seen.lock().unwrap();
        assert_eq!(s.len(), 1, "{s:?}\n{}", g.stats());
        assert_eq!(s[0].kind, EventType::High);
        assert_eq!(s[0].group, "/api-hooks-parent/g");
        assert!(s[0].current >= 2 * MIB);
    }
    assert!(g.scope(|| try_alloc(4 * MIB)).is_none());
    let kinds: Vec<EventType> = seen.lock().unwrap().iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![EventType::High, EventType::Max, EventType::Fail]
    );
    let from_parent: Vec<(EventType, String)> = seen_parent
        .lock()
        .unwrap()
        .iter()
        .map(|e| (e.kind, e.group.clone()))
        .collect();
    let gp = "/api-hooks-parent/g".to_string();
    assert_eq!(
        from_parent,
        vec![
            (EventType::High, gp.clone()),
            (EventType::Max, gp.clone()),
            (EventType::Fail, gp)
        ],
        "a parent's hook sees its descendants' events"
    );
    let s = g.stats();
    assert_eq!(
        (s.events.high, s.events.max, s.events.fail),
        (1, 1, 1),
        "{s}"
    );
    // Hook allocations are not charged to the group.
    assert!(
        s.current < 2 * MIB + 2 * memcg::tunables().reserve_batch,
        "{s}"
    );
    drop(v);
}

#[test]
fn allocating_hook_is_charged_to_the_root() {
    let g = Group::builder("api-hook-allocates")
        .max(MIB)
        .on_exceed(OnExceed::Fail)
        .build();
    let kept: Arc<Mutex<Vec<Vec<u8>>>> = Arc::new(Mutex::new(Vec::new()));
    {
        let kept = kept.clone();
        g.on_event(move |e| {
            assert!(memcg::current().is_root(), "hooks run bypassed");
            let big = vec![e.current as u8; 4 * MIB];
            kept.lock().unwrap().push(big);
        });
    }
    assert!(g.scope(|| try_alloc(2 * MIB)).is_none());
    assert_eq!(kept.lock().unwrap().len(), 2, "max and fail");
    let s = g.stats();
    assert!(s.current < MIB, "{s}");
    assert_eq!(
        s.events.max, 1,
        "the hook's own allocations raise no events: {s}"
    );
}

#[test]
fn hooks_go_with_their_group() {
    let fired = Arc::new(AtomicUsize::new(0));
    let g = Group::builder("api-hooks-go").max(MIB).build();
    {
        let fired = fired.clone();
        g.on_event(move |_| {
            fired.fetch_add(1, Ordering::SeqCst);
        });
    }
    assert_eq!(Arc::strong_count(&fired), 2, "the hook holds its state");
    drop(g);
    assert_eq!(
        Arc::strong_count(&fired),
        1,
        "the dead group's hooks were dropped"
    );
    // A new group on the same path has hooks of its own, none yet.
    let g2 = Group::builder("api-hooks-go").max(MIB).build();
    let v = g2.scope(|| vec![1u8; 2 * MIB]);
    assert!(g2.check().is_err());
    assert_eq!(
        fired.load(Ordering::SeqCst),
        0,
        "no hook of the old group ran"
    );
    drop(v);
}

#[test]
fn panicking_hook_does_not_break_the_allocation() {
    let g = Group::builder("api-hook-panics").max(MIB).build();
    let after = Arc::new(AtomicUsize::new(0));
    g.on_event(|_| panic!("a hook panics"));
    {
        let after = after.clone();
        g.on_event(move |_| {
            after.fetch_add(1, Ordering::SeqCst);
        });
    }
    let v = g.scope(|| vec![5u8; 2 * MIB]);
    assert_eq!(v.len(), 2 * MIB);
    assert!(v.iter().all(|&b| b == 5));
    assert_eq!(after.load(Ordering::SeqCst), 1, "later hooks still run");
    assert!(g.check().is_err());
    // Still usable afterwards.
    let w = g.scope(|| vec![6u8; 1000]);
    assert_eq!(w[999], 6);
    assert!(memcg::current().is_root());
}

#[test]
#[should_panic]
fn root_set_max_panics() {
    memcg::root().set_max(Some(MIB));
}

#[test]
#[should_panic]
fn root_set_high_panics() {
    memcg::root().set_high(Some(MIB));
}

#[test]
#[should_panic]
fn root_set_slab_max_panics() {
    memcg::root().set_slab_max(Some(MIB));
}

#[test]
#[should_panic]
fn root_set_on_exceed_panics() {
    memcg::root().set_on_exceed(OnExceed::Fail);
}

#[test]
fn root_has_no_limits() {
    let r = memcg::root();
    assert_eq!((r.max(), r.high(), r.slab_max()), (None, None, None));
    assert!(r.check().is_ok());
}
