//! `Strategy::Linux`: Linux mainline's TDMR construction, reproduced exactly.
//!
//! 1. One pass over the memory regions: each is rounded out to 1 GiB; a region already covered
//!    by the current TDMR is skipped; one that starts inside it is clipped to its end; otherwise
//!    a new TDMR starts. More than MAX_TDMRS fails ("TDMRs exhausted").
//! 2. Each TDMR gets one contiguous PAMT block (4K, 2M, 1G levels in that order) from the
//!    allocator, on the node of the lowest memory inside the TDMR. Planned offline, the
//!    allocator is a model of the kernel's (`Planner::with_pamt_model`): by default the order
//!    of `alloc_contig_pages()`, bottom-up from the start of the node's highest zone.
//! 3. Each TDMR reserves every hole of its hole basis, then every PAMT block (of any TDMR) that
//!    overlaps it, one area each, never merged, then sorted. More than MAX_RESERVED_PER_TDMR
//!    fails ("reserved areas exhausted").

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::nodes;
use super::plan::{OffNodeReason, PamtOrigin, Tdmr};
use super::reserved::{gaps_in, relative};
use super::reserved_areas::{ReservedAreas, ReservedKind};
use super::{BadPamtReason, Job, Plan, PlanError};
use crate::addr::{PageSize, PhysRange, SZ_1G, SZ_4K, align_down, align_up, is_aligned};
use crate::memmap::{MemoryMap, NodeId};
use crate::pamt::{self, BlockSource};

/// TDMR boundaries as Linux's `fill_out_tdmrs` draws them.
pub(crate) fn tdmr_ranges(
    memory: &MemoryMap,
    max_tdmrs: usize,
) -> Result<Vec<PhysRange>, PlanError> {
    let mut tdmrs: Vec<PhysRange> = Vec::new();
    for r in memory.regions() {
        let mut start = align_down(r.base, SZ_1G);
        // Regions end below 2^52, so rounding up cannot overflow.
        let end = align_up(r.end(), SZ_1G).unwrap_or(u64::MAX);
        if let Some(cur) = tdmrs.last() {
            if end <= cur.end() {
                continue;
            }
            start = start.max(cur.end());
        }
        if tdmrs.len() == max_tdmrs {
            return Err(PlanError::TdmrsExhausted { limit: max_tdmrs });
        }
        tdmrs.push(PhysRange::new_unchecked(start, end));
    }
    Ok(tdmrs)
}

/// The node of the lowest TDX memory inside `tdmr` (Linux's `tdmr_get_nid`), node 0 if none.
pub(crate) fn lowest_node(memory: &MemoryMap, tdmr: PhysRange) -> NodeId {
    memory
        .regions()
        .get(memory.first_ending_above(tdmr.start()))
        .map_or(0, |r| r.node)
}

/// Whether the TDX memory inside `tdmr` belongs to more than one node.
pub(crate) fn mixes_nodes(memory: &MemoryMap, tdmr: PhysRange) -> bool {
    let mut nodes = memory.regions_in(tdmr).iter().map(|r| r.node);
    let first = nodes.next();
    nodes.any(|n| Some(n) != first)
}

/// Asks `alloc` for a PAMT block and checks what comes back.
pub(crate) fn allocate_checked(
    alloc: &mut dyn BlockSource,
    memory: &MemoryMap,
    others: &mut Allocated,
    tdmr: PhysRange,
    size: u64,
    node: NodeId,
) -> Result<PhysRange, PlanError> {
    let block = alloc
        .allocate(size, node)
        .ok_or(PlanError::PamtAllocationFailed { tdmr, size, node })?;
    let bad = |reason| PlanError::BadPamtBlock {
        tdmr,
        block,
        size,
        reason,
    };
    if block.size() != size {
        return Err(bad(BadPamtReason::WrongSize));
    }
    if !is_aligned(block.start(), SZ_4K) {
        return Err(bad(BadPamtReason::Misaligned));
    }
    if !memory.contains_range(block) {
        return Err(bad(BadPamtReason::NotTdxMemory));
    }
    if others.overlaps(block) {
        return Err(bad(BadPamtReason::OverlapsPamt));
    }
    others.insert(block);
    Ok(block)
}

/// PAMT blocks allocated so far, by address, for O(log n) overlap checks.
#[derive(Default)]
pub(crate) struct Allocated(BTreeMap<u64, u64>);

impl Allocated {
    fn overlaps(&self, block: PhysRange) -> bool {
        // The last block starting before `block` ends is the only one that can overlap it.
        self.0
            .range(..block.end())
            .next_back()
            .is_some_and(|(_, &end)| end > block.start())
    }

    fn insert(&mut self, block: PhysRange) {
        self.0.insert(block.start(), block.end());
    }
}

/// Splits one contiguous block into the three levels, 4K first.
pub(crate) fn split_block(block: PhysRange, sizes: pamt::PamtSizes) -> [PhysRange; 3] {
    let mut out = [PhysRange::EMPTY; 3];
    let mut cursor = block.start();
    for level in PageSize::ALL {
        let s = sizes.level(level);
        out[level.index()] = PhysRange::new_unchecked(cursor, cursor + s);
        cursor += s;
    }
    out
}

pub(super) fn plan(
    p: &Job<'_>,
    alloc: &mut dyn BlockSource,
    pamt_origin: PamtOrigin,
) -> Result<Plan, PlanError> {
    let limits = p.limits;
    let memory = p.memory;
    let ranges = tdmr_ranges(memory, limits.max_tdmrs())?;

    let mut blocks: Vec<PhysRange> = Vec::with_capacity(ranges.len());
    let mut allocated = Allocated::default();
    let mut pamts = Vec::with_capacity(ranges.len());
    let mut nodes = Vec::with_capacity(ranges.len());
    for &tdmr in &ranges {
        let sizes = pamt::sizes(tdmr.size(), &limits);
        let node = lowest_node(memory, tdmr);
        let block = allocate_checked(alloc, memory, &mut allocated, tdmr, sizes.total(), node)?;
        blocks.push(block);
        pamts.push(split_block(block, sizes));
        nodes.push(node);
    }

    let policy = p.hole_policy();
    let max = limits.max_reserved_per_tdmr();
    // Blocks by address, to find those overlapping a TDMR without scanning them all. Linux
    // adds overlapping PAMTs in TDMR order and sorts afterwards; the areas and the point of
    // failure are the same either way.
    let mut by_address = blocks.clone();
    by_address.sort_unstable();
    let mut tdmrs = Vec::with_capacity(ranges.len());
    for (i, &tdmr) in ranges.iter().enumerate() {
        let mut reserved = ReservedAreas::new();
        let mut add = |r: PhysRange, kind| {
            if reserved.len() == max {
                return Err(PlanError::ReservedAreasExhausted { tdmr, limit: max });
            }
            reserved.push(relative(tdmr, (r, kind)));
            Ok(())
        };
        for hole in gaps_in(policy, memory, p.cmrs, tdmr) {
            add(hole, ReservedKind::Hole)?;
        }
        let first = by_address.partition_point(|b| b.end() <= tdmr.start());
        for block in by_address[first..]
            .iter()
            .take_while(|b| b.start() < tdmr.end())
        {
            if let Some(part) = block.intersect(tdmr) {
                add(part, ReservedKind::Pamt)?;
            }
        }
        reserved.sort_by_offset();
        tdmrs.push(Tdmr {
            range: tdmr,
            node: nodes[i],
            mixes_nodes: mixes_nodes(memory, tdmr),
            reserved,
            pamt: pamts[i],
            nodes: nodes::from_allocator(
                memory,
                tdmr,
                blocks[i],
                nodes[i],
                OffNodeReason::LowestNode,
            ),
        });
    }
    Ok(Plan {
        strategy: p.strategy,
        holes: policy,
        limits,
        tdmrs,
        excluded: Vec::new(),
        pamt_origin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memmap::MemoryRegion;
    use alloc::vec;

    const G: u64 = SZ_1G;

    fn map(v: &[(u64, u64, u32)]) -> MemoryMap {
        MemoryMap::new(
            v.iter()
                .map(|&(b, s, n)| MemoryRegion::new(b, s, n))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn regions_sharing_a_gigabyte_share_a_tdmr() {
        let m = map(&[
            (0x10_0000, 0x1000_0000, 0),
            (0x2000_0000, 0x1000_0000, 0),
            (G + 0x1000_0000, G, 0),
        ]);
        let t = tdmr_ranges(&m, 64).unwrap();
        assert_eq!(
            t,
            vec![
                PhysRange::new(0, G).unwrap(),
                PhysRange::new(G, 3 * G).unwrap()
            ]
        );
    }

    #[test]
    fn node_boundaries_start_new_tdmrs_and_limit_counts() {
        let m = map(&[(0, 2 * G, 0), (2 * G, 2 * G, 1)]);
        assert_eq!(tdmr_ranges(&m, 2).unwrap().len(), 2);
        assert_eq!(
            tdmr_ranges(&m, 1),
            Err(PlanError::TdmrsExhausted { limit: 1 })
        );
    }
}
