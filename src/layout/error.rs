//! Why no plan was produced: [`PlanError`], and the smallest [`Obstacle`] when no layout
//! exists within the module's limits.

use core::fmt;

use super::HolePolicy;
use crate::addr::PhysRange;
use crate::memmap::{MemoryMapError, NodeId};
use crate::tdx::metadata::ModuleVersion;

/// Why no plan was produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlanError {
    /// The memory map does not fit the CMRs.
    Memory(MemoryMapError),
    /// More TDMRs are needed than the module supports (Linux: "TDMRs exhausted").
    TdmrsExhausted {
        /// MAX_TDMRS.
        limit: usize,
    },
    /// One TDMR needs more reserved areas than the module supports.
    ReservedAreasExhausted {
        /// The TDMR.
        tdmr: PhysRange,
        /// MAX_RESERVED_PER_TDMR.
        limit: usize,
    },
    /// The PAMT allocator had no contiguous block for a TDMR's PAMT.
    PamtAllocationFailed {
        /// The TDMR.
        tdmr: PhysRange,
        /// Bytes asked for.
        size: u64,
        /// Preferred node.
        node: NodeId,
    },
    /// The PAMT allocator returned a block the configuration cannot use.
    BadPamtBlock {
        /// The TDMR.
        tdmr: PhysRange,
        /// What the allocator returned.
        block: PhysRange,
        /// Bytes asked for.
        size: u64,
        /// What is wrong with it.
        reason: BadPamtReason,
    },
    /// No layout within the module's limits exists; names the smallest obstacle.
    Infeasible(Obstacle),
    /// The module version planned for ([`super::Planner::with_module_version`]) would refuse
    /// this TDMR, and no change of layout within the limits avoids it (TDX 1.0: all 16
    /// reserved areas used and the last one running to the TDMR's end).
    RefusedByModuleVersion {
        /// The module version.
        version: ModuleVersion,
        /// The TDMR it would refuse.
        tdmr: PhysRange,
    },
}

/// The smallest reason no layout exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Obstacle {
    /// One 1 GiB window (the smallest possible TDMR) needs more reserved areas than allowed.
    WindowHoles {
        /// The window.
        window: PhysRange,
        /// Reserved areas it needs for holes alone.
        holes: usize,
        /// MAX_RESERVED_PER_TDMR.
        limit: usize,
        /// The hole basis that made them holes.
        policy: HolePolicy,
        /// The window also has to make room for a PAMT that has no other place.
        pamt_needs_area: bool,
    },
    /// Staying within the reserved-area limit needs more TDMRs than the module supports.
    TdmrLimit {
        /// TDMRs needed at least.
        needed: usize,
        /// MAX_TDMRS.
        limit: usize,
    },
    /// A node's PAMT fits nowhere without exceeding a reserved-area limit.
    PamtNoRoom {
        /// The node.
        node: NodeId,
        /// Bytes of the PAMT block that found no room.
        size: u64,
    },
}

impl fmt::Display for Obstacle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Obstacle::WindowHoles {
                window,
                holes,
                limit,
                policy,
                pamt_needs_area,
            } => {
                let what = match policy {
                    HolePolicy::Cmr => "non-convertible holes",
                    HolePolicy::Memory => "holes in TDX memory",
                };
                write!(f, "1 GiB window {window} holds {holes} {what}")?;
                if pamt_needs_area {
                    write!(f, " and must also hold a PAMT block")?;
                }
                write!(f, "; limit {limit}")
            }
            Obstacle::TdmrLimit { needed, limit } => write!(
                f,
                "keeping every TDMR within its reserved-area limit needs {needed} TDMRs; limit {limit}"
            ),
            Obstacle::PamtNoRoom { node, size } => write!(
                f,
                "no TDX memory can take a {size:#x}-byte PAMT block for node {node} without exceeding a reserved-area limit"
            ),
        }
    }
}

/// What is wrong with a PAMT block an allocator returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadPamtReason {
    /// Not the size asked for.
    WrongSize,
    /// Not 4 KiB aligned.
    Misaligned,
    /// Not entirely TDX memory (so not known to be convertible).
    NotTdxMemory,
    /// Overlaps another TDMR's PAMT block.
    OverlapsPamt,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PlanError::Memory(e) => write!(f, "{e}"),
            PlanError::Infeasible(o) => write!(f, "{o}"),
            PlanError::RefusedByModuleVersion { version, tdmr } => write!(
                f,
                "TDMR {tdmr}: TDX module {version} would refuse it (all 16 reserved areas used, \
                 the last running to the TDMR's end: TDX 1.0 checks that empty tail against the \
                 CMRs) and no layout within the limits avoids it"
            ),
            PlanError::TdmrsExhausted { limit } => {
                write!(f, "TDMRs exhausted (the module supports {limit})")
            }
            PlanError::ReservedAreasExhausted { tdmr, limit } => write!(
                f,
                "TDMR {tdmr}: reserved areas exhausted (the module supports {limit} per TDMR)"
            ),
            PlanError::PamtAllocationFailed { tdmr, size, node } => write!(
                f,
                "TDMR {tdmr}: no contiguous {size:#x} bytes for its PAMT (node {node} preferred)"
            ),
            PlanError::BadPamtBlock {
                tdmr,
                block,
                size,
                reason,
            } => {
                let why = match reason {
                    BadPamtReason::WrongSize => "is not the size asked for",
                    BadPamtReason::Misaligned => "is not 4 KiB aligned",
                    BadPamtReason::NotTdxMemory => "is not TDX memory",
                    BadPamtReason::OverlapsPamt => "overlaps another PAMT",
                };
                write!(
                    f,
                    "TDMR {tdmr}: the PAMT block {block} returned for {size:#x} bytes {why}"
                )
            }
        }
    }
}

impl core::error::Error for PlanError {}

impl From<MemoryMapError> for PlanError {
    fn from(e: MemoryMapError) -> Self {
        PlanError::Memory(e)
    }
}
