//! A small deterministic generator (xorshift64*), so every allocator sees the
//! same sequence of sizes and choices.

/// xorshift64* with a fixed seed per thread.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from `seed` (any value; 0 is remapped).
    pub fn new(seed: u64) -> Rng {
        let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED_1602_0000_1024);
        if r.0 == 0 {
            r.0 = 1;
        }
        r.next_u64();
        r
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0; the tiny modulo bias does not matter here).
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 11) % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    #[inline]
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// A size in `lo..=hi` skewed towards small values (uniform in log2),
    /// the shape of real programs' request sizes.
    #[inline]
    pub fn log_size(&mut self, lo: usize, hi: usize) -> usize {
        let bits_lo = usize::BITS - lo.leading_zeros();
        let bits_hi = usize::BITS - hi.leading_zeros();
        let b = self.range(bits_lo as usize, bits_hi as usize) as u32;
        let top = (1usize << b).min(hi + 1);
        let bottom = (1usize << (b - 1)).max(lo);
        if top <= bottom {
            return bottom.min(hi);
        }
        self.range(bottom, top - 1)
    }

    /// True with probability `num / den`.
    #[inline]
    pub fn chance(&mut self, num: usize, den: usize) -> bool {
        self.below(den) < num
    }
}
