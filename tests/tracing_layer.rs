//! `memcg::tracing::GroupLayer`: spans that name a group run their
//! allocations in it (feature `tracing`).

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

mod groups_common;
use groups_common::*;

use memcg::tracing::GroupLayer;
use memcg::Group;
use std::hint::black_box;
use tracing::instrument::WithSubscriber;
use tracing::{info_span, Instrument};
use tracing_subscriber::layer::SubscriberExt;

/// Allocations large enough that reserves do not blur the figures.
const BIG: usize = MIB;

/// Allocates `BIG` bytes (touched, so the block is really used).
fn big() -> Vec<u8> {
    black_box(vec![1u8; BIG])
}

/// `g.current()` after this thread's reserves are handed back.
fn charged(g: &Group) -> usize {
    memcg::flush();
    g.current()
}

fn with_layer<R>(layer: GroupLayer, f: impl FnOnce() -> R) -> R {
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, f)
}

#[test]
fn span_allocations_are_charged_to_its_group() {
    let t = Group::new("tl-basic");
    let a = t.child("a").build();
    with_layer(GroupLayer::new(), || {
        let before = charged(&a);
        let span = info_span!("req", memcg.group = "/tl-basic/a");
        let v = span.in_scope(|| {
            assert_eq!(memcg::current(), a);
            big()
        });
        assert!(memcg::current().is_root());
        assert!(charged(&a) - before >= BIG);
        drop(v);
        assert_eq!(charged(&a), before);
        // Entered again later: the group again.
        let v = span.in_scope(|| {
            assert_eq!(memcg::current(), a);
            big()
        });
        assert!(charged(&a) - before >= BIG);
        drop(v);
    });
}

#[test]
fn nested_spans_charge_the_innermost_and_restore_the_outer() {
    let t = Group::new("tl-nest");
    let a = t.child("a").build();
    let b = t.child("b").build();
    with_layer(GroupLayer::new(), || {
        let (a0, b0) = (charged(&a), charged(&b));
        let outer = info_span!("outer", memcg.group = "/tl-nest/a");
        let _o = outer.enter();
        let va = big();
        let vb = {
            let inner = info_span!("inner", memcg.group = "/tl-nest/b");
            let _i = inner.enter();
            assert_eq!(memcg::current(), b);
            big()
        };
        assert_eq!(memcg::current(), a);
        let va2 = big();
        let (da, db) = (charged(&a) - a0, charged(&b) - b0);
        assert!((2 * BIG..3 * BIG).contains(&da), "a {da}");
        assert!((BIG..2 * BIG).contains(&db), "b {db}");
        drop((va, vb, va2));
    });
    assert!(memcg::current().is_root());
}

#[test]
fn span_without_the_field_keeps_the_outer_group() {
    let a = Group::new("tl-plain");
    with_layer(GroupLayer::new(), || {
        let a0 = charged(&a);
        // No span at all: the thread's own group (entered by hand).
        let _g = a.enter();
        let plain = info_span!("plain", user = 7);
        let v = plain.in_scope(|| {
            assert_eq!(memcg::current(), a);
            big()
        });
        assert_eq!(memcg::current(), a);
        assert!(charged(&a) - a0 >= BIG);
        drop(v);
        // Inside a group span, an unnamed child stays in the group.
        drop(_g);
        let outer = info_span!("outer", memcg.group = "/tl-plain");
        outer.in_scope(|| {
            info_span!("child").in_scope(|| assert_eq!(memcg::current(), a));
        });
        assert!(memcg::current().is_root());
    });
}

#[test]
fn custom_field_display_values_and_unknown_paths() {
    let a = Group::new("tl-field");
    let layer = GroupLayer::new().field("tenant_group");
    assert_eq!(layer.field_name(), "tenant_group");
    let probe = layer.clone();
    with_layer(layer, || {
        // The default field is not read by this layer.
        info_span!("x", memcg.group = "/tl-field").in_scope(|| {
            assert!(memcg::current().is_root());
        });
        info_span!("x", tenant_group = "/tl-field").in_scope(|| {
            assert_eq!(memcg::current(), a);
        });
        // A value that displays as the path.
        let path = a.path().to_string();
        info_span!("x", tenant_group = %path).in_scope(|| {
            assert_eq!(memcg::current(), a);
        });
        // Recorded after the span was made: effective at the next enter.
        let late = info_span!("late", tenant_group = tracing::field::Empty);
        late.in_scope(|| assert!(memcg::current().is_root()));
        late.record("tenant_group", "/tl-field");
        late.in_scope(|| assert_eq!(memcg::current(), a));
        // No such group: counted, and the span runs where the thread is.
        assert_eq!(probe.unknown_paths(), 0);
        info_span!("x", tenant_group = "/tl-field/none").in_scope(|| {
            assert!(memcg::current().is_root());
        });
        assert_eq!(probe.unknown_paths(), 1);
    });
}

#[test]
fn out_of_order_exits_end_in_the_starting_group() {
    let a = Group::new("tl-order-a");
    let b = Group::new("tl-order-b");
    with_layer(GroupLayer::new(), || {
        let sa = info_span!("a", memcg.group = "/tl-order-a");
        let sb = info_span!("b", memcg.group = "/tl-order-b");
        let ea = sa.enter();
        let eb = sb.enter();
        assert_eq!(memcg::current(), b);
        drop(ea); // the outer first
        assert_eq!(memcg::current(), b);
        drop(eb);
        assert!(memcg::current().is_root());
        // Re-entering a span already entered nests.
        let e1 = sa.enter();
        let e2 = sa.enter();
        drop(e2);
        assert_eq!(memcg::current(), a);
        drop(e1);
        assert!(memcg::current().is_root());
    });
}

#[test]
fn instrumented_futures_stay_in_the_group_across_awaits() {
    let t = Group::new("tl-async");
    let tenants: Vec<Group> = (0..4).map(|i| t.child(&format!("t{i}")).build()).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let subscriber = tracing_subscriber::registry().with(GroupLayer::new());
    let dispatch = tracing::Dispatch::new(subscriber);
    // Every worker (and this thread) runs with the subscriber.
    let _default = tracing::dispatcher::set_default(&dispatch);
    let starts: Vec<usize> = tenants.iter().map(Group::current).collect();
    let kept = rt.block_on(async {
        let mut tasks = Vec::new();
        for (i, g) in tenants.iter().enumerate() {
            let g = g.clone();
            let span = info_span!("task", memcg.group = %g.path());
            let fut = async move {
                let mut kept = Vec::new();
                for round in 0..8 {
                    assert_eq!(memcg::current(), g);
                    kept.push(big());
                    // Moves between workers at each await.
                    tokio::time::sleep(std::time::Duration::from_millis(1 + round % 3)).await;
                    tokio::task::yield_now().await;
                    assert_eq!(memcg::current(), g, "after an await, round {round}");
                    kept.push(big());
                }
                memcg::flush();
                (i, kept)
            }
            .instrument(span)
            .with_current_subscriber();
            tasks.push(tokio::spawn(fut));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    for (i, kept) in &kept {
        let g = &tenants[*i];
        let d = g.current() - starts[*i];
        let live = kept.len() * BIG;
        assert_eq!(kept.len(), 16);
        // Each thread (two workers, this one) may hold up to two batches of
        // reserve.
        assert!(
            d >= live && d <= live + 3 * slack_per_thread(),
            "{}: {d} for {live}",
            g.path()
        );
    }
    assert!(memcg::current().is_root());
    drop(kept);
    drop(rt);
    memcg::flush();
    for (g, s) in tenants.iter().zip(&starts) {
        assert!(g.current() <= *s + 3 * slack_per_thread(), "{}", g.path());
    }
}
