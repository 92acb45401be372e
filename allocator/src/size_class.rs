//! Size classes: which block size serves a request.
//!
//! Classes are multiples of 8 up to 64 bytes, then four per doubling
//! (80, 96, 112, 128, 160, ...) up to [`MAX_SMALL`]. A request of `n` bytes
//! gets the smallest class `>= n`, so the internal waste is below 8 bytes for
//! requests up to 64 bytes and below 20% of the block (25% of the request)
//! above that. Larger requests are large blocks, mapped directly.

/// The largest request served from slabs.
pub const MAX_SMALL: usize = 128 * 1024;
/// The largest alignment served from slabs; larger alignments go large.
pub const MAX_SMALL_ALIGN: usize = 4096;
/// How many size classes there are.
pub const NUM_CLASSES: usize = 52;

const fn compute_size(class: usize) -> usize {
    if class < 8 {
        (class + 1) * 8
    } else {
        let k = (class - 8) / 4; // doubling index: base 64 << k
        let i = (class - 8) % 4;
        let p = 64usize << k;
        p + (i + 1) * (p >> 2)
    }
}

const fn compute_class(size: usize) -> usize {
    if size <= 64 {
        if size == 0 {
            0
        } else {
            size.div_ceil(8) - 1
        }
    } else {
        let s = size - 1;
        let log = (usize::BITS - 1 - s.leading_zeros()) as usize; // floor(log2 s) >= 6
        let i = (s - (1 << log)) >> (log - 2);
        8 + (log - 6) * 4 + i
    }
}

const CLASS_SIZES: [u32; NUM_CLASSES] = {
    let mut t = [0u32; NUM_CLASSES];
    let mut c = 0;
    while c < NUM_CLASSES {
        t[c] = compute_size(c) as u32;
        c += 1;
    }
    t
};

/// Class of each size up to 1024, indexed by `(size + 7) / 8`.
const SMALL_LOOKUP: [u8; 129] = {
    let mut t = [0u8; 129];
    let mut i = 0;
    while i < 129 {
        t[i] = compute_class(i * 8) as u8;
        i += 1;
    }
    t
};

/// The block size of a class.
#[inline(always)]
pub const fn class_size(class: usize) -> usize {
    CLASS_SIZES[class] as usize
}

/// The class that serves `size` bytes with alignment at most 8.
/// `size` must be at most [`MAX_SMALL`].
#[inline(always)]
pub fn class_of(size: usize) -> usize {
    if size <= SMALL_LOOKUP_MAX {
        small_class(size)
    } else {
        compute_class(size)
    }
}

/// Sizes up to this take their class from a table.
pub const SMALL_LOOKUP_MAX: usize = 1024;

/// The class of a size of at most [`SMALL_LOOKUP_MAX`] (alignment at most 8).
#[inline(always)]
pub fn small_class(size: usize) -> usize {
    SMALL_LOOKUP[(size + 7) >> 3] as usize
}

/// The class for a request with any alignment, or `None` when it must be a
/// large block. Objects sit at multiples of their block size from a
/// slice-aligned slab start, so a class whose size is a multiple of `align`
/// gives aligned blocks; powers of two are classes, so one always exists.
#[inline]
pub fn class_for(size: usize, align: usize) -> Option<usize> {
    if align <= 8 {
        if size <= MAX_SMALL {
            return Some(class_of(size));
        }
        return None;
    }
    if align > MAX_SMALL_ALIGN || size > MAX_SMALL {
        return None;
    }
    let want = (size.max(align) + align - 1) & !(align - 1);
    if want > MAX_SMALL {
        return None;
    }
    let mut c = class_of(want);
    while class_size(c) % align != 0 {
        c += 1;
    }
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_increasing_and_end_at_max_small() {
        for c in 1..NUM_CLASSES {
            assert!(class_size(c) > class_size(c - 1));
        }
        assert_eq!(class_size(NUM_CLASSES - 1), MAX_SMALL);
        assert_eq!(compute_class(MAX_SMALL), NUM_CLASSES - 1);
    }

    #[test]
    fn every_size_gets_the_smallest_fitting_class_with_bounded_waste() {
        for size in 1..=MAX_SMALL {
            let c = class_of(size);
            let bs = class_size(c);
            assert!(bs >= size, "size {size} class {bs}");
            if c > 0 {
                assert!(class_size(c - 1) < size, "size {size} not smallest");
            }
            if size > 64 {
                assert!((bs - size) * 5 < bs, "waste too high at {size}");
            } else {
                assert!(bs - size < 8);
            }
        }
    }

    #[test]
    fn aligned_classes_are_multiples_of_the_alignment() {
        let mut align = 16;
        while align <= MAX_SMALL_ALIGN {
            for size in [1, 7, 16, 100, 1000, 5000, 70_000] {
                if let Some(c) = class_for(size, align) {
                    assert_eq!(class_size(c) % align, 0);
                    assert!(class_size(c) >= size);
                }
            }
            align *= 2;
        }
        assert_eq!(class_for(MAX_SMALL + 1, 1), None);
        assert_eq!(class_for(8, 8192), None);
    }
}
