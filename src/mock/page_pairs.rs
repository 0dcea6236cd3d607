//! The mock's Dynamic PAMT bookkeeping, sparse: each 2 MiB range's page pair, which pages are
//! PAMT pages, and which 4 KiB pages of a range are in use (a 512-bit set per range that has
//! any).

use alloc::collections::BTreeMap;

use bitvec::BitArr;
use bitvec::order::Lsb0;

use crate::addr::{SZ_2M, SZ_4K, align_down};

/// A 2 MiB range's PAMT pages: RDX and R8 of the PAMT.ADD that supplied them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pair {
    pub(crate) page0: u64,
    pub(crate) page1: u64,
}

/// One bit per 4 KiB page of a 2 MiB range.
type RangeBits = BitArr!(for 512, in u64, Lsb0);

/// The Dynamic PAMT state, sparse.
#[derive(Clone, Debug, Default)]
pub(crate) struct PamtPages {
    /// 2 MiB range base → its pair.
    pub(crate) pairs: BTreeMap<u64, Pair>,
    /// PAMT page → the 2 MiB range it backs (the bitmap bits PAMT.ADD set).
    pub(crate) pages: BTreeMap<u64, u64>,
    /// 2 MiB range base → its 4 KiB pages in use (only ranges with at least one).
    in_use: BTreeMap<u64, RangeBits>,
}

/// The 2 MiB range of a page and the page's index in it.
fn split(pa: u64) -> (u64, usize) {
    (align_down(pa, SZ_2M), ((pa % SZ_2M) / SZ_4K) as usize)
}

impl PamtPages {
    /// Whether the 4 KiB page at `pa` is in use.
    pub(crate) fn page_in_use(&self, pa: u64) -> bool {
        let (range, bit) = split(pa);
        self.in_use.get(&range).is_some_and(|b| b[bit])
    }

    /// Whether any 4 KiB page of the 2 MiB range at `range` is in use.
    pub(crate) fn range_in_use(&self, range: u64) -> bool {
        self.in_use.contains_key(&range)
    }

    /// Takes the page at `pa` into use; `false` if it already was.
    pub(crate) fn take_page(&mut self, pa: u64) -> bool {
        let (range, bit) = split(pa);
        let bits = self.in_use.entry(range).or_insert(RangeBits::ZERO);
        !bits.replace(bit, true)
    }

    /// Releases the page at `pa`; whether it was in use.
    pub(crate) fn free_page(&mut self, pa: u64) -> bool {
        let (range, bit) = split(pa);
        let Some(bits) = self.in_use.get_mut(&range) else {
            return false;
        };
        let was = bits.replace(bit, false);
        if bits.not_any() {
            self.in_use.remove(&range);
        }
        was
    }

    /// 4 KiB pages in use over all ranges.
    pub(crate) fn pages_in_use(&self) -> u64 {
        self.in_use.values().map(|b| b.count_ones() as u64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_taken_and_freed_one_bit_each() {
        let mut p = PamtPages::default();
        let base = 7 * SZ_2M;
        assert!(p.take_page(base + 511 * SZ_4K));
        assert!(!p.take_page(base + 511 * SZ_4K));
        assert!(p.take_page(base));
        assert!(p.page_in_use(base) && !p.page_in_use(base + SZ_4K));
        assert_eq!(p.pages_in_use(), 2);
        assert!(p.free_page(base));
        assert!(p.range_in_use(base));
        assert!(p.free_page(base + 511 * SZ_4K));
        assert!(!p.range_in_use(base), "an empty range leaves the map");
        assert!(!p.free_page(base));
        assert_eq!(p.pages_in_use(), 0);
    }
}
