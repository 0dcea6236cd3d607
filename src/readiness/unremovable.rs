//! The memory a plan makes unremovable: once the TDX module is initialized it owns every static
//! PAMT block for good, so no memory removal (offlining a block, hot-removing a DIMM or a CXL
//! region) may take it; the hotplug gate refuses such removals. Listed per NUMA node, which is
//! what an operator needs before planning a removal.

use alloc::vec::Vec;

use crate::addr::{PageSize, PhysRange, RangeSet};
use crate::layout::Plan;
use crate::memmap::{MemoryMap, NodeId};

/// The memory of one NUMA node that cannot be removed after initialization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unremovable {
    /// The node, or `None` for memory outside the memory map (PAMT blocks an allocator placed
    /// outside TDX memory).
    pub node: Option<NodeId>,
    /// Static PAMT bytes on the node (with Dynamic PAMT: the PAMT page bitmap and the 2M and 1G
    /// levels).
    pub pamt_bytes: u64,
    /// Those bytes as ranges, merged, in address order.
    pub pamt: Vec<PhysRange>,
    /// The TDMRs whose PAMT lies there, in order.
    pub tdmrs: Vec<usize>,
    /// Dynamic PAMT page pairs at plan time: none. Pairs are added at run time and, while they
    /// are, hold only the 2 MiB ranges their pages lie in.
    pub dynamic_pamt_bytes: u64,
    /// Memory given to the module for its extensions: none (no module in use takes any).
    pub extension_bytes: u64,
}

/// Per node (in node order, memory outside the map last), the memory `plan` keeps from ever
/// being removed once the module is initialized; nodes without any are left out. O((blocks +
/// regions) log) in the number of PAMT blocks and memory regions.
///
/// ```
/// use tdmr::layout::Planner;
/// use tdmr::memmap::parse_kernel_log;
/// use tdmr::readiness::unremovable_memory;
/// let log = include_str!("../../tests/fixtures/emr-4s-256g.log");
/// let input = parse_kernel_log(log)?;
/// let plan = Planner::new().plan(input.memory(), input.cmrs())?;
/// let nodes = unremovable_memory(&plan, input.memory());
/// assert_eq!(nodes.iter().map(|n| n.pamt_bytes).sum::<u64>(), plan.pamt_bytes());
/// assert_eq!(nodes.len(), 4); // every socket holds the PAMT of its own TDMRs
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn unremovable_memory(plan: &Plan, memory: &MemoryMap) -> Vec<Unremovable> {
    // (node, piece, TDMR) for every byte of every PAMT block.
    let mut pieces: Vec<(Option<NodeId>, PhysRange, usize)> = Vec::new();
    for (i, t) in plan.tdmrs().iter().enumerate() {
        for level in PageSize::ALL {
            let block = t.pamt(level);
            if block.is_empty() {
                continue;
            }
            let mut inside = Vec::new();
            for r in memory.regions_in(block) {
                if let Some(p) = r.range().intersect(block) {
                    pieces.push((Some(r.node), p, i));
                    inside.push(p);
                }
            }
            let outside = RangeSet::from_ranges([block]).subtract(&RangeSet::from_ranges(inside));
            pieces.extend(outside.iter().map(|p| (None, p, i)));
        }
    }
    // Nodes in order, `None` last.
    pieces.sort_unstable_by_key(|&(node, p, _)| (node.is_none(), node, p));
    let mut out: Vec<Unremovable> = Vec::new();
    for group in pieces.chunk_by(|a, b| a.0 == b.0) {
        let pamt = RangeSet::from_ranges(group.iter().map(|g| g.1));
        let mut tdmrs: Vec<usize> = group.iter().map(|g| g.2).collect();
        tdmrs.sort_unstable();
        tdmrs.dedup();
        out.push(Unremovable {
            node: group[0].0,
            pamt_bytes: pamt.total_bytes(),
            pamt: pamt.into_vec(),
            tdmrs,
            dynamic_pamt_bytes: 0,
            extension_bytes: 0,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{HolePolicy, ReservedAreas, Strategy, Tdmr};
    use crate::memmap::MemoryRegion;
    use crate::sysinfo::TdxLimits;

    fn r(s: u64, e: u64) -> PhysRange {
        PhysRange::new(s, e).unwrap()
    }

    #[test]
    fn blocks_split_at_nodes_and_outside_memory_is_listed_last() {
        const G: u64 = 1 << 30;
        let memory = MemoryMap::new(alloc::vec![
            MemoryRegion::new(0, G, 0),
            MemoryRegion::new(G, G, 1),
        ])
        .unwrap();
        // TDMR 0's 4K block straddles nodes 0 and 1; TDMR 1's 2M block lies beyond memory.
        let pamt0 = [
            r(G - 0x1000, G + 0x1000),
            r(0, 0),
            r(G + 0x1000, G + 0x2000),
        ];
        let pamt1 = [r(0, 0), r(4 * G, 4 * G + 0x3000), r(0, 0)];
        let tdmrs = alloc::vec![
            Tdmr::new(r(0, G), 0, ReservedAreas::new(), pamt0),
            Tdmr::new(r(G, 2 * G), 1, ReservedAreas::new(), pamt1),
        ];
        let plan = Plan::from_parts(
            Strategy::Linux,
            HolePolicy::Memory,
            TdxLimits::default(),
            tdmrs,
            alloc::vec![],
        );
        let got = unremovable_memory(&plan, &memory);
        let nodes: Vec<_> = got
            .iter()
            .map(|u| (u.node, u.pamt_bytes, u.tdmrs.clone()))
            .collect();
        assert_eq!(
            nodes,
            [
                (Some(0), 0x1000, alloc::vec![0]),
                (Some(1), 0x2000, alloc::vec![0]),
                (None, 0x3000, alloc::vec![1]),
            ]
        );
        assert_eq!(got[1].pamt, [r(G, G + 0x2000)], "pieces of a node merge");
        assert!(
            got.iter()
                .all(|u| u.dynamic_pamt_bytes == 0 && u.extension_bytes == 0)
        );
    }
}
