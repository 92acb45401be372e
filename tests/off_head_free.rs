//! Blocks freed into a slab that is not the allocation head and went full
//! long ago (more than 4 MiB handed out since) are marked in the segment's
//! freed-block bitmap instead of being written: they must all come back
//! before new memory is carved, hold what is written into them afterwards,
//! and a second free of one must abort.

use std::alloc::{GlobalAlloc, Layout};
use std::process::Command;

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

const CASE: &str = "MEMCG_OFF_HEAD_CASE";

fn layout() -> Layout {
    Layout::from_size_align(64, 8).unwrap()
}

/// Allocates `n` blocks, each filled with its own index.
fn fill(n: usize) -> Vec<*mut u8> {
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        // SAFETY: a valid non-zero layout; the block is 64 bytes.
        let p = unsafe { GLOBAL.alloc(layout()) };
        assert!(!p.is_null());
        // SAFETY: the block is ours and 64 bytes long.
        unsafe { std::ptr::write_bytes(p, i as u8, 64) };
        v.push(p);
    }
    v
}

/// Hands out 6 MiB in blocks of another class, so that the slabs filled
/// before count as cold; returns them, to be freed by [`unage`].
fn age() -> Vec<*mut u8> {
    let l = Layout::from_size_align(1024, 8).unwrap();
    (0..6 * 1024)
        .map(|_| {
            // SAFETY: a valid non-zero layout.
            let p = unsafe { GLOBAL.alloc(l) };
            assert!(!p.is_null());
            p
        })
        .collect()
}

fn unage(v: Vec<*mut u8>) {
    let l = Layout::from_size_align(1024, 8).unwrap();
    for p in v {
        // SAFETY: blocks from `age`, freed once.
        unsafe { GLOBAL.dealloc(p, l) };
    }
}

#[test]
fn blocks_freed_off_the_head_come_back_before_new_memory() {
    // Several slabs' worth: the early ones are full and off the head.
    let blocks = fill(4000);
    let filler = age();
    let mut freed: Vec<usize> = Vec::with_capacity(1000);
    for (i, &p) in blocks.iter().enumerate().take(2000) {
        if i % 2 == 0 {
            freed.push(p as usize);
            // SAFETY: a live block of this layout, freed once.
            unsafe { GLOBAL.dealloc(p, layout()) };
        }
    }
    freed.sort_unstable();
    // The blocks still live are untouched by the frees around them.
    for (i, &p) in blocks.iter().enumerate() {
        if i >= 2000 || i % 2 == 1 {
            // SAFETY: a live block of 64 bytes.
            let bytes = unsafe { std::slice::from_raw_parts(p, 64) };
            assert!(bytes.iter().all(|&b| b == i as u8), "block {i} changed");
        }
    }
    // No slab emptied, so every freed block must be handed out again
    // before the allocator carves memory it never used.
    let again = fill(4000);
    let mut seen = 0;
    for &p in &again {
        if freed.binary_search(&(p as usize)).is_ok() {
            seen += 1;
        }
    }
    assert_eq!(seen, freed.len(), "freed blocks not handed out again");
    let mut sorted: Vec<usize> = again.iter().map(|&p| p as usize).collect();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), again.len(), "a block was handed out twice");
    for (i, &p) in again.iter().enumerate() {
        // SAFETY: a live block of 64 bytes.
        let bytes = unsafe { std::slice::from_raw_parts(p, 64) };
        assert!(bytes.iter().all(|&b| b == i as u8), "new block {i} changed");
    }
    for &p in blocks.iter().skip(2000).chain(&again) {
        // SAFETY: live blocks of this layout, freed once.
        unsafe { GLOBAL.dealloc(p, layout()) };
    }
    for (i, &p) in blocks.iter().enumerate().take(2000) {
        if i % 2 == 1 {
            // SAFETY: as above.
            unsafe { GLOBAL.dealloc(p, layout()) };
        }
    }
    unage(filler);
}

#[test]
fn double_free_off_the_head_in_child() {
    if std::env::var(CASE).as_deref() != Ok("double") {
        return;
    }
    let blocks = fill(4000);
    let _filler = age();
    // SAFETY: deliberately wrong (the third free): two blocks of a full
    // slab, then the first again, not in a row.
    unsafe {
        GLOBAL.dealloc(blocks[0], layout());
        GLOBAL.dealloc(blocks[1], layout());
        GLOBAL.dealloc(blocks[0], layout());
    }
    // Reaching here means the double free went unnoticed.
    std::process::exit(0);
}

#[test]
fn double_free_off_the_head_aborts() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "double_free_off_the_head_in_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CASE, "double")
        .output()
        .expect("could not run the child");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the child survived; stderr:\n{stderr}"
    );
    assert!(stderr.contains("double free"), "stderr: {stderr}");
}
