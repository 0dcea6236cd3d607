//! [`Job`]: one planning job, a planner's settings applied to one map (what the strategies
//! read).

use super::strategy::{HolePolicy, Strategy};
use crate::memmap::{Cmrs, MemoryMap};
use crate::sysinfo::TdxLimits;

/// A planner's settings applied to one map.
pub(crate) struct Job<'a> {
    pub(crate) memory: &'a MemoryMap,
    pub(crate) cmrs: &'a Cmrs,
    pub(crate) limits: TdxLimits,
    pub(crate) strategy: Strategy,
    pub(crate) holes: HolePolicy,
    pub(crate) allow_exclusions: bool,
}

impl Job<'_> {
    /// The hole basis in effect.
    #[inline]
    pub(crate) fn hole_policy(&self) -> HolePolicy {
        self.holes
    }
}
