//! `Strategy::Optimal`: the cheapest layout the module accepts, or the smallest obstacle.
//!
//! 1. [`model`] turns the memory map into 1 GiB windows that hold memory and the non-memory runs
//!    between memory, with what each costs in reserved areas under the hole policy.
//! 2. [`dp`] picks the TDMR boundaries: the lexicographic minimum of (span, node-mixing TDMRs,
//!    TDMRs, reserved areas) among partitions whose TDMRs fit the reserved-area limit.
//! 3. Each TDMR's PAMT block goes to the node holding most of its memory and is docked against
//!    a reserved area that exists anyway ([`crate::pamt::dock`]), so it costs no area. When a
//!    node's PAMT can only go in fresh, the DP runs again keeping a spare area in every TDMR
//!    holding that node's memory.
//! 4. Reserved areas are built from the final layout: within each stretch of a TDMR free of
//!    (non-PAMT) TDX memory, one area spans every must-reserve piece (holes, PAMT blocks).
//!
//! With exclusions allowed, windows that hold more holes than the limit give up the cheapest
//! memory between their holes (fewest bytes first), and the plan lists it in `excluded`.

mod dp;
mod model;

use alloc::vec::Vec;

use super::linux::{
    Allocated, allocate_checked, lowest_node, mixes_nodes, split_block, tdmr_ranges,
};
use super::plan::{PamtOrigin, Tdmr};
use super::reserved::build_merged;
use super::reserved_areas::ReservedAreas;
use super::{Job, Obstacle, Plan, PlanError};
use bitvec::vec::BitVec;

use crate::addr::{PhysRange, RangeSet, SZ_1G};
use crate::memmap::{MemoryMap, NodeId};
use crate::pamt::dock::{self, Block, Site};
use crate::pamt::{self as pamt_sizes, BlockSource, TopDownAllocator};
use dp::{Infeasible, Problem};
use model::Model;

/// Most extra exclusion rounds when the TDMR limit, not one window, is the obstacle.
const MAX_EXCLUSION_ROUNDS: usize = 4096;

pub(super) fn plan(p: &Job<'_>, alloc: Option<&mut dyn BlockSource>) -> Result<Plan, PlanError> {
    match plan_map(p, p.memory, alloc.is_some()) {
        Ok(layout) => finish(p, p.memory, layout, Vec::new(), alloc),
        Err(e) if p.allow_exclusions && matches!(e, PlanError::Infeasible(_)) => {
            plan_with_exclusions(p, alloc, e)
        }
        Err(e) => Err(e),
    }
}

/// TDMR boundaries, nodes and hole counts chosen for a memory map.
struct Layout {
    tdmrs: Vec<PhysRange>,
    nodes: Vec<NodeId>,
    /// Whether each TDMR holds memory of more than one node.
    mixed: Vec<bool>,
    /// PAMT blocks placed by docking (empty when a caller's allocator places them).
    pamt: Vec<PhysRange>,
}

fn obstacle(p: &Job<'_>, model: &Model, e: Infeasible, slack: &[NodeId]) -> PlanError {
    let limit = p.limits.max_reserved_per_tdmr();
    PlanError::Infeasible(match e {
        Infeasible::Window { window, areas } => Obstacle::WindowHoles {
            window: model.windows[window].range(),
            holes: areas as usize,
            limit,
            policy: p.hole_policy(),
            pamt_needs_area: !slack.is_empty() && (areas as usize) < limit + 1,
        },
        Infeasible::TooFewTdmrs { needed } => Obstacle::TdmrLimit {
            needed,
            limit: p.limits.max_tdmrs(),
        },
    })
}

/// Whether run `run` holds a must-reserve byte inside `tdmr`.
fn run_counts_in(model: &Model, run: usize, tdmr: PhysRange) -> bool {
    model.runs.get(run).is_some_and(|r| {
        let s = r.start.max(tdmr.start());
        let e = r.end.min(tdmr.end());
        r.must_first.max(s) < r.must_last_end.min(e)
    })
}

/// Docking sites: region pieces inside each TDMR, with whether each end touches a reserved area
/// of that TDMR. With `docks_only`, just the pieces next to a counted run, found from the runs:
/// O(TDMRs + runs + docks × log regions). Otherwise every piece (needed only when a PAMT block
/// must open a fresh area): O(regions × log runs).
fn sites(memory: &MemoryMap, model: &Model, tdmrs: &[PhysRange], docks_only: bool) -> Vec<Site> {
    let regions = memory.regions();
    let runs = &model.runs;
    let mut out: Vec<Site> = Vec::new();
    let mut push = |t: usize, k: usize, low: bool, high: bool| {
        let r = &regions[k];
        if let Some(piece) = r.range().intersect(tdmrs[t]) {
            match out.last_mut() {
                Some(last) if last.tdmr == t && last.range == piece => {
                    last.dock_low |= low;
                    last.dock_high |= high;
                }
                _ => out.push(Site {
                    tdmr: t,
                    range: piece,
                    node: r.node,
                    dock_low: low,
                    dock_high: high,
                }),
            }
        }
    };
    for (t, &tdmr) in tdmrs.iter().enumerate() {
        if docks_only {
            let first = runs.partition_point(|r| r.end <= tdmr.start());
            for (j, run) in runs[first..].iter().enumerate() {
                if run.start >= tdmr.end() {
                    break;
                }
                if !run_counts_in(model, first + j, tdmr) {
                    continue;
                }
                // Runs start at a region's end (or 0) and end at a region's base (or 2^52).
                if run.start > tdmr.start() {
                    let k = memory.first_ending_above(run.start);
                    if k > 0 && regions[k - 1].end() == run.start {
                        push(t, k - 1, false, true);
                    }
                }
                if run.end < tdmr.end() {
                    let k = memory.first_ending_above(run.end);
                    if regions.get(k).is_some_and(|r| r.base == run.end) {
                        push(t, k, true, false);
                    }
                }
            }
        } else {
            let first = memory.first_ending_above(tdmr.start());
            for (k, r) in regions.iter().enumerate().skip(first) {
                if r.base >= tdmr.end() {
                    break;
                }
                let ends_at = |pa: u64| runs.partition_point(|x| x.end < pa);
                let starts_at = |pa: u64| runs.partition_point(|x| x.start < pa);
                let low = r.base > tdmr.start() && {
                    let j = ends_at(r.base);
                    runs.get(j).is_some_and(|x| x.end == r.base) && run_counts_in(model, j, tdmr)
                };
                let high = r.end() < tdmr.end() && {
                    let j = starts_at(r.end());
                    runs.get(j).is_some_and(|x| x.start == r.end()) && run_counts_in(model, j, tdmr)
                };
                push(t, k, low, high);
            }
        }
    }
    out
}

/// Windows holding memory of the given nodes.
fn slack_windows(memory: &MemoryMap, model: &Model, nodes: &[NodeId]) -> BitVec {
    if nodes.is_empty() {
        return BitVec::new();
    }
    let mut out = BitVec::repeat(false, model.windows.len());
    let mut w = 0usize;
    for r in memory.regions() {
        let first = r.base / SZ_1G;
        let last = (r.end() - 1) / SZ_1G;
        while w < model.windows.len() && model.windows[w].last < first {
            w += 1;
        }
        if nodes.contains(&r.node) {
            let mut k = w;
            while k < model.windows.len() && model.windows[k].index <= last {
                out.set(k, true);
                k += 1;
            }
        }
    }
    out
}

fn plan_map(p: &Job<'_>, memory: &MemoryMap, caller_alloc: bool) -> Result<Layout, PlanError> {
    let limits = p.limits;
    let model = Model::new(memory, p.cmrs, p.hole_policy());
    let mut slack: Vec<NodeId> = Vec::new();
    loop {
        let needs_slack = slack_windows(memory, &model, &slack);
        let problem = Problem {
            model: &model,
            max_areas: limits.max_reserved_per_tdmr() as i64,
            max_tdmrs: limits.max_tdmrs(),
            needs_slack: &needs_slack,
        };
        let partition = dp::solve(&problem).map_err(|e| obstacle(p, &model, e, &slack))?;
        let tdmrs: Vec<PhysRange> = partition
            .groups
            .iter()
            .map(|&(i, j)| model.tdmr(i, j))
            .collect();
        let (nodes, mixed): (Vec<NodeId>, Vec<bool>) = partition
            .groups
            .iter()
            .map(|&(i, j)| model.nodes(i, j))
            .unzip();
        let areas: Vec<usize> = partition
            .groups
            .iter()
            .map(|&(i, j)| model.areas(i, j) as usize)
            .collect();
        if caller_alloc {
            return Ok(Layout {
                tdmrs,
                nodes,
                mixed,
                pamt: Vec::new(),
            });
        }
        let blocks: Vec<Block> = tdmrs
            .iter()
            .enumerate()
            .map(|(t, r)| Block {
                tdmr: t,
                size: pamt_sizes::sizes(r.size(), &limits).total(),
                node: nodes[t],
            })
            .collect();
        let mut spare: Vec<usize> = areas
            .iter()
            .map(|&a| limits.max_reserved_per_tdmr().saturating_sub(a))
            .collect();
        // Docks alone usually take every block; only otherwise are all pieces listed.
        let docked = dock::place(
            &sites(memory, &model, &tdmrs, true),
            &blocks,
            &mut spare.clone(),
        );
        let placed = match docked {
            Ok(placed) => Ok(placed),
            Err(_) => dock::place(&sites(memory, &model, &tdmrs, false), &blocks, &mut spare),
        };
        match placed {
            Ok(placed) => {
                return Ok(Layout {
                    tdmrs,
                    nodes,
                    mixed,
                    pamt: placed.iter().map(|pl| pl.range).collect(),
                });
            }
            Err(no_room) if !slack.contains(&no_room.block.node) => {
                slack.push(no_room.block.node);
            }
            Err(no_room) => {
                // Docking packs blocks into region pieces of one TDMR each. When that fails,
                // place them as the kernel's allocator would (whole regions, top-down, possibly
                // across a TDMR boundary): first for this partition, then for mainline's
                // partition, which Linux itself would use. Never worse than Linux.
                let linux_tdmrs = tdmr_ranges(memory, limits.max_tdmrs()).ok();
                let candidates = [(tdmrs, nodes)].into_iter().chain(linux_tdmrs.map(|t| {
                    let n = t.iter().map(|&r| lowest_node(memory, r)).collect();
                    (t, n)
                }));
                for (tdmrs, nodes) in candidates {
                    if let Some(layout) = top_down(p, memory, tdmrs, nodes) {
                        return Ok(layout);
                    }
                }
                return Err(PlanError::Infeasible(Obstacle::PamtNoRoom {
                    node: no_room.block.node,
                    size: no_room.block.size,
                }));
            }
        }
    }
}

/// A layout with one PAMT block per TDMR from [`TopDownAllocator`], if every TDMR's merged
/// reserved areas then fit the limit.
fn top_down(
    p: &Job<'_>,
    memory: &MemoryMap,
    tdmrs: Vec<PhysRange>,
    nodes: Vec<NodeId>,
) -> Option<Layout> {
    let mut alloc = TopDownAllocator::new(memory);
    let mut pamt = Vec::with_capacity(tdmrs.len());
    for (t, &range) in tdmrs.iter().enumerate() {
        let size = pamt_sizes::sizes(range.size(), &p.limits).total();
        pamt.push(alloc.allocate(size, nodes[t])?);
    }
    let mut sorted = pamt.clone();
    sorted.sort_unstable();
    let fits = tdmrs.iter().all(|&t| {
        build_merged(t, p.hole_policy(), memory, p.cmrs, &sorted).len()
            <= p.limits.max_reserved_per_tdmr()
    });
    let mixed = tdmrs.iter().map(|&t| mixes_nodes(memory, t)).collect();
    fits.then_some(Layout {
        tdmrs,
        nodes,
        mixed,
        pamt,
    })
}

/// Builds the plan from a layout: PAMT blocks (docked, or from the caller's allocator, one
/// contiguous chunk per node), then reserved areas around them.
fn finish(
    p: &Job<'_>,
    memory: &MemoryMap,
    layout: Layout,
    excluded: Vec<PhysRange>,
    alloc: Option<&mut dyn BlockSource>,
) -> Result<Plan, PlanError> {
    let limits = p.limits;
    let pamt_origin = if alloc.is_some() {
        PamtOrigin::Allocator
    } else {
        PamtOrigin::Carved
    };
    let sizes: Vec<_> = layout
        .tdmrs
        .iter()
        .map(|t| pamt_sizes::sizes(t.size(), &limits))
        .collect();
    let blocks: Vec<PhysRange> = match alloc {
        None => layout.pamt,
        Some(alloc) => {
            let mut blocks = alloc::vec![PhysRange::EMPTY; layout.tdmrs.len()];
            let mut chunks = Allocated::default();
            let mut nodes: Vec<NodeId> = layout.nodes.clone();
            nodes.sort_unstable();
            nodes.dedup();
            for node in nodes {
                let members: Vec<usize> = (0..layout.tdmrs.len())
                    .filter(|&t| layout.nodes[t] == node)
                    .collect();
                let total: u64 = members.iter().map(|&t| sizes[t].total()).sum();
                let first = layout.tdmrs[members[0]];
                let chunk = allocate_checked(alloc, memory, &mut chunks, first, total, node)?;
                let mut cursor = chunk.start();
                for t in members {
                    blocks[t] = PhysRange::new_unchecked(cursor, cursor + sizes[t].total());
                    cursor += sizes[t].total();
                }
            }
            blocks
        }
    };
    let mut sorted_blocks = blocks.clone();
    sorted_blocks.sort_unstable();
    let max = limits.max_reserved_per_tdmr();
    let mut tdmrs = Vec::with_capacity(layout.tdmrs.len());
    for (t, &range) in layout.tdmrs.iter().enumerate() {
        let reserved: ReservedAreas =
            build_merged(range, p.hole_policy(), memory, p.cmrs, &sorted_blocks);
        if reserved.len() > max {
            return Err(PlanError::ReservedAreasExhausted {
                tdmr: range,
                limit: max,
            });
        }
        tdmrs.push(Tdmr {
            range,
            node: layout.nodes[t],
            mixes_nodes: layout.mixed[t],
            reserved,
            pamt: split_block(blocks[t], sizes[t]),
            nodes: crate::layout::nodes::from_allocator(
                memory,
                range,
                blocks[t],
                layout.nodes[t],
                crate::layout::OffNodeReason::NoRoomOnNode,
            ),
        });
    }
    Ok(Plan {
        strategy: p.strategy,
        holes: p.hole_policy(),
        limits,
        tdmrs,
        excluded,
        pamt_origin,
    })
}

/// Memory of `memory` inside `range`, as ranges.
fn memory_in(memory: &MemoryMap, range: PhysRange) -> impl Iterator<Item = PhysRange> + '_ {
    memory
        .regions_in(range)
        .iter()
        .filter_map(move |r| r.range().intersect(range))
}

/// The separators of one window: the memory between consecutive must-reserve run clips, with
/// its byte count. Excluding one merges two areas.
fn separators(memory: &MemoryMap, model: &Model, window: PhysRange) -> Vec<(u64, PhysRange)> {
    let runs = &model.runs;
    let first = runs.partition_point(|r| r.end <= window.start());
    let mut counted: Vec<PhysRange> = Vec::new();
    for r in &runs[first..] {
        if r.start >= window.end() {
            break;
        }
        let s = r.start.max(window.start());
        let e = r.end.min(window.end());
        if r.must_first.max(s) < r.must_last_end.min(e) {
            counted.push(PhysRange::new_unchecked(s, e));
        }
    }
    counted
        .windows(2)
        .map(|pair| {
            let between = PhysRange::new_unchecked(pair[0].end(), pair[1].start());
            (memory_in(memory, between).map(|m| m.size()).sum(), between)
        })
        .collect()
}

fn plan_with_exclusions(
    p: &Job<'_>,
    alloc: Option<&mut dyn BlockSource>,
    first_error: PlanError,
) -> Result<Plan, PlanError> {
    let limit = p.limits.max_reserved_per_tdmr();
    let model = Model::new(p.memory, p.cmrs, p.hole_policy());
    // Minimal exclusions for every window that cannot stand alone: its cheapest separators.
    let mut excluded: Vec<PhysRange> = Vec::new();
    for (w, window) in model.windows.iter().enumerate() {
        let holes = model.areas(w, w).max(0) as usize;
        if holes <= limit {
            continue;
        }
        let mut seps = separators(p.memory, &model, window.range());
        seps.sort_unstable_by_key(|&(bytes, r)| (bytes, r.start()));
        for &(_, between) in seps.iter().take(holes - limit) {
            excluded.extend(memory_in(p.memory, between));
        }
    }
    let mut excluded = RangeSet::from_ranges(excluded);
    for _ in 0..MAX_EXCLUSION_ROUNDS {
        let memory = p.memory.without(&excluded)?;
        match plan_map(p, &memory, alloc.is_some()) {
            Ok(layout) => return finish(p, &memory, layout, excluded.into_vec(), alloc),
            Err(PlanError::Infeasible(
                Obstacle::WindowHoles { .. } | Obstacle::TdmrLimit { .. },
            )) => {
                // Give up the cheapest separator anywhere and try again.
                let model = Model::new(&memory, p.cmrs, p.hole_policy());
                let cheapest = model
                    .windows
                    .iter()
                    .flat_map(|w| separators(&memory, &model, w.range()))
                    .min_by_key(|&(bytes, r)| (bytes, r.start()));
                let Some((_, between)) = cheapest else {
                    return Err(first_error);
                };
                excluded = excluded.union(&memory_in(&memory, between).collect());
            }
            Err(e) => return Err(e),
        }
    }
    Err(first_error)
}
