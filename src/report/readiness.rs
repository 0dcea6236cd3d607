//! The readiness assessment: will TDX come up on this machine, and what will it cost?
//!
//! [`Readiness::assess`] plans the same memory map with Linux mainline's strategy and with this
//! crate's planner, each with static PAMT and with Dynamic PAMT, and collects what a person
//! bringing TDX up should know before trying: who succeeds, PAMT footprints, how close each
//! layout comes to the module's limits, node locality, and memory left out.
//! [`super::text::readiness`] renders it.

use alloc::vec::Vec;
use core::fmt;

use crate::addr::{PageSize, PhysRange};
use crate::layout::{HolePolicy, Plan, PlanError, Planner, Strategy};
use crate::memmap::{MemoryMap, NodeId};
use crate::sysinfo::TdxLimits;

/// Linux warns `consumed TDMRs reaching limit` when fewer than this many TDMRs stay unused
/// (its `TDMR_NR_WARN`).
pub const TDMR_NR_WARN: usize = 4;

/// One strategy's result on the machine.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// The strategy planned with.
    pub strategy: Strategy,
    /// The hole basis planned with.
    pub holes: HolePolicy,
    /// The plan, or why there is none.
    pub result: Result<Plan, PlanError>,
    /// PAMT bytes without Dynamic PAMT (`None`: no layout with static PAMT).
    pub static_pamt: Option<u64>,
    /// PAMT bytes with Dynamic PAMT (the limits' bitmap width, or 1 bit per 4 KiB page when
    /// they had none); `None`: no layout with Dynamic PAMT.
    pub dynamic_pamt: Option<u64>,
    /// TDMRs whose PAMT does not lie on the node that holds most of the TDMR's memory.
    pub off_node_pamts: usize,
}

impl Verdict {
    fn assess(planner: &Planner<'_>) -> Verdict {
        let result = planner.plan();
        let limits = planner.limits;
        let other = if limits.dynamic_pamt() {
            limits.without_dynamic_pamt()
        } else {
            // One bit per page is never refused (only 0 bits are).
            limits.with_dynamic_pamt(1).unwrap_or(limits)
        };
        let other_pamt = planner
            .clone()
            .limits(other)
            .plan()
            .ok()
            .map(|p| p.pamt_bytes());
        let this_pamt = result.as_ref().ok().map(Plan::pamt_bytes);
        let (static_pamt, dynamic_pamt) = if limits.dynamic_pamt() {
            (other_pamt, this_pamt)
        } else {
            (this_pamt, other_pamt)
        };
        let off_node_pamts = match &result {
            Ok(plan) => off_node(plan, planner.memory).count(),
            Err(_) => 0,
        };
        Verdict {
            strategy: planner.strategy,
            holes: planner.hole_policy(),
            result,
            static_pamt,
            dynamic_pamt,
            off_node_pamts,
        }
    }

    /// Whether the strategy found a layout.
    pub fn is_ok(&self) -> bool {
        self.result.is_ok()
    }
}

/// Something worth knowing about a plan that nonetheless works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Warning {
    /// Fewer than [`TDMR_NR_WARN`] TDMRs stay unused (Linux prints `consumed TDMRs reaching
    /// limit`): little room for memory added later.
    FewSpareTdmrs {
        /// The plan's strategy.
        strategy: Strategy,
        /// TDMRs used.
        used: usize,
        /// MAX_TDMRS.
        limit: usize,
    },
    /// A TDMR uses every reserved area the module allows: one more hole or PAMT block in it
    /// would fail the configuration.
    ReservedAreasFull {
        /// The plan's strategy.
        strategy: Strategy,
        /// The TDMR's index in the plan.
        index: usize,
        /// The TDMR.
        tdmr: PhysRange,
        /// MAX_RESERVED_PER_TDMR.
        limit: usize,
    },
    /// TDX memory is left out of the configuration; the kernel must keep it from its page
    /// allocator.
    Excluded {
        /// The plan's strategy.
        strategy: Strategy,
        /// Bytes left out.
        bytes: u64,
        /// Ranges left out.
        ranges: usize,
    },
    /// A TDMR's PAMT lies on another node than the one holding most of the TDMR's memory.
    PamtOffNode {
        /// The plan's strategy.
        strategy: Strategy,
        /// The TDMR's index in the plan.
        index: usize,
        /// The TDMR.
        tdmr: PhysRange,
        /// The node the PAMT lies on.
        pamt_node: NodeId,
        /// The node holding most of the TDMR's memory.
        memory_node: NodeId,
    },
}

impl Warning {
    /// The strategy whose plan the warning is about.
    pub fn strategy(&self) -> Strategy {
        match *self {
            Warning::FewSpareTdmrs { strategy, .. }
            | Warning::ReservedAreasFull { strategy, .. }
            | Warning::Excluded { strategy, .. }
            | Warning::PamtOffNode { strategy, .. } => strategy,
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Warning::FewSpareTdmrs {
                strategy,
                used,
                limit,
            } => write!(
                f,
                "{}: {used} of {limit} TDMRs used, fewer than {TDMR_NR_WARN} spare (Linux: consumed TDMRs reaching limit)",
                strategy.name()
            ),
            Warning::ReservedAreasFull {
                strategy,
                index,
                tdmr,
                limit,
            } => write!(
                f,
                "{}: TDMR {index} {tdmr} uses all {limit} reserved areas",
                strategy.name()
            ),
            Warning::Excluded {
                strategy,
                bytes,
                ranges,
            } => write!(
                f,
                "{}: {} of TDX memory in {ranges} range{} left out: keep it from the page allocator",
                strategy.name(),
                super::Bytes(bytes),
                if ranges == 1 { "" } else { "s" }
            ),
            Warning::PamtOffNode {
                strategy,
                index,
                tdmr,
                pamt_node,
                memory_node,
            } => write!(
                f,
                "{}: TDMR {index} {tdmr} has its PAMT on node {pamt_node}, most of its memory on node {memory_node}",
                strategy.name()
            ),
        }
    }
}

/// Everything the readiness report says.
#[derive(Clone, Debug)]
pub struct Readiness {
    /// Linux mainline's strategy: the planner's own settings when it was the chosen strategy,
    /// otherwise its defaults (memory hole basis) under the same limits.
    pub linux: Verdict,
    /// This crate's planner: the chosen strategy, or [`Strategy::Optimal`] (same limits and
    /// exclusion setting) when Linux's was chosen.
    pub ours: Verdict,
    /// The strategy the caller chose (its plan is the one to use).
    pub chosen: Strategy,
    /// The module limits planned against (Dynamic PAMT as the caller set it).
    pub limits: TdxLimits,
    /// Whether the chosen planner may leave memory out.
    pub exclusions_allowed: bool,
    /// Warnings about the plans that succeeded, Linux's first.
    pub warnings: Vec<Warning>,
}

impl Readiness {
    /// Plans with `planner` and with the other side of the comparison (Linux mainline or the
    /// optimal strategy), each with static and Dynamic PAMT: four plans in all.
    ///
    /// ```
    /// use tdmr::layout::Planner;
    /// use tdmr::memmap::parse::parse_kernel_log;
    /// use tdmr::report::readiness::Readiness;
    /// let log = "virt/tdx: CMR: [0x100000, 0x77800000)\nvirt/tdx: CMR: [0x100000000, 0x407a000000)\n";
    /// let input = parse_kernel_log(log)?;
    /// let r = Readiness::assess(&Planner::new(input.memory(), input.cmrs()));
    /// assert!(r.linux.is_ok() && r.ours.is_ok());
    /// assert!(r.ours.dynamic_pamt < r.ours.static_pamt);
    /// # Ok::<(), tdmr::memmap::parse::ParseError>(())
    /// ```
    pub fn assess(planner: &Planner<'_>) -> Readiness {
        let base = Planner::new(planner.memory, planner.cmrs).limits(planner.limits);
        let (linux, ours) = match planner.strategy {
            Strategy::Linux => (
                planner.clone(),
                base.strategy(Strategy::Optimal)
                    .allow_exclusions(planner.allow_exclusions),
            ),
            _ => (base.strategy(Strategy::Linux), planner.clone()),
        };
        let linux = Verdict::assess(&linux);
        let ours = Verdict::assess(&ours);
        let mut warnings = Vec::new();
        for v in [&linux, &ours] {
            if let Ok(plan) = &v.result {
                warnings_for(plan, planner.memory, &mut warnings);
            }
        }
        Readiness {
            linux,
            ours,
            chosen: planner.strategy,
            limits: planner.limits,
            exclusions_allowed: planner.allow_exclusions,
            warnings,
        }
    }

    /// The verdict of the chosen strategy.
    pub fn chosen(&self) -> &Verdict {
        if self.chosen == Strategy::Linux {
            &self.linux
        } else {
            &self.ours
        }
    }
}

fn warnings_for(plan: &Plan, memory: &MemoryMap, out: &mut Vec<Warning>) {
    let strategy = plan.strategy();
    let limits = plan.limits();
    let used = plan.tdmrs().len();
    if limits.max_tdmrs().saturating_sub(used) < TDMR_NR_WARN {
        out.push(Warning::FewSpareTdmrs {
            strategy,
            used,
            limit: limits.max_tdmrs(),
        });
    }
    let limit = limits.max_reserved_per_tdmr();
    for (index, t) in plan.tdmrs().iter().enumerate() {
        if t.reserved().len() >= limit {
            out.push(Warning::ReservedAreasFull {
                strategy,
                index,
                tdmr: t.range(),
                limit,
            });
        }
    }
    for (index, pamt_node, memory_node) in off_node(plan, memory) {
        out.push(Warning::PamtOffNode {
            strategy,
            index,
            tdmr: plan.tdmrs()[index].range(),
            pamt_node,
            memory_node,
        });
    }
    if !plan.excluded().is_empty() {
        out.push(Warning::Excluded {
            strategy,
            bytes: plan.excluded_bytes(),
            ranges: plan.excluded().len(),
        });
    }
}

/// The node holding most TDX memory inside `range` (the lowest such node on a tie), if any.
pub fn majority_node(memory: &MemoryMap, range: PhysRange) -> Option<NodeId> {
    let mut per_node: Vec<(NodeId, u64)> = Vec::new();
    for r in memory.regions_in(range) {
        let bytes = r.range().intersect(range).map_or(0, |x| x.size());
        match per_node.iter_mut().find(|(n, _)| *n == r.node) {
            Some(e) => e.1 += bytes,
            None => per_node.push((r.node, bytes)),
        }
    }
    per_node
        .iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|e| e.0)
}

/// `(TDMR index, PAMT node, memory node)` of every TDMR whose PAMT blocks are not all on the
/// node holding most of its memory. PAMT blocks outside TDX memory are not judged.
fn off_node<'a>(
    plan: &'a Plan,
    memory: &'a MemoryMap,
) -> impl Iterator<Item = (usize, NodeId, NodeId)> + 'a {
    plan.tdmrs().iter().enumerate().filter_map(|(i, t)| {
        let home = majority_node(memory, t.range())?;
        PageSize::ALL
            .into_iter()
            .map(|level| t.pamt(level))
            .filter(|b| !b.is_empty())
            .flat_map(|b| memory.regions_in(b).iter().map(|r| r.node))
            .find(|&n| n != home)
            .map(|n| (i, n, home))
    })
}
