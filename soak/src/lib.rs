//! A time-bounded soak of memcg: `threads` threads work in `groups` groups
//! (some `OnExceed::Report`, some `OnExceed::Fail`, all with limits they
//! hit, some `isolated(true)`), allocate and free objects of mixed sizes,
//! hand a share of them to other threads to free, change limits, and
//! replace groups while objects of the old ones live on (so groups die with
//! live objects). [`Config::scale`] is the same with 10,000 groups: every
//! thread enters far more groups than its table of group caches holds, so
//! caches are evicted and made again all the time.
//!
//! While the work runs it checks (each failure is a *violation*):
//!
//! - a `Fail` group's `current` never exceeds its `max` by more than the
//!   documented slack, `threads x 2 x reserve_batch`, nor its `peak` the
//!   highest `max` it ever had by more (a limit lowered below the usage is
//!   checked again once the usage is back under it and every allocation
//!   that could have read the old limit is over);
//! - a `Fail` group refuses an allocation only when the soak's own count of
//!   its live bytes (an upper bound), plus the request, plus what the
//!   threads' reserves can hold (`threads x (2 x reserve_batch + 128 KiB)`,
//!   the documented slack and a refill's largest in-flight block) exceeds
//!   its `max`: a reserve the allocator lost track of shows up here;
//! - what `usable_size` says an object is charged is the documented size
//!   class or page-rounded size.
//!
//! At the end every thread frees what it holds and flushes, and, with the
//! threads still alive, the soak checks: every group's `current` is back to
//! 0 and its `events_local.fail` equals the refusals the soak saw in it,
//! the groups that died during the run have drained (`dying_descendants`
//! is 0); then the pool drops every group, the threads flush again, and no
//! dying group may be left. Every object must have kept its contents, and
//! after `memcg::purge()` resident memory (VmRSS) must be within
//! [`Config::rss_bound`] of where it was before the work began. It also
//! checks that it did what it claims: limits were hit in both policies,
//! groups died with objects, isolated groups were used, and at scale every
//! thread entered many more groups than its cache table holds.
//!
//! Allocations inside a `Fail` group are all fallible (`try_reserve`):
//! an infallible one refused there would abort the process. Bookkeeping
//! runs outside the groups.

use memcg::{Group, OnExceed};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
/// The largest small object (size class); larger ones are page-rounded.
const MAX_SMALL: usize = 128 * KIB;
const PAGE: usize = 4096;
/// Group caches one thread keeps (16 sets x 8 ways).
pub const CACHE_TABLE: usize = 128;
/// Bytes a group allocates in one stretch on a thread before it gets slabs
/// of its own there.
const PROMOTE_AFTER: usize = 4 * MIB;

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
    /// Limits new groups draw their `max` from.
    pub limits: Vec<usize>,
    /// Limits `set_max` draws from (some below the usage).
    pub set_limits: Vec<usize>,
    /// One new group in this many is `isolated(true)` (0: none).
    pub isolated_every: usize,
    /// Each thread has this many groups it comes back to on half of its
    /// picks (the others are uniform over all groups); 0: uniform only.
    pub hot: usize,
    /// One work step in this many is a stretch of over 4 MiB allocated in
    /// one group, which gives the group slabs of its own on that thread
    /// (0: none).
    pub stretch_every: usize,
    /// How often every thread pauses, flushes, and each group's `current`
    /// is compared with the soak's count of its live bytes (zero: never).
    pub pause_every: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            threads: 4,
            groups: 8,
            duration: Duration::from_secs(30),
            seed: 0x5eed,
            rss_bound: 32 * MIB,
            limits: vec![256 * KIB, MIB, 4 * MIB, 16 * MIB],
            set_limits: vec![64 * KIB, 512 * KIB, 2 * MIB, 16 * MIB],
            isolated_every: 0,
            hot: 0,
            stretch_every: 0,
            pause_every: Duration::from_secs(1),
        }
    }
}

impl Config {
    /// The scale mode: 10,000 groups on 4 threads, small limits (so that
    /// groups with a few objects hit them), one group in 16 isolated, a
    /// hot set of 32 groups per thread beside uniform picks, and now and
    /// then a stretch that gives a group slabs of its own.
    pub fn scale() -> Config {
        Config {
            threads: 4,
            groups: 10_000,
            duration: Duration::from_secs(15),
            rss_bound: 64 * MIB,
            limits: vec![16 * KIB, 64 * KIB, 256 * KIB, MIB, 4 * MIB],
            set_limits: vec![8 * KIB, 32 * KIB, 128 * KIB, MIB, 4 * MIB],
            isolated_every: 16,
            hot: 32,
            stretch_every: 500,
            ..Config::default()
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
    /// Isolated groups among them.
    pub isolated_made: u64,
    /// Groups replaced while objects of theirs were still alive.
    pub groups_died_with_objects: u64,
    /// `check()` errors seen in `Report` groups.
    pub report_exceeds: u64,
    /// Fallible allocations refused in `Fail` groups.
    pub fail_exceeds: u64,
    /// Objects freed by a thread other than the one that made them.
    pub remote_frees: u64,
    /// Objects allocated in isolated groups.
    pub isolated_allocs: u64,
    /// Switches of a thread to another group than the one before.
    pub group_switches: u64,
    /// Fewest distinct groups one thread entered.
    pub distinct_groups_min: usize,
    /// Stretches of over 4 MiB in one group, and how many of those left
    /// the group (not isolated) with slabs of its own.
    pub stretches: u64,
    pub stretches_promoted: u64,
    /// Pauses with every thread flushed, each checking every group's
    /// `current` against its live bytes.
    pub pauses: u64,
    /// The most one group's reserves held (`current` less live bytes) at a
    /// pause, before the flush.
    pub paused_reserve: i64,
    /// Largest `current - max` seen in a `Fail` group (checked while its
    /// limit held); `None` when nothing was checked.
    pub fail_overshoot: Option<i64>,
    /// Largest `max - (live bound + request)` at a refusal in a `Fail`
    /// group: how far below its limit, by the soak's count, a group was
    /// when refused. `None` when nothing was refused with a stable limit.
    pub refusal_headroom: Option<i64>,
    /// Largest `dying_descendants` seen at the root while working.
    pub max_dying: usize,
    /// VmRSS before the work, at its end (before freeing) and at the end
    /// (after `purge`), in bytes.
    pub rss_start: usize,
    pub rss_peak: usize,
    pub rss_end: usize,
    /// How long the run took, setup and checks included.
    pub elapsed: Duration,
    /// Everything that went wrong; empty when the soak passed.
    pub violations: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opt = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        writeln!(f, "ops executed          {}", self.ops)?;
        writeln!(f, "groups made           {}", self.groups_made)?;
        writeln!(f, "  isolated            {}", self.isolated_made)?;
        writeln!(
            f,
            "groups died w/ objects {}",
            self.groups_died_with_objects
        )?;
        writeln!(f, "exceeds (Report)      {}", self.report_exceeds)?;
        writeln!(f, "exceeds (Fail)        {}", self.fail_exceeds)?;
        writeln!(f, "remote frees          {}", self.remote_frees)?;
        writeln!(f, "isolated allocs       {}", self.isolated_allocs)?;
        writeln!(f, "group switches        {}", self.group_switches)?;
        writeln!(
            f,
            "distinct groups/thr   {} (min)",
            self.distinct_groups_min
        )?;
        writeln!(
            f,
            "stretches             {} ({} promoted)",
            self.stretches, self.stretches_promoted
        )?;
        writeln!(f, "exact pauses          {}", self.pauses)?;
        writeln!(
            f,
            "reserves at a pause   {} B (most in one group)",
            self.paused_reserve
        )?;
        writeln!(
            f,
            "Fail overshoot        {} B (max current - max)",
            opt(self.fail_overshoot)
        )?;
        writeln!(
            f,
            "refusal headroom      {} B (max - live bound - request)",
            opt(self.refusal_headroom)
        )?;
        writeln!(f, "max dying groups      {}", self.max_dying)?;
        writeln!(f, "rss start             {:.1} MiB", mib(self.rss_start))?;
        writeln!(f, "rss at work's end     {:.1} MiB", mib(self.rss_peak))?;
        writeln!(f, "rss end               {:.1} MiB", mib(self.rss_end))?;
        writeln!(
            f,
            "elapsed               {:.1} s",
            self.elapsed.as_secs_f64()
        )?;
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

/// The bytes an allocation of `n` bytes (alignment at most 8) is charged,
/// as documented: its size class when small, its page-rounded size when
/// large.
pub fn charged_size(n: usize) -> usize {
    let n = n.max(1);
    if n > MAX_SMALL {
        return n.div_ceil(PAGE) * PAGE;
    }
    if n <= 64 {
        return n.div_ceil(8) * 8;
    }
    // Four classes per power of two.
    let s = n - 1;
    let log = (usize::BITS - 1 - s.leading_zeros()) as usize;
    let quarter = 1usize << (log - 2);
    (1usize << log) + ((s - (1 << log)) / quarter + 1) * quarter
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

/// What the soak knows of one group, shared by its slot and its objects.
struct GroupState {
    fail: bool,
    isolated: bool,
    /// Charged bytes of the group's objects by the soak's count: raised
    /// before an allocation is tried, lowered after a refusal or a free,
    /// so never below what the allocator has handed out.
    live: AtomicUsize,
    /// Every decrement of `live` so far, to bound `live` back in time.
    dropped: AtomicU64,
    /// Objects made and freed (to know whether the group dies with some).
    made: AtomicU64,
    freed: AtomicU64,
    /// Allocations refused: `events_local.fail` must say the same.
    refused: AtomicU64,
    /// Bumped before and after each `set_max` (odd: one is under way).
    max_seq: AtomicU64,
}

/// One slot of the group pool; limit changes and checks hold its lock.
struct Slot {
    group: Group,
    st: Arc<GroupState>,
    /// The group's `max` as set, and the highest it ever had.
    max: usize,
    max_ever: usize,
    /// `current <= max` is expected to hold (false from a `set_max` below
    /// the usage until the usage is seen back under it).
    armed: bool,
    /// The threads' work steps when `max` was last lowered: allocations in
    /// flight then may have read the old limit.
    lowered_at: Vec<u64>,
}

struct Shared {
    cfg: Config,
    top: Group,
    slots: Vec<Mutex<Slot>>,
    serial: AtomicUsize,
    stop: AtomicBool,
    /// Asks the workers to pause at their next step (see [`Shared::pause_check`]).
    pause: AtomicBool,
    pause_barrier: Barrier,
    /// Pauses made.
    pauses: AtomicU64,
    /// The most one group's reserves held at a pause.
    paused_reserve: AtomicI64,
    /// Groups replaced (dead) that may still have live objects.
    dead: Mutex<Vec<(String, Arc<GroupState>)>>,
    /// Work steps begun, per thread.
    steps: Vec<AtomicU64>,
    /// `threads x 2 x reserve_batch`: what `current` may read above live
    /// bytes (README, "How charging works").
    slack: usize,
    /// What the threads' reserves can hold at a refusal, counted
    /// generously: the slack, plus a refill's in-flight block per thread.
    refusal_slack: usize,
    ops: AtomicU64,
    groups_made: AtomicU64,
    isolated_made: AtomicU64,
    died_with_objects: AtomicU64,
    report_exceeds: AtomicU64,
    fail_exceeds: AtomicU64,
    remote_frees: AtomicU64,
    isolated_allocs: AtomicU64,
    switches: AtomicU64,
    stretches: AtomicU64,
    stretches_promoted: AtomicU64,
    distinct_min: AtomicUsize,
    corrupt: AtomicU64,
    overshoot: AtomicI64,
    headroom: AtomicI64,
    violations: Mutex<Vec<String>>,
    violation_count: AtomicU64,
}

/// Violations kept in full; the rest are counted.
const MAX_VIOLATIONS_KEPT: usize = 40;

impl Shared {
    fn violation(&self, v: String) {
        let n = self.violation_count.fetch_add(1, Ordering::Relaxed);
        if (n as usize) < MAX_VIOLATIONS_KEPT {
            self.violations.lock().unwrap().push(v);
        }
    }

    /// With every worker paused between steps and flushed: each group's
    /// `current` must equal the soak's count of its live bytes exactly (no
    /// allocation is under way and no reserve is held), and `top` must
    /// have exactly as many dying descendants as replaced groups with live
    /// objects.
    fn pause_check(&self) {
        self.pause.store(true, Ordering::SeqCst);
        // 1: every worker is between steps: what `current` holds beyond
        // the live bytes is the threads' reserves.
        self.pause_barrier.wait();
        let mut worst = 0;
        for s in &self.slots {
            let s = s.lock().unwrap();
            let live = s.st.live.load(Ordering::SeqCst);
            let cur = s.group.current();
            let held = cur as i64 - live as i64;
            worst = worst.max(held);
            if held < 0 || held as usize > self.slack {
                self.violation(format!(
                    "{}: current {cur}, {live} bytes live, with every thread paused: the \
                     reserves hold {held}, the documented slack is {}",
                    s.group.path(),
                    self.slack
                ));
            }
        }
        self.paused_reserve.fetch_max(worst, Ordering::Relaxed);
        // 2: every worker has flushed, twice: a flush sends the thread's
        // outbox of remote frees and takes in what others sent before it,
        // so a batch sent by one thread's first flush after its owner's
        // first flush is taken in by the owner's second. Only then is no
        // block in flight, holding the slab (and a dedicated slab's group
        // record) its owner has not seen back.
        self.pause_barrier.wait();
        memcg::flush();
        self.pause_barrier.wait();
        memcg::flush();
        self.pause_barrier.wait();
        let mut sum = 0;
        for s in &self.slots {
            let s = s.lock().unwrap();
            let live = s.st.live.load(Ordering::SeqCst);
            sum += live;
            let cur = s.group.current();
            if cur != live {
                self.violation(format!(
                    "{}: current {cur} != {live} bytes live, with every thread paused and \
                     flushed",
                    s.group.path()
                ));
            }
        }
        let mut dead = self.dead.lock().unwrap();
        dead.retain(|(_, st)| st.live.load(Ordering::SeqCst) > 0);
        sum += dead
            .iter()
            .map(|(_, st)| st.live.load(Ordering::SeqCst))
            .sum::<usize>();
        let (cur, dying) = (self.top.current(), self.top.dying_descendants());
        if cur != sum {
            self.violation(format!(
                "{}: current {cur} != {sum} bytes live, with every thread paused and flushed",
                self.top.path()
            ));
        }
        if dying != dead.len() {
            let some: Vec<&str> = dead.iter().take(5).map(|(p, _)| p.as_str()).collect();
            self.violation(format!(
                "{}: {dying} dying descendants, but {} dead groups have live objects \
                 (e.g. {some:?}), with every thread paused and flushed",
                self.top.path(),
                dead.len()
            ));
        }
        drop(dead);
        self.pauses.fetch_add(1, Ordering::Relaxed);
        self.pause.store(false, Ordering::SeqCst);
        // 3: the workers go on.
        self.pause_barrier.wait();
    }

    /// A worker's side of [`Shared::pause_check`].
    fn pause_here(&self) {
        self.pause_barrier.wait();
        self.pause_barrier.wait();
        memcg::flush();
        self.pause_barrier.wait();
        memcg::flush();
        self.pause_barrier.wait();
        self.pause_barrier.wait();
    }

    fn make_slot(&self, rng: &mut Rng) -> Slot {
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        let fail = rng.below(2) == 0;
        let isolated = self.cfg.isolated_every > 0 && rng.below(self.cfg.isolated_every) == 0;
        let max = self.cfg.limits[rng.below(self.cfg.limits.len())];
        let g = self
            .top
            .child(&format!("g{n}"))
            .max(max)
            .high(max / 2)
            .on_exceed(if fail {
                OnExceed::Fail
            } else {
                OnExceed::Report
            })
            .isolated(isolated)
            .build();
        self.groups_made.fetch_add(1, Ordering::Relaxed);
        if isolated {
            self.isolated_made.fetch_add(1, Ordering::Relaxed);
        }
        Slot {
            group: g,
            st: Arc::new(GroupState {
                fail,
                isolated,
                live: AtomicUsize::new(0),
                dropped: AtomicU64::new(0),
                made: AtomicU64::new(0),
                freed: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                max_seq: AtomicU64::new(0),
            }),
            max,
            max_ever: max,
            armed: true,
            lowered_at: Vec::new(),
        }
    }

    /// Sets a new `max` on the slot's group (its lock held).
    fn set_max(&self, s: &mut Slot, max: usize) {
        s.st.max_seq.fetch_add(1, Ordering::SeqCst);
        if max < s.max {
            s.armed = false;
            s.lowered_at = self
                .steps
                .iter()
                .map(|c| c.load(Ordering::SeqCst))
                .collect();
        }
        // Raised before the allocator sees it: a peak read under the lock
        // is then always within the recorded highest.
        s.max_ever = s.max_ever.max(max);
        s.max = max;
        s.group.set_max(Some(max));
        s.st.max_seq.fetch_add(1, Ordering::SeqCst);
    }

    /// Checks a `Fail` group's usage against its limit (its lock held).
    fn check_limit(&self, s: &mut Slot) {
        if !s.st.fail {
            return;
        }
        let cur = s.group.current();
        if !s.armed {
            // Every thread has begun a later step than when the limit was
            // lowered: no allocation that read the old limit is in flight.
            let settled = s
                .lowered_at
                .iter()
                .zip(&self.steps)
                .all(|(&then, now)| now.load(Ordering::SeqCst) > then);
            if settled && cur <= s.max {
                s.armed = true;
            }
            return;
        }
        self.overshoot
            .fetch_max(cur as i64 - s.max as i64, Ordering::Relaxed);
        if cur > s.max + self.slack {
            self.violation(format!(
                "{} (Fail): current {cur} above max {} + slack {}",
                s.group.path(),
                s.max,
                self.slack
            ));
        }
        let peak = s.group.peak();
        if peak > s.max_ever + self.slack {
            self.violation(format!(
                "{} (Fail): peak {peak} above its highest max {} + slack {}",
                s.group.path(),
                s.max_ever,
                self.slack
            ));
        }
    }
}

/// A held object and what the soak knows of its group.
struct Held {
    obj: Obj,
    charged: usize,
    st: Arc<GroupState>,
}

impl Held {
    fn free(self, sh: &Shared) {
        if !self.obj.intact() {
            sh.corrupt.fetch_add(1, Ordering::Relaxed);
        }
        drop(self.obj);
        // After the free: `live` stays an upper bound.
        self.st.freed.fetch_add(1, Ordering::Relaxed);
        self.st.live.fetch_sub(self.charged, Ordering::SeqCst);
        self.st
            .dropped
            .fetch_add(self.charged as u64, Ordering::SeqCst);
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

/// Tries to allocate `n` bytes filled with `tag` in `group`: fallibly, so
/// a `Fail` group returns `None` rather than aborting. A refusal in a
/// `Fail` group is checked against the soak's count of the group's bytes.
fn attempt(sh: &Shared, group: &Group, st: &Arc<GroupState>, n: usize, tag: u8) -> Option<Held> {
    let c = charged_size(n);
    let seq0 = st.max_seq.load(Ordering::SeqCst);
    let max0 = group.max();
    let d0 = st.dropped.load(Ordering::SeqCst);
    st.live.fetch_add(c, Ordering::SeqCst);
    let got: Option<Vec<u8>> = group.scope(|| {
        let mut v: Vec<u8> = Vec::new();
        if v.try_reserve_exact(n).is_err() {
            return None;
        }
        v.resize(n, tag);
        Some(v)
    });
    match got {
        Some(data) => {
            st.made.fetch_add(1, Ordering::Relaxed);
            if st.isolated {
                sh.isolated_allocs.fetch_add(1, Ordering::Relaxed);
            }
            // SAFETY: `data` is a live block of `n >= 1` bytes from the
            // global allocator (capacity exactly `n`).
            let usable = unsafe { memcg::usable_size(data.as_ptr()) };
            if usable != c {
                sh.violation(format!(
                    "usable_size of a {n}-byte object is {usable}, its documented charge {c}"
                ));
            }
            Some(Held {
                obj: Obj { data, tag },
                charged: c,
                st: st.clone(),
            })
        }
        None => {
            let l1 = st.live.load(Ordering::SeqCst);
            let d1 = st.dropped.load(Ordering::SeqCst);
            let seq1 = st.max_seq.load(Ordering::SeqCst);
            st.live.fetch_sub(c, Ordering::SeqCst);
            st.dropped.fetch_add(c as u64, Ordering::SeqCst);
            st.refused.fetch_add(1, Ordering::Relaxed);
            if !st.fail {
                sh.violation(format!(
                    "{} (Report): a {n}-byte allocation was refused",
                    group.path()
                ));
                return None;
            }
            sh.fail_exceeds.fetch_add(1, Ordering::Relaxed);
            let (Some(max), true) = (max0, seq0 == seq1 && seq0 % 2 == 0) else {
                return None; // the limit moved meanwhile
            };
            // The live bytes at the refusal were at most what the count
            // says now (less this request) plus what was freed since.
            let bound = (l1 - c) as u64 + (d1 - d0);
            let headroom = max as i64 - (bound + c as u64) as i64;
            sh.headroom.fetch_max(headroom, Ordering::Relaxed);
            if bound + (c + sh.refusal_slack) as u64 <= max as u64 {
                let cur = group.current();
                sh.violation(format!(
                    "{} (Fail): a {n}-byte allocation (charged {c}) was refused with at most \
                     {bound} bytes live, max {max}: more than the reserves' {} below it \
                     (current now {cur})",
                    group.path(),
                    sh.refusal_slack
                ));
            }
            None
        }
    }
}

const MAX_HELD: usize = 1500;

/// One thread's state while it works.
struct Worker<'a> {
    sh: &'a Shared,
    me: usize,
    rng: Rng,
    held: Vec<Held>,
    ops: u64,
    /// Distinct slots entered, as a bit set.
    seen: Vec<u64>,
    /// This thread's hot slots.
    hot: Vec<usize>,
    last: Option<usize>,
}

impl Worker<'_> {
    fn pick(&mut self) -> usize {
        let n = self.sh.slots.len();
        if !self.hot.is_empty() && self.rng.below(2) == 0 {
            self.hot[self.rng.below(self.hot.len())]
        } else {
            self.rng.below(n)
        }
    }

    /// Frees this thread's objects of `st`'s group, or (none held) half of
    /// what it holds: memory given back after a refusal or an exceed.
    fn give_back(&mut self, st: &Arc<GroupState>) {
        let before = self.held.len();
        let mut i = 0;
        while i < self.held.len() {
            if Arc::ptr_eq(&self.held[i].st, st) {
                self.held.swap_remove(i).free(self.sh);
            } else {
                i += 1;
            }
        }
        if self.held.len() == before {
            for _ in 0..self.held.len() / 2 {
                let i = self.rng.below(self.held.len());
                self.held.swap_remove(i).free(self.sh);
            }
        }
    }

    /// Allocates and frees over `PROMOTE_AFTER` bytes in one group without
    /// leaving it for another (a group doing so gets slabs of its own).
    fn stretch(&mut self, group: &Group, st: &Arc<GroupState>) {
        let n = 1000;
        let mut done = 0;
        while done <= PROMOTE_AFTER + 64 * KIB {
            let Some(h) = attempt(self.sh, group, st, n, 0x5b) else {
                return;
            };
            h.free(self.sh);
            done += charged_size(n);
            self.ops += 2;
        }
        self.sh.stretches.fetch_add(1, Ordering::Relaxed);
        if !st.isolated && !group.stats().classes.is_empty() {
            self.sh.stretches_promoted.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn step(&mut self, inbox: &Receiver<Held>, peers: &[Sender<Held>]) {
        let sh = self.sh;
        sh.steps[self.me].fetch_add(1, Ordering::SeqCst);
        // Frees handed over by other threads.
        while let Ok(h) = inbox.try_recv() {
            h.free(sh);
            sh.remote_frees.fetch_add(1, Ordering::Relaxed);
            self.ops += 1;
        }
        let slot_i = self.pick();
        self.seen[slot_i / 64] |= 1 << (slot_i % 64);
        if self.last != Some(slot_i) {
            sh.switches.fetch_add(1, Ordering::Relaxed);
            self.last = Some(slot_i);
        }
        let (group, st) = {
            let s = sh.slots[slot_i].lock().unwrap();
            (s.group.clone(), s.st.clone())
        };
        if sh.cfg.stretch_every > 0 && self.rng.below(sh.cfg.stretch_every) == 0 {
            self.stretch(&group, &st);
        }
        // A burst of work in the group.
        for _ in 0..1 + self.rng.below(16) {
            let n = size(&mut self.rng);
            let tag = (self.rng.next() as u8) | 1;
            self.ops += 1;
            match attempt(sh, &group, &st, n, tag) {
                Some(h) => self.held.push(h),
                None => {
                    self.give_back(&st);
                    break;
                }
            }
        }
        if st.fail {
            let mut s = sh.slots[slot_i].lock().unwrap();
            if Arc::ptr_eq(&s.st, &st) {
                sh.check_limit(&mut s);
            }
        } else {
            let over = group.scope(|| memcg::check().is_err());
            self.ops += 1;
            if over {
                sh.report_exceeds.fetch_add(1, Ordering::Relaxed);
                self.give_back(&st);
            }
        }
        drop(group);
        // Frees: local, or handed to another thread.
        while self.held.len() > MAX_HELD || (!self.held.is_empty() && self.rng.below(3) == 0) {
            let h = self.held.swap_remove(self.rng.below(self.held.len()));
            if peers.len() > 1 && self.rng.below(3) == 0 {
                let to = (self.me + 1 + self.rng.below(peers.len() - 1)) % peers.len();
                if let Err(e) = peers[to].send(h) {
                    e.0.free(sh);
                }
            } else {
                h.free(sh);
            }
            self.ops += 1;
        }
        match self.rng.below(200) {
            // Replace a group: the pool drops its handle; objects of the
            // old group live on in the threads.
            0 => {
                let new = sh.make_slot(&mut self.rng);
                let old = std::mem::replace(&mut *sh.slots[slot_i].lock().unwrap(), new);
                if old.st.made.load(Ordering::Relaxed) > old.st.freed.load(Ordering::Relaxed) {
                    sh.died_with_objects.fetch_add(1, Ordering::Relaxed);
                }
                let path = old.group.path().to_string();
                sh.dead.lock().unwrap().push((path, old.st.clone()));
                drop(old);
                self.ops += 1;
            }
            // Change a limit, sometimes below usage.
            1 => {
                let max = sh.cfg.set_limits[self.rng.below(sh.cfg.set_limits.len())];
                let mut s = sh.slots[slot_i].lock().unwrap();
                sh.set_max(&mut s, max);
                self.ops += 1;
            }
            2 => {
                memcg::flush();
                self.ops += 1;
            }
            _ => {}
        }
    }
}

/// The end of the run, in steps every thread (and the main one) passes
/// together: see `run`.
fn worker(
    sh: Arc<Shared>,
    me: usize,
    seed: u64,
    inbox: Receiver<Held>,
    peers: Vec<Sender<Held>>,
    phase: Arc<Barrier>,
) {
    let mut rng = Rng(seed | 1);
    let n = sh.slots.len();
    let hot = (0..sh.cfg.hot.min(n)).map(|_| rng.below(n)).collect();
    let mut w = Worker {
        sh: &sh,
        me,
        rng,
        held: Vec::with_capacity(MAX_HELD + 1),
        ops: 0,
        seen: vec![0; n.div_ceil(64)],
        hot,
        last: None,
    };
    // A worker that panicked keeps taking part in pauses (so nothing
    // waits for it forever) until the end.
    let mut panicked = false;
    while !sh.stop.load(Ordering::SeqCst) {
        if sh.pause.load(Ordering::SeqCst) {
            sh.pause_here();
        } else if panicked {
            std::thread::sleep(Duration::from_millis(1));
        } else if catch_unwind(AssertUnwindSafe(|| w.step(&inbox, &peers))).is_err() {
            sh.violation(format!("worker {me} panicked"));
            panicked = true;
        }
    }
    let Worker {
        held, seen, ops, ..
    } = w;
    for h in held {
        h.free(&sh);
    }
    let distinct = seen.iter().map(|b| b.count_ones() as usize).sum();
    sh.distinct_min.fetch_min(distinct, Ordering::Relaxed);
    let mut ops = ops;
    drop(peers);
    // 1: no thread sends any more; take what is left in the inbox (it
    // disconnects once every sender is gone).
    phase.wait();
    while let Ok(h) = inbox.recv() {
        h.free(&sh);
        sh.remote_frees.fetch_add(1, Ordering::Relaxed);
        ops += 1;
    }
    sh.ops.fetch_add(ops, Ordering::Relaxed);
    drop(sh);
    // 2: every object is freed: flush, twice (the second round takes in
    // the remote frees other threads sent in the first).
    phase.wait();
    memcg::flush();
    phase.wait();
    memcg::flush();
    // 3: every thread has flushed; the main thread checks, then drops the
    // pool's groups.
    phase.wait();
    // 4: flush again, so this thread lets go of the dead groups' caches.
    phase.wait();
    memcg::flush();
    // 5: the main thread checks that no dying group is left.
    phase.wait();
    phase.wait();
}

/// Runs the soak and reports; `report.violations` is empty when it passed.
pub fn run(cfg: &Config) -> Report {
    let began = Instant::now();
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
    let threads = cfg.threads.max(1);
    let batch = memcg::tunables().reserve_batch;
    let mut cfg = cfg.clone();
    if cfg.limits.is_empty() {
        cfg.limits = Config::default().limits;
    }
    if cfg.set_limits.is_empty() {
        cfg.set_limits = Config::default().set_limits;
    }
    let mut rng = Rng(cfg.seed | 1);
    let mut sh = Shared {
        cfg: cfg.clone(),
        top: top.clone(),
        slots: Vec::new(),
        serial: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        pause: AtomicBool::new(false),
        pause_barrier: Barrier::new(threads + 1),
        pauses: AtomicU64::new(0),
        paused_reserve: AtomicI64::new(0),
        dead: Mutex::new(Vec::new()),
        steps: (0..threads).map(|_| AtomicU64::new(0)).collect(),
        slack: threads * 2 * batch,
        refusal_slack: threads * (2 * batch + MAX_SMALL),
        ops: AtomicU64::new(0),
        groups_made: AtomicU64::new(0),
        isolated_made: AtomicU64::new(0),
        died_with_objects: AtomicU64::new(0),
        report_exceeds: AtomicU64::new(0),
        fail_exceeds: AtomicU64::new(0),
        remote_frees: AtomicU64::new(0),
        isolated_allocs: AtomicU64::new(0),
        switches: AtomicU64::new(0),
        stretches: AtomicU64::new(0),
        stretches_promoted: AtomicU64::new(0),
        distinct_min: AtomicUsize::new(usize::MAX),
        corrupt: AtomicU64::new(0),
        overshoot: AtomicI64::new(i64::MIN),
        headroom: AtomicI64::new(i64::MIN),
        violations: Mutex::new(Vec::new()),
        violation_count: AtomicU64::new(0),
    };
    for _ in 0..cfg.groups.max(1) {
        let s = sh.make_slot(&mut rng);
        sh.slots.push(Mutex::new(s));
    }
    let sh = Arc::new(sh);
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..threads).map(|_| channel::<Held>()).unzip();
    let phase = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(i, rx)| {
            let (sh, peers, phase) = (sh.clone(), txs.clone(), phase.clone());
            let seed = rng.next();
            std::thread::spawn(move || worker(sh, i, seed, rx, peers, phase))
        })
        .collect();
    drop(txs);
    let start = Instant::now();
    let mut next_pause = start + cfg.pause_every;
    while start.elapsed() < cfg.duration {
        std::thread::sleep(Duration::from_millis(50));
        report.max_dying = report.max_dying.max(root.dying_descendants());
        for s in &sh.slots {
            sh.check_limit(&mut s.lock().unwrap());
        }
        if !cfg.pause_every.is_zero() && Instant::now() >= next_pause {
            sh.pause_check();
            next_pause = Instant::now() + cfg.pause_every;
        }
    }
    report.rss_peak = rss();
    sh.stop.store(true, Ordering::Relaxed);
    // 1: the workers stopped and freed what they hold; 2: and what was
    // handed to them.
    phase.wait();
    phase.wait();
    memcg::flush();
    phase.wait();
    memcg::flush();
    // 3: every object is freed and every thread (alive) has flushed twice,
    // so no remote free is in flight.
    phase.wait();
    for s in &sh.slots {
        let s = s.lock().unwrap();
        let st = s.group.stats();
        if st.current != 0 {
            sh.violation(format!(
                "{}: current {} after every object was freed and every thread flushed",
                s.group.path(),
                st.current
            ));
        }
        let refused = s.st.refused.load(Ordering::Relaxed);
        if st.events_local.fail != refused {
            sh.violation(format!(
                "{}: events_local.fail {} but {refused} allocations were refused in it",
                s.group.path(),
                st.events_local.fail
            ));
        }
    }
    if top.current() != 0 {
        sh.violation(format!(
            "{}: current {} after every object was freed and every thread flushed",
            top.path(),
            top.current()
        ));
    }
    let dying = top.dying_descendants();
    if dying != 0 {
        sh.violation(format!(
            "{dying} groups that died during the run are still dying after every object was \
             freed and every thread flushed"
        ));
    }
    let sh = match Arc::try_unwrap(sh) {
        Ok(sh) => sh,
        Err(_) => panic!("workers hold no pool after step 2"),
    };
    report.ops = sh.ops.load(Ordering::Relaxed);
    report.groups_made = sh.groups_made.load(Ordering::Relaxed);
    report.isolated_made = sh.isolated_made.load(Ordering::Relaxed);
    report.groups_died_with_objects = sh.died_with_objects.load(Ordering::Relaxed);
    report.report_exceeds = sh.report_exceeds.load(Ordering::Relaxed);
    report.fail_exceeds = sh.fail_exceeds.load(Ordering::Relaxed);
    report.remote_frees = sh.remote_frees.load(Ordering::Relaxed);
    report.isolated_allocs = sh.isolated_allocs.load(Ordering::Relaxed);
    report.group_switches = sh.switches.load(Ordering::Relaxed);
    report.distinct_groups_min = sh.distinct_min.load(Ordering::Relaxed);
    report.stretches = sh.stretches.load(Ordering::Relaxed);
    report.stretches_promoted = sh.stretches_promoted.load(Ordering::Relaxed);
    report.pauses = sh.pauses.load(Ordering::Relaxed);
    report.paused_reserve = sh.paused_reserve.load(Ordering::Relaxed);
    let seen = |v: i64| (v != i64::MIN).then_some(v);
    report.fail_overshoot = seen(sh.overshoot.load(Ordering::Relaxed));
    report.refusal_headroom = seen(sh.headroom.load(Ordering::Relaxed));
    let corrupt = sh.corrupt.load(Ordering::Relaxed);
    let Shared {
        slots,
        violations,
        violation_count,
        ..
    } = sh;
    report.violations = violations.into_inner().unwrap();
    let more = violation_count.load(Ordering::Relaxed) as usize;
    if more > report.violations.len() {
        let left = more - report.violations.len();
        report.violations.push(format!("... and {left} more"));
    }
    if corrupt > 0 {
        report
            .violations
            .push(format!("{corrupt} objects lost their contents"));
    }
    // The pool's handles: every group dies now (with no objects).
    drop(slots);
    memcg::flush();
    // 4: the workers flush (letting go of the dead groups' caches); 5:
    // they have.
    phase.wait();
    phase.wait();
    if top.current() != 0 {
        report.violations.push(format!(
            "{}: current {} at the end",
            top.path(),
            top.current()
        ));
    }
    let dying_top = top.dying_descendants();
    if dying_top != 0 {
        report.violations.push(format!(
            "{dying_top} dying groups under {} after every group died with no object, and every \
             thread (alive) flushed",
            top.path()
        ));
    }
    // 6: the workers exit.
    phase.wait();
    for h in handles {
        if h.join().is_err() {
            report
                .violations
                .push("a worker thread panicked".to_string());
        }
    }
    memcg::flush();
    let dying_root = root.dying_descendants().saturating_sub(dying_start);
    if dying_root != 0 {
        report.violations.push(format!(
            "{dying_root} new dying groups at the root after every worker exited"
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
    // Did the soak do what it claims?
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
    if report.groups_made > cfg.groups as u64 && report.groups_died_with_objects == 0 {
        report
            .violations
            .push("groups were replaced, but none died with live objects".to_string());
    }
    if cfg.isolated_every > 0 && report.isolated_allocs == 0 {
        report
            .violations
            .push("no allocation in an isolated group".to_string());
    }
    if cfg.groups >= 8 * CACHE_TABLE && report.distinct_groups_min < 4 * CACHE_TABLE {
        report.violations.push(format!(
            "a thread entered only {} distinct groups: the group cache table ({CACHE_TABLE}) \
             was hardly evicted",
            report.distinct_groups_min
        ));
    }
    report.elapsed = began.elapsed();
    report
}
