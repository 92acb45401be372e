//! Frees the allocator can tell are wrong abort with a clear message
//! instead of corrupting memory. Each case runs in a child process (this
//! test binary, re-run on one test with an environment variable set).

use std::alloc::{GlobalAlloc, Layout};
use std::process::Command;

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

const CASE: &str = "MEMCG_HARDENING_CASE";

/// Runs `case` in a child and returns its stderr, asserting it aborted.
fn run_child(test: &str, case: &str) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CASE, case)
        .output()
        .expect("could not run the child");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "the child survived case {case}; stderr:\n{stderr}"
    );
    stderr
}

fn layout() -> Layout {
    Layout::from_size_align(48, 8).unwrap()
}

#[test]
fn bad_frees_in_child() {
    match std::env::var(CASE).as_deref() {
        Ok("double-local") => {
            // SAFETY: deliberately wrong (the second free); the allocator
            // must abort before anything is corrupted.
            unsafe {
                let p = GLOBAL.alloc(layout());
                GLOBAL.dealloc(p, layout());
                GLOBAL.dealloc(p, layout());
            }
        }
        Ok("double-remote") => {
            // SAFETY: as above, with both frees from another thread.
            unsafe {
                let p = GLOBAL.alloc(layout()) as usize;
                std::thread::spawn(move || {
                    GLOBAL.dealloc(p as *mut u8, layout());
                    GLOBAL.dealloc(p as *mut u8, layout());
                })
                .join()
                .ok();
            }
        }
        Ok("foreign-large") => {
            // SAFETY: deliberately wrong: a pointer into the middle of a
            // large block is not a block.
            unsafe {
                let l = Layout::from_size_align(1 << 20, 8).unwrap();
                let p = GLOBAL.alloc(l);
                GLOBAL.dealloc(p.add(4096), l);
            }
        }
        Ok("freed-slab") => {
            // SAFETY: deliberately wrong: the slab this block lived in has
            // been given back, so the pointer is no live block.
            unsafe {
                let l = Layout::from_size_align(20_000, 8).unwrap();
                let ps: Vec<*mut u8> = (0..64).map(|_| GLOBAL.alloc(l)).collect();
                let victim = ps[0];
                for p in &ps {
                    GLOBAL.dealloc(*p, l);
                }
                memcg::purge();
                GLOBAL.dealloc(victim, l);
            }
        }
        Ok("foreign") => {
            // SAFETY: deliberately wrong: a block from another allocator.
            unsafe {
                let p = std::alloc::System.alloc(layout());
                GLOBAL.dealloc(p, layout());
            }
        }
        Ok("interior") => {
            // SAFETY: deliberately wrong: a pointer inside a small block.
            unsafe {
                let p = GLOBAL.alloc(layout());
                GLOBAL.dealloc(p.add(8), layout());
            }
        }
        Ok("double-later") => {
            // SAFETY: deliberately wrong: `a` is freed again after another
            // free put `b` at the head of the free list.
            unsafe {
                let a = GLOBAL.alloc(layout());
                let b = GLOBAL.alloc(layout());
                GLOBAL.dealloc(a, layout());
                GLOBAL.dealloc(b, layout());
                GLOBAL.dealloc(a, layout());
            }
        }
        _ => return,
    }
    // Reaching here means the bad free went unnoticed.
    std::process::exit(0);
}

#[test]
fn double_free_on_the_owning_thread_aborts() {
    let err = run_child("bad_frees_in_child", "double-local");
    assert!(err.contains("double free"), "stderr: {err}");
}

#[test]
fn double_free_from_another_thread_aborts() {
    let err = run_child("bad_frees_in_child", "double-remote");
    assert!(err.contains("double free"), "stderr: {err}");
}

#[test]
fn free_of_an_interior_pointer_of_a_large_block_aborts() {
    let err = run_child("bad_frees_in_child", "foreign-large");
    assert!(err.contains("not a live block"), "stderr: {err}");
}

#[test]
fn free_into_a_released_slab_aborts() {
    let err = run_child("bad_frees_in_child", "freed-slab");
    assert!(err.contains("not a live block"), "stderr: {err}");
}

#[cfg(feature = "checks")]
#[test]
fn checks_free_of_a_foreign_pointer_aborts() {
    let err = run_child("bad_frees_in_child", "foreign");
    assert!(err.contains("does not own"), "stderr: {err}");
}

#[cfg(feature = "checks")]
#[test]
fn checks_free_of_an_interior_pointer_aborts() {
    let err = run_child("bad_frees_in_child", "interior");
    assert!(err.contains("not the start of a block"), "stderr: {err}");
}

#[cfg(feature = "checks")]
#[test]
fn checks_double_free_deeper_in_the_free_list_aborts() {
    let err = run_child("bad_frees_in_child", "double-later");
    assert!(err.contains("double free"), "stderr: {err}");
}
