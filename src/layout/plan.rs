//! A finished layout: TDMRs with their reserved areas and PAMTs.

use alloc::vec::Vec;

use super::reserved_areas::{ReservedArea, ReservedAreas};
use super::{HolePolicy, Strategy};
use crate::addr::{PageSize, PhysRange, RangeSet};
use crate::memmap::NodeId;
use crate::sysinfo::TdxLimits;

/// Why a TDMR's PAMT does not lie on the node holding most of the TDMR's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OffNodeReason {
    /// Linux's rule: the PAMT goes to the node of the TDMR's lowest memory, however little of
    /// the TDMR that node holds.
    LowestNode,
    /// The allocator had no room on the node asked for and gave memory of another node.
    AllocatorFallback,
    /// No memory of the majority node could take the block within the module's limits: no
    /// reserved area of that node to join, no TDMR holding its memory with a reserved area to
    /// spare, or no piece large enough.
    NoRoomOnNode,
    /// The last resort: the block spans memory of more than one node (the module needs it
    /// contiguous and convertible, nothing more).
    SpansNodes,
}

impl OffNodeReason {
    /// Short label for reports (`lowest-node`, `allocator-fallback`, `no-room-on-node`,
    /// `spans-nodes`).
    pub fn label(self) -> &'static str {
        match self {
            OffNodeReason::LowestNode => "lowest-node",
            OffNodeReason::AllocatorFallback => "allocator-fallback",
            OffNodeReason::NoRoomOnNode => "no-room-on-node",
            OffNodeReason::SpansNodes => "spans-nodes",
        }
    }
}

impl core::fmt::Display for OffNodeReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            OffNodeReason::LowestNode => {
                "Linux puts a TDMR's PAMT on the node of its lowest memory"
            }
            OffNodeReason::AllocatorFallback => "the allocator had no room on the node asked for",
            OffNodeReason::NoRoomOnNode => {
                "no memory of the majority node can take it within the module's limits"
            }
            OffNodeReason::SpansNodes => {
                "no single node's memory can take it; it spans a node boundary"
            }
        })
    }
}

/// Where a TDMR's PAMT block lies, by NUMA node, against where the TDMR's memory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PamtNodes {
    /// Node holding most of the PAMT block.
    pub(crate) pamt: NodeId,
    /// Node holding most of the TDMR's TDX memory.
    pub(crate) majority: NodeId,
    /// Why the block is not wholly on `majority` (`None` when it is).
    pub(crate) reason: Option<OffNodeReason>,
}

/// One TDMR of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tdmr {
    pub(crate) range: PhysRange,
    pub(crate) node: NodeId,
    pub(crate) mixes_nodes: bool,
    pub(crate) reserved: ReservedAreas,
    pub(crate) pamt: [PhysRange; 3],
    pub(crate) nodes: PamtNodes,
}

impl Tdmr {
    /// Assembles a TDMR (no checks: [`crate::tdx::validate`] is the referee).
    pub fn new(
        range: PhysRange,
        node: NodeId,
        reserved: ReservedAreas,
        pamt: [PhysRange; 3],
    ) -> Self {
        Tdmr {
            range,
            node,
            mixes_nodes: false,
            reserved,
            pamt,
            nodes: PamtNodes {
                pamt: node,
                majority: node,
                reason: None,
            },
        }
    }

    /// `[base, base + size)`, 1 GiB aligned.
    #[inline]
    pub fn range(&self) -> PhysRange {
        self.range
    }

    /// First byte.
    #[inline]
    pub fn base(&self) -> u64 {
        self.range.start()
    }

    /// Bytes covered.
    #[inline]
    pub fn size(&self) -> u64 {
        self.range.size()
    }

    /// One past the last byte.
    #[inline]
    pub fn end(&self) -> u64 {
        self.range.end()
    }

    /// The NUMA node the PAMT was placed for (asked of the allocator, or chosen for docking).
    #[inline]
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The NUMA node whose memory holds the PAMT block (most of it, should it span nodes). For
    /// a TDMR assembled with [`Tdmr::new`] or read back, the node it was given.
    #[inline]
    pub fn pamt_node(&self) -> NodeId {
        self.nodes.pamt
    }

    /// The NUMA node holding most of the TDMR's TDX memory (the lowest such node on a tie). For
    /// a TDMR assembled with [`Tdmr::new`] or read back, the node it was given.
    #[inline]
    pub fn majority_node(&self) -> NodeId {
        self.nodes.majority
    }

    /// Why the PAMT does not lie (wholly) on the majority node, when it does not.
    #[inline]
    pub fn off_node_reason(&self) -> Option<OffNodeReason> {
        self.nodes.reason
    }

    /// Whether the TDMR holds TDX memory of more than one NUMA node.
    #[inline]
    pub fn mixes_nodes(&self) -> bool {
        self.mixes_nodes
    }

    /// Reserved areas, sorted by offset, non-overlapping.
    #[inline]
    pub fn reserved(&self) -> &[ReservedArea] {
        &self.reserved
    }

    /// The PAMT block of one level.
    #[inline]
    pub fn pamt(&self, level: PageSize) -> PhysRange {
        self.pamt[level.index()]
    }

    /// Total PAMT bytes of this TDMR.
    pub fn pamt_bytes(&self) -> u64 {
        self.pamt.iter().map(PhysRange::size).sum()
    }

    /// Reserved area `i` as an absolute physical range.
    pub fn reserved_range(&self, i: usize) -> Option<PhysRange> {
        let a = self.reserved.get(i)?;
        Some(PhysRange::new_unchecked(
            self.base() + a.offset,
            self.base() + a.offset + a.size,
        ))
    }

    /// The non-reserved parts of the TDMR, in order.
    pub fn available(&self) -> impl Iterator<Item = PhysRange> + '_ {
        let base = self.base();
        let mut cursor = base;
        let mut areas = self.reserved.iter();
        let end = self.end();
        let mut done = false;
        core::iter::from_fn(move || {
            while !done {
                match areas.next() {
                    Some(a) => {
                        let s = base + a.offset;
                        let r = PhysRange::new_unchecked(cursor, s);
                        cursor = cursor.max(s + a.size);
                        if !r.is_empty() {
                            return Some(r);
                        }
                    }
                    None => {
                        done = true;
                        let r = PhysRange::new_unchecked(cursor, end);
                        if !r.is_empty() {
                            return Some(r);
                        }
                    }
                }
            }
            None
        })
    }
}

/// Where a plan's PAMT blocks came from, which says who must take them from the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PamtOrigin {
    /// The planner carved them out of TDX memory (docked against reserved areas, or placed by
    /// a model of the kernel's allocator): the kernel must take them out of its page allocator
    /// before TDH.SYS.CONFIG ([`crate::init::HostMemory::claim_pamt`]). Also the answer for
    /// a plan read back from `TDMR_INFO`s, whose origin is unknown.
    Carved,
    /// The caller's [`crate::pamt::PamtAllocator`] supplied every block, and its contract says
    /// they are already the configuration's.
    Allocator,
}

/// A complete TDX memory layout: what every later stage (ABI, validate, SEAMCALL, hotplug gate,
/// reports) consumes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub(crate) strategy: Strategy,
    pub(crate) holes: HolePolicy,
    pub(crate) limits: TdxLimits,
    pub(crate) tdmrs: Vec<Tdmr>,
    pub(crate) excluded: Vec<PhysRange>,
    pub(crate) pamt_origin: PamtOrigin,
}

impl Plan {
    /// Assembles a plan from parts (no checks: run [`crate::tdx::validate`] on its ABI form).
    pub fn from_parts(
        strategy: Strategy,
        holes: HolePolicy,
        limits: TdxLimits,
        tdmrs: Vec<Tdmr>,
        excluded: Vec<PhysRange>,
    ) -> Self {
        Plan {
            strategy,
            holes,
            limits,
            tdmrs,
            excluded,
            pamt_origin: PamtOrigin::Carved,
        }
    }

    /// Where the PAMT blocks came from ([`PamtOrigin::Carved`] for a plan assembled from
    /// parts).
    #[inline]
    pub fn pamt_origin(&self) -> PamtOrigin {
        self.pamt_origin
    }

    /// Every PAMT block of the plan, contiguous blocks merged, in address order: the memory
    /// the TDX module owns once it accepts the configuration.
    pub fn pamt_ranges(&self) -> RangeSet {
        RangeSet::from_ranges(self.tdmrs.iter().flat_map(|t| t.pamt))
    }

    /// The strategy that made the plan.
    #[inline]
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// The hole basis used.
    #[inline]
    pub fn holes(&self) -> HolePolicy {
        self.holes
    }

    /// The limits planned against.
    #[inline]
    pub fn limits(&self) -> &TdxLimits {
        &self.limits
    }

    /// TDMRs, sorted by base, non-overlapping.
    #[inline]
    pub fn tdmrs(&self) -> &[Tdmr] {
        &self.tdmrs
    }

    /// TDX memory left out of the configuration (only with exclusions allowed); the kernel must
    /// keep it from its page allocator.
    #[inline]
    pub fn excluded(&self) -> &[PhysRange] {
        &self.excluded
    }

    /// Total PAMT bytes over all TDMRs.
    pub fn pamt_bytes(&self) -> u64 {
        self.tdmrs.iter().map(Tdmr::pamt_bytes).sum()
    }

    /// Sum of TDMR sizes.
    pub fn covered_bytes(&self) -> u64 {
        self.tdmrs.iter().map(Tdmr::size).sum()
    }

    /// Reserved areas over all TDMRs.
    pub fn reserved_area_count(&self) -> usize {
        self.tdmrs.iter().map(|t| t.reserved.len()).sum()
    }

    /// Largest number of reserved areas in one TDMR.
    pub fn max_reserved_in_one_tdmr(&self) -> usize {
        self.tdmrs
            .iter()
            .map(|t| t.reserved.len())
            .max()
            .unwrap_or(0)
    }

    /// TDMRs holding memory of more than one NUMA node.
    pub fn node_mixing_tdmrs(&self) -> usize {
        self.tdmrs.iter().filter(|t| t.mixes_nodes).count()
    }

    /// TDMRs whose PAMT does not lie (wholly) on the node holding most of their memory, as
    /// the planner recorded it ([`Tdmr::off_node_reason`]).
    pub fn off_node_pamts(&self) -> usize {
        self.tdmrs
            .iter()
            .filter(|t| t.nodes.reason.is_some())
            .count()
    }

    /// Bytes of TDX memory excluded.
    pub fn excluded_bytes(&self) -> u64 {
        self.excluded.iter().map(PhysRange::size).sum()
    }
}
