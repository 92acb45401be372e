//! Finding groups by path, names freed by death, `children`, the
//! `isolated` flag, and the registry at 20,000 groups.

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

mod groups_common;
use groups_common::*;

use memcg::{BuildError, Group};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

fn expect_taken(r: Result<Group, BuildError>, path: &str) {
    match r {
        Err(BuildError::NameTaken(p)) => assert_eq!(p, path),
        other => panic!(
            "{path}: expected NameTaken, got {:?}",
            other.map(|g| g.path().to_string())
        ),
    }
}

#[test]
fn find_nested_paths_and_the_root() {
    let t = Group::new("find-nested");
    let a = t.child("a").build();
    let b = a.child("b").build();
    let other_b = t.child("b").build();
    assert_eq!(Group::find("/find-nested"), Some(t.clone()));
    assert_eq!(Group::find("/find-nested/a"), Some(a.clone()));
    assert_eq!(Group::find("/find-nested/a/b"), Some(b.clone()));
    assert_eq!(Group::find("/find-nested/b"), Some(other_b.clone()));
    let root = Group::find("/").expect("the root is always there");
    assert!(root.is_root());
    assert_eq!(root, memcg::root());
    // What `find` returns is the group itself: same stats, same limits.
    let found = Group::find("/find-nested/a/b").unwrap();
    assert_eq!(found.path(), "/find-nested/a/b");
    assert_eq!(found.parent(), Some(a.clone()));
}

#[test]
fn find_unknown_paths_is_none() {
    let _t = Group::new("find-unknown");
    let _a = _t.child("a").build();
    for p in [
        "",
        "find-unknown",   // paths start with '/'
        "/find-unknown/", // no trailing '/'
        "//find-unknown", // no repeated '/'
        "/find-unknown/./a",
        "/find-unknown/b", // no such child
        "/find-unknown/a/a",
        "/find-unknown-not-made",
        "/FIND-UNKNOWN", // paths are case-sensitive
    ] {
        assert_eq!(Group::find(p), None, "{p:?}");
    }
}

#[test]
fn dropped_group_is_not_found_and_its_path_is_reused() {
    let t = Group::new("find-dropped");
    let a = t.child("a").build();
    let a2 = a.clone();
    drop(a);
    // A clone keeps it alive, found, and its name taken.
    assert_eq!(Group::find("/find-dropped/a"), Some(a2.clone()));
    expect_taken(t.child("a").try_build(), "/find-dropped/a");
    drop(a2);
    assert_eq!(Group::find("/find-dropped/a"), None);
    assert!(t.children().is_empty());

    // The path can be given to a new group, which `find` then answers.
    let again = t.child("a").max(MIB).build();
    assert_eq!(Group::find("/find-dropped/a"), Some(again.clone()));
    assert_eq!(Group::find("/find-dropped/a").unwrap().max(), Some(MIB));
    assert_eq!(t.children(), vec![again.clone()]);
    drop(again);

    // A handle returned by `find` keeps the group alive like any other.
    let b = t.child("b").build();
    let found = Group::find("/find-dropped/b").unwrap();
    drop(b);
    assert_eq!(Group::find("/find-dropped/b"), Some(found.clone()));
    expect_taken(t.child("b").try_build(), "/find-dropped/b");
    drop(found);
    assert_eq!(Group::find("/find-dropped/b"), None);

    // So does an enter guard.
    let c = t.child("c").build();
    let guard = c.enter();
    drop(c);
    let found = Group::find("/find-dropped/c").expect("the guard keeps it");
    assert_eq!(memcg::current(), found);
    drop(found);
    drop(guard);
    assert_eq!(Group::find("/find-dropped/c"), None);
    t.child("c").build();
}

#[test]
fn live_duplicate_is_name_taken() {
    let t = Group::new("find-dup");
    expect_taken(Group::builder("find-dup").try_build(), "/find-dup");
    let a = t.child("a").build();
    expect_taken(t.child("a").try_build(), "/find-dup/a");
    expect_taken(t.child("a").isolated(true).try_build(), "/find-dup/a");
    // The failed builds changed nothing.
    assert_eq!(Group::find("/find-dup/a"), Some(a.clone()));
    assert_eq!(t.children(), vec![a.clone()]);
    assert!(!a.is_isolated());
}

#[test]
fn children_in_creation_order() {
    let t = Group::new("find-children");
    let names = ["z", "a", "m", "b"];
    let kids: Vec<Group> = names.iter().map(|n| t.child(n).build()).collect();
    let grandchild = kids[1].child("g").build();
    assert_eq!(t.children(), kids);
    assert_eq!(kids[1].children(), vec![grandchild.clone()]);
    assert!(kids[0].children().is_empty());
    assert!(memcg::root().children().contains(&t));
    let mut kids = kids;
    kids.remove(2);
    assert_eq!(t.children(), kids);
}

#[test]
fn isolated_flag_round_trips() {
    let shared = Group::new("find-shared");
    let iso = Group::builder("find-isolated").isolated(true).build();
    let not = Group::builder("find-not-isolated").isolated(false).build();
    assert!(!shared.is_isolated());
    assert!(iso.is_isolated());
    assert!(!not.is_isolated());
    assert!(!memcg::root().is_isolated());
    // Set per group at build, not inherited.
    let child = iso.child("c").build();
    assert!(!child.is_isolated());
    let iso_child = shared.child("c").isolated(true).build();
    assert!(iso_child.is_isolated());
    // The last call wins, and `find` sees the same group.
    let last = Group::builder("find-isolated-last")
        .isolated(true)
        .isolated(false)
        .build();
    assert!(!last.is_isolated());
    assert!(Group::find("/find-isolated").unwrap().is_isolated());

    // An isolated group allocates, is charged, and is credited on free.
    let before = iso.current();
    let boxes = iso.scope(|| {
        (0..1000)
            .map(|i| Box::new([i as u64; 8]))
            .collect::<Vec<_>>()
    });
    assert!(iso.current() >= before + 1000 * 64, "{:?}", iso.stats());
    let sum: u64 = boxes.iter().map(|b| b[7]).sum();
    assert_eq!(sum, (0..1000).sum::<u64>());
    drop(boxes);
    iso.scope(memcg::flush);
    assert!(
        iso.current() <= before + slack_per_thread(),
        "{:?}",
        iso.stats()
    );
}

/// Builders racing for one path: whoever gets it is the one `find`
/// answers while it lives, and the path is free again once it dies (also
/// when a newcomer takes it while the old holder's death is still under
/// way on another thread).
#[test]
fn racing_builders_for_one_path() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 2_000;
    let parent = Group::new("find-race");
    let barrier = Arc::new(Barrier::new(THREADS));
    let built = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let finder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seen = 0usize;
            while !stop.load(Ordering::Relaxed) {
                if let Some(g) = Group::find("/find-race/x") {
                    assert_eq!(g.path(), "/find-race/x");
                    seen += 1;
                }
            }
            seen
        })
    };
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (parent, barrier, built) = (parent.clone(), barrier.clone(), built.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..ROUNDS {
                    match parent.child("x").try_build() {
                        Ok(g) => {
                            built.fetch_add(1, Ordering::Relaxed);
                            // While we hold it, nobody else can have it.
                            assert_eq!(Group::find("/find-race/x"), Some(g.clone()));
                            assert_eq!(parent.children(), vec![g.clone()]);
                            drop(g);
                        }
                        Err(BuildError::NameTaken(p)) => assert_eq!(p, "/find-race/x"),
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let _ = finder.join().unwrap();
    assert!(built.load(Ordering::Relaxed) > 0);
    // Every holder is gone: the registry forgot them all.
    assert_eq!(Group::find("/find-race/x"), None);
    assert!(parent.children().is_empty());
    let last = parent.child("x").build();
    assert_eq!(Group::find("/find-race/x"), Some(last));
}

/// 20,000 groups: build, find each, list, drop half, find again. With a
/// registry scanned per build or find this takes minutes; it must take
/// well under a second or two in release.
#[test]
fn twenty_thousand_groups() {
    const N: usize = 20_000;
    let parent = Group::new("find-scale");
    let groups: Vec<Group> = (0..N)
        .map(|i| parent.child(&format!("t{i}")).max(MIB).build())
        .collect();
    for (i, g) in groups.iter().enumerate() {
        let path = format!("/find-scale/t{i}");
        assert_eq!(Group::find(&path).as_ref(), Some(g), "{path}");
    }
    expect_taken(parent.child("t12345").try_build(), "/find-scale/t12345");
    assert_eq!(parent.children(), groups);
    assert!(memcg::report().lines().count() > N + 1);

    // Drop the even ones: they are gone, the odd ones still found.
    let (even, odd): (Vec<_>, Vec<_>) = groups
        .into_iter()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    drop(even);
    for i in 0..N {
        let found = Group::find(&format!("/find-scale/t{i}"));
        if i % 2 == 0 {
            assert_eq!(found, None, "t{i} was dropped");
        } else {
            assert_eq!(found.as_ref(), Some(&odd[i / 2].1), "t{i}");
        }
    }
    assert_eq!(parent.children().len(), N / 2);
    // The freed names can be reused.
    let reused: Vec<Group> = (0..N)
        .step_by(2)
        .map(|i| parent.child(&format!("t{i}")).build())
        .collect();
    assert_eq!(parent.children().len(), N);
    drop(odd);
    drop(reused);
    assert!(parent.children().is_empty());
    assert_eq!(Group::find("/find-scale/t1"), None);
}
