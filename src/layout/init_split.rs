//! TDMRs shaped for parallel TDH.SYS.TDMR.INIT ([`Planner::with_init_cpus`]).
//!
//! TDH.SYS.TDMR.INIT initializes one TDMR's PAMT serially (one call per 4 MiB of TDMR, per
//! 16 MiB with Dynamic PAMT; the module keeps a lock per TDMR), while different TDMRs proceed
//! on different CPUs at once. Bring-up hands TDMRs out longest first to the least loaded CPU,
//! so the wall time is the longest per-CPU share of that schedule ([`InitWork`]). After the
//! strategy's own objective, this pass splits TDMRs on 1 GiB boundaries so that share is as
//! short as the limits allow over `n` CPUs (the schedule is fixed: longest TDMR first to the
//! least loaded CPU, as bring-up assigns them), and among the splits that reach it, the one with
//! the fewest TDMRs:
//!
//! - candidate shapes come from cutting, one piece at a time, the TDMR whose pieces are largest
//!   into equal pieces (within MAX_TDMRS), each evaluated by the schedule it gives on `n` CPUs;
//! - a split TDMR's PAMT grows in place: the run of touching PAMT blocks it belongs to is
//!   extended (up, else down) inside the same memory region — PAMTs stay on their node — by
//!   the pages the pieces need beyond the original (each piece rounds its 1G level up to a
//!   page: at most a page per extra TDMR with 16-byte entries), and each split TDMR's block is
//!   carved into one contiguous block per piece;
//! - every piece's reserved areas are rebuilt and must fit MAX_RESERVED_PER_TDMR; a shape that
//!   does not fit is passed over for the next best.
//!
//! A plan whose PAMTs came from the caller's allocator is left as it is: its blocks cannot grow,
//! and memory asked for a shape that then failed could not be given back. Cost: at most
//! MAX_TDMRS shapes, each O(MAX_TDMRS log MAX_TDMRS) to schedule; only shapes better than the
//! current one are built, best first. Nothing grows with the size of the address space.

use alloc::collections::BinaryHeap;
use alloc::vec::Vec;
use core::cmp::Reverse;

use super::Job;
use super::linux::{mixes_nodes, split_block};
use super::nodes;
use super::plan::{OffNodeReason, PamtOrigin, Plan, Tdmr};
use super::reserved::build_merged;
use crate::addr::{PhysRange, RangeSet, SZ_1G, SZ_1M};
use crate::memmap::MemoryMap;
use crate::pamt;

/// Bytes of TDMR one TDH.SYS.TDMR.INIT call initializes: 4 MiB, or 16 MiB with Dynamic PAMT.
pub const fn tdmr_init_step(dynamic_pamt: bool) -> u64 {
    if dynamic_pamt { 16 * SZ_1M } else { 4 * SZ_1M }
}

/// The TDH.SYS.TDMR.INIT work of a plan spread over some CPUs, as bring-up schedules it:
/// TDMRs longest first, each to the least loaded CPU, one TDMR per CPU at a time.
///
/// ```
/// use tdmr::layout::Planner;
/// use tdmr::memmap::parse_kernel_log;
/// let log = "virt/tdx: CMR: [0x100000, 0x77800000)\nvirt/tdx: CMR: [0x100000000, 0x407a000000)\n";
/// let input = parse_kernel_log(log)?;
/// let plan = Planner::new().plan(input.memory(), input.cmrs())?;
/// let w = plan.init_work(4);
/// assert_eq!(w.calls(), 256 * 256);              // 2 + 254 GiB, 4 MiB per call
/// assert_eq!(w.longest_share_calls(), 254 * 256); // one CPU does the 254 GiB TDMR
/// let split = Planner::new().with_init_cpus(4).plan(input.memory(), input.cmrs())?;
/// // 254 GiB cut in four (64 + 64 + 63 + 63), the 2 GiB TDMR after one of the 63s.
/// assert_eq!(split.init_work(4).longest_share_calls(), 65 * 256);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InitWork {
    cpus: u32,
    calls: u64,
    longest_share_calls: u64,
    tdmrs: usize,
}

impl InitWork {
    /// CPUs the work was spread over (at least 1).
    pub const fn cpus(&self) -> u32 {
        self.cpus
    }

    /// TDH.SYS.TDMR.INIT calls over all TDMRs.
    pub const fn calls(&self) -> u64 {
        self.calls
    }

    /// Calls of the CPU with the most to do: the wall time in calls.
    pub const fn longest_share_calls(&self) -> u64 {
        self.longest_share_calls
    }

    /// TDMRs.
    pub const fn tdmrs(&self) -> usize {
        self.tdmrs
    }
}

/// Which of `cpus` CPUs does each job when jobs go longest first (ties: lower index) to the
/// least loaded CPU (ties: lower CPU): the schedule bring-up runs, so the plan's estimate and
/// the CPUs' shares are the same numbers.
pub(crate) fn assign(jobs: &[u64], cpus: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| (Reverse(jobs[i]), i));
    let n = cpus.max(1).min(jobs.len().max(1));
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> = (0..n).map(|c| Reverse((0, c))).collect();
    let mut owner = alloc::vec![0usize; jobs.len()];
    for i in order {
        if let Some(Reverse((load, cpu))) = heap.pop() {
            owner[i] = cpu;
            heap.push(Reverse((load + jobs[i], cpu)));
        }
    }
    owner
}

/// The makespan of `jobs` (any unit) on `cpus` CPUs under [`assign`].
fn schedule(jobs: &mut [u64], cpus: u32) -> u64 {
    let owner = assign(jobs, cpus as usize);
    let mut load = alloc::vec![0u64; (cpus.max(1) as usize).min(jobs.len().max(1))];
    for (j, &c) in jobs.iter().zip(&owner) {
        load[c] += j;
    }
    load.into_iter().max().unwrap_or(0)
}

impl Plan {
    /// The TDH.SYS.TDMR.INIT work of this plan on `cpus` CPUs (0 counts as 1).
    pub fn init_work(&self, cpus: u32) -> InitWork {
        let step = tdmr_init_step(self.limits().dynamic_pamt());
        let mut jobs: Vec<u64> = self.tdmrs().iter().map(|t| t.size() / step).collect();
        let calls = jobs.iter().sum();
        InitWork {
            cpus: cpus.max(1),
            calls,
            longest_share_calls: schedule(&mut jobs, cpus),
            tdmrs: self.tdmrs().len(),
        }
    }
}

/// `gib` GiB in `k` pieces (1 ≤ k ≤ gib), as equal as possible, larger first.
fn pieces(gib: u64, k: u64) -> impl Iterator<Item = u64> {
    let k = k.clamp(1, gib.max(1));
    let (q, r) = (gib / k, gib % k);
    (0..k).map(move |j| q + u64::from(j < r))
}

/// A shape worth building: how many pieces each TDMR is cut into.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Shape {
    makespan: u64,
    tdmrs: u64,
    pieces: Vec<u64>,
}

/// The shapes better than `plan` on `cpus` CPUs, best first. Starting from the plan, the TDMR
/// with the largest piece gets one piece more, while MAX_TDMRS allows: each step makes the
/// largest piece as small as that many TDMRs can (the greedy is exact for that), and every
/// step's schedule is a candidate.
fn shapes(plan: &Plan, cpus: u32) -> Vec<Shape> {
    let gib: Vec<u64> = plan.tdmrs().iter().map(|t| t.size() / SZ_1G).collect();
    let current = schedule(&mut gib.clone(), cpus);
    let max_tdmrs = plan.limits().max_tdmrs() as u64;
    let mut counts: Vec<u64> = alloc::vec![1; gib.len()];
    let mut total = gib.len() as u64;
    let mut out: Vec<Shape> = Vec::new();
    while total < max_tdmrs {
        // The TDMR whose largest piece is largest (and can still be cut), lowest index first.
        let Some(i) = (0..gib.len())
            .filter(|&i| counts[i] < gib[i])
            .max_by_key(|&i| (gib[i].div_ceil(counts[i]), Reverse(i)))
        else {
            break;
        };
        counts[i] += 1;
        total += 1;
        let mut jobs: Vec<u64> = gib
            .iter()
            .zip(&counts)
            .flat_map(|(&g, &k)| pieces(g, k))
            .collect();
        let makespan = schedule(&mut jobs, cpus);
        if makespan < current {
            out.push(Shape {
                makespan,
                tdmrs: jobs.len() as u64,
                pieces: counts.clone(),
            });
        }
        // More TDMRs than CPUs and no shorter share: more cuts cannot help any more.
        if total > u64::from(cpus) && makespan <= jobs.iter().sum::<u64>().div_ceil(u64::from(cpus))
        {
            break;
        }
    }
    out.sort_unstable();
    out
}

/// `cluster` grown to `size` bytes (up, else down), inside the one memory region that holds
/// it, clear of every range in `taken`.
fn grow(memory: &MemoryMap, cluster: PhysRange, size: u64, taken: &RangeSet) -> Option<PhysRange> {
    let home = memory.regions_in(cluster);
    let [region] = home else { return None };
    let region = region.range();
    let up = cluster
        .start()
        .checked_add(size)
        .and_then(|end| PhysRange::new(cluster.start(), end).ok());
    let down = cluster
        .end()
        .checked_sub(size)
        .and_then(|start| PhysRange::new(start, cluster.end()).ok());
    [up, down].into_iter().flatten().find(|g| {
        region.intersect(*g) == Some(*g) && taken.intersect(&RangeSet::from_ranges([*g])).is_empty()
    })
}

/// The plan with TDMR `i` cut into `shape.pieces[i]` pieces, or `None` if the PAMTs cannot
/// grow or a piece breaks the reserved-area limit.
///
/// PAMT blocks that touch inside one memory region (docking packs them so) form a cluster; a
/// cluster whose members need more bytes grows at one end inside its region, and its members
/// are laid out again in the same order, each split TDMR's block carved into one block per
/// piece. Blocks stay in the region — on the node — they were in.
fn build(job: &Job<'_>, memory: &MemoryMap, plan: &Plan, shape: &Shape) -> Option<Plan> {
    let limits = *plan.limits();
    let tdmrs = plan.tdmrs();
    // Per TDMR: its pieces (GiB) and their PAMT sizes.
    let parts: Vec<Vec<(u64, pamt::PamtSizes)>> = tdmrs
        .iter()
        .zip(&shape.pieces)
        .map(|(t, &k)| {
            pieces(t.size() / SZ_1G, k)
                .map(|g| (g, pamt::sizes(g * SZ_1G, &limits)))
                .collect()
        })
        .collect();
    // Per TDMR: its PAMT as one contiguous block, if it is one.
    let block_of = |t: &Tdmr| {
        let total: u64 = t.pamt.iter().map(|r| r.size()).sum();
        let span = RangeSet::from_ranges(t.pamt);
        let mut it = span.iter();
        match (it.next(), it.next()) {
            (Some(b), None) if b.size() == total => Some(b),
            _ => None,
        }
    };
    let mut blocks: Vec<(PhysRange, usize)> = Vec::new();
    for (i, t) in tdmrs.iter().enumerate() {
        match block_of(t) {
            Some(b) => blocks.push((b, i)),
            // Only a TDMR that stays whole may keep a PAMT in pieces.
            None if parts[i].len() > 1 => return None,
            None => {}
        }
    }
    blocks.sort_unstable();
    // Clusters: runs of touching blocks, as (range, members in address order).
    let mut clusters: Vec<(PhysRange, Vec<usize>)> = Vec::new();
    for &(b, i) in &blocks {
        match clusters.last_mut() {
            Some((r, members))
                if r.end() == b.start()
                    && memory
                        .regions_in(PhysRange::new_unchecked(r.start(), b.end()))
                        .len()
                        == 1 =>
            {
                *r = PhysRange::new_unchecked(r.start(), b.end());
                members.push(i);
            }
            _ => clusters.push((b, alloc::vec![i])),
        }
    }
    let mut taken = plan.pamt_ranges();
    let mut new_pamt: Vec<Vec<[PhysRange; 3]>> =
        tdmrs.iter().map(|t| alloc::vec![t.pamt]).collect();
    for (range, members) in &clusters {
        let need: u64 = members
            .iter()
            .map(|&i| parts[i].iter().map(|(_, s)| s.total()).sum::<u64>())
            .sum();
        if members.iter().all(|&i| parts[i].len() == 1) {
            continue;
        }
        let others = taken.subtract(&RangeSet::from_ranges([*range]));
        let grown = grow(memory, *range, need.max(range.size()), &others)?;
        taken = others.union(&RangeSet::from_ranges([grown]));
        let mut cursor = grown.start();
        for &i in members {
            new_pamt[i] = parts[i]
                .iter()
                .map(|&(_, s)| {
                    let piece = PhysRange::new_unchecked(cursor, cursor + s.total());
                    cursor = piece.end();
                    split_block(piece, s)
                })
                .collect();
        }
    }
    let mut sorted: Vec<PhysRange> = new_pamt
        .iter()
        .flatten()
        .flat_map(|p| p.iter().copied())
        .filter(|r| !r.is_empty())
        .collect();
    sorted.sort_unstable();
    let max = limits.max_reserved_per_tdmr();
    let mut out = Vec::with_capacity(shape.tdmrs as usize);
    for (i, t) in tdmrs.iter().enumerate() {
        let mut base = t.base();
        for (&(g, _), &pamt) in parts[i].iter().zip(&new_pamt[i]) {
            let range = PhysRange::new_unchecked(base, base + g * SZ_1G);
            base = range.end();
            let reserved = build_merged(range, job.hole_policy(), memory, job.cmrs, &sorted);
            if reserved.len() > max {
                return None;
            }
            let whole = parts[i].len() == 1;
            // A piece keeps its parent's PAMT node; where it lies is judged for the piece.
            let block = PhysRange::new_unchecked(
                pamt.iter().map(|p| p.start()).min().unwrap_or(0),
                pamt.iter().map(|p| p.end()).max().unwrap_or(0),
            );
            let nodes = if whole {
                t.nodes
            } else {
                nodes::from_allocator(
                    memory,
                    range,
                    block,
                    t.pamt_node(),
                    t.nodes.reason.unwrap_or(OffNodeReason::NoRoomOnNode),
                )
            };
            out.push(Tdmr {
                range,
                node: t.node(),
                mixes_nodes: if whole {
                    t.mixes_nodes()
                } else {
                    mixes_nodes(memory, range)
                },
                reserved,
                pamt,
                nodes,
            });
        }
    }
    Some(Plan {
        strategy: plan.strategy(),
        holes: plan.holes(),
        limits,
        tdmrs: out,
        excluded: plan.excluded().to_vec(),
        pamt_origin: plan.pamt_origin(),
    })
}

/// `plan` reshaped for TDH.SYS.TDMR.INIT on `cpus` CPUs (unchanged for 1 CPU, for a plan
/// whose PAMTs came from the caller's allocator, or when no split shortens the longest share).
pub(super) fn shape(job: &Job<'_>, plan: Plan, cpus: u32) -> Plan {
    if cpus <= 1 || plan.pamt_origin() == PamtOrigin::Allocator {
        return plan;
    }
    let without;
    let memory = if plan.excluded().is_empty() {
        job.memory
    } else {
        match job
            .memory
            .without(&RangeSet::from_ranges(plan.excluded().iter().copied()))
        {
            Ok(m) => {
                without = m;
                &without
            }
            Err(_) => return plan,
        }
    };
    for s in shapes(&plan, cpus) {
        if let Some(better) = build(job, memory, &plan, &s) {
            return better;
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assign_is_longest_first_to_the_least_loaded_lowest_first() {
        assert_eq!(assign(&[1, 5, 3, 3], 2), [0, 0, 1, 1]);
        assert_eq!(assign(&[2, 2, 2], 8), [0, 1, 2]);
        assert_eq!(assign(&[], 4), Vec::<usize>::new());
        assert_eq!(assign(&[4, 4], 0), [0, 0]);
    }

    #[test]
    fn schedule_is_longest_first_to_the_least_loaded() {
        assert_eq!(schedule(&mut [], 4), 0);
        assert_eq!(schedule(&mut [5, 1, 1], 1), 7);
        // What bring-up does (longest first to the free CPU), not the optimum (3+3, 2+2+2).
        assert_eq!(schedule(&mut [3, 3, 2, 2, 2], 2), 7);
        assert_eq!(schedule(&mut [7, 1], 64), 7);
    }

    #[test]
    fn pieces_are_as_equal_as_possible_larger_first() {
        for gib in 1..200u64 {
            for k in 1..=gib {
                let p: Vec<u64> = pieces(gib, k).collect();
                assert_eq!(p.iter().sum::<u64>(), gib);
                assert_eq!(p.len() as u64, k);
                assert!(p.iter().all(|&x| x >= 1 && x <= gib.div_ceil(k)));
                assert!(p.windows(2).all(|w| w[0] >= w[1] && w[0] - w[1] <= 1));
            }
        }
    }
}
