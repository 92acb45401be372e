//! A host running tenants under memory budgets; one of them runs away.
//!
//! The runaway is the user-space `while true; do mkdir x; cd x; done`: an
//! ever deeper chain of small "directory" objects. It runs twice: once as a
//! thread whose allocations are fallible (its group fails them at the
//! limit), once as an async task in a `Report` group (the host cancels it
//! through `Group::run`). The well-behaved tenants finish their work
//! meanwhile, and the host prints the group tree as it goes.
//!
//! Run: `cargo run --release --example tenants`

use memcg::{Group, OnExceed};
use std::collections::{HashMap, TryReserveError};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

const MIB: usize = 1 << 20;

/// One level of the runaway's tree: `mkdir x; cd x`.
struct Dir {
    _name: String,
    _child: Option<Box<Dir>>,
}

/// The runaway with fallible allocations: every level reserves its memory
/// with `try_reserve`, so the group's limit stops it with an error. (It
/// must not allocate infallibly at the limit: in a `Fail` group that would
/// abort the process, so the error is formatted by the host.)
fn mkdir_loop_fallible() -> (usize, TryReserveError) {
    let mut levels: Vec<Vec<u8>> = Vec::new();
    loop {
        if let Err(e) = levels.try_reserve(1) {
            return (levels.len(), e);
        }
        let mut name = Vec::new();
        if let Err(e) = name.try_reserve(48) {
            return (levels.len(), e);
        }
        name.extend_from_slice(b"x/");
        levels.push(name);
    }
}

/// A future that yields once, so the executor can interleave tasks.
struct YieldNow(bool);
impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// The runaway as an async task with ordinary (infallible) allocations.
async fn mkdir_loop_async(dropped: Arc<AtomicBool>) -> usize {
    struct DropFlag(Arc<AtomicBool>);
    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let _flag = DropFlag(dropped);
    let mut cwd = Box::new(Dir {
        _name: "x".to_string(),
        _child: None,
    });
    let mut depth = 0usize;
    loop {
        cwd = Box::new(Dir {
            _name: format!("x{depth}"),
            _child: Some(cwd),
        });
        depth += 1;
        if depth % 256 == 0 {
            YieldNow(false).await;
        }
    }
}

/// A well-behaved async tenant: builds an index in steps.
async fn indexer(words: usize) -> usize {
    let mut index: HashMap<String, Vec<usize>> = HashMap::new();
    for i in 0..words {
        index.entry(format!("w{}", i % 5000)).or_default().push(i);
        if i % 2000 == 0 {
            YieldNow(false).await;
        }
    }
    index.values().map(Vec::len).sum()
}

struct NoopWake;
impl Wake for NoopWake {
    fn wake(self: Arc<Self>) {}
}

type Task = Pin<Box<dyn Future<Output = ()>>>;

/// Polls every task in turn until all are done.
fn run_all(mut tasks: Vec<Task>) {
    let waker = Waker::from(Arc::new(NoopWake));
    let mut cx = Context::from_waker(&waker);
    while !tasks.is_empty() {
        tasks.retain_mut(|t| t.as_mut().poll(&mut cx).is_pending());
    }
}

fn main() {
    let tenants = Group::builder("tenants").max(512 * MIB).build();
    let alpha = tenants.child("alpha").max(96 * MIB).high(64 * MIB).build();
    let beta = tenants.child("beta").max(64 * MIB).build();
    let fallible = tenants
        .child("mkdir-fallible")
        .max(8 * MIB)
        .on_exceed(OnExceed::Fail)
        .build();
    let runaway = tenants.child("mkdir-async").max(8 * MIB).build();
    let first_max = AtomicBool::new(true);
    runaway.on_event(move |e| {
        if e.kind == memcg::EventType::Max && first_max.swap(false, Ordering::Relaxed) {
            println!(
                "  [hook] {} went over max at {} KiB; the host cancels it at the end of this poll",
                e.group,
                e.current >> 10
            );
        }
    });

    println!("memcg tenants demo: one host, four tenants, one of them runs away twice\n");
    println!("{}", memcg::report());

    // A monitor prints the tree while the tenants run.
    let done = Arc::new(AtomicBool::new(false));
    let monitor = {
        let done = done.clone();
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(60));
                println!("{}", memcg::bypass(memcg::report));
            }
        })
    };

    // Threads: a good tenant and the fallible runaway.
    let alpha_thread = alpha.scope(|| {
        memcg::thread::spawn(|| {
            let mut table: HashMap<u64, Vec<u8>> = HashMap::new();
            for i in 0..150_000u64 {
                table.insert(i, vec![(i % 251) as u8; 64 + (i % 192) as usize]);
            }
            table.values().map(|v| v.len()).sum::<usize>()
        })
    });
    let fallible_thread = fallible.scope(|| memcg::thread::spawn(mkdir_loop_fallible));

    // Async tasks: a good tenant and the runaway the host cancels.
    let dropped = Arc::new(AtomicBool::new(false));
    let beta_result = Arc::new(std::sync::Mutex::new(None));
    let runaway_result = Arc::new(std::sync::Mutex::new(None));
    let tasks: Vec<Task> = vec![
        {
            let out = beta_result.clone();
            let fut = beta.run(indexer(400_000));
            Box::pin(async move {
                *out.lock().unwrap() = Some(fut.await);
            })
        },
        {
            let out = runaway_result.clone();
            let fut = runaway.run(mkdir_loop_async(dropped.clone()));
            Box::pin(async move {
                *out.lock().unwrap() = Some(fut.await);
            })
        },
    ];
    run_all(tasks);

    let alpha_bytes = alpha_thread.join().expect("alpha tenant panicked");
    let (levels, why) = fallible_thread.join().expect("runaway thread panicked");
    done.store(true, Ordering::Relaxed);
    monitor.join().unwrap();

    println!("results");
    println!(
        "  alpha (thread) finished: {} KiB of table values",
        alpha_bytes >> 10
    );
    let beta_out = beta_result
        .lock()
        .unwrap()
        .take()
        .expect("beta did not finish");
    match beta_out {
        Ok(n) => println!("  beta (async) finished: indexed {n} words"),
        Err(e) => panic!("beta was cancelled: {e}"),
    }
    println!("  mkdir-fallible (thread) stopped after {levels} levels: {why}");
    let runaway_out = runaway_result
        .lock()
        .unwrap()
        .take()
        .expect("runaway did not end");
    match runaway_out {
        Ok(_) => panic!("the runaway task was not stopped"),
        Err(e) => println!("  mkdir-async (async) cancelled by the host: {e}"),
    }
    assert!(
        dropped.load(Ordering::SeqCst),
        "the runaway future was not dropped"
    );
    let f = fallible.stats();
    assert!(f.events.fail > 0, "the fallible runaway was never denied");
    assert!(levels > 1000, "the fallible runaway was stopped too early");

    memcg::flush();
    println!("\nafter the runaways were stopped (their memory is back):");
    println!("{}", memcg::report());
    println!("mkdir-async stats:\n{}", runaway.stats());
}
