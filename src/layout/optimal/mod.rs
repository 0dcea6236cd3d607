//! `Strategy::Optimal`: the cheapest layout the module accepts, or the smallest obstacle.
//!
//! 1. [`model`] turns the memory map into 1 GiB windows that hold memory and the non-memory runs
//!    between memory, with what each costs in reserved areas under the hole policy.
//! 2. [`dp`] picks the TDMR boundaries: the lexicographic minimum of (span, remote-PAMT memory,
//!    TDMRs, reserved areas) among partitions whose TDMRs fit the reserved-area limit. A TDMR's
//!    remote-PAMT memory is its memory less that of the node holding most of it: the bytes whose
//!    PAMT would lie on another node.
//! 3. Each TDMR's PAMT block goes to the node holding most of its memory, docked against a
//!    reserved area that exists anyway ([`crate::pamt::dock`]) so that it costs no area, or else
//!    in a fresh area on that node while a TDMR holding its memory has one to spare. Only when
//!    the limits leave no room there does it go to the TDMR's next node, then to any node, then
//!    across a node boundary; the DP then runs again keeping a spare area in every TDMR holding
//!    that node's memory, and the cheaper of the layouts (by the same tuple, counting the PAMT's
//!    real node and areas) wins. Where that still leaves more PAMTs off their node than Linux
//!    mainline's layout would, Linux's TDMRs (with docking, or with Linux's own blocks) are
//!    taken instead: span costs PAMT once, a remote PAMT costs every SEAMCALL on that memory for
//!    the life of the host. As the last resort before failing, blocks are placed as the
//!    kernel's allocator would, on this partition and on Linux's.
//! 4. Reserved areas are built from the final layout: within each stretch of a TDMR free of
//!    (non-PAMT) TDX memory, one area spans every must-reserve piece (holes, PAMT blocks).
//!
//! With exclusions allowed, windows that hold more holes than the limit give up the cheapest
//! memory between their holes (fewest bytes first), and the plan lists it in `excluded`.

mod dp;
mod model;
mod runs;

use alloc::vec::Vec;

use smallvec::SmallVec;

use super::linux::{Allocated, allocate_checked, lowest_node, split_block, tdmr_ranges};
use super::nodes;
use super::plan::{OffNodeReason, PamtNodes, PamtOrigin, Tdmr};
use super::reserved::build_merged;
use super::reserved_areas::ReservedAreas;
use super::{HolePolicy, Job, Obstacle, Plan, PlanError, Strategy};
use bitvec::vec::BitVec;

use crate::addr::{PhysRange, RangeSet, SZ_1G};
use crate::memmap::{MemoryMap, NodeId};
use crate::pamt::dock::{self, Block, Site};
use crate::pamt::{
    self as pamt_sizes, BlockSource, BottomUpAllocator, PamtModel, TopDownAllocator,
};
use dp::{Infeasible, Problem};
use model::Model;

/// Most extra exclusion rounds when the TDMR limit, not one window, is the obstacle.
const MAX_EXCLUSION_ROUNDS: usize = 4096;

/// Most re-plans keeping spare areas for nodes whose PAMT found no room.
const MAX_SLACK_ROUNDS: usize = 8;

/// Nodes holding a TDMR's memory and their bytes there, most first (ties: the lower id).
type NodeBytes = SmallVec<[(NodeId, u64); 4]>;

pub(super) fn plan(p: &Job<'_>, alloc: Option<&mut dyn BlockSource>) -> Result<Plan, PlanError> {
    match plan_map(p, p.memory, alloc.is_some()) {
        Ok(layout) => finish(p, p.memory, layout, Vec::new(), alloc),
        Err(e) if p.allow_exclusions && matches!(e, PlanError::Infeasible(_)) => {
            plan_with_exclusions(p, alloc, e)
        }
        Err(e) => Err(e),
    }
}

/// TDMR boundaries and where their PAMTs go.
struct Layout {
    tdmrs: Vec<PhysRange>,
    /// Per TDMR: the nodes holding its memory, most first.
    nodes: Vec<NodeBytes>,
    /// Per TDMR: the node its PAMT was placed for.
    asked: Vec<NodeId>,
    /// PAMT blocks (empty when a caller's allocator places them).
    pamt: Vec<PhysRange>,
    /// Per TDMR: where its PAMT lies against its memory (empty with a caller's allocator).
    placed: Vec<PamtNodes>,
}

impl Layout {
    fn off_node(&self) -> usize {
        self.placed.iter().filter(|n| n.reason.is_some()).count()
    }

    /// The planner's cost of the finished layout: span (GiB), remote-PAMT bytes, TDMRs,
    /// reserved areas; `None` when a TDMR's areas exceed the limit.
    fn cost(&self, p: &Job<'_>, memory: &MemoryMap) -> Option<[u64; 4]> {
        let mut sorted = self.pamt.clone();
        sorted.sort_unstable();
        let mut areas = 0u64;
        for &t in &self.tdmrs {
            let n = build_merged(t, p.hole_policy(), memory, p.cmrs, &sorted).len();
            if n > p.limits.max_reserved_per_tdmr() {
                return None;
            }
            areas += n as u64;
        }
        let remote = self
            .nodes
            .iter()
            .zip(&self.placed)
            .map(|(bytes, placed)| {
                let all: u64 = bytes.iter().map(|e| e.1).sum();
                let local = bytes.iter().find(|e| e.0 == placed.pamt).map_or(0, |e| e.1);
                all - local
            })
            .sum();
        let span = self.tdmrs.iter().map(|t| t.size() / SZ_1G).sum();
        Some([span, remote, self.tdmrs.len() as u64, areas])
    }
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

/// Docking sites: pieces of contiguous memory of one node inside each TDMR (abutting regions
/// of one node are one piece), with whether each end touches a reserved area of that TDMR.
/// With `docks_only`, just the pieces next to a counted run, found from the runs:
/// O(TDMRs + runs + docks × (log regions + the piece's regions)). Otherwise every piece
/// (needed only when a PAMT block must open a fresh area): O(regions × log runs).
fn sites(memory: &MemoryMap, model: &Model, tdmrs: &[PhysRange], docks_only: bool) -> Vec<Site> {
    let regions = memory.regions();
    let runs = &model.runs;
    let mut out: Vec<Site> = Vec::new();
    // The stretch of abutting same-node regions around region k, clipped to `tdmr`.
    let stretch = |k: usize, tdmr: PhysRange| {
        let node = regions[k].node;
        let (mut lo, mut hi) = (k, k);
        while lo > 0
            && regions[lo - 1].end() == regions[lo].base
            && regions[lo - 1].node == node
            && regions[lo - 1].end() > tdmr.start()
        {
            lo -= 1;
        }
        while hi + 1 < regions.len()
            && regions[hi + 1].base == regions[hi].end()
            && regions[hi + 1].node == node
            && regions[hi + 1].base < tdmr.end()
        {
            hi += 1;
        }
        PhysRange::new_unchecked(regions[lo].base, regions[hi].end()).intersect(tdmr)
    };
    let mut push = |t: usize, node: NodeId, piece: Option<PhysRange>, low: bool, high: bool| {
        let Some(piece) = piece else {
            return;
        };
        match out.last_mut() {
            Some(last) if last.tdmr == t && last.range == piece => {
                last.dock_low |= low;
                last.dock_high |= high;
            }
            Some(last)
                if !docks_only
                    && last.tdmr == t
                    && last.node == node
                    && last.range.end() == piece.start() =>
            {
                last.range = PhysRange::new_unchecked(last.range.start(), piece.end());
                last.dock_high = high;
            }
            _ => out.push(Site {
                tdmr: t,
                range: piece,
                node,
                dock_low: low,
                dock_high: high,
            }),
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
                        push(t, regions[k - 1].node, stretch(k - 1, tdmr), false, true);
                    }
                }
                if run.end < tdmr.end() {
                    let k = memory.first_ending_above(run.end);
                    if regions.get(k).is_some_and(|r| r.base == run.end) {
                        push(t, regions[k].node, stretch(k, tdmr), true, false);
                    }
                }
            }
        } else {
            let first = memory.first_ending_above(tdmr.start());
            for r in regions.iter().skip(first) {
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
                push(t, r.node, r.range().intersect(tdmr), low, high);
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
    let mut candidates: Vec<Layout> = Vec::new();
    let mut last_tdmrs: Option<(Vec<PhysRange>, Vec<NodeBytes>)> = None;
    let mut no_room: Option<(NodeId, u64)> = None;
    let mut first_error: Option<PlanError> = None;
    for _ in 0..MAX_SLACK_ROUNDS {
        let needs_slack = slack_windows(memory, &model, &slack);
        let problem = Problem {
            model: &model,
            max_areas: limits.max_reserved_per_tdmr() as i64,
            max_tdmrs: limits.max_tdmrs(),
            needs_slack: &needs_slack,
        };
        let partition = match dp::solve(&problem) {
            Ok(partition) => partition,
            Err(e) => {
                first_error.get_or_insert(obstacle(p, &model, e, &slack));
                break;
            }
        };
        let tdmrs: Vec<PhysRange> = partition
            .groups
            .iter()
            .map(|&(i, j)| model.tdmr(i, j))
            .collect();
        let nodes: Vec<NodeBytes> = partition
            .groups
            .iter()
            .map(|&(i, j)| model.node_bytes(i, j))
            .collect();
        if caller_alloc {
            let asked = nodes.iter().map(|n| n.first().map_or(0, |e| e.0)).collect();
            return Ok(Layout {
                tdmrs,
                nodes,
                asked,
                pamt: Vec::new(),
                placed: Vec::new(),
            });
        }
        let areas: Vec<usize> = partition
            .groups
            .iter()
            .map(|&(i, j)| model.areas(i, j) as usize)
            .collect();
        match dock_layout(p, memory, &model, tdmrs.clone(), nodes.clone(), &areas) {
            Ok(layout) => {
                // Nodes whose PAMT found no room at home: keep a spare area for them and try
                // again; the cheaper layout wins.
                let mut stuck: Vec<NodeId> = layout
                    .placed
                    .iter()
                    .filter(|n| n.reason.is_some())
                    .map(|n| n.majority)
                    .filter(|n| !slack.contains(n))
                    .collect();
                stuck.sort_unstable();
                stuck.dedup();
                candidates.push(layout);
                if stuck.is_empty() {
                    break;
                }
                slack.extend(stuck);
            }
            Err(block) => {
                last_tdmrs = Some((tdmrs, nodes));
                let node = block.home().unwrap_or(0);
                no_room.get_or_insert((node, block.size));
                if slack.contains(&node) {
                    break;
                }
                slack.push(node);
            }
        }
    }
    let best = cheapest(p, memory, candidates);
    let best = match best {
        Some(layout) => layout,
        None => {
            // Docking found no room for some block. Place them as the kernel's allocator would
            // (whole regions, possibly across a TDMR boundary): on this partition, then on
            // mainline's, which Linux itself would use. Never worse than Linux.
            let Some((node, size)) = no_room else {
                return Err(
                    first_error.unwrap_or(PlanError::Infeasible(Obstacle::TdmrLimit {
                        needed: limits.max_tdmrs() + 1,
                        limit: limits.max_tdmrs(),
                    })),
                );
            };
            let mut tries: Vec<(Vec<PhysRange>, Vec<NodeId>, OffNodeReason)> = Vec::new();
            if let Some((tdmrs, nodes)) = last_tdmrs {
                let asked = nodes.iter().map(|n| n.first().map_or(0, |e| e.0)).collect();
                tries.push((tdmrs, asked, OffNodeReason::NoRoomOnNode));
            }
            if let Ok(t) = tdmr_ranges(memory, limits.max_tdmrs()) {
                let asked = t.iter().map(|&r| lowest_node(memory, r)).collect();
                tries.push((t, asked, OffNodeReason::LowestNode));
            }
            let found = tries.into_iter().find_map(|(tdmrs, asked, rule)| {
                PamtModel::ALL
                    .into_iter()
                    .find_map(|m| allocator_layout(p, memory, tdmrs.clone(), &asked, rule, m))
            });
            match found {
                Some(layout) => layout,
                None => {
                    return Err(first_error
                        .unwrap_or(PlanError::Infeasible(Obstacle::PamtNoRoom { node, size })));
                }
            }
        }
    };
    Ok(no_more_off_node_than_linux(p, memory, &model, best))
}

/// The cheapest of the layouts by the planner's tuple (span, remote-PAMT memory, TDMRs,
/// reserved areas), the earliest on a tie; `None` when there is none or none fits.
fn cheapest(p: &Job<'_>, memory: &MemoryMap, mut layouts: Vec<Layout>) -> Option<Layout> {
    if layouts.len() <= 1 {
        return layouts.pop();
    }
    let mut best: Option<(usize, [u64; 4])> = None;
    for (k, l) in layouts.iter().enumerate() {
        if let Some(c) = l.cost(p, memory)
            && best.is_none_or(|(_, bc)| c < bc)
        {
            best = Some((k, c));
        }
    }
    best.map(|(k, _)| layouts.swap_remove(k))
}

/// `best`, unless it leaves more PAMTs off their node than Linux mainline's layout (with its
/// default allocator model and hole basis) does on the same map: then the cheapest layout on
/// Linux's TDMRs that does not — docked, or with Linux's own blocks.
fn no_more_off_node_than_linux(
    p: &Job<'_>,
    memory: &MemoryMap,
    model: &Model,
    best: Layout,
) -> Layout {
    let ours = best.off_node();
    if ours == 0 {
        return best;
    }
    let job = Job {
        memory,
        cmrs: p.cmrs,
        limits: p.limits,
        strategy: Strategy::Linux,
        holes: HolePolicy::Memory,
        allow_exclusions: false,
    };
    let Ok(linux) = super::linux::plan(
        &job,
        &mut BottomUpAllocator::new(memory),
        PamtOrigin::Carved,
    ) else {
        return best;
    };
    let theirs = linux.off_node_pamts();
    if ours <= theirs {
        return best;
    }
    let tdmrs: Vec<PhysRange> = linux.tdmrs().iter().map(|t| t.range()).collect();
    let nodes: Vec<NodeBytes> = tdmrs
        .iter()
        .map(|&t| nodes::node_bytes(memory, t))
        .collect();
    let mut options = Vec::new();
    let areas: Vec<usize> = tdmrs
        .iter()
        .map(|&t| build_merged(t, p.hole_policy(), memory, p.cmrs, &[]).len())
        .collect();
    if let Ok(docked) = dock_layout(p, memory, model, tdmrs.clone(), nodes.clone(), &areas)
        && docked.off_node() <= theirs
    {
        options.push(docked);
    }
    // Linux's own blocks always qualify: the same off-node PAMTs, and merged reserved areas
    // never outnumber Linux's unmerged ones.
    options.push(Layout {
        asked: linux.tdmrs().iter().map(Tdmr::node).collect(),
        pamt: linux
            .tdmrs()
            .iter()
            .map(|t| {
                let a = t.pamt(crate::addr::PageSize::Size4K).start();
                PhysRange::new_unchecked(a, a + t.pamt_bytes())
            })
            .collect(),
        placed: linux.tdmrs().iter().map(|t| t.nodes).collect(),
        tdmrs,
        nodes,
    });
    cheapest(p, memory, options).unwrap_or(best)
}

/// Docks one PAMT block per TDMR: against existing reserved areas where the docks alone take
/// every block on its own node, otherwise over every piece of memory. `Err` names a block no
/// memory could take.
fn dock_layout(
    p: &Job<'_>,
    memory: &MemoryMap,
    model: &Model,
    tdmrs: Vec<PhysRange>,
    nodes: Vec<NodeBytes>,
    areas: &[usize],
) -> Result<Layout, Block> {
    let limits = p.limits;
    let blocks: Vec<Block> = tdmrs
        .iter()
        .enumerate()
        .map(|(t, r)| Block {
            tdmr: t,
            size: pamt_sizes::sizes(r.size(), &limits).total(),
            prefs: nodes[t].iter().map(|e| e.0).collect(),
        })
        .collect();
    let spare: Vec<usize> = areas
        .iter()
        .map(|&a| limits.max_reserved_per_tdmr().saturating_sub(a))
        .collect();
    // Docks alone usually take every block on its own node; only otherwise are all pieces
    // listed.
    let docked = dock::place(
        &sites(memory, model, &tdmrs, true),
        &blocks,
        &mut spare.clone(),
    );
    let placed = match docked {
        Ok(placed) if placed.iter().all(|pl| pl.rank == Some(0)) => placed,
        _ => dock::place(
            &sites(memory, model, &tdmrs, false),
            &blocks,
            &mut spare.clone(),
        )
        .map_err(|e| e.block)?,
    };
    let asked: Vec<NodeId> = nodes.iter().map(|n| n.first().map_or(0, |e| e.0)).collect();
    let placed_nodes = placed
        .iter()
        .zip(&asked)
        .map(|(pl, &majority)| {
            let pamt = if pl.spans {
                nodes::block_node(memory, pl.range, pl.node).0
            } else {
                pl.node
            };
            let reason = if pl.spans {
                Some(OffNodeReason::SpansNodes)
            } else {
                (pamt != majority).then_some(OffNodeReason::NoRoomOnNode)
            };
            PamtNodes {
                pamt,
                majority,
                reason,
            }
        })
        .collect();
    Ok(Layout {
        tdmrs,
        nodes,
        asked,
        pamt: placed.iter().map(|pl| pl.range).collect(),
        placed: placed_nodes,
    })
}

/// A layout with one PAMT block per TDMR from a model of the kernel's allocator, asked for
/// `asked[t]`, if every TDMR's merged reserved areas then fit the limit.
fn allocator_layout(
    p: &Job<'_>,
    memory: &MemoryMap,
    tdmrs: Vec<PhysRange>,
    asked: &[NodeId],
    rule: OffNodeReason,
    model: PamtModel,
) -> Option<Layout> {
    let mut alloc: alloc::boxed::Box<dyn BlockSource> = match model {
        PamtModel::TopDown => alloc::boxed::Box::new(TopDownAllocator::new(memory)),
        _ => alloc::boxed::Box::new(BottomUpAllocator::new(memory)),
    };
    let mut pamt = Vec::with_capacity(tdmrs.len());
    for (t, &range) in tdmrs.iter().enumerate() {
        let size = pamt_sizes::sizes(range.size(), &p.limits).total();
        pamt.push(alloc.allocate(size, asked[t])?);
    }
    let mut sorted = pamt.clone();
    sorted.sort_unstable();
    let fits = tdmrs.iter().all(|&t| {
        build_merged(t, p.hole_policy(), memory, p.cmrs, &sorted).len()
            <= p.limits.max_reserved_per_tdmr()
    });
    let nodes: Vec<NodeBytes> = tdmrs
        .iter()
        .map(|&t| nodes::node_bytes(memory, t))
        .collect();
    let placed = tdmrs
        .iter()
        .zip(&pamt)
        .zip(asked)
        .map(|((&t, &b), &a)| nodes::from_allocator(memory, t, b, a, rule))
        .collect();
    fits.then_some(Layout {
        tdmrs,
        nodes,
        asked: asked.to_vec(),
        pamt,
        placed,
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
    let (blocks, placed): (Vec<PhysRange>, Vec<PamtNodes>) = match alloc {
        None => (layout.pamt, layout.placed),
        Some(alloc) => {
            let mut blocks = alloc::vec![PhysRange::EMPTY; layout.tdmrs.len()];
            let mut chunks = Allocated::default();
            let mut nodes: Vec<NodeId> = layout.asked.clone();
            nodes.sort_unstable();
            nodes.dedup();
            for node in nodes {
                let members: Vec<usize> = (0..layout.tdmrs.len())
                    .filter(|&t| layout.asked[t] == node)
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
            let placed = layout
                .tdmrs
                .iter()
                .zip(&blocks)
                .zip(&layout.asked)
                .map(|((&t, &b), &a)| {
                    nodes::from_allocator(memory, t, b, a, OffNodeReason::NoRoomOnNode)
                })
                .collect();
            (blocks, placed)
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
            node: layout.asked[t],
            mixes_nodes: layout.nodes[t].len() > 1,
            reserved,
            pamt: split_block(blocks[t], sizes[t]),
            nodes: placed[t],
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
