//! Model-based property tests: random sequences of alloc, realloc, free,
//! enter, leave, group creation and death, limit and policy changes and
//! hand-offs to a second thread (which frees or reallocates what it gets),
//! checked op by op against a model of the live blocks (their contents, by
//! pattern) and of each group's charge, `check()` and refusal count. See
//! `rel_common/model.rs` for the model and what it predicts.

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

#[path = "rel_common/model.rs"]
mod model;

use model::{Harness, Op, LIMITS, MAX_SMALL};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use std::cell::Cell;

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 1usize..=256,
        3 => 257usize..=4096,
        2 => 4097usize..=MAX_SMALL,
        1 => (MAX_SMALL + 1)..=(MAX_SMALL * 3),
    ]
}

fn limit() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![
        1 => Just(None),
        3 => proptest::sample::select(LIMITS.to_vec()).prop_map(Some),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (size(), prop_oneof![8 => 0u8..=4, 1 => 5u8..=16], any::<bool>(), proptest::bool::weighted(0.2))
            .prop_map(|(size, align_log, zeroed, fallible)| Op::Alloc { size, align_log, zeroed, fallible }),
        4 => (any::<usize>(), size(), proptest::bool::weighted(0.2))
            .prop_map(|(idx, size, fallible)| Op::Realloc { idx, size, fallible }),
        6 => any::<usize>().prop_map(|idx| Op::Free { idx }),
        2 => any::<usize>().prop_map(|idx| Op::RemoteFree { idx }),
        2 => (any::<usize>(), size(), proptest::option::of(any::<usize>()))
            .prop_map(|(idx, size, group)| Op::RemoteRealloc { idx, size, group }),
        3 => any::<usize>().prop_map(|group| Op::Enter { group }),
        2 => Just(Op::Leave),
        2 => (any::<usize>(), limit(), any::<bool>())
            .prop_map(|(parent, max, fail)| Op::Create { parent, max, fail }),
        1 => any::<usize>().prop_map(|group| Op::Drop { group }),
        1 => (any::<usize>(), limit()).prop_map(|(group, max)| Op::SetMax { group, max }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(group, fail)| Op::SetPolicy { group, fail }),
        2 => Just(Op::Check),
    ]
}

/// Runs one sequence; returns (ops applied, allocations refused).
fn run(ops: &[Op]) -> (usize, usize) {
    let mut h = Harness::new();
    for op in ops {
        h.apply(op);
    }
    let r = (h.applied, h.refused);
    h.finish();
    r
}

fn config() -> ProptestConfig {
    // REL_MODEL_CASES raises the count for a longer search.
    let cases = std::env::var("REL_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Runs `cases` sequences from `strategy` and prints the figures.
fn check_model(name: &str, strategy: impl Strategy<Value = Vec<Op>>) {
    let (applied, refused, cases) = (Cell::new(0), Cell::new(0), Cell::new(0));
    let mut runner = TestRunner::new(config());
    let result = runner.run(&strategy, |ops| {
        let (a, r) = run(&ops);
        applied.set(applied.get() + a);
        refused.set(refused.get() + r);
        cases.set(cases.get() + 1);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    eprintln!(
        "{name}: {} cases, {} ops applied, {} allocations refused as predicted",
        cases.get(),
        applied.get(),
        refused.get()
    );
}

/// Every op kind, mixed.
#[test]
fn model_mixed() {
    check_model("model_mixed", proptest::collection::vec(op(), 1..300));
}

/// Groups with limits made first and entered, then the same traffic: more
/// of it runs near the limits.
#[test]
fn model_near_limits() {
    let setup = proptest::collection::vec(
        (
            any::<usize>(),
            proptest::sample::select(LIMITS[1..].to_vec()),
            any::<bool>(),
        ),
        1..6,
    );
    let strategy = (setup, proptest::collection::vec(op(), 1..300)).prop_map(|(setup, ops)| {
        let mut all: Vec<Op> = setup
            .into_iter()
            .map(|(parent, max, fail)| Op::Create {
                parent,
                max: Some(max),
                fail,
            })
            .collect();
        all.push(Op::Enter { group: usize::MAX });
        all.extend(ops);
        all
    });
    check_model("model_near_limits", strategy);
}

/// A fixed sequence exercising each op once, so a regression shows up
/// without the random search.
#[test]
fn model_smoke() {
    run(&[
        Op::Create {
            parent: 0,
            max: Some(64 << 10),
            fail: true,
        },
        Op::Enter { group: 1 },
        Op::Alloc {
            size: 100,
            align_log: 0,
            zeroed: false,
            fallible: false,
        },
        Op::Alloc {
            size: 200_000,
            align_log: 3,
            zeroed: true,
            fallible: false,
        },
        Op::Alloc {
            size: 60 << 10,
            align_log: 0,
            zeroed: false,
            fallible: false,
        },
        Op::Check,
        Op::Realloc {
            idx: 0,
            size: 3000,
            fallible: false,
        },
        Op::RemoteRealloc {
            idx: 1,
            size: 5000,
            group: None,
        },
        Op::RemoteFree { idx: 0 },
        Op::Leave,
        Op::Drop { group: 1 },
        Op::Check,
        Op::Free { idx: 0 },
        Op::Check,
    ]);
}

/// A dead group's last object freed by another thread: once both threads
/// have flushed, nothing of the group is left, so it no longer counts as
/// dying (the README: a dying group is counted "until the objects are freed
/// and the threads that cached it have flushed").
#[test]
fn dying_group_drains_after_remote_free_and_flush() {
    let parent = memcg::Group::new("rel-model-drain-parent");
    let g = parent.child("c").build();
    let b = g.scope(|| Box::new([7u8; 100]));
    drop(g);
    assert_eq!(parent.dying_descendants(), 1);
    std::thread::spawn(move || {
        drop(b);
        memcg::flush();
    })
    .join()
    .unwrap();
    memcg::flush();
    assert_eq!(parent.current(), 0);
    assert_eq!(
        parent.dying_descendants(),
        0,
        "dead group still counted after its objects were freed and every thread flushed"
    );
}
