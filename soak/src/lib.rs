//! A time-bounded soak of memcg: `threads` threads work in `groups` groups
//! (some `OnExceed::Report`, some `OnExceed::Fail`, all with limits they
//! hit), allocate and free objects of mixed sizes, hand a share of them to
//! other threads to free, change limits, and replace groups while objects
//! of the old ones live on (so groups die with live objects).
//!
//! At the end every thread frees what it holds and exits, and the soak
//! checks: every group's `current` is back to 0, the root has no dying
//! descendant, every object kept its contents, and after `memcg::purge()`
//! resident memory (VmRSS) is within [`Config::rss_bound`] of where it was
//! before the work began.
//!
//! Allocations inside a `Fail` group are all fallible (`try_reserve`):
//! an infallible one refused there would abort the process. Bookkeeping
//! runs outside the groups.

use memcg::{Group, OnExceed};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Worker threads.
    pub threads: usize,
    /// Groups alive at any time (each replaced now and then).
    pub groups: usize,
    /// How long the work runs.
    pub duration: Duration,
    /// Seed of the random choices.
    pub seed: u64,
    /// How far resident memory may end above where it started, after
    /// `purge`, in bytes.
    pub rss_bound: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            threads: 4,
            groups: 8,
            duration: Duration::from_secs(30),
            seed: 0x5eed,
            rss_bound: 32 * MIB,
        }
    }
}

/// What the soak did and found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Allocations, frees, hand-offs, checks and limit changes made.
    pub ops: u64,
    /// Groups made (including the initial ones).
    pub groups_made: u64,
    /// Groups replaced while objects of theirs were still alive.
    pub groups_died_with_objects: u64,
    /// `check()` errors seen in `Report` groups.
    pub report_exceeds: u64,
    /// Fallible allocations refused in `Fail` groups.
    pub fail_exceeds: u64,
    /// Objects freed by a thread other than the one that made them.
    pub remote_frees: u64,
    /// Largest `dying_descendants` seen at the root while working.
    pub max_dying: usize,
    /// VmRSS before the work and at the end (after `purge`), in bytes.
    pub rss_start: usize,
    pub rss_end: usize,
    /// Everything that went wrong; empty when the soak passed.
    pub violations: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "ops executed          {}", self.ops)?;
        writeln!(f, "groups made           {}", self.groups_made)?;
        writeln!(
            f,
            "groups died w/ objects {}",
            self.groups_died_with_objects
        )?;
        writeln!(f, "exceeds (Report)      {}", self.report_exceeds)?;
        writeln!(f, "exceeds (Fail)        {}", self.fail_exceeds)?;
        writeln!(f, "remote frees          {}", self.remote_frees)?;
        writeln!(f, "max dying groups      {}", self.max_dying)?;
        writeln!(f, "rss start             {:.1} MiB", mib(self.rss_start))?;
        writeln!(f, "rss end               {:.1} MiB", mib(self.rss_end))?;
        write!(f, "violations            {}", self.violations.len())?;
        for v in &self.violations {
            write!(f, "\n  {v}")?;
        }
        Ok(())
    }
}

fn mib(b: usize) -> f64 {
    b as f64 / MIB as f64
}

/// Resident memory of this process (VmRSS), in bytes.
pub fn rss() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * KIB)
}

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// An object: bytes all equal to a tag derived from its identity.
struct Obj {
    data: Vec<u8>,
    tag: u8,
}

impl Obj {
    fn intact(&self) -> bool {
        let n = self.data.len();
        n == 0
            || (self.data[0] == self.tag
                && self.data[n - 1] == self.tag
                && self.data[n / 2] == self.tag
                && (n < 4096 || self.data.iter().step_by(251).all(|&b| b == self.tag)))
    }
}

/// One slot of the group pool.
struct Slot {
    group: Group,
    /// Objects of this group made so far (to know if it dies with some).
    made: Arc<AtomicU64>,
    freed: Arc<AtomicU64>,
}

struct Shared {
    top: Group,
    slots: Vec<Mutex<Slot>>,
    /// Every group ever made, by weak identity: (handle-less) counters.
    serial: AtomicUsize,
    stop: AtomicBool,
    ops: AtomicU64,
    groups_made: AtomicU64,
    died_with_objects: AtomicU64,
    report_exceeds: AtomicU64,
    fail_exceeds: AtomicU64,
    remote_frees: AtomicU64,
    corrupt: AtomicU64,
}

fn make_group(sh: &Shared, rng: &mut Rng) -> Slot {
    let n = sh.serial.fetch_add(1, Ordering::Relaxed);
    let fail = rng.below(2) == 0;
    let max = [256 * KIB, MIB, 4 * MIB, 16 * MIB][rng.below(4)];
    let g = sh
        .top
        .child(&format!("g{n}"))
        .max(max)
        .high(max / 2)
        .on_exceed(if fail {
            OnExceed::Fail
        } else {
            OnExceed::Report
        })
        .build();
    sh.groups_made.fetch_add(1, Ordering::Relaxed);
    Slot {
        group: g,
        made: Arc::new(AtomicU64::new(0)),
        freed: Arc::new(AtomicU64::new(0)),
    }
}

/// A held object and the counters of its group.
struct Held {
    obj: Obj,
    freed: Arc<AtomicU64>,
}

impl Held {
    fn free(self, sh: &Shared) {
        if !self.obj.intact() {
            sh.corrupt.fetch_add(1, Ordering::Relaxed);
        }
        self.freed.fetch_add(1, Ordering::Relaxed);
        drop(self.obj);
    }
}

fn size(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0..=59 => 1 + rng.below(256),
        60..=89 => 257 + rng.below(8 * KIB),
        90..=97 => 8 * KIB + rng.below(120 * KIB),
        _ => 128 * KIB + rng.below(MIB),
    }
}

const MAX_HELD: usize = 1500;

fn worker(
    sh: Arc<Shared>,
    me: usize,
    seed: u64,
    inbox: Receiver<Held>,
    peers: Vec<Sender<Held>>,
    done: Arc<Barrier>,
) {
    let mut rng = Rng(seed | 1);
    let mut held: Vec<Held> = Vec::with_capacity(MAX_HELD + 1);
    let mut ops = 0u64;
    while !sh.stop.load(Ordering::Relaxed) {
        // Frees handed over by other threads.
        while let Ok(h) = inbox.try_recv() {
            h.free(&sh);
            sh.remote_frees.fetch_add(1, Ordering::Relaxed);
            ops += 1;
        }
        let slot_i = rng.below(sh.slots.len());
        let (group, made, freed) = {
            let s = sh.slots[slot_i].lock().unwrap();
            (s.group.clone(), s.made.clone(), s.freed.clone())
        };
        let fail = group.on_exceed() == OnExceed::Fail;
        // A burst of work in the group.
        for _ in 0..1 + rng.below(16) {
            let n = size(&mut rng);
            let tag = (rng.next() as u8) | 1;
            let got: Option<Vec<u8>> = group.scope(|| {
                let mut v: Vec<u8> = Vec::new();
                if v.try_reserve_exact(n).is_err() {
                    return None;
                }
                v.resize(n, tag);
                Some(v)
            });
            ops += 1;
            match got {
                Some(data) => {
                    made.fetch_add(1, Ordering::Relaxed);
                    held.push(Held {
                        obj: Obj { data, tag },
                        freed: freed.clone(),
                    });
                }
                None => {
                    if fail {
                        sh.fail_exceeds.fetch_add(1, Ordering::Relaxed);
                    }
                    // A refusal: give memory back.
                    for _ in 0..held.len() / 2 {
                        let i = rng.below(held.len());
                        held.swap_remove(i).free(&sh);
                    }
                    break;
                }
            }
        }
        if !fail {
            let over = group.scope(|| memcg::check().is_err());
            ops += 1;
            if over {
                sh.report_exceeds.fetch_add(1, Ordering::Relaxed);
                for _ in 0..held.len() / 2 {
                    let i = rng.below(held.len());
                    held.swap_remove(i).free(&sh);
                }
            }
        }
        drop(group);
        // Frees: local, or handed to another thread.
        while held.len() > MAX_HELD || (!held.is_empty() && rng.below(3) == 0) {
            let h = held.swap_remove(rng.below(held.len()));
            if peers.len() > 1 && rng.below(3) == 0 {
                let to = (me + 1 + rng.below(peers.len() - 1)) % peers.len();
                if let Err(e) = peers[to].send(h) {
                    e.0.free(&sh);
                }
            } else {
                h.free(&sh);
            }
            ops += 1;
        }
        match rng.below(200) {
            // Replace a group: the pool drops its handle; objects of the
            // old group live on in the threads.
            0 => {
                let new = make_group(&sh, &mut rng);
                let old = std::mem::replace(&mut *sh.slots[slot_i].lock().unwrap(), new);
                if old.made.load(Ordering::Relaxed) > old.freed.load(Ordering::Relaxed) {
                    sh.died_with_objects.fetch_add(1, Ordering::Relaxed);
                }
                drop(old);
                ops += 1;
            }
            // Change a limit, sometimes below usage.
            1 => {
                let s = sh.slots[slot_i].lock().unwrap();
                let max = [64 * KIB, 512 * KIB, 2 * MIB, 16 * MIB][rng.below(4)];
                s.group.set_max(Some(max));
                ops += 1;
            }
            2 => {
                memcg::flush();
                ops += 1;
            }
            _ => {}
        }
    }
    for h in held.drain(..) {
        h.free(&sh);
    }
    drop(peers);
    // Everyone has stopped sending: take what is left in the inbox.
    done.wait();
    while let Ok(h) = inbox.recv() {
        h.free(&sh);
        sh.remote_frees.fetch_add(1, Ordering::Relaxed);
        ops += 1;
    }
    memcg::flush();
    sh.ops.fetch_add(ops, Ordering::Relaxed);
}

/// Runs the soak and reports; `report.violations` is empty when it passed.
pub fn run(cfg: &Config) -> Report {
    let mut report = Report::default();
    let root = memcg::root();
    // Warm up the allocator and the group machinery, then measure.
    {
        let g = Group::new(&format!("soak-warm-{}", std::process::id()));
        let v: Vec<Vec<u8>> = g.scope(|| (0..1000).map(|i| vec![0u8; i]).collect());
        drop((v, g));
    }
    memcg::flush();
    memcg::purge();
    report.rss_start = rss();
    let dying_start = root.dying_descendants();

    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let top = Group::new(&format!(
        "soak-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    let mut rng = Rng(cfg.seed | 1);
    let mut sh = Shared {
        top: top.clone(),
        slots: Vec::new(),
        serial: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        ops: AtomicU64::new(0),
        groups_made: AtomicU64::new(0),
        died_with_objects: AtomicU64::new(0),
        report_exceeds: AtomicU64::new(0),
        fail_exceeds: AtomicU64::new(0),
        remote_frees: AtomicU64::new(0),
        corrupt: AtomicU64::new(0),
    };
    for _ in 0..cfg.groups.max(1) {
        let s = make_group(&sh, &mut rng);
        sh.slots.push(Mutex::new(s));
    }
    let sh = Arc::new(sh);
    let threads = cfg.threads.max(1);
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..threads).map(|_| channel::<Held>()).unzip();
    let done = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(i, rx)| {
            let (sh, peers, done) = (sh.clone(), txs.clone(), done.clone());
            let seed = rng.next();
            std::thread::spawn(move || worker(sh, i, seed, rx, peers, done))
        })
        .collect();
    drop(txs);
    let start = Instant::now();
    while start.elapsed() < cfg.duration {
        std::thread::sleep(Duration::from_millis(50));
        report.max_dying = report.max_dying.max(root.dying_descendants());
    }
    sh.stop.store(true, Ordering::Relaxed);
    for h in handles {
        if h.join().is_err() {
            report
                .violations
                .push("a worker thread panicked".to_string());
        }
    }
    memcg::flush();

    // Every thread has freed everything, flushed and exited.
    for s in &sh.slots {
        let s = s.lock().unwrap();
        let cur = s.group.current();
        if cur != 0 {
            report.violations.push(format!(
                "{}: current {cur} after every object was freed",
                s.group.path()
            ));
        }
    }
    let sh = Arc::try_unwrap(sh).unwrap_or_else(|_| panic!("threads joined"));
    report.ops = sh.ops.load(Ordering::Relaxed);
    report.groups_made = sh.groups_made.load(Ordering::Relaxed);
    report.groups_died_with_objects = sh.died_with_objects.load(Ordering::Relaxed);
    report.report_exceeds = sh.report_exceeds.load(Ordering::Relaxed);
    report.fail_exceeds = sh.fail_exceeds.load(Ordering::Relaxed);
    report.remote_frees = sh.remote_frees.load(Ordering::Relaxed);
    let corrupt = sh.corrupt.load(Ordering::Relaxed);
    if corrupt > 0 {
        report
            .violations
            .push(format!("{corrupt} objects lost their contents"));
    }
    drop(sh); // the pool's handles: every group dies now
    memcg::flush();
    if top.current() != 0 {
        report.violations.push(format!(
            "{}: current {} at the end",
            top.path(),
            top.current()
        ));
    }
    let dying_top = top.dying_descendants();
    let dying_root = root.dying_descendants().saturating_sub(dying_start);
    if dying_top != 0 || dying_root != 0 {
        report.violations.push(format!(
            "dying groups left after every object was freed, every worker exited and flush: \
             {dying_top} under {}, {dying_root} new at the root",
            top.path()
        ));
    }
    drop(top);
    memcg::purge();
    let dying_root = root.dying_descendants().saturating_sub(dying_start);
    if dying_root != 0 {
        report.violations.push(format!(
            "{dying_root} dying groups left at the root after purge"
        ));
    }
    report.rss_end = rss();
    if report.rss_end > report.rss_start + cfg.rss_bound {
        report.violations.push(format!(
            "VmRSS {:.1} MiB at the end, {:.1} MiB at the start: more than {:.1} MiB above",
            mib(report.rss_end),
            mib(report.rss_start),
            mib(cfg.rss_bound)
        ));
    }
    if report.report_exceeds == 0 {
        report
            .violations
            .push("no Report-group exceed seen: the limits were never hit".to_string());
    }
    if report.fail_exceeds == 0 {
        report
            .violations
            .push("no Fail-group refusal seen: the limits were never hit".to_string());
    }
    report
}
