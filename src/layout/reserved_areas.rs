//! [`ReservedAreas`]: a TDMR's reserved areas, held inline up to the module's usual 16.

use core::ops::Deref;

use smallvec::SmallVec;

use super::plan::ReservedArea;

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
