//! `fork()` while other threads allocate inside groups (and create and drop
//! groups): the child sees consistent counters, can make its own groups,
//! allocate and free in them, and exits cleanly. Twenty forks in a row.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

fn child_fail(msg: &str) -> ! {
    // SAFETY: writing a valid buffer to stderr, then exiting without
    // running the parent's destructors.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(1)
    }
}

fn child(parent_group: &memcg::Group, round: usize) -> ! {
    // The group made before the fork: its counters are readable and it can
    // be entered, used and left.
    let before = parent_group.current();
    let v = parent_group.scope(|| vec![7u8; 100_000]);
    if parent_group.current() < before + 100_000 {
        child_fail("child: charge to the inherited group missing\n");
    }
    drop(v);
    // A group of the child's own, with a limit that holds.
    let g = match memcg::Group::builder(&format!("fork-child-{round}"))
        .max(4 << 20)
        .on_exceed(memcg::OnExceed::Fail)
        .try_build()
    {
        Ok(g) => g,
        Err(_) => child_fail("child: could not build a group\n"),
    };
    let r = g.scope(|| {
        let mut big: Vec<u8> = Vec::new();
        big.try_reserve(8 << 20).is_err()
    });
    if !r {
        child_fail("child: the limit did not hold\n");
    }
    let boxes: Vec<Box<[u8; 64]>> = g.scope(|| (0..1000).map(|_| Box::new([1u8; 64])).collect());
    if g.current() < 64_000 {
        child_fail("child: small objects not charged\n");
    }
    drop(boxes);
    g.scope(memcg::flush);
    if g.current() > 64 << 10 {
        child_fail("child: charge not returned\n");
    }
    let _ = memcg::report();
    // SAFETY: leaving the child without running the parent's destructors.
    unsafe { libc::_exit(0) }
}

#[test]
fn fork_while_threads_allocate_in_groups() {
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let g = memcg::Group::builder(&format!("fork-worker-{w}-{n}"))
                        .max(16 << 20)
                        .build();
                    let keep = g.scope(|| {
                        (0..200)
                            .map(|i| vec![w as u8; 16 + i * 7])
                            .collect::<Vec<_>>()
                    });
                    drop(g); // dies with objects alive
                    drop(keep);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let parent_group = memcg::Group::new("fork-parent");
    for round in 0..20 {
        // SAFETY: the child only runs `child`, which ends in `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: arming an alarm has no memory-safety preconditions.
            unsafe { libc::alarm(20) };
            child(&parent_group, round);
        }
        let mut status = 0;
        // SAFETY: waiting for our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(r, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child {round} failed: status {status:#x}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let rounds: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    println!("20 forks while workers made {rounds} groups");
    assert!(rounds > 0);
}
