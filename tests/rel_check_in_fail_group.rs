//! `memcg::check()` called by code running in a `Fail` group that has no
//! room left: it must hand back the `Exceeded` error, not abort the process
//! because building that error (its `group` path) allocates in the very
//! group that is refusing allocations. Kept in its own test binary, as a
//! failure here aborts the process.

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

use memcg::{Group, OnExceed};

#[test]
fn check_inside_a_full_fail_group_returns_the_error() {
    let g = Group::builder("rel-check-in-fail-group")
        .max(0)
        .on_exceed(OnExceed::Fail)
        .build();
    let (denied, checked) = g.scope(|| {
        let mut v: Vec<u8> = Vec::new();
        let denied = v.try_reserve(16).is_err();
        (denied, memcg::check())
    });
    assert!(denied);
    let e = checked.expect_err("the denial is reported");
    assert!(e.denied);
    assert_eq!(e.group, g.path());
}
