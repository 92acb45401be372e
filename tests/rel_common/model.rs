//! A model of the allocator and its groups, shared by the property tests
//! (`tests/rel_model.rs`) and the fuzz target (`fuzz/fuzz_targets/ops.rs`).
//!
//! A [`Harness`] applies [`Op`]s to the real allocator on the calling thread
//! and on one worker thread, and keeps a model beside it:
//!
//! - every live block with its layout and owner group; its bytes hold a
//!   pattern derived from its address and size, checked before every free
//!   and after every realloc (the bytes kept must hold the old pattern);
//! - every group the harness made (alive or dropped), its limits and policy,
//!   its pending denial (what `check` reports once) and its local count of
//!   refused allocations.
//!
//! From the model it predicts whether an allocation may fail, and after
//! flushing both threads it compares each group's `current` with the sum of
//! the charged sizes of the live blocks in its subtree (exact: nothing else
//! is charged once reserves are handed back), `check()` with the limits,
//! and `events_local.fail` with the refusals it predicted.
//!
//! Everything the harness does besides the allocator calls under test runs
//! in `memcg::bypass`, so that its own bookkeeping is never charged to (or
//! refused by) the groups it is testing.

#![allow(dead_code)]

use memcg::{Group, OnExceed};
use std::alloc::Layout;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;

pub const MAX_SMALL: usize = 128 * 1024;
pub const PAGE: usize = 4096;

/// One step of a test sequence. Indices are taken modulo the number of
/// candidates at the time the op runs; an op with no candidate is skipped.
#[derive(Clone, Debug)]
pub enum Op {
    /// Allocates `size` bytes aligned to `1 << align_log` in the thread's
    /// group, zeroed or not, optionally inside `memcg::fallible`.
    Alloc {
        size: usize,
        align_log: u8,
        zeroed: bool,
        fallible: bool,
    },
    /// Reallocates a live block on this thread.
    Realloc {
        idx: usize,
        size: usize,
        fallible: bool,
    },
    /// Frees a live block on this thread.
    Free { idx: usize },
    /// Hands a block to the worker, which frees it.
    RemoteFree { idx: usize },
    /// Hands a block to the worker, which reallocates it in `group`
    /// (`None`: the worker's own group, the root) and sends it back.
    RemoteRealloc {
        idx: usize,
        size: usize,
        group: Option<usize>,
    },
    /// Enters a group (held guard).
    Enter { group: usize },
    /// Drops the most recent guard.
    Leave,
    /// Makes a child of a group (index 0: the case's root group).
    Create {
        parent: usize,
        max: Option<usize>,
        fail: bool,
    },
    /// Drops the harness's handle of a group (it dies once guards and
    /// children let go of it too).
    Drop { group: usize },
    /// `set_max` on a group.
    SetMax { group: usize, max: Option<usize> },
    /// `set_on_exceed` on a group.
    SetPolicy { group: usize, fail: bool },
    /// Flushes both threads and checks every figure.
    Check,
}

/// Limits the ops draw from: small enough to be hit by a few blocks.
pub const LIMITS: [usize; 6] = [0, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20];

impl Op {
    /// Decodes one op from fuzz input; `None` at the end of the input.
    pub fn decode(data: &mut &[u8]) -> Option<Op> {
        fn byte(d: &mut &[u8]) -> Option<u8> {
            let (&b, rest) = d.split_first()?;
            *d = rest;
            Some(b)
        }
        fn word(d: &mut &[u8]) -> Option<usize> {
            Some(byte(d)? as usize | (byte(d)? as usize) << 8)
        }
        fn size(d: &mut &[u8]) -> Option<usize> {
            let kind = byte(d)?;
            let w = word(d)?;
            Some(match kind % 8 {
                0..=3 => w % 257,
                4 | 5 => w % 4096,
                6 => w * 2 + 1,                // up to 128 KiB: every small class
                _ => MAX_SMALL - 4096 + w * 4, // around and above MAX_SMALL
            })
        }
        fn limit(b: u8) -> Option<usize> {
            LIMITS.get(b as usize % 8).copied()
        }
        let tag = byte(data)?;
        Some(match tag % 16 {
            0..=3 => {
                let size = size(data)?;
                let f = byte(data)?;
                Op::Alloc {
                    size,
                    align_log: if f & 0x70 == 0x70 { f % 13 } else { f % 5 },
                    zeroed: f & 0x80 != 0,
                    fallible: f & 0x08 != 0 && f & 0x04 != 0,
                }
            }
            4 | 5 => Op::Free {
                idx: byte(data)? as usize,
            },
            6 => {
                let idx = byte(data)? as usize;
                let size = size(data)?;
                let f = byte(data)?;
                Op::Realloc {
                    idx,
                    size,
                    fallible: f & 1 != 0,
                }
            }
            7 => Op::RemoteFree {
                idx: byte(data)? as usize,
            },
            8 => {
                let idx = byte(data)? as usize;
                let size = size(data)?;
                let g = byte(data)?;
                Op::RemoteRealloc {
                    idx,
                    size,
                    group: (g & 1 == 0).then_some(g as usize >> 1),
                }
            }
            9 => Op::Enter {
                group: byte(data)? as usize,
            },
            10 => Op::Leave,
            11 => {
                let parent = byte(data)? as usize;
                let l = byte(data)?;
                Op::Create {
                    parent,
                    max: limit(l),
                    fail: l & 0x80 != 0,
                }
            }
            12 => Op::Drop {
                group: byte(data)? as usize,
            },
            13 => {
                let group = byte(data)? as usize;
                Op::SetMax {
                    group,
                    max: limit(byte(data)?),
                }
            }
            14 => {
                let group = byte(data)? as usize;
                Op::SetPolicy {
                    group,
                    fail: byte(data)? & 1 != 0,
                }
            }
            _ => Op::Check,
        })
    }
}

// --- size classes, as documented ---

fn class_size_of(size: usize) -> usize {
    if size <= 64 {
        return size.max(1).div_ceil(8) * 8;
    }
    let s = size - 1;
    let log = (usize::BITS - 1 - s.leading_zeros()) as usize;
    let quarter = 1usize << (log - 2);
    (1usize << log) + ((s - (1 << log)) / quarter + 1) * quarter
}

/// The bytes an allocation of `size` aligned to `align` is charged: its size
/// class when small, its page-rounded size when large.
pub fn charged_size(size: usize, align: usize) -> usize {
    if align <= 8 {
        if size <= MAX_SMALL {
            return class_size_of(size);
        }
    } else if align <= 4096 && size <= MAX_SMALL {
        let want = size.max(align).div_ceil(align) * align;
        if want <= MAX_SMALL {
            let mut c = class_size_of(want);
            while c % align != 0 {
                c = class_size_of(c + 1);
            }
            return c;
        }
    }
    size.max(1).div_ceil(PAGE) * PAGE
}

pub fn is_small(size: usize, align: usize) -> bool {
    if align <= 8 {
        size <= MAX_SMALL
    } else {
        align <= 4096 && size.max(align).div_ceil(align) * align <= MAX_SMALL
    }
}

// --- patterns ---

fn pattern_seed(addr: usize, size: usize) -> u64 {
    let mut z = (addr as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((size as u64).rotate_left(32));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn pattern_word(seed: u64, i: usize) -> u64 {
    let w = seed.wrapping_add((i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    w ^ (w >> 29)
}

/// Fills the first `len` bytes at `at` with the pattern of (`addr`, `size`).
///
/// # Safety
/// `at` is valid for writes of `len` bytes.
pub unsafe fn fill(at: usize, addr: usize, size: usize, len: usize) {
    let seed = pattern_seed(addr, size);
    let p = at as *mut u8;
    let words = len / 8;
    for i in 0..words {
        let w = pattern_word(seed, i).to_le_bytes();
        // SAFETY: `i * 8 + 8 <= len` bytes are writable (caller).
        unsafe { std::ptr::copy_nonoverlapping(w.as_ptr(), p.add(i * 8), 8) };
    }
    let w = pattern_word(seed, words).to_le_bytes();
    for (j, b) in w.iter().enumerate().take(len % 8) {
        // SAFETY: within `len` (caller).
        unsafe { *p.add(words * 8 + j) = *b };
    }
}

/// The first offset below `len` where the bytes at `at` differ from the
/// pattern of (`addr`, `size`).
///
/// # Safety
/// `at` is valid for reads of `len` initialised bytes.
pub unsafe fn mismatch(at: usize, addr: usize, size: usize, len: usize) -> Option<usize> {
    let seed = pattern_seed(addr, size);
    let p = at as *const u8;
    let words = len / 8;
    for i in 0..words {
        let w = pattern_word(seed, i).to_le_bytes();
        let mut got = [0u8; 8];
        // SAFETY: `i * 8 + 8 <= len` bytes are readable (caller).
        unsafe { std::ptr::copy_nonoverlapping(p.add(i * 8), got.as_mut_ptr(), 8) };
        if got != w {
            let j = got.iter().zip(&w).position(|(a, b)| a != b).unwrap_or(0);
            return Some(i * 8 + j);
        }
    }
    let w = pattern_word(seed, words).to_le_bytes();
    for (j, b) in w.iter().enumerate().take(len % 8) {
        // SAFETY: within `len` (caller).
        if unsafe { *p.add(words * 8 + j) } != *b {
            return Some(words * 8 + j);
        }
    }
    None
}

// --- the worker thread ---

enum Msg {
    Free {
        addr: usize,
        layout: Layout,
    },
    Realloc {
        addr: usize,
        layout: Layout,
        new_size: usize,
        group: Option<Group>,
    },
    Flush,
}

enum Reply {
    Done,
    Realloc(usize),
    Flushed,
}

fn worker(rx: Receiver<Msg>, tx: Sender<Reply>) {
    while let Ok(msg) = rx.recv() {
        let reply = match msg {
            Msg::Free { addr, layout } => {
                // SAFETY: the block is live with this layout; the sender gave
                // it up.
                if let Some(off) = unsafe { mismatch(addr, addr, layout.size(), layout.size()) } {
                    panic!("worker: block {addr:#x} ({layout:?}) corrupt at offset {off}");
                }
                // SAFETY: as above.
                unsafe { std::alloc::dealloc(addr as *mut u8, layout) };
                Reply::Done
            }
            Msg::Realloc {
                addr,
                layout,
                new_size,
                group,
            } => {
                // SAFETY: as above.
                if let Some(off) = unsafe { mismatch(addr, addr, layout.size(), layout.size()) } {
                    panic!("worker: block {addr:#x} ({layout:?}) corrupt at offset {off}");
                }
                let raw = || {
                    // SAFETY: a live block with its layout, and a size that
                    // makes a valid layout with its alignment.
                    unsafe { std::alloc::realloc(addr as *mut u8, layout, new_size) as usize }
                };
                let new = match &group {
                    Some(g) => g.scope(raw),
                    None => raw(),
                };
                drop(group);
                if new != 0 {
                    let kept = layout.size().min(new_size);
                    // SAFETY: `new` is live with at least `new_size` bytes, the
                    // first `kept` copied from the old block.
                    if let Some(off) = unsafe { mismatch(new, addr, layout.size(), kept) } {
                        panic!("worker: realloc {addr:#x} -> {new:#x} lost data at {off}");
                    }
                    // SAFETY: as above.
                    unsafe { fill(new, new, new_size, new_size) };
                }
                Reply::Realloc(new)
            }
            Msg::Flush => {
                memcg::flush();
                Reply::Flushed
            }
        };
        if tx.send(reply).is_err() {
            break;
        }
    }
    memcg::flush();
}

// --- the model ---

struct Block {
    addr: usize,
    layout: Layout,
    /// Bytes charged for it (what `usable_size` says).
    charged: usize,
    /// Model group index, `None` for the process root.
    owner: Option<usize>,
}

struct MGroup {
    /// Model index of the parent; `None` only for the case root (index 0).
    parent: Option<usize>,
    handle: Option<Group>,
    max: Option<usize>,
    fail: bool,
    denied_pending: bool,
    fails_local: u64,
}

/// How a charge is predicted to go.
enum Pred {
    Ok,
    /// Refused at this model group.
    Refused(usize),
    /// Cannot say without knowing the reserves: flush first.
    Unsure,
    /// Cannot say at all (a dead group's own limit is involved): skip.
    Unknown,
}

static CASES: AtomicUsize = AtomicUsize::new(0);

/// Applies ops to the allocator and checks them against the model.
pub struct Harness {
    case: usize,
    groups: Vec<MGroup>,
    blocks: Vec<Block>,
    /// Held guards with the group each entered (index, handle).
    guards: Vec<(memcg::EnterGuard, usize, Group)>,
    /// Whether reserves may be held since the last flush of both threads.
    dirty: bool,
    tx: Option<Sender<Msg>>,
    rx: Receiver<Reply>,
    worker: Option<JoinHandle<()>>,
    batch: usize,
    /// Ops applied (not skipped).
    pub applied: usize,
    /// Allocations refused, as predicted.
    pub refused: usize,
}

const MAX_BLOCKS: usize = 256;
const MAX_GROUPS: usize = 24;
const MAX_DEPTH: usize = 6;

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    pub fn new() -> Harness {
        memcg::bypass(|| {
            let case = CASES.fetch_add(1, Ordering::Relaxed);
            let root = Group::new(&format!("rel-model-{}-{case}", std::process::id()));
            let (tx, wrx) = channel();
            let (wtx, rx) = channel();
            let worker = std::thread::spawn(move || worker(wrx, wtx));
            Harness {
                case,
                groups: vec![MGroup {
                    parent: None,
                    handle: Some(root),
                    max: None,
                    fail: false,
                    denied_pending: false,
                    fails_local: 0,
                }],
                blocks: Vec::with_capacity(MAX_BLOCKS),
                guards: Vec::with_capacity(MAX_DEPTH),
                dirty: false,
                tx: Some(tx),
                rx,
                worker: Some(worker),
                batch: memcg::tunables().reserve_batch,
                applied: 0,
                refused: 0,
            }
        })
    }

    fn send(&self, m: Msg) -> Reply {
        self.tx
            .as_ref()
            .expect("worker gone")
            .send(m)
            .expect("worker died");
        self.rx.recv().expect("worker died")
    }

    /// Flushes the reserves of both threads.
    fn flush_all(&mut self) {
        memcg::flush();
        match self.send(Msg::Flush) {
            Reply::Flushed => {}
            _ => unreachable!(),
        }
        self.dirty = false;
    }

    /// The model group the thread is in (`None`: the process root).
    fn current_model(&self) -> Option<usize> {
        self.guards.last().map(|g| g.1)
    }

    /// Model indices of the groups that have a handle.
    fn handled(&self) -> Vec<usize> {
        (0..self.groups.len())
            .filter(|&i| self.groups[i].handle.is_some())
            .collect()
    }

    fn chain(&self, g: Option<usize>) -> Vec<usize> {
        let mut out = Vec::new();
        let mut c = g;
        while let Some(i) = c {
            out.push(i);
            c = self.groups[i].parent;
        }
        out
    }

    fn is_alive(&self, g: usize) -> bool {
        // A group lives while the harness, a guard or a live child holds it.
        self.groups[g].handle.is_some()
            || self.guards.iter().any(|x| x.1 == g)
            || (0..self.groups.len()).any(|c| self.groups[c].parent == Some(g) && self.is_alive(c))
    }

    /// Bytes of live blocks charged to `g` and its descendants.
    fn model_charge(&self, g: usize) -> usize {
        self.blocks
            .iter()
            .filter(|b| self.chain(b.owner).contains(&g))
            .map(|b| b.charged)
            .sum()
    }

    fn depth(&self, g: usize) -> usize {
        self.chain(Some(g)).len()
    }

    /// Predicts a charge of `bytes` to `g`'s chain.
    fn predict(&self, g: Option<usize>, bytes: usize, fallible: bool) -> Pred {
        // Charged-but-unused bytes both threads may hold in one subtree.
        let slack = 2 * self.groups.len() * 2 * self.batch;
        for l in self.chain(g) {
            let m = &self.groups[l];
            let Some(max) = m.max else { continue };
            if !(m.fail || fallible) {
                continue;
            }
            if !self.is_alive(l) {
                return Pred::Unknown;
            }
            let used = self.model_charge(l);
            if self.dirty {
                if used + bytes + slack > max {
                    return Pred::Unsure;
                }
            } else if used + bytes > max {
                return Pred::Refused(l);
            }
        }
        Pred::Ok
    }

    /// Predicts, flushing first when the reserves matter.
    fn predict_flushing(&mut self, g: Option<usize>, bytes: usize, fallible: bool) -> Pred {
        match self.predict(g, bytes, fallible) {
            Pred::Unsure => {
                self.flush_all();
                self.predict(g, bytes, fallible)
            }
            p => p,
        }
    }

    fn note_refusal(&mut self, origin: Option<usize>, at: usize) {
        self.groups[at].fails_local += 1;
        if let Some(o) = origin {
            self.groups[o].denied_pending = true;
        }
        self.refused += 1;
    }

    /// Applies one op.
    pub fn apply(&mut self, op: &Op) {
        // The thread is where the guards say.
        let cur = memcg::current();
        memcg::bypass(|| {
            let want = self.guards.last().map(|g| &g.2);
            match want {
                Some(w) => assert!(&cur == w, "thread in {cur:?}, expected {w:?}"),
                None => assert!(cur.is_root(), "thread in {cur:?}, expected the root"),
            }
        });
        drop(cur);
        match *op {
            Op::Alloc {
                size,
                align_log,
                zeroed,
                fallible,
            } => self.alloc(size, 1 << align_log.min(16), zeroed, fallible),
            Op::Realloc {
                idx,
                size,
                fallible,
            } => self.realloc(idx, size, fallible),
            Op::Free { idx } => self.free(idx),
            Op::RemoteFree { idx } => memcg::bypass(|| self.remote_free(idx)),
            Op::RemoteRealloc { idx, size, group } => {
                memcg::bypass(|| self.remote_realloc(idx, size, group))
            }
            Op::Enter { group } => self.enter(group),
            Op::Leave => self.leave(),
            Op::Create { parent, max, fail } => memcg::bypass(|| self.create(parent, max, fail)),
            Op::Drop { group } => memcg::bypass(|| self.drop_group(group)),
            Op::SetMax { group, max } => memcg::bypass(|| {
                let h = self.handled();
                let g = h[group % h.len()];
                if g == 0 {
                    return;
                }
                self.groups[g].handle.as_ref().unwrap().set_max(max);
                self.groups[g].max = max;
                self.applied += 1;
            }),
            Op::SetPolicy { group, fail } => memcg::bypass(|| {
                let h = self.handled();
                let g = h[group % h.len()];
                if g == 0 {
                    return;
                }
                let p = if fail {
                    OnExceed::Fail
                } else {
                    OnExceed::Report
                };
                let handle = self.groups[g].handle.as_ref().unwrap();
                handle.set_on_exceed(p);
                assert_eq!(handle.on_exceed(), p);
                self.groups[g].fail = fail;
                self.applied += 1;
            }),
            Op::Check => memcg::bypass(|| self.check()),
        }
    }

    fn alloc(&mut self, size: usize, align: usize, zeroed: bool, fallible: bool) {
        let layout = Layout::from_size_align(size.max(1), align).unwrap();
        let g = self.current_model();
        let (skip, pred) = memcg::bypass(|| {
            let skip = self.blocks.len() >= MAX_BLOCKS;
            let c = charged_size(layout.size(), align);
            (skip, self.predict_flushing(g, c, fallible))
        });
        if skip || matches!(pred, Pred::Unknown) {
            return;
        }
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
        memcg::bypass(|| {
            self.applied += 1;
            self.dirty = true;
            match pred {
                Pred::Refused(at) => {
                    assert_eq!(p, 0, "alloc {layout:?} in {g:?} should be refused at {at}");
                    self.note_refusal(g, at);
                    return;
                }
                _ => assert_ne!(p, 0, "alloc {layout:?} in {g:?} failed"),
            }
            assert_eq!(p % align, 0, "misaligned {p:#x} for {layout:?}");
            // SAFETY: `p` is live.
            let usable = unsafe { memcg::usable_size(p as *const u8) };
            let charged = charged_size(layout.size(), align);
            assert_eq!(usable, charged, "usable_size of {layout:?}");
            if zeroed {
                // SAFETY: `p` has `size` readable bytes, zeroed.
                let s = unsafe { std::slice::from_raw_parts(p as *const u8, layout.size()) };
                assert!(s.iter().all(|&b| b == 0), "alloc_zeroed not zero");
            }
            // SAFETY: `p` has `size` writable bytes.
            unsafe { fill(p, p, layout.size(), layout.size()) };
            self.blocks.push(Block {
                addr: p,
                layout,
                charged,
                owner: g,
            });
        });
    }

    /// The outcome of a realloc of `b` to `new_size` by a thread in `g`:
    /// (charge first tried on the block's group, then a new block in `g`).
    fn predict_realloc(
        &mut self,
        i: usize,
        new_size: usize,
        g: Option<usize>,
        fallible: bool,
    ) -> Option<(Pred, Option<Pred>)> {
        let b = &self.blocks[i];
        let (old, align, owner) = (b.charged, b.layout.align(), b.owner);
        let old_small = old <= MAX_SMALL && is_small(b.layout.size(), align);
        if old_small {
            if new_size <= old && new_size >= old / 2 {
                return Some((Pred::Ok, None)); // in place
            }
        } else if new_size > MAX_SMALL {
            let new_len = new_size.div_ceil(PAGE) * PAGE;
            if new_len <= old {
                return Some((Pred::Ok, None)); // shrinks in place
            }
            let grow = self.predict_flushing(owner, new_len - old, fallible);
            match grow {
                Pred::Ok => return Some((Pred::Ok, None)),
                Pred::Unknown => return None,
                _ => {}
            }
            let moved = self.predict_flushing(g, charged_size(new_size, align), fallible);
            return match moved {
                Pred::Unknown => None,
                m => Some((grow, Some(m))),
            };
        }
        match self.predict_flushing(g, charged_size(new_size, align), fallible) {
            Pred::Unknown => None,
            m => Some((Pred::Ok, Some(m))),
        }
    }

    /// Records a realloc's result.
    fn after_realloc(
        &mut self,
        i: usize,
        new: usize,
        new_size: usize,
        g: Option<usize>,
        pred: (Pred, Option<Pred>),
    ) {
        self.applied += 1;
        self.dirty = true;
        let (addr, layout, owner) = {
            let b = &self.blocks[i];
            (b.addr, b.layout, b.owner)
        };
        let what = format!("realloc {addr:#x} {layout:?} -> {new_size} in {g:?}");
        let (first, second) = pred;
        let first_refused = if let Pred::Refused(at) = first {
            self.note_refusal(owner, at);
            true
        } else {
            false
        };
        match second {
            None => {
                assert!(!first_refused);
                assert_ne!(new, 0, "{what}: failed");
                // Stayed with its group: in place, or a large block
                // resized (possibly moved by a remap).
                let was_small = is_small(layout.size(), layout.align());
                let b = &mut self.blocks[i];
                b.addr = new;
                b.layout = Layout::from_size_align(new_size, layout.align()).unwrap();
                // SAFETY: `new` is live.
                let usable = unsafe { memcg::usable_size(new as *const u8) };
                if was_small {
                    assert_eq!(usable, b.charged, "{what}: in place");
                    assert_eq!(new, addr, "{what}: in place");
                } else {
                    assert_eq!(usable, new_size.div_ceil(PAGE) * PAGE, "{what}: resized");
                    b.charged = usable;
                }
            }
            Some(Pred::Refused(at)) => {
                assert_eq!(new, 0, "{what}: should be refused at {at}");
                self.note_refusal(g, at);
                // SAFETY: the old block is still live and intact.
                if let Some(off) = unsafe { mismatch(addr, addr, layout.size(), layout.size()) } {
                    panic!("{what}: refused realloc damaged the block at {off}");
                }
            }
            Some(_) => {
                assert_ne!(new, 0, "{what}: failed");
                let align = layout.align();
                let b = &mut self.blocks[i];
                b.addr = new;
                b.layout = Layout::from_size_align(new_size, align).unwrap();
                b.charged = charged_size(new_size, align);
                b.owner = g;
                // SAFETY: `new` is live.
                let usable = unsafe { memcg::usable_size(new as *const u8) };
                assert_eq!(usable, b.charged, "{what}: usable_size");
            }
        }
        if new != 0 {
            assert_eq!(new % layout.align(), 0, "{what}: misaligned {new:#x}");
        }
    }

    fn realloc(&mut self, idx: usize, size: usize, fallible: bool) {
        let size = size.max(1);
        let g = self.current_model();
        let prep = memcg::bypass(|| {
            if self.blocks.is_empty() {
                return None;
            }
            let i = idx % self.blocks.len();
            let pred = self.predict_realloc(i, size, g, fallible)?;
            let b = &self.blocks[i];
            // SAFETY: the block is live.
            if let Some(off) = unsafe { mismatch(b.addr, b.addr, b.layout.size(), b.layout.size()) }
            {
                panic!("block {:#x} ({:?}) corrupt at {off}", b.addr, b.layout);
            }
            Some((i, b.addr, b.layout, pred))
        });
        let Some((i, addr, layout, pred)) = prep else {
            return;
        };
        let raw = || {
            // SAFETY: a live block with its layout; the size is non-zero and
            // below isize::MAX once rounded to the alignment.
            unsafe { std::alloc::realloc(addr as *mut u8, layout, size) as usize }
        };
        let new = if fallible {
            memcg::fallible(raw)
        } else {
            raw()
        };
        memcg::bypass(|| {
            if new != 0 {
                let kept = layout.size().min(size);
                // SAFETY: `new` is live with `size` bytes, `kept` copied.
                if let Some(off) = unsafe { mismatch(new, addr, layout.size(), kept) } {
                    panic!("realloc {addr:#x} -> {new:#x} lost data at {off}");
                }
                // SAFETY: as above.
                unsafe { fill(new, new, size, size) };
            }
            self.after_realloc(i, new, size, g, pred);
        });
    }

    fn free(&mut self, idx: usize) {
        let b = memcg::bypass(|| {
            if self.blocks.is_empty() {
                return None;
            }
            let b = self.blocks.swap_remove(idx % self.blocks.len());
            // SAFETY: the block is live.
            if let Some(off) = unsafe { mismatch(b.addr, b.addr, b.layout.size(), b.layout.size()) }
            {
                panic!("block {:#x} ({:?}) corrupt at {off}", b.addr, b.layout);
            }
            Some((b.addr, b.layout))
        });
        if let Some((addr, layout)) = b {
            // SAFETY: a live block with its layout, now out of the model.
            unsafe { std::alloc::dealloc(addr as *mut u8, layout) };
            self.applied += 1;
            self.dirty = true;
        }
    }

    fn remote_free(&mut self, idx: usize) {
        if self.blocks.is_empty() {
            return;
        }
        let b = self.blocks.swap_remove(idx % self.blocks.len());
        match self.send(Msg::Free {
            addr: b.addr,
            layout: b.layout,
        }) {
            Reply::Done => {}
            _ => unreachable!(),
        }
        self.applied += 1;
        self.dirty = true;
    }

    fn remote_realloc(&mut self, idx: usize, size: usize, group: Option<usize>) {
        if self.blocks.is_empty() {
            return;
        }
        let size = size.max(1);
        let i = idx % self.blocks.len();
        let (g, handle) = match group {
            None => (None, None),
            Some(x) => {
                let h = self.handled();
                let g = h[x % h.len()];
                (Some(g), self.groups[g].handle.clone())
            }
        };
        let Some(pred) = self.predict_realloc(i, size, g, false) else {
            return;
        };
        let b = &self.blocks[i];
        let reply = self.send(Msg::Realloc {
            addr: b.addr,
            layout: b.layout,
            new_size: size,
            group: handle,
        });
        let Reply::Realloc(new) = reply else {
            unreachable!()
        };
        // The worker checked the kept bytes and wrote the new pattern.
        self.after_realloc(i, new, size, g, pred);
    }

    fn enter(&mut self, group: usize) {
        let pick = memcg::bypass(|| {
            if self.guards.len() >= MAX_DEPTH {
                return None;
            }
            let h = self.handled();
            let g = h[group % h.len()];
            Some((g, self.groups[g].handle.clone().unwrap()))
        });
        let Some((g, handle)) = pick else { return };
        let guard = handle.enter();
        self.guards.push((guard, g, handle));
        self.applied += 1;
    }

    fn leave(&mut self) {
        // The handle goes before the guard, so the guard's drop may be the
        // group's last handle (as a plain `let _g = g.enter()` would be).
        if let Some((guard, _, handle)) = self.guards.pop() {
            drop(handle);
            drop(guard);
            self.applied += 1;
        }
    }

    fn create(&mut self, parent: usize, max: Option<usize>, fail: bool) {
        if self.groups.len() >= MAX_GROUPS {
            return;
        }
        let h = self.handled();
        let p = h[parent % h.len()];
        if self.depth(p) >= 4 {
            return;
        }
        let n = self.groups.len();
        let mut b = self.groups[p]
            .handle
            .as_ref()
            .unwrap()
            .child(&format!("g{n}"))
            .on_exceed(if fail {
                OnExceed::Fail
            } else {
                OnExceed::Report
            });
        if let Some(m) = max {
            b = b.max(m);
        }
        let g = b.try_build().expect("unique name");
        assert_eq!(g.max(), max);
        assert_eq!(g.current(), 0);
        self.groups.push(MGroup {
            parent: Some(p),
            handle: Some(g),
            max,
            fail,
            denied_pending: false,
            fails_local: 0,
        });
        self.applied += 1;
    }

    fn drop_group(&mut self, group: usize) {
        let h = self.handled();
        let g = h[group % h.len()];
        if g == 0 {
            return; // the case root lives to the end
        }
        self.groups[g].handle = None;
        self.applied += 1;
    }

    /// Flushes both threads and checks every live group against the model.
    fn check(&mut self) {
        self.flush_all();
        for g in 0..self.groups.len() {
            let Some(h) = self.groups[g].handle.clone() else {
                continue;
            };
            let want = self.model_charge(g);
            let s = h.stats();
            assert_eq!(
                s.current,
                want,
                "case {}: {} current {} != model {} (after flush)\n{}",
                self.case,
                h.path(),
                s.current,
                want,
                memcg::report()
            );
            assert_eq!(
                s.events_local.fail,
                self.groups[g].fails_local,
                "{}: events_local.fail",
                h.path()
            );
            let over = self
                .chain(Some(g))
                .into_iter()
                .any(|l| self.groups[l].max.is_some_and(|m| self.model_charge(l) > m));
            let pending = std::mem::take(&mut self.groups[g].denied_pending);
            let r = h.check();
            assert_eq!(
                r.is_err(),
                over || pending,
                "{}: check() = {r:?}, over {over}, denied {pending}",
                h.path()
            );
        }
        self.applied += 1;
    }

    /// Frees everything, leaves every group, drops every handle and checks
    /// that the case's groups are empty and no dying group is left.
    pub fn finish(mut self) {
        while !self.guards.is_empty() {
            self.leave();
        }
        memcg::bypass(|| {
            self.check();
            let mut k = 0;
            while !self.blocks.is_empty() {
                k += 1;
                if k % 2 == 0 {
                    self.remote_free(0);
                } else {
                    let b = self.blocks.swap_remove(0);
                    // SAFETY: the block is live.
                    if let Some(off) =
                        unsafe { mismatch(b.addr, b.addr, b.layout.size(), b.layout.size()) }
                    {
                        panic!("block {:#x} ({:?}) corrupt at {off}", b.addr, b.layout);
                    }
                    // SAFETY: as above.
                    unsafe { std::alloc::dealloc(b.addr as *mut u8, b.layout) };
                }
            }
            self.check();
            let root = self.groups[0].handle.clone().unwrap();
            for g in &mut self.groups[1..] {
                g.handle = None;
            }
            self.flush_all();
            assert_eq!(root.current(), 0, "{}", memcg::report());
            // A dead group whose last object was freed by a thread other
            // than the slab's owner lingers until the owner collects that
            // free: the worker exits (its slabs are abandoned) and `purge`
            // collects the rest. (Whether `flush` alone should do it is
            // checked on its own in rel_model.rs,
            // `dying_group_drains_after_remote_free_and_flush`.)
            self.tx = None;
            if let Some(w) = self.worker.take() {
                w.join().expect("worker panicked");
            }
            memcg::purge();
            assert_eq!(
                root.dying_descendants(),
                0,
                "case {}: dying groups left after every block was freed, the worker exited and purge\n{}",
                self.case,
                memcg::report()
            );
            self.groups.clear();
            drop(root);
        });
        assert!(memcg::current().is_root());
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // On a failed case: leave the groups and stop the worker; blocks
        // still in the model are leaked.
        while let Some((guard, _, handle)) = self.guards.pop() {
            drop(handle);
            drop(guard);
        }
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
