//! Convertible Memory Ranges: the memory the TDX module accepts for TDMRs and PAMTs.

use alloc::vec::Vec;
use core::fmt;

use super::{MemoryMap, MemoryMapError, check_range};
use crate::addr::PhysRange;

/// Most CMRs the TDX module reports (`MAX_CMR`, 32 slots).
pub const MAX_CMRS: usize = 32;

/// One convertible memory range as reported by the module (`base`, `size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cmr {
    /// First byte (4 KiB aligned).
    pub base: u64,
    /// Bytes (a non-zero multiple of 4 KiB).
    pub size: u64,
}

impl Cmr {
    /// A CMR from base and size (checked when it enters [`Cmrs`]).
    pub const fn new(base: u64, size: u64) -> Self {
        Cmr { base, size }
    }
}

/// Why a CMR list was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmrError {
    /// More CMRs than the module's 32 slots.
    TooMany {
        /// How many were given.
        count: usize,
    },
    /// A CMR failed a range check (names it).
    Range(MemoryMapError),
}

impl fmt::Display for CmrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmrError::TooMany { count } => {
                write!(
                    f,
                    "{count} CMRs given; the TDX module reports at most {MAX_CMRS}"
                )
            }
            CmrError::Range(e) => write!(f, "CMR {e}"),
        }
    }
}

impl core::error::Error for CmrError {}

/// The CMR list: sorted, non-overlapping, 4 KiB aligned, below 2^52. Abutting CMRs count as one
/// convertible range, as the module merges them when it checks TDMRs and PAMTs.
///
/// ```
/// use tdmr::addr::PhysRange;
/// use tdmr::memmap::{Cmr, Cmrs};
/// let cmrs = Cmrs::new(vec![Cmr::new(0x10_0000, 0x10_0000), Cmr::new(0x20_0000, 0x10_0000)]).unwrap();
/// assert_eq!(cmrs.merged().len(), 1);
/// assert!(cmrs.contains(PhysRange::new(0x18_0000, 0x28_0000).unwrap()));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmrs {
    listed: Vec<Cmr>,
    merged: Vec<PhysRange>,
}

impl Cmrs {
    /// Validates a CMR list as the TDX module reports it (at most [`MAX_CMRS`]).
    pub fn new(cmrs: Vec<Cmr>) -> Result<Self, CmrError> {
        if cmrs.len() > MAX_CMRS {
            return Err(CmrError::TooMany { count: cmrs.len() });
        }
        Self::build(cmrs).map_err(CmrError::Range)
    }

    /// CMRs equal to the memory itself, for maps that come without a CMR list (a what-if
    /// analysis: "if all of this memory were convertible"). Not limited to 32 entries, since
    /// no module reported it.
    pub fn covering(memory: &MemoryMap) -> Self {
        let mut listed: Vec<Cmr> = Vec::with_capacity(memory.len());
        for r in memory.regions() {
            match listed.last_mut() {
                Some(last) if last.base + last.size == r.base => last.size += r.size,
                _ => listed.push(Cmr::new(r.base, r.size)),
            }
        }
        let merged = listed
            .iter()
            .map(|c| PhysRange::new_unchecked(c.base, c.base + c.size))
            .collect();
        Cmrs { listed, merged }
    }

    fn build(listed: Vec<Cmr>) -> Result<Self, MemoryMapError> {
        let mut merged: Vec<PhysRange> = Vec::with_capacity(listed.len());
        let mut previous = None;
        for (index, c) in listed.iter().enumerate() {
            let range = check_range(index, c.base, c.size, previous)?;
            previous = Some(range);
            match merged.last_mut() {
                Some(last) if last.end() == range.start() => {
                    *last = PhysRange::new_unchecked(last.start(), range.end())
                }
                _ => merged.push(range),
            }
        }
        Ok(Cmrs { listed, merged })
    }

    /// The CMRs as listed.
    #[inline]
    pub fn listed(&self) -> &[Cmr] {
        &self.listed
    }

    /// Convertible ranges with abutting CMRs merged: sorted, disjoint, never abutting.
    #[inline]
    pub fn merged(&self) -> &[PhysRange] {
        &self.merged
    }

    /// Whether `range` lies inside one (merged) convertible range. O(log n).
    pub fn contains(&self, range: PhysRange) -> bool {
        if range.is_empty() {
            return true;
        }
        let i = self.merged.partition_point(|c| c.end() <= range.start());
        self.merged.get(i).is_some_and(|c| c.contains_range(range))
    }

    /// Total convertible bytes.
    pub fn total_bytes(&self) -> u64 {
        self.merged.iter().map(PhysRange::size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn more_than_32_is_refused() {
        let many = (0..33u64).map(|i| Cmr::new(i * 0x2000, 0x1000)).collect();
        assert_eq!(Cmrs::new(many), Err(CmrError::TooMany { count: 33 }));
    }

    #[test]
    fn bad_cmr_is_named() {
        assert!(matches!(
            Cmrs::new(vec![Cmr::new(0x1000, 0x2000), Cmr::new(0x2000, 0x1000)]),
            Err(CmrError::Range(MemoryMapError::Overlap { index: 1, .. }))
        ));
    }

    #[test]
    fn contains_needs_one_merged_range() {
        let c = Cmrs::new(vec![Cmr::new(0x1000, 0x1000), Cmr::new(0x3000, 0x1000)]).unwrap();
        assert!(c.contains(PhysRange::new(0x1000, 0x2000).unwrap()));
        assert!(!c.contains(PhysRange::new(0x1000, 0x4000).unwrap()));
        assert!(!c.contains(PhysRange::new(0x0, 0x1000).unwrap()));
        assert_eq!(c.total_bytes(), 0x2000);
    }
}
