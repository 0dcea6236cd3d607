//! [`Warning`]: what is worth knowing about a plan that works, and how a plan earns one.

use alloc::vec::Vec;
use core::fmt;

use super::{TDMR_NR_WARN, off_node};
use crate::addr::{Bytes, PhysRange};
use crate::layout::{OffNodeReason, Plan, Strategy};
use crate::memmap::{MemoryMap, NodeId};
use crate::pamt::PamtModel;

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
        /// Why, as the planner recorded it (`None` for a plan that does not say).
        reason: Option<OffNodeReason>,
    },
    /// Linux's verdict depends on where its PAMTs land: planned with the `predicted` model of
    /// the kernel's allocator it succeeds (`predicted_ok`) or fails, with the `other` model the
    /// opposite (see [`super::PlacementFlip`]).
    LinuxDependsOnPamtPlacement {
        /// The model Linux's verdict was planned with.
        predicted: PamtModel,
        /// Whether Linux succeeds with it.
        predicted_ok: bool,
        /// The model that disagrees.
        other: PamtModel,
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
            Warning::LinuxDependsOnPamtPlacement { .. } => Strategy::Linux,
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
                Bytes(bytes),
                if ranges == 1 { "" } else { "s" }
            ),
            Warning::PamtOffNode {
                strategy,
                index,
                tdmr,
                pamt_node,
                memory_node,
                reason,
            } => {
                write!(
                    f,
                    "{}: TDMR {index} {tdmr} has its PAMT on node {pamt_node}, most of its memory on node {memory_node}",
                    strategy.name()
                )?;
                match reason {
                    Some(r) => write!(f, " ({r})"),
                    None => Ok(()),
                }
            }
            Warning::LinuxDependsOnPamtPlacement {
                predicted,
                predicted_ok,
                other,
            } => {
                let (a, b) = if predicted_ok {
                    ("succeeds", "fails")
                } else {
                    ("fails", "succeeds")
                };
                let order = |m: PamtModel| match m {
                    PamtModel::BottomUp => " (the order of alloc_contig_pages)",
                    _ => "",
                };
                write!(
                    f,
                    "linux: the verdict depends on where its PAMTs land: it {a} with {} placement{}, the prediction, and {b} with {} placement{}",
                    predicted.name(),
                    order(predicted),
                    other.name(),
                    order(other)
                )
            }
        }
    }
}

pub(super) fn warnings_for(plan: &Plan, memory: &MemoryMap, out: &mut Vec<Warning>) {
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
        let t = &plan.tdmrs()[index];
        out.push(Warning::PamtOffNode {
            strategy,
            index,
            tdmr: t.range(),
            pamt_node,
            memory_node,
            reason: t.off_node_reason(),
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
