//! The model at scale (`tests/rel_model_scale.rs`): 10,000 groups, four
//! threads.
//!
//! A case builds a tree under its own top group: [`PARENTS`] parents with
//! [`LEAVES`] leaves each, some with `max` limits, some `OnExceed::Fail`,
//! the rest `Report`, a few leaves `isolated(true)`. The main thread and
//! [`THREADS`]` - 1` workers take *turns*: one thread at a time runs a
//! stretch of seeded-random ops against the shared [`Model`], so the model
//! knows every live byte exactly when an op runs. The ops come from the
//! case's seed; what the allocator does with them may vary a little from
//! run to run (its per-thread cache tables are indexed by the addresses of
//! group records), so a failure usually, not always, recurs with its seed.
//! The ops:
//!
//! - enter and leave groups: mostly leaves of a few *hot* parents (which
//!   change every few turns, so limits are hit), else any group of the
//!   10,000, so each thread keeps thousands of group caches;
//! - allocations of 1..=4096 bytes mostly, some up to 128 KiB, some
//!   large, a few over-aligned or zeroed, some inside `memcg::fallible`;
//!   every block is filled with a pattern of its address and size;
//! - frees of any live block, whichever thread made it (so most frees of
//!   another thread's blocks are remote);
//! - bursts of 4 MiB in one group, so the group gets a dedicated cache on
//!   the thread;
//! - the death of a leaf (or, rarely, of a whole parent and its leaves)
//!   with live objects, and its replacement by a new group.
//!
//! What is checked. The *slack* of a group is what the threads' reserves
//! may hold in its subtree, as README's "How charging works" documents it:
//! on each thread two batches for the group the thread is in (or was in
//! last), plus `reserve_batch / 8` for each other group of the subtree the
//! thread keeps a cache of (has entered) when no level of that group's
//! chain has a limit. So a level with a limit on its chain is held to
//! `THREADS x 2 x reserve_batch`, however many groups below it threads
//! have entered; `REL_SCALE_SLACK=strict` holds unlimited levels to that
//! figure too (`tests/rel_scale_slack.rs` has the cases reduced).
//!
//! - at every refusal: some level of the group's chain that refuses (a
//!   `Fail` one, or any with a limit inside `fallible`) has
//!   `live bytes + charge + slack > max`; so a Report chain never refuses
//!   outside `fallible`;
//! - at every allocation that succeeds: no `Fail` level had
//!   `live bytes + charge > max`, and each one's `current` is at most its
//!   `max`;
//! - at each checkpoint, with every thread quiescent, before they flush:
//!   each live group's `current` is at least its live bytes and at most
//!   its slack above them;
//! - every `usable_size` is the documented charge (size class or
//!   page-rounded size), every block keeps its pattern until freed;
//! - at each checkpoint, with every thread quiescent and flushed: each live
//!   group's `current` equals the model's bytes in its subtree,
//!   `dying_descendants` equals the number of dead groups below it whose
//!   subtree still has live objects, `check()` is `Err` exactly when a
//!   level is over its `max` or an allocation made in the group was
//!   refused since the last check, and `events_local.fail` lies between
//!   the refusals known to be the level's and those it may have made;
//! - after a checkpoint, *exact probes*: with no reserve held anywhere, a
//!   thread allocates up to the last byte a group's chain allows (it must
//!   succeed), then one class more (it must be refused, and counted at the
//!   lowest `Fail` level it exceeds), then the rest;
//! - at the end, after every block is freed (by all four threads) and every
//!   thread flushed, every group drains to 0 `current` and 0 dying
//!   descendants, and again after every handle is dropped.
//!
//! The harness's own bookkeeping runs in `memcg::bypass`, so it is never
//! charged to (or refused by) the groups under test. A failed check panics
//! with the case's seed; `REL_SCALE_SEED` re-runs one case.

#![allow(dead_code)]

use crate::model::{charged_size, fill, mismatch, MAX_SMALL};
use memcg::{EnterGuard, Group, OnExceed};
use std::alloc::Layout;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// The main thread and three workers.
pub const THREADS: usize = 4;
pub const PARENTS: usize = 100;
pub const LEAVES: usize = 100;
/// Live blocks and bytes at most: past either, allocations become frees.
const MAX_BLOCKS: usize = 12_000;
const MAX_LIVE: usize = 24 << 20;
/// Parents the traffic concentrates on at a time.
const HOT: usize = 3;
/// A group that allocates this much in one stretch on a thread gets a
/// dedicated cache there (the engine's `PROMOTE_AFTER`).
const PROMOTE_AFTER: usize = 4 << 20;
/// Exact probes stay below this many bytes of room (memory).
const MAX_PROBE_ROOM: usize = 2 << 20;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
const LEAF_LIMITS: [usize; 5] = [16 * KIB, 64 * KIB, 256 * KIB, MIB, 4 * MIB];
const PARENT_LIMITS: [usize; 4] = [512 * KIB, MIB, 2 * MIB, 4 * MIB];

/// How big a case is.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub seed: u64,
    /// Turns (each one thread's stretch of ops).
    pub turns: usize,
    pub ops_per_turn: usize,
    /// A checkpoint (flush, full check, probes) after this many turns.
    pub check_every: usize,
    /// Exact probes per checkpoint.
    pub probes: usize,
    /// Turns between changes of the hot parents.
    pub rotate_every: usize,
}

impl Config {
    pub fn new(seed: u64) -> Config {
        Config {
            seed,
            turns: 2000,
            ops_per_turn: 200,
            check_every: 100,
            probes: 4,
            rotate_every: 12,
        }
    }
}

/// What a case did (so a run shows it exercised what it claims).
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub groups_made: usize,
    pub ops: usize,
    pub allocs: usize,
    pub large_allocs: usize,
    pub fallible_allocs: usize,
    pub isolated_allocs: usize,
    pub refused: usize,
    /// Refusals whose level the model could not name (several candidates).
    pub refused_unsure: usize,
    pub frees: usize,
    /// Frees on a thread other than the block's.
    pub cross_frees: usize,
    pub enters: usize,
    pub bursts: usize,
    /// Bursts after which the group had slabs of its own (a dedicated cache).
    pub promoted: usize,
    pub deaths: usize,
    pub deaths_with_objects: usize,
    pub parent_deaths: usize,
    pub most_dying: usize,
    pub checkpoints: usize,
    pub probes: usize,
    pub probe_refusals: usize,
    /// Distinct groups each thread entered.
    pub entered_per_thread: [usize; THREADS],
    /// The most room a refusal left: `max - live - charge` at the level of
    /// its chain that had the least (of those that may refuse).
    pub closest_refusal: isize,
    /// Refusals with more room than `THREADS x 2 x reserve_batch` at every
    /// level that may refuse: what `REL_SCALE_SLACK=strict` fails on.
    pub refused_beyond_strict: usize,
    /// The most a leaf's and a parent's `current` read above its live
    /// bytes at a checkpoint, before the threads flushed.
    pub held_leaf: usize,
    pub held_parent: usize,
    pub held_top: usize,
}

// --- a small deterministic generator ---

#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    /// splitmix64.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }
}

// --- the model ---

struct MGroup {
    parent: Option<usize>,
    /// `None` once the harness dropped it: the group is dead (no guard is
    /// held between turns, and a parent goes only with its leaves).
    handle: Option<Group>,
    max: Option<usize>,
    fail: bool,
    isolated: bool,
    /// Charged bytes of the live blocks in the subtree.
    sub: usize,
    /// Refusals this level may have made, and those it must have made.
    fail_may: u64,
    fail_must: u64,
    /// An allocation made in the group was refused since its last check.
    denied_pending: bool,
    /// Threads that entered it (bit per thread).
    entered_by: u8,
    /// Groups of the subtree (itself included) each thread entered.
    kept: [u32; THREADS],
}

struct Block {
    addr: usize,
    layout: Layout,
    charged: usize,
    /// Model group, `None` for the process root.
    owner: Option<usize>,
    thread: usize,
}

/// Everything the threads share; one thread uses it at a time.
pub struct Model {
    seed: u64,
    groups: Vec<MGroup>,
    /// Per parent slot: the parent's index and its leaves' indices.
    slots: Vec<(usize, Vec<usize>)>,
    hot: Vec<usize>,
    blocks: Vec<Block>,
    live: usize,
    slack: usize,
    /// Hold every level to `slack` (see [`Model::slack_at`]).
    strict: bool,
    next_name: usize,
    pub counts: Counts,
}

/// Where a thread is: its guards, innermost last.
struct Here {
    me: usize,
    guards: Vec<(EnterGuard, usize)>,
}

impl Here {
    fn group(&self) -> Option<usize> {
        self.guards.last().map(|g| g.1)
    }
    fn holds(&self, g: usize) -> bool {
        self.guards.iter().any(|x| x.1 == g)
    }
}

fn largest_fitting(room: usize) -> Option<(usize, usize)> {
    // The largest size whose charge fits in `room` (charges grow with the
    // size), and that charge.
    if room < 8 {
        return None;
    }
    let (mut lo, mut hi) = (1usize, room);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if charged_size(mid, 8) <= room {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some((lo, charged_size(lo, 8)))
}

impl Model {
    fn new(seed: u64) -> Model {
        let mut m = Model {
            seed,
            groups: Vec::with_capacity(PARENTS * (LEAVES + 1) * 2),
            slots: Vec::with_capacity(PARENTS),
            hot: Vec::new(),
            blocks: Vec::with_capacity(MAX_BLOCKS + 16),
            live: 0,
            slack: THREADS * 2 * memcg::tunables().reserve_batch,
            strict: std::env::var("REL_SCALE_SLACK").is_ok_and(|v| v == "strict"),
            next_name: 0,
            counts: Counts {
                closest_refusal: isize::MIN,
                ..Counts::default()
            },
        };
        let top = Group::new(&format!("rel-scale-{}-{seed:x}", std::process::id()));
        m.groups.push(MGroup {
            parent: None,
            handle: Some(top),
            max: None,
            fail: false,
            isolated: false,
            sub: 0,
            fail_may: 0,
            fail_must: 0,
            denied_pending: false,
            entered_by: 0,
            kept: [0; THREADS],
        });
        let mut rng = Rng::new(seed ^ 0x5EED);
        for _ in 0..PARENTS {
            let slot = m.new_parent(&mut rng);
            m.slots.push(slot);
        }
        m.rotate(&mut rng);
        m
    }

    fn make(&mut self, parent: usize, max: Option<usize>, fail: bool, isolated: bool) -> usize {
        let n = self.next_name;
        self.next_name += 1;
        let mut b = self.groups[parent]
            .handle
            .as_ref()
            .expect("parent alive")
            .child(&format!("g{n}"))
            .on_exceed(if fail {
                OnExceed::Fail
            } else {
                OnExceed::Report
            })
            .isolated(isolated);
        if let Some(m) = max {
            b = b.max(m);
        }
        let g = b.try_build().expect("unique name");
        assert_eq!(g.current(), 0);
        self.groups.push(MGroup {
            parent: Some(parent),
            handle: Some(g),
            max,
            fail,
            isolated,
            sub: 0,
            fail_may: 0,
            fail_must: 0,
            denied_pending: false,
            entered_by: 0,
            kept: [0; THREADS],
        });
        self.counts.groups_made += 1;
        self.groups.len() - 1
    }

    fn new_leaf(&mut self, parent: usize, rng: &mut Rng) -> usize {
        let max = rng
            .percent(70)
            .then(|| LEAF_LIMITS[rng.below(LEAF_LIMITS.len())]);
        let fail = rng.percent(40);
        let isolated = rng.below(128) == 0;
        self.make(parent, max, fail, isolated)
    }

    fn new_parent(&mut self, rng: &mut Rng) -> (usize, Vec<usize>) {
        let max = rng
            .percent(60)
            .then(|| PARENT_LIMITS[rng.below(PARENT_LIMITS.len())]);
        let fail = rng.percent(50);
        let p = self.make(0, max, fail, false);
        let leaves = (0..LEAVES).map(|_| self.new_leaf(p, rng)).collect();
        (p, leaves)
    }

    fn rotate(&mut self, rng: &mut Rng) {
        self.hot = (0..HOT).map(|_| rng.below(PARENTS)).collect();
    }

    fn chain(&self, g: Option<usize>) -> Vec<usize> {
        let mut out = Vec::with_capacity(4);
        let mut c = g;
        while let Some(i) = c {
            out.push(i);
            c = self.groups[i].parent;
        }
        out
    }

    fn path(&self, g: Option<usize>) -> String {
        match g {
            None => "<process root>".to_string(),
            Some(i) => match &self.groups[i].handle {
                Some(h) => h.path().to_string(),
                None => format!("<dead g{i}>"),
            },
        }
    }

    /// One line per level of `g`'s chain: the model's bytes, the group's
    /// `current` now, its limit, policy and slack.
    fn describe_chain(&self, g: Option<usize>) -> String {
        let mut s = String::new();
        for l in self.chain(g) {
            let m = &self.groups[l];
            let cur = m.handle.as_ref().map(|h| h.current());
            s.push_str(&format!(
                "\n  {}: live {} current {:?} max {:?} {} slack {}",
                self.path(Some(l)),
                m.sub,
                cur,
                m.max,
                if m.fail { "Fail" } else { "Report" },
                self.slack_at(l)
            ));
        }
        s
    }

    /// What the threads' reserves may hold in `l`'s subtree, as the README
    /// documents it: on each thread, two batches for the group it is in
    /// (or was in last); and, only for groups with no limit anywhere on
    /// their chain, `reserve_batch / 8` for each other group it keeps (one
    /// it entered). So a level with a limit on its chain (which every group
    /// below it has too) is held to `THREADS x 2 x reserve_batch`.
    /// `REL_SCALE_SLACK=strict` holds every level to that, unlimited ones
    /// too (their `current` may carry kept reserves of groups below).
    fn slack_at(&self, l: usize) -> usize {
        if self.strict || self.chain_limited(l) {
            return self.slack;
        }
        let batch = memcg::tunables().reserve_batch;
        let g = &self.groups[l];
        (0..THREADS)
            .map(|t| 2 * batch + batch / 8 * (g.kept[t] as usize).saturating_sub(1))
            .sum()
    }

    /// Whether `l` or an ancestor has a `max`.
    fn chain_limited(&self, l: usize) -> bool {
        let mut g = Some(l);
        while let Some(i) = g {
            if self.groups[i].max.is_some() {
                return true;
            }
            g = self.groups[i].parent;
        }
        false
    }

    /// `events_local.fail` of a live group.
    fn fails_at(&self, l: usize) -> u64 {
        let h = self.groups[l].handle.as_ref().expect("live group");
        h.stats().events_local.fail
    }

    fn is_leaf(&self, g: usize) -> bool {
        self.groups[g].parent.is_some_and(|p| p != 0)
    }

    fn pick_group(&self, rng: &mut Rng) -> usize {
        let slot = if rng.percent(60) {
            self.hot[rng.below(self.hot.len())]
        } else {
            rng.below(PARENTS)
        };
        match rng.below(100) {
            0..=1 => 0,
            2..=9 => self.slots[slot].0,
            _ => self.slots[slot].1[rng.below(LEAVES)],
        }
    }

    fn add(&mut self, owner: Option<usize>, bytes: usize, sign: isize) {
        for l in self.chain(owner) {
            let s = &mut self.groups[l].sub;
            if sign > 0 {
                *s += bytes;
            } else {
                *s -= bytes;
            }
        }
        if sign > 0 {
            self.live += bytes;
        } else {
            self.live -= bytes;
        }
    }

    /// Records what an allocation of `layout` (charged `c`) in `g` did.
    /// Returns the index of the new block.
    fn after_alloc(
        &mut self,
        here: &Here,
        g: Option<usize>,
        layout: Layout,
        p: usize,
        fallible: bool,
        zeroed: bool,
    ) -> Option<usize> {
        let c = charged_size(layout.size(), layout.align());
        let what = |m: &Model| {
            format!(
                "seed {:#x}: thread {} alloc {layout:?} (charged {c}){}{} in {}",
                m.seed,
                here.me,
                if fallible { " fallible" } else { "" },
                if zeroed { " zeroed" } else { "" },
                m.path(g)
            )
        };
        let chain = self.chain(g);
        let refusers = |m: &Model| {
            chain
                .iter()
                .copied()
                .filter(|&l| {
                    let x = &m.groups[l];
                    x.max.is_some() && (x.fail || fallible)
                })
                .collect::<Vec<_>>()
        };
        if p == 0 {
            let may: Vec<usize> = refusers(self)
                .into_iter()
                .filter(|&l| {
                    let x = &self.groups[l];
                    x.sub + c + self.slack_at(l) > x.max.unwrap()
                })
                .collect();
            assert!(
                !may.is_empty(),
                "{}: refused, but every level that may refuse has live + charge + slack <= \
                 max:{}",
                what(self),
                self.describe_chain(g)
            );
            for &l in &may {
                self.groups[l].fail_may += 1;
            }
            let least = may
                .iter()
                .map(|&l| {
                    let x = &self.groups[l];
                    x.max.unwrap() as isize - (x.sub + c) as isize
                })
                .min()
                .unwrap();
            self.counts.closest_refusal = self.counts.closest_refusal.max(least);
            self.counts.refused_beyond_strict += usize::from(least >= self.slack as isize);
            if may.len() == 1 {
                self.groups[may[0]].fail_must += 1;
            } else {
                self.counts.refused_unsure += 1;
            }
            if let Some(o) = g {
                self.groups[o].denied_pending = true;
            }
            self.counts.refused += 1;
            return None;
        }
        // A Fail level's `current` (reserves included) never passes its
        // `max`, so what it allowed fits beside the live bytes. (A Report
        // level inside `fallible` is not held to this: a reserve refilled
        // by frees serves the allocation with no charge, even while the
        // level is over its `max`.)
        for l in refusers(self) {
            let x = &self.groups[l];
            if !x.fail {
                continue;
            }
            let max = x.max.unwrap();
            assert!(
                x.sub + c <= max,
                "{}: allowed, but {} (Fail) had {} live bytes, max {max}:{}",
                what(self),
                self.path(Some(l)),
                x.sub,
                self.describe_chain(g)
            );
            let cur = x.handle.as_ref().unwrap().current();
            assert!(
                cur <= max,
                "{}: a Fail level's current {cur} is above its max {max}:{}",
                what(self),
                self.describe_chain(g)
            );
        }
        assert_eq!(p % layout.align(), 0, "{}: misaligned {p:#x}", what(self));
        // SAFETY: `p` is a live block of this allocator.
        let usable = unsafe { memcg::usable_size(p as *const u8) };
        assert_eq!(usable, c, "{}: usable_size", what(self));
        if zeroed {
            // SAFETY: `p` has `layout.size()` initialised (zeroed) bytes.
            let s = unsafe { std::slice::from_raw_parts(p as *const u8, layout.size()) };
            assert!(s.iter().all(|&b| b == 0), "{}: not zeroed", what(self));
        }
        // SAFETY: `p` has `layout.size()` writable bytes.
        unsafe { fill(p, p, layout.size(), layout.size()) };
        self.blocks.push(Block {
            addr: p,
            layout,
            charged: c,
            owner: g,
            thread: here.me,
        });
        self.add(g, c, 1);
        self.counts.allocs += 1;
        self.counts.large_allocs += usize::from(c > MAX_SMALL);
        self.counts.fallible_allocs += usize::from(fallible);
        if let Some(o) = g {
            self.counts.isolated_allocs += usize::from(self.groups[o].isolated);
        }
        Some(self.blocks.len() - 1)
    }

    /// Takes block `i` out of the model, checks its pattern, and returns
    /// its address and layout for the caller to free.
    fn take_block(&mut self, here: &Here, i: usize) -> (usize, Layout) {
        let b = self.blocks.swap_remove(i);
        // SAFETY: the block is live and was filled when made.
        if let Some(off) = unsafe { mismatch(b.addr, b.addr, b.layout.size(), b.layout.size()) } {
            panic!(
                "seed {:#x}: block {:#x} ({:?}, of {}) corrupt at offset {off}",
                self.seed,
                b.addr,
                b.layout,
                self.path(b.owner)
            );
        }
        self.add(b.owner, b.charged, -1);
        self.counts.frees += 1;
        self.counts.cross_frees += usize::from(b.thread != here.me);
        (b.addr, b.layout)
    }

    fn check_block(&self, i: usize) {
        let b = &self.blocks[i];
        // SAFETY: the block is live and was filled when made.
        if let Some(off) = unsafe { mismatch(b.addr, b.addr, b.layout.size(), b.layout.size()) } {
            panic!(
                "seed {:#x}: live block {:#x} ({:?}, of {}) corrupt at offset {off}",
                self.seed,
                b.addr,
                b.layout,
                self.path(b.owner)
            );
        }
    }
}

fn pick_size(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0..=59 => 1 + rng.below(256),
        60..=87 => 257 + rng.below(4096 - 256),
        88..=97 => 4097 + rng.below(MAX_SMALL - 4096),
        _ => MAX_SMALL + 1 + rng.below(2 * MAX_SMALL),
    }
}

fn pick_align(rng: &mut Rng) -> usize {
    if rng.percent(6) {
        1 << (4 + rng.below(9)) // 16 ..= 4096
    } else {
        1 << rng.below(4)
    }
}

// --- the ops, run by the thread whose turn it is ---

/// Allocates in the thread's group; the block's index when it succeeded.
fn alloc(
    m: &mut Model,
    here: &Here,
    layout: Layout,
    fallible: bool,
    zeroed: bool,
) -> Option<usize> {
    let g = here.group();
    let raw = || {
        // SAFETY: the layout has a non-zero size.
        unsafe {
            if zeroed {
                std::alloc::alloc_zeroed(layout)
            } else {
                std::alloc::alloc(layout)
            }
        }
    };
    let p = if fallible {
        memcg::fallible(raw)
    } else {
        raw()
    } as usize;
    memcg::bypass(|| m.after_alloc(here, g, layout, p, fallible, zeroed))
}

fn free(m: &mut Model, here: &Here, i: usize) {
    let (addr, layout) = memcg::bypass(|| m.take_block(here, i));
    // SAFETY: a live block with this layout, out of the model now.
    unsafe { std::alloc::dealloc(addr as *mut u8, layout) };
}

fn free_random(m: &mut Model, here: &Here, rng: &mut Rng) {
    if !m.blocks.is_empty() {
        let i = rng.below(m.blocks.len());
        free(m, here, i);
    }
}

fn random_alloc(m: &mut Model, here: &Here, rng: &mut Rng, fallible: bool) {
    if m.blocks.len() >= MAX_BLOCKS || m.live >= MAX_LIVE {
        return free_random(m, here, rng);
    }
    let layout = Layout::from_size_align(pick_size(rng), pick_align(rng)).unwrap();
    let zeroed = rng.percent(8);
    alloc(m, here, layout, fallible, zeroed);
}

/// Counts `g` among the groups thread `me` keeps a cache of.
fn note_enter(m: &mut Model, me: usize, g: usize) {
    if m.groups[g].entered_by & (1 << me) == 0 {
        m.groups[g].entered_by |= 1 << me;
        for l in m.chain(Some(g)) {
            m.groups[l].kept[me] += 1;
        }
    }
    m.counts.enters += 1;
}

fn enter(m: &mut Model, here: &mut Here, rng: &mut Rng) {
    if here.guards.len() >= 3 {
        leave(here);
    }
    let me = here.me;
    let (g, handle) = memcg::bypass(|| {
        let g = m.pick_group(rng);
        note_enter(m, me, g);
        (g, m.groups[g].handle.clone().expect("live group"))
    });
    // `guards` has room for three: the push allocates nothing.
    here.guards.push((handle.enter(), g));
}

fn leave(here: &mut Here) {
    if let Some((g, _)) = here.guards.pop() {
        drop(g);
    }
}

/// 4 MiB and a little more in one stretch in the thread's group, one 4 KiB
/// block at a time (each freed before the next).
fn burst(m: &mut Model, here: &Here) {
    let Some(g) = here.group() else { return };
    let layout = Layout::from_size_align(4096, 8).unwrap();
    for _ in 0..PROMOTE_AFTER / 4096 + 64 {
        match alloc(m, here, layout, false, false) {
            Some(i) => free(m, here, i),
            None => break,
        }
    }
    m.counts.bursts += 1;
    let own_slabs = memcg::bypass(|| {
        m.groups[g]
            .handle
            .as_ref()
            .unwrap()
            .stats()
            .classes
            .iter()
            .any(|c| c.slabs > 0)
    });
    if own_slabs && !m.groups[g].isolated {
        m.counts.promoted += 1;
    }
}

/// Drops a leaf (not held by this thread's guards) and makes another in
/// its place; rarely a whole parent with its leaves.
fn kill(m: &mut Model, here: &Here, rng: &mut Rng) {
    let slot = if rng.percent(50) {
        m.hot[rng.below(m.hot.len())]
    } else {
        rng.below(PARENTS)
    };
    if rng.below(120) == 0 {
        let (p, leaves) = m.slots[slot].clone();
        if here.holds(p) || leaves.iter().any(|&l| here.holds(l)) {
            return;
        }
        for &l in &leaves {
            note_death(m, l);
        }
        note_death(m, p);
        m.counts.parent_deaths += 1;
        let new = m.new_parent(rng);
        m.slots[slot] = new;
        return;
    }
    let j = rng.below(LEAVES);
    let leaf = m.slots[slot].1[j];
    if here.holds(leaf) {
        return;
    }
    note_death(m, leaf);
    let p = m.slots[slot].0;
    let new = m.new_leaf(p, rng);
    m.slots[slot].1[j] = new;
}

fn note_death(m: &mut Model, g: usize) {
    drop(m.groups[g].handle.take().expect("alive"));
    m.counts.deaths += 1;
    m.counts.deaths_with_objects += usize::from(m.groups[g].sub > 0);
}

/// One thread's turn: `ops` random ops, then every guard dropped.
fn turn(m: &mut Model, me: usize, seed: u64, ops: usize) {
    let mut rng = Rng::new(seed);
    let mut here = Here {
        me,
        guards: Vec::with_capacity(4),
    };
    for _ in 0..ops {
        m.counts.ops += 1;
        match rng.below(100) {
            0..=19 => enter(m, &mut here, &mut rng),
            20..=25 => leave(&mut here),
            26..=59 => random_alloc(m, &here, &mut rng, false),
            60..=65 => random_alloc(m, &here, &mut rng, true),
            66..=93 => free_random(m, &here, &mut rng),
            94 => {
                if rng.below(8) == 0 {
                    burst(m, &here)
                } else {
                    random_alloc(m, &here, &mut rng, false)
                }
            }
            95..=97 => memcg::bypass(|| kill(m, &here, &mut rng)),
            _ => {
                if !m.blocks.is_empty() {
                    m.check_block(rng.below(m.blocks.len()));
                }
            }
        }
    }
    while let Some((g, _)) = here.guards.pop() {
        drop(g);
    }
    assert!(memcg::current().is_root());
}

/// Frees `n` random blocks on this thread.
fn free_some(m: &mut Model, me: usize, seed: u64, n: usize) {
    let mut rng = Rng::new(seed);
    let here = Here {
        me,
        guards: Vec::new(),
    };
    for _ in 0..n.min(m.blocks.len()) {
        free_random(m, &here, &mut rng);
    }
}

/// Drops the handles of every `THREADS`th group from `me` on.
fn drop_share(m: &mut Model, me: usize) {
    for g in (1..m.groups.len()).filter(|g| g % THREADS == me) {
        m.groups[g].handle = None;
    }
}

/// With no reserve held anywhere (every thread flushed), fills `g`'s room
/// to the last byte the chain allows, then asks for more.
fn probe(m: &mut Model, me: usize, g: usize) {
    let here_g = Some(g);
    let seed = m.seed;
    let (room, levels) = memcg::bypass(|| {
        let levels: Vec<usize> = m
            .chain(here_g)
            .into_iter()
            .filter(|&l| m.groups[l].fail && m.groups[l].max.is_some())
            .collect();
        let room = levels
            .iter()
            .map(|&l| m.groups[l].max.unwrap().saturating_sub(m.groups[l].sub))
            .min()
            .unwrap();
        (room, levels)
    });
    let handle = memcg::bypass(|| {
        note_enter(m, me, g);
        m.groups[g].handle.clone().unwrap()
    });
    // The guard's slot is allocated before the group is entered.
    let mut here = Here {
        me,
        guards: Vec::with_capacity(1),
    };
    here.guards.push((handle.enter(), g));
    let mut left = room;
    // 1: the largest block that fits; 2: one class more than is left,
    // refused; 3: the largest of what is left; 4: 8 bytes, refused unless
    // 8 were left.
    for step in 0..4 {
        let size = match step {
            0 | 2 => match largest_fitting(left) {
                Some((s, _)) => s,
                None => continue,
            },
            1 => left + 1,
            _ => 8,
        };
        let layout = Layout::from_size_align(size, 8).unwrap();
        let c = charged_size(size, 8);
        let must_fit = c <= left;
        // The level that must refuse: the lowest Fail level the charge
        // takes over its max.
        let refuser = memcg::bypass(|| {
            levels
                .iter()
                .copied()
                .find(|&l| m.groups[l].sub + c > m.groups[l].max.unwrap())
        });
        let before = memcg::bypass(|| refuser.map(|l| m.fails_at(l)));
        let raw = || {
            // SAFETY: the layout has a non-zero size.
            unsafe { std::alloc::alloc(layout) as usize }
        };
        let p = raw();
        memcg::bypass(|| {
            let what = format!(
                "seed {seed:#x}: probe {} step {step} on thread {me}: room {room}, left {left}, \
                 {size} bytes (charged {c}){}",
                m.path(here_g),
                m.describe_chain(here_g)
            );
            assert_eq!(
                p != 0,
                must_fit,
                "{what}: {}",
                if must_fit { "refused" } else { "allowed" }
            );
            if p == 0 {
                let l = refuser.expect("a refusing level");
                let after = m.fails_at(l);
                assert_eq!(
                    after,
                    before.unwrap() + 1,
                    "{what}: the refusal should count at {}",
                    m.path(Some(l))
                );
                m.groups[l].fail_may += 1;
                m.groups[l].fail_must += 1;
                m.groups[g].denied_pending = true;
                m.counts.refused += 1;
                m.counts.probe_refusals += 1;
            } else {
                m.after_alloc(&here, here_g, layout, p, false, false);
                left -= c;
            }
        });
    }
    drop(here.guards.pop());
    m.counts.probes += 1;
}

// --- the threads ---

enum Cmd {
    Turn { seed: u64, ops: usize },
    FreeSome { seed: u64, n: usize },
    DropShare,
    Probe { group: usize },
    Flush,
}

type Reply = Result<(), String>;

fn lock(m: &Mutex<Model>) -> MutexGuard<'_, Model> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn execute(model: &Mutex<Model>, me: usize, cmd: Cmd) -> Reply {
    let r = catch_unwind(AssertUnwindSafe(|| {
        let mut m = lock(model);
        match cmd {
            Cmd::Turn { seed, ops } => turn(&mut m, me, seed, ops),
            Cmd::FreeSome { seed, n } => free_some(&mut m, me, seed, n),
            Cmd::DropShare => drop_share(&mut m, me),
            Cmd::Probe { group } => probe(&mut m, me, group),
            Cmd::Flush => memcg::flush(),
        }
    }));
    r.map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".to_string())
    })
}

fn worker(model: Arc<Mutex<Model>>, me: usize, rx: Receiver<Cmd>, tx: Sender<Reply>) {
    while let Ok(cmd) = rx.recv() {
        let r = execute(&model, me, cmd);
        if tx.send(r).is_err() {
            break;
        }
    }
    memcg::flush();
}

/// A case: the model, the workers and the main thread's share of the turns.
pub struct Case {
    cfg: Config,
    model: Arc<Mutex<Model>>,
    txs: Vec<Sender<Cmd>>,
    rx: Receiver<Reply>,
    workers: Vec<JoinHandle<()>>,
    rng: Rng,
}

impl Case {
    pub fn new(cfg: Config) -> Case {
        memcg::bypass(|| {
            let model = Arc::new(Mutex::new(Model::new(cfg.seed)));
            let (tx, rx) = channel();
            let mut txs = Vec::new();
            let mut workers = Vec::new();
            for me in 1..THREADS {
                let (wtx, wrx) = channel();
                let (model, tx) = (model.clone(), tx.clone());
                workers.push(std::thread::spawn(move || worker(model, me, wrx, tx)));
                txs.push(wtx);
            }
            Case {
                cfg,
                model,
                txs,
                rx,
                workers,
                rng: Rng::new(cfg.seed),
            }
        })
    }

    /// Runs `cmd` on thread `t` (0: here) and waits for it.
    fn on(&self, t: usize, cmd: Cmd) {
        let r = if t == 0 {
            execute(&self.model, 0, cmd)
        } else {
            self.txs[t - 1].send(cmd).expect("worker gone");
            self.rx.recv().expect("worker gone")
        };
        if let Err(e) = r {
            panic!("thread {t}: {e}");
        }
    }

    /// Two rounds: a thread's flush sends the blocks it freed into other
    /// threads' slabs, and the owners take them in at their next flush.
    fn flush_all(&self) {
        for _ in 0..2 {
            for t in 0..THREADS {
                self.on(t, Cmd::Flush);
            }
        }
    }

    /// Every thread flushed and quiescent: the figures are exact.
    fn verify(&self) {
        let seed = self.cfg.seed;
        let mut m = lock(&self.model);
        let n = m.groups.len();
        // Dead groups with live objects, counted at each ancestor.
        let mut dying = vec![0usize; n];
        for g in 0..n {
            if m.groups[g].handle.is_none() && m.groups[g].sub > 0 {
                let mut a = m.groups[g].parent;
                while let Some(p) = a {
                    dying[p] += 1;
                    a = m.groups[p].parent;
                }
            }
        }
        m.counts.most_dying = m.counts.most_dying.max(dying[0]);
        for (g, &dying) in dying.iter().enumerate() {
            let Some(h) = m.groups[g].handle.clone() else {
                continue;
            };
            let s = h.stats();
            let x = &m.groups[g];
            assert_eq!(
                s.current,
                x.sub,
                "seed {seed:#x}: {} current {} != model {} with every thread flushed",
                h.path(),
                s.current,
                x.sub
            );
            assert_eq!(
                s.dying_descendants,
                dying,
                "seed {seed:#x}: {} dying_descendants {} != model {dying}",
                h.path(),
                s.dying_descendants,
            );
            if let (Some(max), true) = (x.max, x.fail) {
                assert!(s.current <= max, "seed {seed:#x}: {} over max", h.path());
            }
            let fails = s.events_local.fail;
            assert!(
                x.fail_must <= fails && fails <= x.fail_may,
                "seed {seed:#x}: {} events_local.fail {fails}, the model says between {} and {}",
                h.path(),
                x.fail_must,
                x.fail_may
            );
            let over = m
                .chain(Some(g))
                .into_iter()
                .any(|l| m.groups[l].max.is_some_and(|max| m.groups[l].sub > max));
            let pending = std::mem::take(&mut m.groups[g].denied_pending);
            let r = h.check();
            assert_eq!(
                r.is_err(),
                over || pending,
                "seed {seed:#x}: {} check() = {r:?}, over {over}, denied {pending}",
                h.path()
            );
        }
        for i in 0..m.blocks.len() {
            m.check_block(i);
        }
        m.counts.checkpoints += 1;
    }

    /// With every thread quiescent but not flushed: what each group's
    /// `current` holds above its live bytes is the threads' reserves.
    fn measure_reserves(&self) {
        let mut m = lock(&self.model);
        let (mut leaf, mut parent) = (0, 0);
        for g in 0..m.groups.len() {
            let Some(h) = &m.groups[g].handle else {
                continue;
            };
            let held = h.current() as isize - m.groups[g].sub as isize;
            assert!(
                held >= 0 && held as usize <= m.slack_at(g),
                "seed {:#x}: {} current {} with {} bytes live: the reserves hold {held}, the \
                 documented slack there is {}",
                self.cfg.seed,
                h.path(),
                h.current(),
                m.groups[g].sub,
                m.slack_at(g)
            );
            if g == 0 {
                m.counts.held_top = m.counts.held_top.max(held as usize);
            } else if m.is_leaf(g) {
                leaf = leaf.max(held as usize);
            } else {
                parent = parent.max(held as usize);
            }
        }
        m.counts.held_leaf = m.counts.held_leaf.max(leaf);
        m.counts.held_parent = m.counts.held_parent.max(parent);
    }

    /// Flush, verify, then exact probes (each after a flush of its own).
    fn checkpoint(&mut self) {
        self.measure_reserves();
        self.flush_all();
        self.verify();
        for _ in 0..self.cfg.probes {
            let pick = {
                let m = lock(&self.model);
                (0..64).find_map(|_| {
                    let g = m.pick_group(&mut self.rng);
                    let levels: Vec<usize> = m
                        .chain(Some(g))
                        .into_iter()
                        .filter(|&l| m.groups[l].fail && m.groups[l].max.is_some())
                        .collect();
                    let room = levels
                        .iter()
                        .map(|&l| m.groups[l].max.unwrap().saturating_sub(m.groups[l].sub))
                        .min()?;
                    (room <= MAX_PROBE_ROOM).then_some(g)
                })
            };
            if let Some(g) = pick {
                let t = self.rng.below(THREADS);
                self.on(t, Cmd::Probe { group: g });
                self.flush_all();
            }
        }
    }

    /// Runs the case to the end; returns what it did.
    pub fn run(mut self) -> Counts {
        let cfg = self.cfg;
        for turn in 0..cfg.turns {
            if turn % cfg.rotate_every == 0 {
                let mut m = lock(&self.model);
                memcg::bypass(|| m.rotate(&mut self.rng));
            }
            let t = self.rng.below(THREADS);
            let seed = self.rng.next();
            self.on(
                t,
                Cmd::Turn {
                    seed,
                    ops: cfg.ops_per_turn,
                },
            );
            if (turn + 1) % cfg.check_every == 0 {
                self.checkpoint();
            }
        }
        self.checkpoint();
        // Every thread frees a share of what is left.
        for t in 0..THREADS {
            let n = lock(&self.model).blocks.len().div_ceil(THREADS - t);
            let seed = self.rng.next();
            self.on(t, Cmd::FreeSome { seed, n });
        }
        assert!(lock(&self.model).blocks.is_empty());
        self.flush_all();
        self.verify();
        {
            let m = lock(&self.model);
            let top = m.groups[0].handle.as_ref().unwrap();
            assert_eq!(
                top.current(),
                0,
                "seed {:#x}: {}",
                cfg.seed,
                memcg::report()
            );
            assert_eq!(top.dying_descendants(), 0, "seed {:#x}", cfg.seed);
        }
        // Every handle but the top's, dropped on all four threads.
        for t in 0..THREADS {
            self.on(t, Cmd::DropShare);
        }
        self.flush_all();
        let mut m = lock(&self.model);
        let top = m.groups[0].handle.take().unwrap();
        assert_eq!(top.current(), 0, "seed {:#x}", cfg.seed);
        assert_eq!(
            top.dying_descendants(),
            0,
            "seed {:#x}: dying groups left after every block was freed, every handle dropped \
             and every thread flushed",
            cfg.seed
        );
        let mut counts = m.counts;
        for g in &m.groups {
            for (t, n) in counts.entered_per_thread.iter_mut().enumerate() {
                *n += usize::from(g.entered_by & (1 << t) != 0);
            }
        }
        drop(m);
        drop(top);
        self.txs.clear();
        for w in self.workers.drain(..) {
            w.join().expect("worker panicked");
        }
        counts
    }
}
