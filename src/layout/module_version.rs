//! Plans the target TDX module version accepts ([`Planner::with_module_version`]).
//!
//! Some module versions refuse configurations that later ones accept (see
//! [`crate::tdx::validate::ConfigEnv`], "Module versions"). The planner knows the version it
//! plans for and never emits a layout that version refuses:
//!
//! - **TDX 1.0** refuses a TDMR whose 16 reserved slots are all used and whose last reserved
//!   area runs to the TDMR's end (it checks the empty tail against the CMRs). The planner keeps
//!   a stricter invariant than the module's test: for 1.0 no TDMR has 16 reserved areas with the
//!   last one at its end, whether or not the end point happens to lie in a CMR.
//!
//! A plan that breaks the invariant is repaired, one offending TDMR at a time: the TDMR grows
//! forward to the 1 GiB boundary past the next byte of TDX memory, so that its tail is TDX
//! memory rather than a reserved area; TDMRs it now covers are absorbed, the one it reaches
//! into is clipped. PAMT blocks follow: the grown TDMR's block grows in place inside its memory
//! region (up, else down, clear of other blocks), a clipped TDMR's block shrinks at either end,
//! an absorbed TDMR's block goes back to TDX memory. Reserved areas are then rebuilt and must
//! fit the limit. On the Emerald Rapids map with holes from memory, `[1 GiB, 2 GiB)` holds 16
//! holes, the last running to 2 GiB; for 1.0 it becomes `[1 GiB, 5 GiB)`, whose 16th area ends
//! at 4 GiB where memory resumes, and the next TDMR starts at 5 GiB instead of 4 GiB: 2 GiB
//! more covered, 8 MiB more PAMT.
//!
//! A plan whose PAMT blocks came from the caller's allocator cannot be repaired (its blocks
//! cannot move); it fails with [`PlanError::RefusedByModuleVersion`] instead, as does a plan no
//! repair fixes. Cost: O(TDMRs × (TDMRs + regions in a TDMR)) per repair, at most one repair per
//! TDMR; nothing grows with the size of the address space.

use alloc::vec::Vec;

use super::Job;
use super::PlanError;
use super::linux::{mixes_nodes, split_block};
use super::nodes;
use super::plan::{OffNodeReason, PamtOrigin, Plan, Tdmr};
use super::reserved::build_merged;
use crate::addr::{PhysRange, RangeSet, SZ_1G, align_down};
use crate::memmap::MemoryMap;
use crate::pamt;
use crate::tdx::abi::TDMR_INFO_RESERVED_SLOTS;
use crate::tdx::metadata::ModuleVersion;

/// Whether `version` refuses a TDMR whose reserved slots are all used with the last one
/// ending at the TDMR's end (TDX 1.0).
pub(crate) fn refuses_reserved_tail(version: ModuleVersion) -> bool {
    version.major == 1 && version.minor == 0
}

/// Whether `t` breaks the invariant kept for TDX 1.0.
fn offends(t: &Tdmr) -> bool {
    t.reserved().len() >= TDMR_INFO_RESERVED_SLOTS
        && t.reserved()
            .last()
            .is_some_and(|a| a.offset + a.size == t.size())
}

/// `plan`, repaired if needed so that module `version` accepts it.
pub(crate) fn fit(
    job: &Job<'_>,
    version: Option<ModuleVersion>,
    plan: Plan,
) -> Result<Plan, PlanError> {
    let Some(version) = version else {
        return Ok(plan);
    };
    if !refuses_reserved_tail(version) {
        return Ok(plan);
    }
    let Some(first) = plan.tdmrs().iter().find(|t| offends(t)) else {
        return Ok(plan);
    };
    let refused = PlanError::RefusedByModuleVersion {
        version,
        tdmr: first.range(),
    };
    if plan.pamt_origin() == PamtOrigin::Allocator {
        return Err(refused);
    }
    let without;
    let memory = if plan.excluded().is_empty() {
        job.memory
    } else {
        without = job
            .memory
            .without(&RangeSet::from_ranges(plan.excluded().iter().copied()))
            .map_err(|_| refused)?;
        &without
    };
    let mut plan = plan;
    // Each repair removes an offender and makes no TDMR more: at most one per TDMR.
    for _ in 0..=plan.tdmrs().len() {
        let Some(k) = plan.tdmrs().iter().position(offends) else {
            return Ok(plan);
        };
        let tdmr = plan.tdmrs()[k].range();
        plan = grow_forward(job, memory, &plan, k)
            .ok_or(PlanError::RefusedByModuleVersion { version, tdmr })?;
    }
    Err(refused)
}

/// `block` resized to `size` bytes inside the memory region holding it, clear of `taken`: the
/// candidates in order of preference (grow up, grow down; shrink keeping the end, keeping the
/// start).
fn resized(memory: &MemoryMap, block: PhysRange, size: u64, taken: &RangeSet) -> Vec<PhysRange> {
    let home = memory.regions_in(block);
    let [region] = home else {
        return Vec::new();
    };
    let region = region.range();
    let candidates = [
        block
            .start()
            .checked_add(size)
            .and_then(|e| PhysRange::new(block.start(), e).ok()),
        block
            .end()
            .checked_sub(size)
            .and_then(|s| PhysRange::new(s, block.end()).ok()),
    ];
    let mut out: Vec<PhysRange> = Vec::new();
    let order: [usize; 2] = if size >= block.size() { [0, 1] } else { [1, 0] };
    for i in order {
        if let Some(c) = candidates[i]
            && region.intersect(c) == Some(c)
            && taken.intersect(&RangeSet::from_ranges([c])).is_empty()
            && !out.contains(&c)
        {
            out.push(c);
        }
    }
    out
}

/// The TDMR's PAMT as one contiguous block, if it is one.
fn block_of(t: &Tdmr) -> Option<PhysRange> {
    let span = RangeSet::from_ranges(t.pamt.iter().copied().filter(|r| !r.is_empty()));
    let mut it = span.iter();
    match (it.next(), it.next()) {
        (Some(b), None) if b.size() == t.pamt_bytes() => Some(b),
        _ => None,
    }
}

/// The plan with TDMR `k` grown forward past the next byte of TDX memory (see the module
/// documentation), or `None` when that cannot be done within the limits.
fn grow_forward(job: &Job<'_>, memory: &MemoryMap, plan: &Plan, k: usize) -> Option<Plan> {
    let limits = *plan.limits();
    let tdmrs = plan.tdmrs();
    let t = &tdmrs[k];
    let regions = memory.regions();
    let next_memory = regions.get(memory.first_ending_above(t.end()))?;
    let m = next_memory.base.max(t.end());
    let end = align_down(m, SZ_1G).checked_add(SZ_1G)?;
    let grown = PhysRange::new(t.base(), end).ok()?;

    // The new TDMR list: k grown, the ones it covers absorbed, the one it reaches clipped.
    struct Next {
        range: PhysRange,
        from: usize,
        resized: bool,
    }
    let mut next: Vec<Next> = Vec::with_capacity(tdmrs.len());
    for (i, o) in tdmrs.iter().enumerate() {
        if i == k {
            next.push(Next {
                range: grown,
                from: i,
                resized: true,
            });
        } else if i < k || o.base() >= end {
            next.push(Next {
                range: o.range(),
                from: i,
                resized: false,
            });
        } else if o.end() > end {
            next.push(Next {
                range: PhysRange::new_unchecked(end, o.end()),
                from: i,
                resized: true,
            });
        }
    }

    // PAMT blocks: unchanged TDMRs keep theirs; resized ones get one block each, resized in
    // place; every combination of the candidates is tried, first fit wins.
    let kept: Vec<PhysRange> = next
        .iter()
        .filter(|n| !n.resized)
        .flat_map(|n| tdmrs[n.from].pamt.iter().copied())
        .filter(|r| !r.is_empty())
        .collect();
    let kept = RangeSet::from_ranges(kept);
    let changed: Vec<&Next> = next.iter().filter(|n| n.resized).collect();
    let mut options: Vec<Vec<(PhysRange, pamt::PamtSizes)>> = Vec::with_capacity(changed.len());
    for n in &changed {
        let sizes = pamt::sizes(n.range.size(), &limits);
        let block = block_of(&tdmrs[n.from])?;
        let cands = resized(memory, block, sizes.total(), &kept);
        if cands.is_empty() {
            return None;
        }
        options.push(cands.into_iter().map(|c| (c, sizes)).collect());
    }
    let combos: usize = options.iter().map(Vec::len).product();
    'combo: for mut c in 0..combos {
        let mut chosen: Vec<(PhysRange, pamt::PamtSizes)> = Vec::with_capacity(options.len());
        for o in &options {
            chosen.push(o[c % o.len()]);
            c /= o.len();
        }
        // Resized blocks must not overlap each other either.
        let mut sorted: Vec<PhysRange> = chosen.iter().map(|c| c.0).collect();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0].end() > w[1].start()) {
            continue;
        }
        let mut all: Vec<PhysRange> = kept.iter().chain(sorted.iter().copied()).collect();
        all.sort_unstable();
        let mut out: Vec<Tdmr> = Vec::with_capacity(next.len());
        let mut changed_at = 0;
        for n in &next {
            let old = &tdmrs[n.from];
            let pamt = if n.resized {
                let (block, sizes) = chosen[changed_at];
                changed_at += 1;
                split_block(block, sizes)
            } else {
                old.pamt
            };
            let reserved = build_merged(n.range, job.hole_policy(), memory, job.cmrs, &all);
            if reserved.len() > limits.max_reserved_per_tdmr() {
                continue 'combo;
            }
            // A resized TDMR keeps its PAMT's node; where the block lies is judged anew.
            let nodes = if n.resized {
                let block = PhysRange::new_unchecked(
                    pamt.iter().map(|p| p.start()).min().unwrap_or(0),
                    pamt.iter().map(|p| p.end()).max().unwrap_or(0),
                );
                nodes::from_allocator(
                    memory,
                    n.range,
                    block,
                    old.pamt_node(),
                    old.nodes.reason.unwrap_or(OffNodeReason::NoRoomOnNode),
                )
            } else {
                old.nodes
            };
            out.push(Tdmr {
                range: n.range,
                node: old.node(),
                mixes_nodes: if n.resized {
                    mixes_nodes(memory, n.range)
                } else {
                    old.mixes_nodes()
                },
                reserved,
                pamt,
                nodes,
            });
        }
        return Some(Plan {
            strategy: plan.strategy(),
            holes: plan.holes(),
            limits,
            tdmrs: out,
            excluded: plan.excluded().to_vec(),
            pamt_origin: plan.pamt_origin(),
        });
    }
    None
}
