//! Freed large blocks are reused, not mapped anew:
//! - when the cache of kept mappings is full of sizes no request fits, the
//!   newest freed mapping takes the place of the one kept longest;
//! - a block shrunk to half its mapping keeps the mapping whole (a small
//!   tail), so the freed mapping still serves the size it was made for.
//!
//! Both are what `regex` does building each pattern: a 320 KiB table made
//! and dropped, a vector grown and shrunk to half.
//! - Freed mappings past a few MiB keep the mapping but not their pages, so
//!   a table grown by doubling does not leave its old copies resident; a
//!   zeroed block made from such a mapping still reads as zeros.
//!
//! The tests are serialised: the cache of kept mappings is the process's.

use std::alloc::{GlobalAlloc, Layout};

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).expect("a valid layout")
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_full_cache_keeps_the_newest_freed_mapping() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Fill the cache (32 slots) with small large blocks, 200 KiB and up,
    // none of which an 8 MiB request fits (a kept mapping serves requests
    // up to 4 times smaller, never larger).
    let small: Vec<(*mut u8, Layout)> = (0..40)
        .map(|k| {
            let l = layout(200 * KIB + k * 4 * KIB);
            // SAFETY: a non-zero size.
            let p = unsafe { GLOBAL.alloc(l) };
            assert!(!p.is_null());
            (p, l)
        })
        .collect();
    for &(p, l) in &small {
        // SAFETY: allocated above with `l`, freed once.
        unsafe { GLOBAL.dealloc(p, l) };
    }
    let big = layout(8 * MIB);
    for round in 0..4 {
        // SAFETY: a non-zero size.
        let p = unsafe { GLOBAL.alloc(big) };
        assert!(!p.is_null());
        // SAFETY: the block is ours and 8 MiB long.
        unsafe { p.write_bytes(round as u8, big.size()) };
        let before = memcg::alloc_stats().mapped;
        // SAFETY: allocated above with `big`, freed once.
        unsafe { GLOBAL.dealloc(p, big) };
        let after = memcg::alloc_stats().mapped;
        // Kept: at most one of the small mappings (about 360 KiB) goes to
        // make room. Unmapped, the 8 MiB would go.
        let fell = before.saturating_sub(after);
        assert!(
            fell < MIB,
            "round {round}: mapped fell by {} KiB when the 8 MiB block was freed",
            fell / KIB
        );
    }
}

/// Minor page faults of the process so far.
fn minor_faults() -> i64 {
    // SAFETY: `getrusage` fills the struct it is given.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut u), 0);
        u.ru_minflt
    }
}

#[test]
fn a_block_shrunk_to_half_leaves_its_mapping_reusable() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let table = layout(320 * KIB);
    let grown = layout(260 * KIB);
    let round = || {
        // SAFETY: non-zero sizes; each block is freed once with the layout
        // it has (the vector's after its shrink).
        unsafe {
            let t = GLOBAL.alloc(table);
            assert!(!t.is_null());
            t.write_bytes(1, table.size());
            GLOBAL.dealloc(t, table);
            // Served by the table's mapping, the larger block kept.
            let v = GLOBAL.alloc(grown);
            assert!(!v.is_null());
            v.write_bytes(2, grown.size());
            let v = GLOBAL.realloc(v, grown, 156 * KIB);
            assert!(!v.is_null());
            GLOBAL.dealloc(v, layout(156 * KIB));
        }
    };
    round();
    let before = minor_faults();
    for _ in 0..20 {
        round();
    }
    let faults = minor_faults() - before;
    // Reused whole, the table's 80 pages are resident already; mapped
    // afresh each round, they fault in again (1,600 faults in 20 rounds).
    assert!(faults < 400, "{faults} page faults in 20 rounds");
}

/// Resident bytes of the process (`/proc/self/statm`).
fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm reads");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("statm has a resident field");
    pages * 4096
}

#[test]
fn freed_tables_keep_their_mappings_but_not_all_their_pages() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let table = layout(2 * MIB);
    let blocks: Vec<*mut u8> = (0..8)
        .map(|k| {
            // SAFETY: a non-zero size.
            let p = unsafe { GLOBAL.alloc(table) };
            assert!(!p.is_null());
            // SAFETY: the block is ours and 2 MiB long.
            unsafe { p.write_bytes(0xA0 + k as u8, table.size()) };
            p
        })
        .collect();
    let (rss, mapped) = (resident_bytes(), memcg::alloc_stats().mapped);
    for &p in &blocks {
        // SAFETY: allocated above with `table`, freed once.
        unsafe { GLOBAL.dealloc(p, table) };
    }
    let rss_fell = rss.saturating_sub(resident_bytes());
    let mapped_fell = mapped.saturating_sub(memcg::alloc_stats().mapped);
    // 16 MiB freed: at most 4 MiB of kept mappings stay resident, so at
    // least 12 MiB of pages go (less what the test's own threads touch);
    // every mapping stays (the cache takes up to 32 of them).
    assert!(
        rss_fell >= 11 * MIB,
        "resident memory fell by {} KiB when 16 MiB of tables were freed",
        rss_fell / KIB
    );
    assert!(
        mapped_fell < 2 * MIB,
        "mapped memory fell by {} KiB: the freed tables' mappings were not kept",
        mapped_fell / KIB
    );
    // Made again zeroed, from the kept mappings (cold or not), they read
    // as zeros.
    for _ in 0..8 {
        // SAFETY: a non-zero size.
        let p = unsafe { GLOBAL.alloc_zeroed(table) };
        assert!(!p.is_null());
        // SAFETY: the block is ours and 2 MiB long.
        let bytes = unsafe { std::slice::from_raw_parts(p, table.size()) };
        assert!(
            bytes.iter().all(|&b| b == 0),
            "a zeroed block holds old bytes"
        );
        // SAFETY: allocated above with `table`, freed once.
        unsafe { GLOBAL.dealloc(p, table) };
    }
}
