//! The readiness assessment: will TDX come up on this machine, and what will it cost?
//!
//! [`Readiness::assess`] plans the same memory map with Linux mainline's strategy and with this
//! crate's planner, each with static PAMT and with Dynamic PAMT, and collects what a person
//! bringing TDX up should know before trying: who succeeds, PAMT footprints, how close each
//! layout comes to the module's limits, node locality (each TDMR's PAMT node against the node
//! holding most of its memory), memory left out, and whether Linux's verdict depends on where
//! its PAMTs land (it plans Linux with both models of the kernel's allocator).
//! The `report` feature's text renderer prints it.

mod init_estimate;
mod summary;
mod unremovable;
mod warning;

pub use init_estimate::{InitEstimate, LINUX_MS_PER_TIB, RATE_SOURCE, SplitCost, tdmr_init_ms};
pub use unremovable::{Unremovable, unremovable_memory};
pub use warning::Warning;

use alloc::vec::Vec;

use self::warning::warnings_for;
use crate::addr::{PageSize, PhysRange};
use crate::layout::{HolePolicy, Plan, PlanError, Planner, Strategy};
use crate::memmap::{Cmrs, MemoryMap, NodeId};
use crate::pamt::PamtModel;
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
    fn assess(planner: &Planner, memory: &MemoryMap, cmrs: &Cmrs) -> Verdict {
        let result = planner.plan(memory, cmrs);
        let limits = planner.limits();
        let other = if limits.dynamic_pamt() {
            limits.without_dynamic_pamt()
        } else {
            // One bit per page is never refused (only 0 bits are).
            limits.with_dynamic_pamt(1).unwrap_or(limits)
        };
        let other_pamt = planner
            .with_limits(other)
            .plan(memory, cmrs)
            .ok()
            .map(|p| p.pamt_bytes());
        let this_pamt = result.as_ref().ok().map(Plan::pamt_bytes);
        let (static_pamt, dynamic_pamt) = if limits.dynamic_pamt() {
            (other_pamt, this_pamt)
        } else {
            (this_pamt, other_pamt)
        };
        let off_node_pamts = match &result {
            Ok(plan) => off_node(plan, memory).count(),
            Err(_) => 0,
        };
        Verdict {
            strategy: planner.strategy(),
            holes: planner.holes(),
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

/// Linux's verdict flips with where its PAMTs land: planned with the other model of the
/// kernel's allocator, Linux succeeds where the prediction fails, or the other way round.
///
/// Each PAMT becomes a reserved area of whichever TDMR it lands in, and what else the kernel
/// reserved at boot (so where `alloc_contig_pages()` really finds room) is unknowable offline.
/// On such a machine Linux's outcome is a coin the boot flips; the layout of this crate's
/// planner does not depend on it.
#[derive(Clone, Debug)]
pub struct PlacementFlip {
    /// The model Linux's verdict was planned with ([`Verdict::result`]).
    pub predicted: PamtModel,
    /// The model that disagrees.
    pub other: PamtModel,
    /// What the Linux strategy does with the other model.
    pub other_result: Result<Plan, PlanError>,
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
    /// `Some` when Linux's verdict depends on where its PAMTs land.
    pub linux_placement_flip: Option<PlacementFlip>,
    /// Warnings about the plans that succeeded, Linux's first (with, first of all, a flip of
    /// Linux's verdict).
    pub warnings: Vec<Warning>,
    /// How long TDH.SYS.TDMR.INIT takes with the chosen plan on the planner's
    /// [`Planner::init_cpus`], next to Linux's serial loop (`None`: no plan).
    pub init_estimate: Option<InitEstimate>,
}

impl Readiness {
    /// Plans `memory` inside `cmrs` with `planner` and with the other side of the comparison
    /// (Linux mainline or the optimal strategy), each with static and Dynamic PAMT, and Linux
    /// once more with the other model of where its PAMTs land: five plans in all.
    ///
    /// ```
    /// use tdmr::layout::Planner;
    /// use tdmr::memmap::parse_kernel_log;
    /// use tdmr::readiness::Readiness;
    /// let log = "virt/tdx: CMR: [0x100000, 0x77800000)\nvirt/tdx: CMR: [0x100000000, 0x407a000000)\n";
    /// let input = parse_kernel_log(log)?;
    /// let r = Readiness::assess(&Planner::new(), input.memory(), input.cmrs());
    /// assert!(r.linux.is_ok() && r.ours.is_ok());
    /// assert!(r.ours.dynamic_pamt < r.ours.static_pamt);
    /// # Ok::<(), tdmr::memmap::ParseError>(())
    /// ```
    pub fn assess(planner: &Planner, memory: &MemoryMap, cmrs: &Cmrs) -> Readiness {
        let base = Planner::new().with_limits(planner.limits());
        let (linux, ours) = match planner.strategy() {
            Strategy::Linux => (
                *planner,
                base.with_strategy(Strategy::Optimal)
                    .with_exclusions(planner.exclusions()),
            ),
            _ => (base.with_strategy(Strategy::Linux), *planner),
        };
        let predicted = linux.pamt_model();
        let other = PamtModel::ALL
            .into_iter()
            .find(|&m| m != predicted)
            .unwrap_or(predicted);
        let ((linux, ours), other_result) = both(
            || {
                both(
                    || Verdict::assess(&linux, memory, cmrs),
                    || Verdict::assess(&ours, memory, cmrs),
                )
            },
            || linux.with_pamt_model(other).plan(memory, cmrs),
        );
        let linux_placement_flip =
            (linux.result.is_ok() != other_result.is_ok()).then(|| PlacementFlip {
                predicted,
                other,
                other_result,
            });
        let mut warnings = Vec::new();
        if let Some(flip) = &linux_placement_flip {
            warnings.push(Warning::LinuxDependsOnPamtPlacement {
                predicted: flip.predicted,
                predicted_ok: linux.result.is_ok(),
                other: flip.other,
            });
        }
        for v in [&linux, &ours] {
            if let Ok(plan) = &v.result {
                warnings_for(plan, memory, &mut warnings);
            }
        }
        let chosen = if planner.strategy() == Strategy::Linux {
            &linux
        } else {
            &ours
        };
        let init_estimate = chosen.result.as_ref().ok().map(|plan| {
            let cpus = planner.init_cpus();
            let one_cpu = (cpus > 1)
                .then(|| planner.with_init_cpus(1).plan(memory, cmrs).ok())
                .flatten();
            InitEstimate::new(plan, linux.result.as_ref().ok(), one_cpu.as_ref(), cpus)
        });
        Readiness {
            init_estimate,
            linux,
            ours,
            chosen: planner.strategy(),
            limits: planner.limits(),
            exclusions_allowed: planner.exclusions(),
            linux_placement_flip,
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

/// The node holding most TDX memory inside `range` (the lowest such node on a tie), if any.
pub(crate) fn majority_node(memory: &MemoryMap, range: PhysRange) -> Option<NodeId> {
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

/// The node holding most of `t`'s PAMT blocks and the node holding most of its memory,
/// measured from the memory map (`None` where no TDX memory holds them).
#[cfg(feature = "report")]
pub(crate) fn pamt_nodes(
    memory: &MemoryMap,
    t: &crate::layout::Tdmr,
) -> (Option<NodeId>, Option<NodeId>) {
    let mut per_node: Vec<(NodeId, u64)> = Vec::new();
    for level in PageSize::ALL {
        let b = t.pamt(level);
        for r in memory.regions_in(b) {
            let bytes = r.range().intersect(b).map_or(0, |x| x.size());
            match per_node.iter_mut().find(|(n, _)| *n == r.node) {
                Some(e) => e.1 += bytes,
                None => per_node.push((r.node, bytes)),
            }
        }
    }
    let pamt = per_node
        .iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|e| e.0);
    (pamt, majority_node(memory, t.range()))
}

/// Runs both closures, at once on two threads with the `parallel` feature (the two
/// strategies' plans are independent), one after the other without it.
fn both<A: Send, B: Send>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B + Send) -> (A, B) {
    #[cfg(feature = "parallel")]
    {
        rayon::join(a, b)
    }
    #[cfg(not(feature = "parallel"))]
    {
        (a(), b())
    }
}

/// `(TDMR index, PAMT node, memory node)` of every TDMR whose PAMT blocks are not all on the
/// node holding most of its memory, measured from the memory map (not from what the plan says
/// of itself). PAMT blocks outside TDX memory are not judged.
pub(crate) fn off_node<'a>(
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
