//! Reserved areas: one [`ReservedArea`] of a TDMR, why it exists ([`ReservedKind`]), and a
//! TDMR's [`ReservedAreas`], held inline up to the module's usual 16.

use core::ops::Deref;

use smallvec::SmallVec;

/// Why a reserved area exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReservedKind {
    /// Space the hole policy leaves out: non-convertible space (CMR basis) or a gap in TDX
    /// memory (memory basis).
    Hole,
    /// PAMT blocks (of this or another TDMR).
    Pamt,
    /// A hole and PAMT blocks merged into one area.
    HoleAndPamt,
    /// TDX memory deliberately left out of the configuration (see [`super::Plan::excluded`]).
    Excluded,
    /// Read back from a TDMR_INFO, cause unknown.
    Unknown,
}

impl ReservedKind {
    /// The kind of an area made by merging areas of kinds `self` and `other`.
    pub(crate) fn merge(self, other: ReservedKind) -> ReservedKind {
        use ReservedKind::*;
        match (self, other) {
            (a, b) if a == b => a,
            (Hole | HoleAndPamt, Pamt | HoleAndPamt) | (Pamt, Hole) => HoleAndPamt,
            _ => Unknown,
        }
    }

    /// Short label for reports.
    pub fn label(self) -> &'static str {
        match self {
            ReservedKind::Hole => "hole",
            ReservedKind::Pamt => "pamt",
            ReservedKind::HoleAndPamt => "hole+pamt",
            ReservedKind::Excluded => "excluded",
            ReservedKind::Unknown => "unknown",
        }
    }
}

/// One reserved area of a TDMR: `offset` from the TDMR base, `size` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReservedArea {
    /// Offset from the TDMR base (4 KiB aligned).
    pub offset: u64,
    /// Bytes (4 KiB multiple, non-zero).
    pub size: u64,
    /// Why the area exists.
    pub kind: ReservedKind,
}

/// The reserved areas of one TDMR, sorted by offset and non-overlapping once planned.
/// Derefs to a slice; held inline up to 16 areas (the limit of every released module).
///
/// ```
/// use tdmr::layout::{ReservedArea, ReservedAreas, ReservedKind};
/// let areas: ReservedAreas = [ReservedArea { offset: 0, size: 0x1000, kind: ReservedKind::Hole }]
///     .into_iter()
///     .collect();
/// assert_eq!(areas.len(), 1);
/// assert_eq!(areas[0].size, 0x1000);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ReservedAreas(SmallVec<[ReservedArea; 16]>);

impl ReservedAreas {
    /// No areas.
    pub fn new() -> Self {
        ReservedAreas(SmallVec::new())
    }

    /// Appends an area (the planner keeps them sorted; [`crate::tdx::validate`] checks).
    pub fn push(&mut self, area: ReservedArea) {
        self.0.push(area);
    }

    /// The areas as a slice.
    #[inline]
    pub fn as_slice(&self) -> &[ReservedArea] {
        &self.0
    }

    /// Sorts by offset (Linux adds PAMT areas after holes and sorts at the end).
    pub(crate) fn sort_by_offset(&mut self) {
        self.0.sort_unstable_by_key(|a| a.offset);
    }
}

impl Deref for ReservedAreas {
    type Target = [ReservedArea];

    #[inline]
    fn deref(&self) -> &[ReservedArea] {
        &self.0
    }
}

impl FromIterator<ReservedArea> for ReservedAreas {
    fn from_iter<I: IntoIterator<Item = ReservedArea>>(iter: I) -> Self {
        ReservedAreas(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a ReservedAreas {
    type Item = &'a ReservedArea;
    type IntoIter = core::slice::Iter<'a, ReservedArea>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}
