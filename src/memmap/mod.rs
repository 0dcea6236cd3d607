//! The planner's input: TDX memory (sorted ranges with a NUMA node each) and the CMRs.
//!
//! Both types validate on construction and cost O(number of ranges): nothing here allocates per
//! page or per GiB of address space.

mod build;
mod cmr;
pub mod firmware;
mod parse;
mod tdx_lines;
mod windows;

pub use build::MapWarning;
pub use cmr::{Cmr, CmrError, Cmrs, MAX_CMRS};
pub use parse::{
    ParseError, ParseErrorKind, ParsedLog, parse_kernel_log, parse_kernel_log_with_memory,
};
pub use tdx_lines::{InitOutcome, ModuleIdentity, ModuleLineForm, TdxLines};
pub(crate) use windows::Windows;

use alloc::vec::Vec;
use core::fmt;

use crate::addr::{MAX_PA, PhysRange, RangeSet, SZ_4K, gaps, is_aligned};

/// A NUMA node id, as the kernel numbers nodes.
pub type NodeId = u32;

/// One range of TDX memory on one NUMA node, as given by the caller (`base`, `size`).
///
/// ```
/// use tdmr::memmap::{MemoryMap, MemoryRegion};
/// let map = MemoryMap::new(vec![
///     MemoryRegion::new(0x10_0000, 0x7f00_0000, 0),
///     MemoryRegion::new(0x1_0000_0000, 0x40_0000_0000, 1),
/// ])
/// .unwrap();
/// assert_eq!(map.total_bytes(), 0x7f00_0000 + 0x40_0000_0000);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemoryRegion {
    /// First byte (4 KiB aligned).
    pub base: u64,
    /// Bytes (a non-zero multiple of 4 KiB).
    pub size: u64,
    /// NUMA node holding the range.
    pub node: NodeId,
}

impl MemoryRegion {
    /// A region from base, size and node (checked when it enters a [`MemoryMap`]).
    pub const fn new(base: u64, size: u64, node: NodeId) -> Self {
        MemoryRegion { base, size, node }
    }

    /// The region as a half-open range. Only meaningful once validated by [`MemoryMap::new`].
    #[inline]
    pub const fn range(&self) -> PhysRange {
        PhysRange::new_unchecked(self.base, self.base.wrapping_add(self.size))
    }

    /// One past the last byte (valid once validated).
    #[inline]
    pub const fn end(&self) -> u64 {
        self.base.wrapping_add(self.size)
    }
}

/// Why a memory map or CMR list was refused; every variant names the offending range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryMapError {
    /// A range of size zero.
    Empty {
        /// Index of the range in the input.
        index: usize,
        /// Its base.
        base: u64,
    },
    /// Base or size not a multiple of 4 KiB.
    Misaligned {
        /// Index of the range in the input.
        index: usize,
        /// Its base.
        base: u64,
        /// Its size.
        size: u64,
    },
    /// `base + size` overflows 64 bits.
    EndOverflow {
        /// Index of the range in the input.
        index: usize,
        /// Its base.
        base: u64,
        /// Its size.
        size: u64,
    },
    /// The range reaches beyond 2^52.
    BeyondMaxPa {
        /// Index of the range in the input.
        index: usize,
        /// The range.
        range: PhysRange,
    },
    /// The range starts before the previous one.
    Unsorted {
        /// Index of the range in the input.
        index: usize,
        /// The range.
        range: PhysRange,
        /// The range before it.
        previous: PhysRange,
    },
    /// The range overlaps the previous one.
    Overlap {
        /// Index of the range in the input.
        index: usize,
        /// The range.
        range: PhysRange,
        /// The range before it.
        previous: PhysRange,
    },
    /// The map holds no memory at all.
    NoMemory,
    /// Part of TDX memory lies outside every CMR.
    OutsideCmrs {
        /// The first part of TDX memory that no CMR holds.
        range: PhysRange,
    },
}

impl fmt::Display for MemoryMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MemoryMapError::Empty { index, base } => {
                write!(f, "range {index} at {base:#x} is empty")
            }
            MemoryMapError::Misaligned { index, base, size } => write!(
                f,
                "range {index} (base {base:#x}, size {size:#x}) is not 4 KiB aligned"
            ),
            MemoryMapError::EndOverflow { index, base, size } => write!(
                f,
                "range {index} (base {base:#x}, size {size:#x}) overflows 64 bits"
            ),
            MemoryMapError::BeyondMaxPa { index, range } => write!(
                f,
                "range {index} {range} reaches beyond the 52-bit physical address space"
            ),
            MemoryMapError::Unsorted {
                index,
                range,
                previous,
            } => write!(
                f,
                "range {index} {range} starts before the previous range {previous}"
            ),
            MemoryMapError::Overlap {
                index,
                range,
                previous,
            } => write!(
                f,
                "range {index} {range} overlaps the previous range {previous}"
            ),
            MemoryMapError::NoMemory => write!(f, "the memory map holds no memory"),
            MemoryMapError::OutsideCmrs { range } => {
                write!(
                    f,
                    "TDX memory {range} is not convertible (outside every CMR)"
                )
            }
        }
    }
}

impl core::error::Error for MemoryMapError {}

/// Checks one `(base, size)` range of a list: size, alignment, overflow, 2^52, order.
/// Shared by [`MemoryMap::new`] and [`Cmrs::new`].
pub(crate) fn check_range(
    index: usize,
    base: u64,
    size: u64,
    previous: Option<PhysRange>,
) -> Result<PhysRange, MemoryMapError> {
    if size == 0 {
        return Err(MemoryMapError::Empty { index, base });
    }
    let Some(end) = base.checked_add(size) else {
        return Err(MemoryMapError::EndOverflow { index, base, size });
    };
    let range = PhysRange::new_unchecked(base, end);
    if !is_aligned(base, SZ_4K) || !is_aligned(size, SZ_4K) {
        return Err(MemoryMapError::Misaligned { index, base, size });
    }
    if end > MAX_PA {
        return Err(MemoryMapError::BeyondMaxPa { index, range });
    }
    if let Some(previous) = previous {
        if base < previous.start() {
            return Err(MemoryMapError::Unsorted {
                index,
                range,
                previous,
            });
        }
        if base < previous.end() {
            return Err(MemoryMapError::Overlap {
                index,
                range,
                previous,
            });
        }
    }
    Ok(range)
}

/// TDX memory: sorted, non-overlapping, 4 KiB-aligned ranges below 2^52, each on one NUMA node.
///
/// Abutting ranges are allowed (and kept apart: a node boundary often falls there). This is the
/// memory the kernel hands to its page allocator and wants covered by TDMRs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryMap {
    regions: Vec<MemoryRegion>,
    total: u64,
    windows: Windows,
}

impl MemoryMap {
    /// Validates `regions` and builds the map. O(n).
    pub fn new(regions: Vec<MemoryRegion>) -> Result<Self, MemoryMapError> {
        let mut previous = None;
        let mut total = 0u64;
        let mut windows = Windows::default();
        for (index, r) in regions.iter().enumerate() {
            let range = check_range(index, r.base, r.size, previous)?;
            total += r.size;
            previous = Some(range);
            windows.push(r);
        }
        if regions.is_empty() {
            return Err(MemoryMapError::NoMemory);
        }
        Ok(MemoryMap {
            regions,
            total,
            windows,
        })
    }

    /// The regions, sorted by address.
    #[inline]
    pub fn regions(&self) -> &[MemoryRegion] {
        &self.regions
    }

    /// Number of regions.
    #[inline]
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    /// Always false: a map holds at least one region.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// The 1 GiB windows holding memory, summarised (see [`windows`]).
    pub(crate) fn windows(&self) -> &Windows {
        &self.windows
    }

    /// Sum of region sizes.
    #[inline]
    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// `[first byte, last byte + 1)` of the whole map.
    pub fn span(&self) -> PhysRange {
        match (self.regions.first(), self.regions.last()) {
            (Some(a), Some(b)) => PhysRange::new_unchecked(a.base, b.end()),
            _ => PhysRange::EMPTY,
        }
    }

    /// Index of the first region ending above `pa` (binary search).
    pub(crate) fn first_ending_above(&self, pa: u64) -> usize {
        self.regions.partition_point(|r| r.end() <= pa)
    }

    /// The regions that intersect `range` (binary search, then a slice).
    pub fn regions_in(&self, range: PhysRange) -> &[MemoryRegion] {
        let lo = self.first_ending_above(range.start());
        let hi = self.regions.partition_point(|r| r.base < range.end());
        &self.regions[lo..hi.max(lo)]
    }

    /// Whether `range` is entirely TDX memory (possibly across abutting regions).
    pub fn contains_range(&self, range: PhysRange) -> bool {
        if range.is_empty() {
            return true;
        }
        let mut cursor = range.start();
        for r in self.regions_in(range) {
            if r.base > cursor {
                return false;
            }
            cursor = cursor.max(r.end());
            if cursor >= range.end() {
                return true;
            }
        }
        false
    }

    /// The same memory without the bytes of `removed`: each region keeps its node. Fails
    /// with [`MemoryMapError::NoMemory`] when nothing is left. O(regions + removed).
    ///
    /// ```
    /// use tdmr::addr::{PhysRange, RangeSet};
    /// use tdmr::memmap::{MemoryMap, MemoryRegion};
    /// let map = MemoryMap::new(vec![MemoryRegion::new(0x10_0000, 0x30_0000, 1)])?;
    /// let hole = RangeSet::from_ranges([PhysRange::new(0x20_0000, 0x30_0000)?]);
    /// let left = map.without(&hole)?;
    /// assert_eq!(left.regions(), [MemoryRegion::new(0x10_0000, 0x10_0000, 1), MemoryRegion::new(0x30_0000, 0x10_0000, 1)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn without(&self, removed: &RangeSet) -> Result<MemoryMap, MemoryMapError> {
        let mut out = Vec::with_capacity(self.len() + removed.len());
        let cut = removed.as_slice();
        let mut k = 0;
        for r in &self.regions {
            while k < cut.len() && cut[k].end() <= r.base {
                k += 1;
            }
            for g in gaps(r.range(), cut[k..].iter().copied()) {
                out.push(MemoryRegion::new(g.start(), g.size(), r.node));
            }
        }
        MemoryMap::new(out)
    }

    /// The same memory with `added` regions in it (the kernel's map after a hot-add): bytes
    /// already in the map keep their node, new bytes take the node of the region that brings
    /// them; abutting regions of one node merge. `added` may be in any order and overlap the
    /// map or each other (on overlaps the earlier-listed region's node wins). Refused like [`MemoryMap::new`] when an added
    /// region is empty, misaligned or beyond 2^52.
    ///
    /// ```
    /// use tdmr::memmap::{MemoryMap, MemoryRegion};
    /// let map = MemoryMap::new(vec![MemoryRegion::new(0x10_0000, 0x10_0000, 0)])?;
    /// let grown = map.with_added(&[MemoryRegion::new(0x18_0000, 0x10_0000, 1)])?;
    /// assert_eq!(grown.regions(), [MemoryRegion::new(0x10_0000, 0x10_0000, 0), MemoryRegion::new(0x20_0000, 0x8_0000, 1)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_added(&self, added: &[MemoryRegion]) -> Result<MemoryMap, MemoryMapError> {
        let mut have = RangeSet::from_ranges(self.regions.iter().map(MemoryRegion::range));
        let mut regions = self.regions.clone();
        for (index, a) in added.iter().enumerate() {
            let range = check_range(index, a.base, a.size, None)?;
            let new = RangeSet::from_ranges([range]).subtract(&have);
            regions.extend(
                new.iter()
                    .map(|g| MemoryRegion::new(g.start(), g.size(), a.node)),
            );
            have = have.union(&new);
        }
        regions.sort_unstable_by_key(|r| r.base);
        // Abutting pieces of one node become one region, as the kernel's memblock merges them.
        let mut merged: Vec<MemoryRegion> = Vec::with_capacity(regions.len());
        for r in regions {
            match merged.last_mut() {
                Some(last) if last.end() == r.base && last.node == r.node => last.size += r.size,
                _ => merged.push(r),
            }
        }
        MemoryMap::new(merged)
    }

    /// Checks that every byte lies in some CMR; names the first byte range that does not.
    /// O(regions + CMRs).
    pub fn check_within(&self, cmrs: &Cmrs) -> Result<(), MemoryMapError> {
        let merged = cmrs.merged();
        // Fast path, O(CMRs × log regions): count the regions lying wholly inside each
        // convertible range. Ranges and regions are disjoint, so all of them are counted
        // exactly when every region lies in one.
        let inside: usize = merged
            .iter()
            .map(|c| {
                let lo = self.regions.partition_point(|r| r.base < c.start());
                let hi = self.regions.partition_point(|r| r.end() <= c.end());
                hi.saturating_sub(lo)
            })
            .sum();
        if inside == self.regions.len() {
            return Ok(());
        }
        // Name the first byte outside: one merge pass.
        let mut c = 0;
        for r in &self.regions {
            let mut cursor = r.base;
            let end = r.end();
            while cursor < end {
                while c < merged.len() && merged[c].end() <= cursor {
                    c += 1;
                }
                match merged.get(c) {
                    Some(cmr) if cmr.start() <= cursor => cursor = cmr.end().min(end),
                    Some(cmr) => {
                        return Err(MemoryMapError::OutsideCmrs {
                            range: PhysRange::new_unchecked(cursor, cmr.start().min(end)),
                        });
                    }
                    None => {
                        return Err(MemoryMapError::OutsideCmrs {
                            range: PhysRange::new_unchecked(cursor, end),
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn map(v: &[(u64, u64, u32)]) -> Result<MemoryMap, MemoryMapError> {
        MemoryMap::new(
            v.iter()
                .map(|&(b, s, n)| MemoryRegion::new(b, s, n))
                .collect(),
        )
    }

    #[test]
    fn refuses_each_kind_of_bad_range() {
        assert_eq!(
            map(&[(0x1000, 0, 0)]),
            Err(MemoryMapError::Empty {
                index: 0,
                base: 0x1000
            })
        );
        assert_eq!(
            map(&[(0x1800, 0x1000, 0)]),
            Err(MemoryMapError::Misaligned {
                index: 0,
                base: 0x1800,
                size: 0x1000
            })
        );
        assert!(matches!(
            map(&[(u64::MAX - 0xfff, 0x2000, 0)]),
            Err(MemoryMapError::EndOverflow { index: 0, .. })
        ));
        assert!(matches!(
            map(&[(MAX_PA - 0x1000, 0x2000, 0)]),
            Err(MemoryMapError::BeyondMaxPa { index: 0, .. })
        ));
        assert!(matches!(
            map(&[(0x2000, 0x1000, 0), (0x1000, 0x1000, 0)]),
            Err(MemoryMapError::Unsorted { index: 1, .. })
        ));
        assert!(matches!(
            map(&[(0x1000, 0x2000, 0), (0x2000, 0x1000, 0)]),
            Err(MemoryMapError::Overlap { index: 1, .. })
        ));
        assert_eq!(map(&[]), Err(MemoryMapError::NoMemory));
    }

    #[test]
    fn abutting_ranges_are_contiguous_memory() {
        let m = map(&[
            (0x1000, 0x1000, 0),
            (0x2000, 0x1000, 1),
            (0x4000, 0x1000, 1),
        ])
        .unwrap();
        assert!(m.contains_range(PhysRange::new(0x1000, 0x3000).unwrap()));
        assert!(!m.contains_range(PhysRange::new(0x1000, 0x5000).unwrap()));
        assert_eq!(
            m.regions_in(PhysRange::new(0x2800, 0x4001).unwrap()).len(),
            2
        );
        assert_eq!(m.span(), PhysRange::new(0x1000, 0x5000).unwrap());
    }

    #[test]
    fn memory_outside_cmrs_is_named() {
        let m = map(&[(0x1000, 0x3000, 0)]).unwrap();
        let cmrs = Cmrs::new(vec![Cmr::new(0x1000, 0x1000), Cmr::new(0x3000, 0x1000)]).unwrap();
        assert_eq!(
            m.check_within(&cmrs),
            Err(MemoryMapError::OutsideCmrs {
                range: PhysRange::new(0x2000, 0x3000).unwrap()
            })
        );
        let abutting = Cmrs::new(vec![Cmr::new(0x1000, 0x1000), Cmr::new(0x2000, 0x2000)]).unwrap();
        assert_eq!(m.check_within(&abutting), Ok(()));
    }
}
