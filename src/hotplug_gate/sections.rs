//! The section bitmap: a fast path of the initialized check for memory that lies in sections
//! wholly inside the frozen TDX memory.
//!
//! A fixed number of `[AtomicU64]` words is allocated with the gate; `publish` picks the
//! smallest power-of-two section (at least 2 MiB) for which the bits span the frozen memory,
//! and sets the bit of every section that frozen memory covers whole. A query whose sections
//! (at most two words of them) all have their bit set is admitted without the search; every
//! other query, and every refusal, takes the search. Memory and time stay constant whatever
//! the address space spans: a wider span only makes the sections coarser (so fewer queries hit).
//!
//! Written once like the snapshot (Relaxed stores before the Release to initialized), read
//! with Relaxed loads after the Acquire of the state word.

use alloc::boxed::Box;

use bitvec::order::Lsb0;
use bitvec::vec::BitVec;

use super::sync::{AtomicU32, AtomicU64, Ordering};
use crate::addr::PhysRange;

/// Smallest section: 2 MiB (shift 21).
const MIN_SHIFT: u32 = 21;

pub(crate) struct SectionBitmap {
    words: Box<[AtomicU64]>,
    /// First byte of section 0.
    base: AtomicU64,
    /// log2 of the section size; 0 while no bitmap is published (fast path off).
    shift: AtomicU32,
}

impl SectionBitmap {
    pub(crate) fn new(words: usize) -> Self {
        SectionBitmap {
            words: (0..words).map(|_| AtomicU64::new(0)).collect(),
            base: AtomicU64::new(0),
            shift: AtomicU32::new(0),
        }
    }

    pub(crate) fn words(&self) -> usize {
        self.words.len()
    }

    /// Sets the bits of the sections `ranges` (sorted, disjoint) cover whole. Called once, by
    /// the initialization ticket's holder, before the Release to initialized.
    pub(crate) fn write(&self, ranges: &[PhysRange]) {
        let bits = (self.words.len() as u64).saturating_mul(64);
        let (Some(first), Some(last)) = (ranges.first(), ranges.last()) else {
            return;
        };
        if bits == 0 {
            return;
        }
        // The smallest section size whose bits reach from the first range to the last.
        let Some(shift) = (MIN_SHIFT..64).find(|&s| {
            let base = first.start() & !((1u64 << s) - 1);
            (last.end() - base).div_ceil(1u64 << s) <= bits
        }) else {
            return;
        };
        let size = 1u64 << shift;
        let base = first.start() & !(size - 1);
        // Built as a plain bitset, then published word by word into the atomics readers use.
        let mut local: BitVec<u64, Lsb0> = BitVec::repeat(false, bits as usize);
        for r in ranges {
            // Sections wholly inside r: [ceil(start), floor(end)), clipped to the bitmap.
            let lo = ((r.start() - base).div_ceil(size) as usize).min(local.len());
            let hi = (((r.end() - base) >> shift) as usize).clamp(lo, local.len());
            local[lo..hi].fill(true);
        }
        for (slot, &w) in self.words.iter().zip(local.as_raw_slice()) {
            slot.store(w, Ordering::Relaxed);
        }
        self.base.store(base, Ordering::Relaxed);
        self.shift.store(shift, Ordering::Relaxed);
    }

    /// Whether every section `range` (non-empty) touches is covered whole; `false` also when
    /// the answer would take more than two words (the caller then searches).
    #[inline]
    pub(crate) fn covers(&self, range: PhysRange) -> bool {
        let shift = self.shift.load(Ordering::Relaxed);
        if shift == 0 {
            return false;
        }
        let Some(off) = range.start().checked_sub(self.base.load(Ordering::Relaxed)) else {
            return false;
        };
        let first = off >> shift;
        let last = (off + (range.size() - 1)) >> shift;
        let word = |w: u64| {
            self.words
                .get(w as usize)
                .map_or(0, |x| x.load(Ordering::Relaxed))
        };
        let (w0, w1) = (first / 64, last / 64);
        let low = u64::MAX << (first % 64);
        let high = u64::MAX >> (63 - last % 64);
        if w0 == w1 {
            let m = low & high;
            word(w0) & m == m
        } else {
            w1 == w0 + 1 && word(w0) & low == low && word(w1) & high == high
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn r(s: u64, e: u64) -> PhysRange {
        PhysRange::new(s, e).unwrap()
    }

    const M: u64 = 1 << 20;

    #[test]
    fn only_sections_covered_whole_are_set() {
        let b = SectionBitmap::new(1); // 64 sections
        b.write(&[r(3 * M, 9 * M), r(16 * M, 64 * M)]);
        // 64 sections of 2 MiB reach from 2 MiB to 130 MiB: sections of 2 MiB.
        assert_eq!(b.shift.load(Ordering::Relaxed), 21);
        assert!(b.covers(r(4 * M, 8 * M)));
        assert!(!b.covers(r(3 * M, 4 * M)), "[2M, 4M) is not covered whole");
        assert!(!b.covers(r(8 * M, 10 * M)));
        assert!(b.covers(r(16 * M, 64 * M)));
        assert!(b.covers(r(20 * M + 0x1000, 20 * M + 0x2000)));
        assert!(!b.covers(r(62 * M, 66 * M)));
        assert!(!b.covers(r(0, M)));
        assert!(!b.covers(r(200 * M, 202 * M)));
    }

    #[test]
    fn a_wide_span_makes_sections_coarser_and_never_wrong() {
        let b = SectionBitmap::new(1);
        let g = 1u64 << 30;
        b.write(&[r(0, 100 * g), r(1000 * g + M, 1100 * g)]);
        let shift = b.shift.load(Ordering::Relaxed);
        assert!((1100 * g).div_ceil(1 << shift) <= 64);
        assert!(b.covers(r(0, 16 * g)));
        assert!(!b.covers(r(99 * g, 101 * g)));
        assert!(!b.covers(r(1000 * g, 1000 * g + 2 * M)));
        // Three words would be needed on a one-word bitmap: no fast path, no wrong answer.
        let none = SectionBitmap::new(0);
        none.write(&[r(0, g)]);
        assert!(!none.covers(r(0, M)));
    }
}
