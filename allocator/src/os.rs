//! The one door to the kernel: mappings, purging, the clock.
//!
//! Every function here returns null or `false` on failure instead of panicking;
//! nothing here allocates through the global allocator.

use core::ptr::null_mut;

/// The base page size the allocator works with. Checked against the kernel's
/// at first use (see [`page_size_ok`]).
pub const PAGE_SIZE: usize = 4096;

/// Whether the kernel's page size matches [`PAGE_SIZE`].
pub fn page_size_ok() -> bool {
    // SAFETY: sysconf has no preconditions.
    let sz = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    sz == PAGE_SIZE as libc::c_long
}

/// Maps `size` bytes of fresh zeroed read-write memory; null on failure.
/// No `MAP_NORESERVE`: the kernel's overcommit check then refuses requests
/// no machine could back, so they fail here instead of faulting later.
pub fn map(size: usize) -> *mut u8 {
    if size == 0 || size > isize::MAX as usize {
        return null_mut();
    }
    // SAFETY: an anonymous private mapping with no fixed address cannot
    // clobber existing memory; the result is checked for MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        null_mut()
    } else {
        p.cast()
    }
}

/// Maps `size` bytes aligned to `align` (a power of two, at least a page);
/// returns the aligned start, or null on failure. `size` must be page-rounded.
pub fn map_aligned(size: usize, align: usize) -> *mut u8 {
    let Some(total) = size.checked_add(align - PAGE_SIZE) else {
        return null_mut();
    };
    let base = map(total);
    if base.is_null() {
        return null_mut();
    }
    let start = base as usize;
    let aligned = (start + align - 1) & !(align - 1);
    let head = aligned - start;
    let tail = total - head - size;
    // SAFETY: both ranges lie inside the mapping just made and are page-aligned
    // (start, aligned, size and total are page multiples).
    unsafe {
        if head != 0 {
            unmap(base, head);
        }
        if tail != 0 {
            unmap((aligned + size) as *mut u8, tail);
        }
    }
    aligned as *mut u8
}

/// Unmaps a range.
///
/// # Safety
/// The range must be a page-aligned part of a mapping made here that no live
/// object uses.
pub unsafe fn unmap(p: *mut u8, size: usize) {
    // SAFETY: the caller guarantees the range is ours and unused.
    unsafe {
        libc::munmap(p.cast(), size);
    }
}

/// Gives the physical pages of a range back to the kernel; the range stays
/// mapped and reads back as zeros.
///
/// # Safety
/// The range must be page-aligned, ours and hold no live object.
pub unsafe fn decommit(p: *mut u8, size: usize) {
    #[cfg(test)]
    DECOMMIT_CALLS.with(|c| c.set(c.get() + 1));
    // SAFETY: the caller guarantees the range is ours and unused;
    // MADV_DONTNEED on a private anonymous mapping zero-fills on next touch.
    unsafe {
        libc::madvise(p.cast(), size, libc::MADV_DONTNEED);
    }
}

#[cfg(test)]
std::thread_local! {
    /// Calls to [`decommit`] made by this thread (tests count system calls).
    pub static DECOMMIT_CALLS: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
}

/// Grows or shrinks a mapping in place; `false` when it cannot.
///
/// # Safety
/// `p..p+old` must be a whole mapping made here.
pub unsafe fn remap_in_place(p: *mut u8, old: usize, new: usize) -> bool {
    // SAFETY: the caller guarantees the mapping; without MREMAP_MAYMOVE the
    // kernel either resizes in place or fails.
    let r = unsafe { libc::mremap(p.cast(), old, new, 0) };
    r != libc::MAP_FAILED
}

/// Moves a mapping onto `dst` (which must be a mapping of `new` bytes made
/// here, replaced atomically); `false` on failure, in which case both stay.
///
/// # Safety
/// `p..p+old` must be a whole mapping made here, `dst..dst+new` a reserved one.
pub unsafe fn remap_to(p: *mut u8, old: usize, new: usize, dst: *mut u8) -> bool {
    // SAFETY: the caller guarantees both ranges are ours; MREMAP_FIXED
    // replaces the reservation at `dst` only.
    let r = unsafe {
        libc::mremap(
            p.cast(),
            old,
            new,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            dst.cast::<libc::c_void>(),
        )
    };
    r != libc::MAP_FAILED
}

/// A coarse monotonic clock in milliseconds (vDSO, no system call).
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts);
    }
    (ts.tv_sec as u64) * 1000 + (ts.tv_nsec as u64) / 1_000_000
}

/// Writes a message to stderr without allocating, then aborts.
pub fn fatal(msg: &str) -> ! {
    // SAFETY: writing a valid buffer to fd 2; abort never returns.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::abort()
    }
}

/// Registers fork handlers (`pthread_atfork`); false when it fails.
pub fn at_fork(
    prepare: unsafe extern "C" fn(),
    parent: unsafe extern "C" fn(),
    child: unsafe extern "C" fn(),
) -> bool {
    // SAFETY: the handlers are plain functions that never unwind.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) == 0 }
}

/// Writes `bytes` to stderr without allocating (a short write is left
/// short: these are diagnostics).
pub fn write_stderr(bytes: &[u8]) {
    // SAFETY: writing a valid buffer to fd 2.
    unsafe {
        libc::write(2, bytes.as_ptr().cast(), bytes.len());
    }
}

/// A line of text built on the stack for [`write_stderr`]: what does not
/// fit is cut, so formatting into it never fails and never allocates.
pub struct Line {
    buf: [u8; Line::CAP],
    len: usize,
}

impl Line {
    /// Bytes a line holds.
    pub const CAP: usize = 512;

    /// An empty line.
    pub const fn new() -> Self {
        Line {
            buf: [0; Line::CAP],
            len: 0,
        }
    }

    /// Appends what fits of `bytes`.
    pub fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(Line::CAP - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    /// Ends the line with a newline, over its last byte when it is full.
    pub fn end(&mut self) {
        if self.len == Line::CAP {
            self.len -= 1;
        }
        self.push(b"\n");
    }

    /// The text so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl core::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

/// Registers `f` to run at process exit (`atexit`); false when it fails.
pub fn at_exit(f: extern "C" fn()) -> bool {
    // SAFETY: `f` is a plain function that never unwinds (an `extern "C"`
    // function aborts rather than unwind).
    unsafe { libc::atexit(f) == 0 }
}
