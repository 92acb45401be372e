//! `GroupAlloc`: an `allocator_api2` allocator that charges one group,
//! whichever group the calling thread is in (feature `allocator-api2`).

use crate::enter::{switch_to, try_switch_to};
use crate::group::Group;
use allocator_api2::alloc::{AllocError, Allocator};
use core::alloc::Layout;
use core::ptr::{self, NonNull};

/// An [`Allocator`] that charges everything it allocates to one group, so
/// a host can charge one collection to a tenant without entering the
/// tenant's group:
///
/// ```
/// # #[global_allocator]
/// # static GLOBAL: memcg_alloc::SlabAlloc = memcg_alloc::SlabAlloc::new();
/// # use memcg_scope::Group;
/// # fn main() {
/// let a = Group::new("group-alloc-doc");
/// let mut v = allocator_api2::vec::Vec::new_in(a.allocator());
/// v.extend_from_slice(&[0u8; 1 << 20]);
/// assert!(a.current() >= 1 << 20);
/// assert!(memcg_scope::current().is_root()); // the caller never left its group
/// # }
/// ```
///
/// (`hashbrown::HashMap::new_in(a.allocator())` works the same, with
/// hashbrown's `allocator-api2` feature.)
///
/// Each `allocate`, `grow` and `shrink` switches the calling thread to the
/// group for the one call to the global allocator and back (the switch
/// [`Group::enter`] makes: O(1) whatever the number of groups); the
/// thread's own group is left as it was, also when the call fails. Only
/// the collection's own buffer is charged this way: what its elements
/// allocate themselves (a `String` key's bytes) goes to the group the
/// thread is in. `deallocate` is a plain free, credited to the group that
/// owns the block whichever thread frees it, so the collection may be
/// dropped or shrunk anywhere.
///
/// Charging happens only when [`SlabAlloc`](memcg_alloc::SlabAlloc) is the
/// global allocator (`GroupAlloc` allocates through the global allocator);
/// with another one the code builds and runs, and nothing is charged.
///
/// # Limits
///
/// The group's [`OnExceed`](crate::OnExceed) policy decides, as for code
/// running in the group:
///
/// - under `Fail`, a refused allocation returns `Err(AllocError)`: the
///   collection's `try_reserve` gets an error, while its infallible
///   methods (`insert`, `push`) abort the process, as for any failed
///   allocation;
/// - under `Report` (the default), the allocation succeeds and the group is
///   marked over its limit for [`check`](crate::check) and
///   [`Group::run`].
///
/// This allocator is not always fallible: most collection methods are
/// infallible, and failing them under `Report` would turn a reported
/// exceed into an abort. To make one call strict whatever the policy,
/// make it inside [`fallible`](crate::fallible) on the calling thread:
/// `memcg::fallible(|| map.try_reserve(n))` gets `Err` past the limit
/// (beyond what this thread's reserve for the group still holds, the
/// stated slack).
///
/// A `GroupAlloc` holds a handle on its group, so the group lives at least
/// as long as the collection; it is cheap to clone (a reference count).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupAlloc {
    group: Group,
}

impl Group {
    /// An allocator that charges this group: see [`GroupAlloc`].
    pub fn allocator(&self) -> GroupAlloc {
        GroupAlloc::new(self)
    }
}

impl GroupAlloc {
    /// An allocator charging `group` (the same as [`Group::allocator`]).
    pub fn new(group: &Group) -> Self {
        GroupAlloc {
            group: group.clone(),
        }
    }

    /// The group charged.
    pub fn group(&self) -> &Group {
        &self.group
    }

    /// Runs `f` (one call to the global allocator, which never unwinds)
    /// with the thread switched to the group; `None` when the thread could
    /// not be switched (out of memory for its cache record), in which case
    /// nothing ran and the thread is where it was.
    fn charged<R>(&self, f: impl FnOnce() -> R) -> Option<R> {
        let target = (!self.group.is_root()).then(|| self.group.clone());
        let prev = try_switch_to(target).ok()?;
        // Restores on every path out, unwinding included (there is none:
        // `f` calls the global allocator, which must not unwind).
        struct Restore(Option<Option<Group>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                if let Some(prev) = self.0.take() {
                    // The handle returned is this allocator's group (still
                    // held by `self`): never the last one.
                    drop(switch_to(prev));
                }
            }
        }
        let _restore = Restore(Some(prev));
        Some(f())
    }
}

/// A non-null pointer aligned to `align` for a zero-sized block.
fn dangling(align: usize) -> NonNull<u8> {
    // SAFETY: a layout's alignment is a non-zero power of two.
    unsafe { NonNull::new_unchecked(ptr::without_provenance_mut(align)) }
}

fn block(p: *mut u8, size: usize) -> Result<NonNull<[u8]>, AllocError> {
    let p = NonNull::new(p).ok_or(AllocError)?;
    Ok(NonNull::slice_from_raw_parts(p, size))
}

impl GroupAlloc {
    fn alloc_impl(&self, layout: Layout, zeroed: bool) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(NonNull::slice_from_raw_parts(dangling(layout.align()), 0));
        }
        let p = self
            .charged(|| {
                // SAFETY: the layout's size is non-zero (checked above).
                unsafe {
                    if zeroed {
                        std::alloc::alloc_zeroed(layout)
                    } else {
                        std::alloc::alloc(layout)
                    }
                }
            })
            .ok_or(AllocError)?;
        block(p, layout.size())
    }

    /// Moves a block to `new_layout`: in place or by `realloc` when the
    /// alignment stays, else by a new block and a copy. The new block is
    /// charged to the group; the old one's charge goes back to its owner.
    ///
    /// # Safety
    /// `ptr` is a block of this allocator (or of one charging any group:
    /// all allocate through the global allocator) that fits `old`, and
    /// `new_layout.size()` is non-zero.
    unsafe fn realloc_impl(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if old.size() == 0 {
            return self.alloc_impl(new_layout, false);
        }
        let p = if old.align() == new_layout.align() {
            self.charged(|| {
                // SAFETY: the caller's contract; the alignment is unchanged
                // and the new size is non-zero. On null the old block is
                // left as it was.
                unsafe { std::alloc::realloc(ptr.as_ptr(), old, new_layout.size()) }
            })
            .ok_or(AllocError)?
        } else {
            let new = self.alloc_impl(new_layout, false)?;
            // SAFETY: both blocks are live and distinct; the copy stays
            // within the smaller of the two; the old block fits `old`.
            unsafe {
                ptr::copy_nonoverlapping(
                    ptr.as_ptr(),
                    new.cast::<u8>().as_ptr(),
                    old.size().min(new_layout.size()),
                );
                std::alloc::dealloc(ptr.as_ptr(), old);
            }
            new.cast::<u8>().as_ptr()
        };
        block(p, new_layout.size())
    }
}

// SAFETY: blocks come from the global allocator (through `std::alloc`) with
// the layout asked for, or are dangling and zero-sized; they stay valid
// until deallocated, across clones and moves of the allocator (every
// `GroupAlloc` frees through the same global allocator, so any one may free
// another's blocks). No method unwinds: the global allocator must not, and
// the group switch around it never panics.
unsafe impl Allocator for GroupAlloc {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.alloc_impl(layout, false)
    }

    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.alloc_impl(layout, true)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: the caller passes a live block of ours that fits
            // `layout`: a block of the global allocator with this layout.
            unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) }
        }
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller passes a live block of ours fitting
        // `old_layout`, and `new_layout.size() >= old_layout.size()`; a new
        // size of 0 means an old size of 0, which allocates afresh.
        unsafe { self.realloc_impl(ptr, old_layout, new_layout) }
    }

    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: as in `grow`.
        let new = unsafe { self.realloc_impl(ptr, old_layout, new_layout)? };
        // SAFETY: the new block holds `new_layout.size()` bytes, of which
        // the first `old_layout.size()` were copied; the rest are zeroed.
        unsafe {
            ptr::write_bytes(
                new.cast::<u8>().as_ptr().add(old_layout.size()),
                0,
                new_layout.size() - old_layout.size(),
            );
        }
        Ok(new)
    }

    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if new_layout.size() == 0 {
            // SAFETY: the caller passes a live block of ours fitting
            // `old_layout`.
            unsafe { self.deallocate(ptr, old_layout) };
            return Ok(NonNull::slice_from_raw_parts(
                dangling(new_layout.align()),
                0,
            ));
        }
        // SAFETY: the caller passes a live block of ours fitting
        // `old_layout`; the new size is non-zero (checked above).
        unsafe { self.realloc_impl(ptr, old_layout, new_layout) }
    }
}
