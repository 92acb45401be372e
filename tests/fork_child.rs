//! `fork()` while four other threads allocate and free without pause: the child (which
//! has only the forking thread) must be able to allocate, free, and free blocks that the
//! parent allocated before the fork, including blocks owned by threads that do not exist
//! in the child. Twenty forks in a row; every child must exit with status 0.
//!
//! The child runs no test-harness code and never unwinds: it does plain work, reports a
//! failed check with `write(2)` and exits with `_exit(1)`; a panic is caught and also
//! gives `_exit(1)`; an `alarm` turns a deadlock into a visible SIGALRM death.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

const WORKERS: usize = 4;
const FORKS: usize = 20;
/// Size of the block each worker keeps published for the child to free.
const PUBLISHED: usize = 200;
/// Seconds before the kernel kills a stuck child.
const CHILD_ALARM: u32 = 20;

/// A block a worker thread keeps published: filled with its worker id.
type Published = [u8; PUBLISHED];

struct Shared {
    stop: AtomicBool,
    slots: [AtomicPtr<Published>; WORKERS],
}

fn worker(id: usize, shared: Arc<Shared>) -> usize {
    let mut rounds = 0usize;
    let mut keep: Vec<Vec<u8>> = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        // Small and medium churn, plus an occasional large block.
        for i in 0..64 {
            let size = 1 + (rounds * 131 + i * 61) % 3000;
            keep.push(vec![id as u8; size]);
        }
        if rounds % 16 == 0 {
            keep.push(vec![0u8; 512 << 10]);
        }
        let s: String = (0..20).map(|i| char::from(b'a' + i as u8)).collect();
        assert_eq!(s.len(), 20);
        keep.truncate(16);
        // Replace the published block; free the previous one.
        let fresh = Box::into_raw(Box::new([id as u8; PUBLISHED]));
        let old = shared.slots[id].swap(fresh, Ordering::AcqRel);
        if !old.is_null() {
            // SAFETY: every non-null slot value came from `Box::into_raw` and is taken out
            // of the slot exactly once (by this swap), so it is owned here.
            drop(unsafe { Box::from_raw(old) });
        }
        rounds += 1;
    }
    rounds
}

/// Writes a message to stderr without allocating or taking std's stderr lock.
fn child_say(msg: &str) {
    // SAFETY: `msg` is a valid buffer of `msg.len()` bytes for the duration of the call.
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
}

/// The child's work. Returns false if a check failed.
fn child_work(shared: &Shared, before_fork: Vec<Box<[u32]>>) -> bool {
    let mut ok = true;

    let v: Vec<u64> = (0..10_000).collect();
    ok &= v.iter().sum::<u64>() == 10_000 * 9_999 / 2;
    let b = Box::new([7u8; 1000]);
    ok &= b.iter().all(|&x| x == 7);
    let mut s = String::new();
    for i in 0..500 {
        s.push_str(&i.to_string());
        s.push(',');
    }
    ok &= s.starts_with("0,1,2,");
    let mut m: HashMap<u32, String> = HashMap::new();
    for i in 0..2000u32 {
        m.insert(i, format!("value {i}"));
    }
    ok &= m.len() == 2000 && m[&1234] == "value 1234";
    let large = vec![3u8; 3 << 20];
    ok &= large[large.len() - 1] == 3;
    drop((v, b, s, m, large));

    // Blocks the parent's (forking) thread allocated before the fork.
    for (i, blk) in before_fork.iter().enumerate() {
        ok &= blk.iter().all(|&x| x == i as u32);
    }
    drop(before_fork);

    // Blocks owned by worker threads, which do not exist in the child.
    for (id, slot) in shared.slots.iter().enumerate() {
        let p = slot.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !p.is_null() {
            // SAFETY: a non-null slot value came from `Box::into_raw`; the swap took it
            // out of the slot, so the child owns it (in its own copy of the memory).
            let blk = unsafe { Box::from_raw(p) };
            ok &= blk.iter().all(|&x| x == id as u8);
        }
    }

    // Allocation still works after all that.
    let again: Vec<Box<u64>> = (0..1000).map(Box::new).collect();
    ok &= again.iter().map(|b| **b).sum::<u64>() == 999 * 1000 / 2;
    ok
}

fn child_main(shared: &Shared, before_fork: Vec<Box<[u32]>>) -> ! {
    // SAFETY: alarm is async-signal-safe and only affects this (child) process.
    unsafe { libc::alarm(CHILD_ALARM) };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        child_work(shared, before_fork)
    }));
    let code = match result {
        Ok(true) => 0,
        Ok(false) => {
            child_say("fork_child: a check failed in the child\n");
            1
        }
        Err(_) => {
            child_say("fork_child: the child panicked\n");
            1
        }
    };
    // SAFETY: `_exit` ends the child at once without running the parent's atexit
    // handlers, destructors or test-harness code; it never returns.
    unsafe { libc::_exit(code) }
}

/// Waits for `pid` for at most `limit`; returns the raw wait status.
fn wait_with_timeout(pid: libc::pid_t, limit: Duration) -> libc::c_int {
    let deadline = Instant::now() + limit;
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a valid out-pointer; `pid` is our child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return status;
        }
        assert!(
            r == 0,
            "waitpid failed: {}",
            std::io::Error::last_os_error()
        );
        if Instant::now() > deadline {
            // SAFETY: `pid` is our child that has not been reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("child {pid} did not exit within {limit:?} (deadlock after fork?)");
        }
        thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn fork_while_other_threads_allocate() {
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        slots: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
    });
    let workers: Vec<_> = (0..WORKERS)
        .map(|id| {
            let shared = Arc::clone(&shared);
            thread::spawn(move || worker(id, shared))
        })
        .collect();
    // Let the workers get going so that forks land in the middle of their work.
    thread::sleep(Duration::from_millis(20));

    for round in 0..FORKS {
        // Allocated before the fork by this thread; the child frees them.
        let before_fork: Vec<Box<[u32]>> = (0..64u32)
            .map(|i| vec![i; 1 + (i as usize * 37) % 700].into_boxed_slice())
            .collect();

        // SAFETY: fork is sound here: the child only runs `child_main`, which uses the
        // global allocator and plain std collections (no locks that a worker could hold,
        // no stdio locks) and leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
        if pid == 0 {
            child_main(&shared, before_fork);
        }
        drop(before_fork);
        let status = wait_with_timeout(pid, Duration::from_secs(60));
        let exited = libc::WIFEXITED(status);
        let code = if exited {
            libc::WEXITSTATUS(status)
        } else {
            -1
        };
        let signal = if libc::WIFSIGNALED(status) {
            libc::WTERMSIG(status)
        } else {
            0
        };
        assert!(
            exited && code == 0,
            "fork {round}: child {pid} ended with status {status:#x} (exit code {code}, signal {signal})"
        );
        thread::sleep(Duration::from_millis(5));
    }

    shared.stop.store(true, Ordering::Relaxed);
    let rounds: Vec<usize> = workers
        .into_iter()
        .map(|h| h.join().expect("worker panicked"))
        .collect();
    for slot in &shared.slots {
        let p = slot.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !p.is_null() {
            // SAFETY: from `Box::into_raw`, taken out of the slot once; workers stopped.
            drop(unsafe { Box::from_raw(p) });
        }
    }
    println!("fork_child: {FORKS} forks, children exited 0; worker rounds {rounds:?}");
}
