//! TDMR layout: the [`Planner`], the [`Plan`] it produces, and [`validate`], the referee that
//! checks a configuration exactly as TDH.SYS.CONFIG does.

mod linux;
mod optimal;
mod plan;
pub(crate) mod reserved;
pub mod validate;

pub use plan::{Plan, ReservedArea, ReservedAreas, ReservedKind, Tdmr};

use core::fmt;

use crate::addr::PhysRange;
use crate::memmap::{Cmrs, MemoryMap, MemoryMapError, NodeId};
use crate::pamt::{PamtAllocator, TopDownAllocator};
use crate::sysinfo::TdxLimits;

/// How TDMR boundaries and reserved areas are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Strategy {
    /// Linux mainline's algorithm, reproduced exactly: one TDMR per memory region after 1 GiB
    /// rounding, one contiguous PAMT block per TDMR on the node of its lowest memory, one
    /// reserved area per hole and per overlapping PAMT, no merging.
    Linux,
    /// The least covered span (so the least PAMT), then the fewest TDMRs mixing NUMA nodes,
    /// the fewest TDMRs, the fewest reserved areas; PAMTs node-local and docked against
    /// existing reserved areas, so they cost no reserved area.
    ///
    /// The TDMR boundaries are exactly optimal for the hole-induced reserved areas (a dynamic
    /// program, checked against brute force). When every node's PAMT can dock — as on every real
    /// map we know, PAMT being about 0.4 % of memory — the whole layout is exactly optimal.
    /// Otherwise a PAMT takes a reserved area of its own, and if no TDMR can spare one, the
    /// partition is planned again keeping one spare; as a last resort PAMTs are placed as the
    /// kernel's allocator would, on this partition and then on Linux's. It never fails where the
    /// Linux strategy succeeds, and when it fails it names the smallest obstacle.
    Optimal,
}

impl Strategy {
    /// The name used on the command line and in JSON (`linux`).
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Linux => "linux",
            Strategy::Optimal => "optimal",
        }
    }

    /// The hole basis the strategy uses unless told otherwise.
    pub fn default_hole_policy(self) -> HolePolicy {
        match self {
            Strategy::Linux => HolePolicy::Memory,
            Strategy::Optimal => HolePolicy::Cmr,
        }
    }
}

/// What must be reserved inside a TDMR besides PAMTs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HolePolicy {
    /// Reserve TDMR ∖ CMRs: only non-convertible space (the module's own requirement).
    Cmr,
    /// Reserve TDMR ∖ TDX memory: every gap in the memory map (Linux mainline's choice).
    Memory,
}

impl HolePolicy {
    /// The name used on the command line and in JSON (`cmr`, `memory`).
    pub fn name(self) -> &'static str {
        match self {
            HolePolicy::Cmr => "cmr",
            HolePolicy::Memory => "memory",
        }
    }
}

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

/// Plans TDMRs and PAMTs for a memory map.
///
/// ```
/// use tdmr::layout::{Planner, Strategy};
/// use tdmr::memmap::parse::parse_kernel_log;
/// let log = "virt/tdx: CMR: [0x100000, 0x77800000)\nvirt/tdx: CMR: [0x100000000, 0x407a000000)\n";
/// let input = parse_kernel_log(log).unwrap();
/// let plan = Planner::new(input.memory(), input.cmrs()).strategy(Strategy::Linux).plan().unwrap();
/// assert_eq!(plan.tdmrs().len(), 2);
/// assert_eq!(plan.pamt_bytes() / 1024, 4104 * 256 + 8);
/// ```
#[derive(Clone, Debug)]
pub struct Planner<'a> {
    pub(crate) memory: &'a MemoryMap,
    pub(crate) cmrs: &'a Cmrs,
    pub(crate) limits: TdxLimits,
    pub(crate) strategy: Strategy,
    pub(crate) holes: Option<HolePolicy>,
    pub(crate) allow_exclusions: bool,
}

impl<'a> Planner<'a> {
    /// A planner for `memory` inside `cmrs`, with default limits and the optimal strategy.
    pub fn new(memory: &'a MemoryMap, cmrs: &'a Cmrs) -> Self {
        Planner {
            memory,
            cmrs,
            limits: TdxLimits::default(),
            strategy: Strategy::Optimal,
            holes: None,
            allow_exclusions: false,
        }
    }

    /// With the optimal strategy, when no layout covers all TDX memory, return the layout that
    /// leaves the least memory out, listed in [`Plan::excluded`] (the kernel must then keep it
    /// from its page allocator). Off by default: memory is never left out silently.
    pub fn allow_exclusions(mut self, allow: bool) -> Self {
        self.allow_exclusions = allow;
        self
    }

    /// Plans against these module limits.
    pub fn limits(mut self, limits: TdxLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Uses this strategy.
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Uses this hole basis instead of the strategy's default.
    pub fn holes(mut self, holes: HolePolicy) -> Self {
        self.holes = Some(holes);
        self
    }

    /// The hole basis in effect.
    pub fn hole_policy(&self) -> HolePolicy {
        self.holes
            .unwrap_or_else(|| self.strategy.default_hole_policy())
    }

    /// Plans, placing PAMTs itself: the optimal strategy docks them against reserved areas;
    /// the Linux strategy uses [`TopDownAllocator`] (top of the chosen node's memory).
    pub fn plan(&self) -> Result<Plan, PlanError> {
        self.memory.check_within(self.cmrs)?;
        match self.strategy {
            Strategy::Linux => linux::plan(self, &mut TopDownAllocator::new(self.memory)),
            Strategy::Optimal => optimal::plan(self, None),
        }
    }

    /// Plans with PAMTs from the caller's allocator (one contiguous block per TDMR for the Linux
    /// strategy, one per NUMA node for the optimal one), fitting reserved areas around what it
    /// returns, or failing with the TDMR whose limit it broke.
    pub fn plan_with(&self, alloc: &mut dyn PamtAllocator) -> Result<Plan, PlanError> {
        self.memory.check_within(self.cmrs)?;
        match self.strategy {
            Strategy::Linux => linux::plan(self, alloc),
            Strategy::Optimal => optimal::plan(self, Some(alloc)),
        }
    }
}
