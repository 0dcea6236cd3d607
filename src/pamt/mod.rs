//! PAMT (Physical Address Metadata Table) sizing and placement.
//!
//! [`sizes`] gives the bytes of each PAMT level for a TDMR; a [`PamtAllocator`] (the kernel's
//! contiguous allocator) or, offline, a model of it ([`BottomUpAllocator`], the order of Linux's
//! `alloc_contig_pages()`; [`TopDownAllocator`]) says where the blocks live; the planner's
//! docking (`dock.rs`) carves node-local blocks against reserved areas. The Dynamic PAMT pages
//! supplied at run time are [`crate::dpamt`]'s.

pub(crate) mod dock;
mod place;

pub use place::{BottomUpAllocator, PamtAllocator, PamtModel, TopDownAllocator};

pub(crate) use place::{BlockSource, FromAllocator};

use crate::addr::{PageSize, SZ_4K, align_up};
use crate::sysinfo::TdxLimits;

/// PAMT bytes per level for one TDMR, indexed by [`PageSize::index`] (4K, 2M, 1G).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PamtSizes(pub [u64; 3]);

impl PamtSizes {
    /// Bytes of one level.
    #[inline]
    pub fn level(&self, level: PageSize) -> u64 {
        self.0[level.index()]
    }

    /// Bytes over all three levels.
    #[inline]
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// PAMT sizes for a TDMR of `tdmr_size` bytes (a multiple of 1 GiB, below 2^52).
///
/// Each level is `round_up(tdmr_size / page_size * entry_size, 4 KiB)`. With Dynamic PAMT the
/// 4K level is the page bitmap, `round_up(ceil(pages * bits / 8), 4 KiB)`.
///
/// ```
/// use tdmr::addr::SZ_1G;
/// use tdmr::pamt::sizes;
/// use tdmr::sysinfo::TdxLimits;
/// let s = sizes(256 * SZ_1G, &TdxLimits::default());
/// assert_eq!(s.0, [1 << 30, 2 << 20, 4096]);
/// let d = sizes(SZ_1G, &TdxLimits::default().with_dynamic_pamt(1).unwrap());
/// assert_eq!(d.0, [32 << 10, 8 << 10, 4096]);
/// ```
pub fn sizes(tdmr_size: u64, limits: &TdxLimits) -> PamtSizes {
    let mut out = [0u64; 3];
    for level in PageSize::ALL {
        let pages = tdmr_size / level.bytes();
        let bytes = match (level, limits.dynamic_pamt_bits()) {
            (PageSize::Size4K, Some(bits)) => (pages * bits as u64).div_ceil(8),
            _ => pages * limits.pamt_entry_size(level),
        };
        // Below 2^52 of TDMR and with 16-bit entry sizes nothing here can overflow; saturate
        // rather than wrap should a caller pass more.
        out[level.index()] = align_up(bytes, SZ_4K).unwrap_or(!(SZ_4K - 1));
    }
    PamtSizes(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::SZ_1G;

    #[test]
    fn linux_published_totals() {
        // spr-1t: TDMRs of 2, 254, 256, 256, 256 GiB -> 4202516 KB (Linux dmesg).
        let l = TdxLimits::default();
        let total: u64 = [2u64, 254, 256, 256, 256]
            .iter()
            .map(|g| sizes(g * SZ_1G, &l).total())
            .sum();
        assert_eq!(total / 1024, 4202516);
    }

    #[test]
    fn level_1g_rounds_per_tdmr() {
        let l = TdxLimits::default();
        assert_eq!(sizes(257 * SZ_1G, &l).level(PageSize::Size1G), 8192);
        assert_eq!(sizes(SZ_1G, &l).level(PageSize::Size1G), 4096);
    }

    #[test]
    fn bitmap_bits_scale_the_4k_level() {
        let l = TdxLimits::default().with_dynamic_pamt(2).unwrap();
        assert_eq!(sizes(SZ_1G, &l).level(PageSize::Size4K), 64 << 10);
    }
}
