//! `Group::allocator()`: a collection charged to a group the calling thread
//! never enters (feature `allocator-api2`).

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

mod groups_common;
use groups_common::*;

use allocator_api2::vec::Vec as AVec;
use memcg::{Group, GroupAlloc, OnExceed};

/// Entries large enough that the table is well past the reserve slack.
const ENTRIES: u64 = 200_000;

fn assert_send_sync_clone<T: Send + Sync + Clone>() {}

#[test]
fn group_alloc_is_send_sync_clone() {
    assert_send_sync_clone::<GroupAlloc>();
    let g = Group::new("ga-handle");
    let a = g.allocator();
    assert_eq!(a.group(), &g);
    assert_eq!(a, GroupAlloc::new(&g));
    // The allocator keeps its group alive.
    drop(g);
    assert_eq!(Group::find("/ga-handle").as_ref(), Some(a.group()));
}

#[test]
fn hashbrown_map_is_charged_to_its_group_not_the_caller() {
    let g = Group::new("ga-map");
    memcg::flush();
    let start = g.current();
    let mut map = hashbrown::HashMap::new_in(g.allocator());
    for i in 0..ENTRIES {
        map.insert(i, i);
        assert!(memcg::current().is_root());
    }
    memcg::flush();
    assert!(memcg::current().is_root());
    // The table: 16 bytes a slot plus a control byte, at least one slot
    // per entry (in a power of two of buckets, 7/8 full at most).
    let table = map.allocation_size();
    assert!(table >= ENTRIES as usize * 17, "table {table}");
    let charged = g.current() - start;
    assert!(
        charged >= table && charged <= table + slack_per_thread() + 64 * KIB,
        "charged {charged}, table {table}"
    );
    drop(map);
    memcg::flush();
    assert_eq!(g.current(), start);
}

#[test]
fn vec_grows_and_shrinks_in_its_group() {
    let g = Group::new("ga-vec");
    memcg::flush();
    let start = g.current();
    let mut v: AVec<u8, _> = AVec::new_in(g.allocator());
    v.resize(MIB, 1);
    v.resize(4 * MIB, 2); // grow
    assert!(v[..MIB].iter().all(|&b| b == 1));
    assert!(v[MIB..].iter().all(|&b| b == 2));
    memcg::flush();
    assert!(g.current() - start >= 4 * MIB);
    v.truncate(MIB);
    v.shrink_to_fit(); // shrink
    assert!(v.iter().all(|&b| b == 1));
    memcg::flush();
    let now = g.current() - start;
    assert!((MIB..2 * MIB).contains(&now), "after shrink: {now}");
    // Zeroed and over-aligned blocks.
    #[repr(align(4096))]
    struct Page([u8; 4096]);
    let mut pages: AVec<Page, _> = AVec::with_capacity_in(64, g.allocator());
    pages.push(Page([7; 4096]));
    assert_eq!(pages.as_ptr() as usize % 4096, 0);
    assert_eq!(pages[0].0[4095], 7);
    let zeros = allocator_api2::boxed::Box::<[u64], _>::new_zeroed_slice_in(1 << 17, g.allocator());
    // SAFETY: zeroed u64s are valid.
    let zeros = unsafe { zeros.assume_init() };
    assert!(zeros.iter().all(|&x| x == 0));
    // Zero-sized types and empty collections allocate nothing.
    let mut units: AVec<(), _> = AVec::new_in(g.allocator());
    units.resize(1000, ());
    drop((v, pages, zeros, units));
    memcg::flush();
    assert_eq!(g.current(), start);
    assert!(memcg::current().is_root());
}

#[test]
fn inside_another_group_the_collection_still_charges_its_own() {
    let g = Group::new("ga-owner");
    let other = Group::new("ga-caller");
    memcg::flush();
    let (g0, o0) = (g.current(), other.current());
    let v = other.scope(|| {
        let mut v: AVec<u8, _> = AVec::new_in(g.allocator());
        v.resize(2 * MIB, 0);
        assert_eq!(memcg::current(), other);
        memcg::flush();
        v
    });
    assert!(g.current() - g0 >= 2 * MIB);
    assert!(other.current() - o0 < MIB);
    drop(v);
    memcg::flush();
    assert_eq!(g.current(), g0);
}

#[test]
fn frees_on_another_thread_credit_the_group() {
    let g = Group::new("ga-cross");
    memcg::flush();
    let start = g.current();
    let mut map = hashbrown::HashMap::new_in(g.allocator());
    for i in 0..ENTRIES {
        map.insert(i, [i; 2]);
    }
    let mut v: AVec<u64, _> = AVec::new_in(g.allocator());
    v.resize(1 << 18, 9);
    memcg::flush();
    let charged = g.current() - start;
    assert!(charged >= map.allocation_size() + 2 * MIB);
    std::thread::spawn(move || {
        assert!(memcg::current().is_root());
        drop(map);
        v.shrink_to(0);
        drop(v);
        memcg::flush();
    })
    .join()
    .unwrap();
    // Frees another thread made to this thread's slabs are settled here.
    memcg::flush();
    assert_eq!(g.current(), start);
}

#[test]
fn fail_group_refuses_growth_with_an_error() {
    let g = Group::builder("ga-fail")
        .max(MIB)
        .on_exceed(OnExceed::Fail)
        .build();
    let mut v: AVec<u8, _> = AVec::new_in(g.allocator());
    assert!(v.try_reserve_exact(256 * KIB).is_ok());
    // Past the limit: an error, not an abort, and the thread is still in
    // the root.
    assert!(v.try_reserve_exact(4 * MIB).is_err());
    assert!(memcg::current().is_root());
    assert!(g.stats().events.fail >= 1);
    assert!(g.check().is_err());
    // The collection is as it was and can still be used within the limit.
    v.extend_from_slice(&[1; 1000]);
    assert_eq!(v.len(), 1000);
    let mut map = hashbrown::HashMap::<u64, u64, _, _>::with_hasher_in(
        hashbrown::DefaultHashBuilder::default(),
        g.allocator(),
    );
    assert!(map.try_reserve(1 << 20).is_err());
    assert!(map.try_reserve(1000).is_ok());
    // The root's allocations are untouched by the group's limit.
    let big = vec![0u8; 4 * MIB];
    assert_eq!(big.len(), 4 * MIB);
}

#[test]
fn report_group_grows_past_max_and_is_marked() {
    let g = Group::builder("ga-report").max(MIB).build();
    let mut v: AVec<u8, _> = AVec::new_in(g.allocator());
    assert!(v.try_reserve_exact(2 * MIB).is_ok());
    assert!(g.check().is_err());
    // Strict for one call, whatever the policy: a fallible section.
    let mut w: AVec<u8, _> = AVec::new_in(g.allocator());
    assert!(memcg::fallible(|| w.try_reserve_exact(2 * MIB)).is_err());
    assert!(memcg::current().is_root());
}
