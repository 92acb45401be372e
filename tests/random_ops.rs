//! Random alloc / alloc_zeroed / realloc / free sequences on 1, 2, 4 and 8 threads,
//! with blocks handed between threads (a channel ring and a shared pool) so that many
//! frees and reallocs happen on a thread other than the one that allocated.
//!
//! Every live block holds a pattern derived from its address and size. The pattern is
//! checked before every free and after every hand-over; after a realloc the bytes kept
//! (`min(old, new)`) must still hold the pattern of the *old* address and size, then the
//! block is rewritten with the pattern of its new address and size.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

/// xorshift64*: small, deterministic, good enough to pick sizes and operations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `lo..=hi` (bias is irrelevant here).
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
    fn percent(&mut self) -> u32 {
        (self.next() % 100) as u32
    }
}

/// A live block. The address is kept as `usize` so that blocks can cross threads.
struct Block {
    addr: usize,
    layout: Layout,
}

/// The pattern seed of the block at `addr` with `size` bytes.
fn pattern_seed(addr: usize, size: usize) -> u64 {
    let mut z = (addr as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((size as u64).rotate_left(32));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Bytes per pattern chunk: the pattern is built a chunk at a time in a stack buffer
/// and copied or compared with `memcpy`/`memcmp`, which keeps debug builds fast.
const CHUNK_WORDS: usize = 512;
const CHUNK: usize = CHUNK_WORDS * 8;

/// Writes into the first `words` words of `buf` the pattern of chunk `chunk` of the block
/// with pattern `seed` (only as many words as the block needs: small blocks stay cheap).
fn pattern_chunk(seed: u64, chunk: usize, buf: &mut [u64; CHUNK_WORDS], words: usize) {
    let mut w = seed ^ (chunk as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    for slot in &mut buf[..words] {
        // A Weyl sequence with a final xor-shift: every word differs, every byte moves.
        w = w.wrapping_add(0x9E37_79B9_7F4A_7C15);
        *slot = w ^ (w >> 29);
    }
}

fn as_bytes(buf: &[u64; CHUNK_WORDS]) -> &[u8] {
    // SAFETY: `buf` is `CHUNK` initialised bytes, `u8` has no alignment or validity
    // requirement, and the returned slice borrows `buf`.
    unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), CHUNK) }
}

/// Fills `len` bytes at `ptr` with the pattern of (`addr`, `size`).
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes.
unsafe fn fill(ptr: *mut u8, addr: usize, size: usize, len: usize) {
    let seed = pattern_seed(addr, size);
    let mut buf = [0u64; CHUNK_WORDS];
    let mut off = 0;
    while off < len {
        let n = CHUNK.min(len - off);
        pattern_chunk(seed, off / CHUNK, &mut buf, n.div_ceil(8));
        // SAFETY: `off + n <= len` bytes at `ptr` are writable (caller), the source is
        // the local buffer, so the ranges cannot overlap.
        unsafe { std::ptr::copy_nonoverlapping(as_bytes(&buf).as_ptr(), ptr.add(off), n) };
        off += n;
    }
}

/// Checks that `len` bytes at `ptr` hold the pattern of (`addr`, `size`).
/// Returns the first offset that differs.
///
/// # Safety
/// `ptr` must be valid for reads of `len` bytes.
unsafe fn find_mismatch(ptr: *const u8, addr: usize, size: usize, len: usize) -> Option<usize> {
    let seed = pattern_seed(addr, size);
    let mut buf = [0u64; CHUNK_WORDS];
    let mut off = 0;
    while off < len {
        let n = CHUNK.min(len - off);
        pattern_chunk(seed, off / CHUNK, &mut buf, n.div_ceil(8));
        // SAFETY: `off + n <= len` bytes at `ptr` are readable (caller) and initialised
        // (written by `fill` or copied by realloc).
        let got = unsafe { std::slice::from_raw_parts(ptr.add(off), n) };
        let want = &as_bytes(&buf)[..n];
        if got != want {
            let i = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
            return Some(off + i);
        }
        off += n;
    }
    None
}

/// What a failure message needs to be reproduced.
#[derive(Clone, Copy)]
struct Ctx {
    seed: u64,
    threads: usize,
    thread: usize,
    op: usize,
}

impl std::fmt::Display for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {:#x}, {} threads, thread {}, op {}",
            self.seed, self.threads, self.thread, self.op
        )
    }
}

/// Checks the whole pattern of a live block.
fn check(b: &Block, ctx: Ctx, what: &str) {
    let size = b.layout.size();
    // SAFETY: `b` is live and owns `size` initialised bytes at `addr`.
    if let Some(off) = unsafe { find_mismatch(b.addr as *const u8, b.addr, size, size) } {
        panic!(
            "{what}: pattern broken at offset {off} of block {:#x} (size {size}, align {}); {ctx}",
            b.addr,
            b.layout.align()
        );
    }
}

fn random_layout(rng: &mut Rng) -> Layout {
    // Per mille: 90% small, 9.5% medium, 0.5% large.
    let p = rng.range(0, 999);
    let size = if p < 900 {
        rng.range(1, 2048)
    } else if p < 995 {
        rng.range(2049, 256 << 10)
    } else {
        rng.range((256 << 10) + 1, 4 << 20)
    };
    Layout::from_size_align(size, random_align(rng)).expect("valid layout")
}

fn random_align(rng: &mut Rng) -> usize {
    let p = rng.percent();
    let shift = if p < 70 {
        rng.range(0, 4) // 1..=16
    } else if p < 95 {
        rng.range(5, 9) // 32..=512
    } else {
        rng.range(10, 12) // 1024..=4096
    };
    1 << shift
}

/// The offset of the first non-zero byte (compared a page at a time: fast in debug builds).
fn first_nonzero(bytes: &[u8]) -> Option<usize> {
    static ZERO: [u8; 4096] = [0; 4096];
    for (c, chunk) in bytes.chunks(ZERO.len()).enumerate() {
        if chunk != &ZERO[..chunk.len()] {
            let i = chunk.iter().position(|&x| x != 0).unwrap_or(0);
            return Some(c * ZERO.len() + i);
        }
    }
    None
}

fn new_block(rng: &mut Rng, ctx: Ctx) -> Block {
    let layout = random_layout(rng);
    let zeroed = rng.percent() < 20;
    let ptr = if zeroed {
        // SAFETY: `layout` has a non-zero size.
        unsafe { GLOBAL.alloc_zeroed(layout) }
    } else {
        // SAFETY: `layout` has a non-zero size.
        unsafe { GLOBAL.alloc(layout) }
    };
    assert!(!ptr.is_null(), "alloc({layout:?}) returned null; {ctx}");
    assert_eq!(
        ptr as usize % layout.align(),
        0,
        "alloc({layout:?}) misaligned; {ctx}"
    );
    if zeroed {
        // SAFETY: the block is live with `layout.size()` bytes, zeroed by alloc_zeroed.
        let bytes = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
        if let Some(off) = first_nonzero(bytes) {
            panic!("alloc_zeroed({layout:?}) byte {off} is not zero; {ctx}");
        }
    }
    // SAFETY: the block is live and has `layout.size()` writable bytes.
    unsafe { fill(ptr, ptr as usize, layout.size(), layout.size()) };
    Block {
        addr: ptr as usize,
        layout,
    }
}

fn free_block(b: Block, ctx: Ctx) {
    check(&b, ctx, "before free");
    // SAFETY: `b` was returned by GLOBAL with `b.layout` and is freed exactly once here.
    unsafe { GLOBAL.dealloc(b.addr as *mut u8, b.layout) };
}

fn realloc_block(b: &mut Block, rng: &mut Rng, ctx: Ctx) {
    check(b, ctx, "before realloc");
    let new_size = random_layout(rng).size();
    let old_size = b.layout.size();
    // SAFETY: `b` is live, allocated by GLOBAL with `b.layout`; `new_size > 0` and
    // rounding it up to the alignment (<= 4096) cannot overflow isize.
    let p = unsafe { GLOBAL.realloc(b.addr as *mut u8, b.layout, new_size) };
    assert!(
        !p.is_null(),
        "realloc({:#x}, {:?} -> {new_size}) returned null; {ctx}",
        b.addr,
        b.layout
    );
    assert_eq!(
        p as usize % b.layout.align(),
        0,
        "realloc misaligned; {ctx}"
    );
    let kept = old_size.min(new_size);
    // SAFETY: the new block is live with at least `kept` bytes copied from the old one.
    if let Some(off) = unsafe { find_mismatch(p, b.addr, old_size, kept) } {
        panic!(
            "realloc {:#x} -> {:#x} ({old_size} -> {new_size}, align {}): moved content differs at offset {off}; {ctx}",
            b.addr,
            p as usize,
            b.layout.align()
        );
    }
    // SAFETY: the new block is live with `new_size` writable bytes.
    unsafe { fill(p, p as usize, new_size, new_size) };
    b.addr = p as usize;
    b.layout = Layout::from_size_align(new_size, b.layout.align()).expect("valid layout");
}

/// The body of one worker thread. Returns its own receiver so that blocks still in
/// flight when the workers stop can be checked and freed by the caller.
fn worker(
    ctx0: Ctx,
    ops: usize,
    next: Sender<Block>,
    inbox: Receiver<Block>,
    pool: Arc<Mutex<Vec<Block>>>,
) -> Receiver<Block> {
    let mut rng = Rng::new(ctx0.seed ^ (ctx0.thread as u64 + 1).wrapping_mul(0x9E37_79B9));
    let mut live: Vec<Block> = Vec::with_capacity(1024);
    for op in 0..ops {
        let ctx = Ctx { op, ..ctx0 };
        // Adopt whatever other threads handed to us; check it on arrival.
        while let Ok(b) = inbox.try_recv() {
            check(&b, ctx, "received over channel");
            live.push(b);
        }
        let p = rng.percent();
        // Keep the live set bounded: past 512 blocks, free instead of allocating.
        if live.is_empty() || (p < 40 && live.len() < 512) {
            let b = new_block(&mut rng, ctx);
            live.push(b);
        } else if p < 65 {
            let i = rng.range(0, live.len() - 1);
            free_block(live.swap_remove(i), ctx);
        } else if p < 80 {
            let i = rng.range(0, live.len() - 1);
            realloc_block(&mut live[i], &mut rng, ctx);
        } else if p < 90 {
            let i = rng.range(0, live.len() - 1);
            let b = live.swap_remove(i);
            // The ring may already be closed when the receiver's thread finished early;
            // then the block comes back and is freed here.
            if let Err(e) = next.send(b) {
                free_block(e.0, ctx);
            }
        } else if p < 95 {
            let i = rng.range(0, live.len() - 1);
            let b = live.swap_remove(i);
            pool.lock().unwrap().push(b);
        } else {
            let taken = pool.lock().unwrap().pop();
            if let Some(b) = taken {
                check(&b, ctx, "taken from shared pool");
                if rng.percent() < 50 {
                    free_block(b, ctx);
                } else {
                    live.push(b);
                }
            }
        }
    }
    let ctx = Ctx { op: ops, ..ctx0 };
    for b in live.drain(..) {
        free_block(b, ctx);
    }
    inbox
}

fn run(threads: usize, ops: usize, seed: u64) {
    println!("random_ops: {threads} threads, {ops} ops each, seed {seed:#x}");
    let pool: Arc<Mutex<Vec<Block>>> = Arc::new(Mutex::new(Vec::new()));
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..threads).map(|_| channel()).unzip();
    let mut handles = Vec::new();
    for (t, inbox) in receivers.into_iter().enumerate() {
        let next = senders[(t + 1) % threads].clone();
        let pool = Arc::clone(&pool);
        let ctx = Ctx {
            seed,
            threads,
            thread: t,
            op: 0,
        };
        handles.push(
            thread::Builder::new()
                .name(format!("random-ops-{t}"))
                .spawn(move || worker(ctx, ops, next, inbox, pool))
                .expect("spawn"),
        );
    }
    drop(senders);
    let mut inboxes = Vec::new();
    let mut failed = None;
    for (t, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(inbox) => inboxes.push(inbox),
            Err(_) => failed = Some(t),
        }
    }
    if let Some(t) = failed {
        panic!("random_ops worker {t} failed; seed {seed:#x}, {threads} threads");
    }
    // Blocks still in flight: freed by this (a different) thread.
    let ctx = Ctx {
        seed,
        threads,
        thread: usize::MAX,
        op: ops,
    };
    for inbox in inboxes {
        for b in inbox.try_iter() {
            free_block(b, ctx);
        }
    }
    let rest = std::mem::take(&mut *pool.lock().unwrap());
    for b in rest {
        free_block(b, ctx);
    }
}

#[test]
fn random_ops_1_thread() {
    run(1, 80_000, 0x0001_5EED_0000_0001);
}

#[test]
fn random_ops_2_threads() {
    run(2, 40_000, 0x0002_5EED_0000_0002);
}

#[test]
fn random_ops_4_threads() {
    run(4, 20_000, 0x0004_5EED_0000_0004);
}

#[test]
fn random_ops_8_threads() {
    run(8, 10_000, 0x0008_5EED_0000_0008);
}
