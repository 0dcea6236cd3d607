//! [`Planner`]: how to plan (strategy, hole policy, limits, exclusions), applied to a memory
//! map and its CMRs.

use super::job::Job;
use super::plan::PamtOrigin;
use super::plan::Plan;
use super::{HolePolicy, PlanError, Strategy, init_split, linux, module_version, optimal};
use crate::memmap::{Cmrs, MemoryMap};
use crate::pamt::{
    BlockSource, BottomUpAllocator, FromAllocator, PamtAllocator, PamtModel, TopDownAllocator,
};
use crate::sysinfo::TdxLimits;
use crate::tdx::metadata::ModuleVersion;

/// Plans TDMRs and PAMTs: a configuration (strategy, hole policy, the module's limits,
/// whether memory may be left out) that [`Planner::plan`] applies to any memory map.
///
/// ```
/// use tdmr::layout::{Planner, Strategy};
/// use tdmr::memmap::parse_kernel_log;
/// let log = "virt/tdx: CMR: [0x100000, 0x77800000)\nvirt/tdx: CMR: [0x100000000, 0x407a000000)\n";
/// let input = parse_kernel_log(log)?;
/// let plan = Planner::new().with_strategy(Strategy::Linux).plan(input.memory(), input.cmrs())?;
/// assert_eq!(plan.tdmrs().len(), 2);
/// assert_eq!(plan.pamt_bytes() / 1024, 4104 * 256 + 8);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Planner {
    /// The limits given with [`Planner::with_limits`], if any.
    limits: Option<TdxLimits>,
    strategy: Strategy,
    holes: Option<HolePolicy>,
    exclusions: bool,
    init_cpus: u32,
    pamt_model: PamtModel,
    module_version: Option<ModuleVersion>,
}

impl Default for Planner {
    fn default() -> Self {
        Planner::new()
    }
}

impl Planner {
    /// The optimal strategy with its hole policy, TDX module 1.5 limits, no memory left out.
    pub const fn new() -> Self {
        Planner {
            limits: None,
            strategy: Strategy::Optimal,
            holes: None,
            exclusions: false,
            init_cpus: 1,
            pamt_model: PamtModel::BottomUp,
            module_version: None,
        }
    }

    /// Plans for TDX module `version`: never a layout that version refuses (TDX 1.0's
    /// reserved-area quirk, see `layout/module_version.rs`), repairing the strategy's layout
    /// when needed or failing with [`PlanError::RefusedByModuleVersion`]. Without it, plans
    /// are for TDX module 1.5 and later. [`crate::init::Bringup`] sets it from the version
    /// the module reports.
    pub const fn with_module_version(mut self, version: ModuleVersion) -> Self {
        self.module_version = Some(version);
        self
    }

    /// The module version planned for, if one was given.
    pub const fn module_version(&self) -> Option<ModuleVersion> {
        self.module_version
    }

    /// Plans against these module limits.
    pub const fn with_limits(mut self, limits: TdxLimits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Uses this strategy.
    pub const fn with_strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Uses this hole basis instead of the strategy's default.
    pub const fn with_holes(mut self, holes: HolePolicy) -> Self {
        self.holes = Some(holes);
        self
    }

    /// With the optimal strategy, when no layout covers all TDX memory, return the layout that
    /// leaves the least memory out, listed in [`Plan::excluded`] (the kernel must then keep it
    /// from its page allocator). Off by default: memory is never left out silently.
    pub const fn with_exclusions(mut self, allow: bool) -> Self {
        self.exclusions = allow;
        self
    }

    /// Shapes TDMRs for TDH.SYS.TDMR.INIT on `cpus` CPUs at once (see
    /// [`Plan::init_work`](super::Plan::init_work)): after the strategy's own objective, TDMRs
    /// are split on 1 GiB boundaries, within the TDMR and reserved-area limits and keeping each
    /// PAMT on its node, so that the longest per-CPU share of the work is as short as the
    /// limits allow (then the fewest TDMRs). Each extra TDMR costs at most a page of 1G-level
    /// PAMT with 16-byte entries. 0 and 1 (the default) keep the strategy's layout. Plans
    /// whose PAMTs come from the caller's allocator ([`Planner::plan_with`]) are not split.
    pub const fn with_init_cpus(mut self, cpus: u32) -> Self {
        self.init_cpus = if cpus == 0 { 1 } else { cpus };
        self
    }

    /// The CPUs TDMRs are shaped for (1 unless [`Planner::with_init_cpus`] said more).
    pub const fn init_cpus(&self) -> u32 {
        self.init_cpus
    }

    /// With the Linux strategy, places the PAMT blocks with this model of the kernel's allocator
    /// ([`PamtModel::BottomUp`], the order of `alloc_contig_pages()`, unless given). Where
    /// Linux's PAMTs land decides which TDMRs reserve them, so the verdict can depend on it:
    /// [`crate::readiness::Readiness`] plans both and says when they disagree. The optimal
    /// strategy docks its own blocks and ignores this.
    pub const fn with_pamt_model(mut self, model: PamtModel) -> Self {
        self.pamt_model = model;
        self
    }

    /// The model of the kernel's allocator the Linux strategy plans with.
    pub const fn pamt_model(&self) -> PamtModel {
        self.pamt_model
    }

    /// The limits planned against ([`TdxLimits::DEFAULT`] unless given).
    pub const fn limits(&self) -> TdxLimits {
        match self.limits {
            Some(l) => l,
            None => TdxLimits::DEFAULT,
        }
    }

    /// The limits given with [`Planner::with_limits`], if any.
    pub(crate) const fn limits_if_set(&self) -> Option<TdxLimits> {
        self.limits
    }

    /// The strategy.
    pub const fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// The hole basis in effect (the strategy's default unless one was given).
    pub fn holes(&self) -> HolePolicy {
        self.holes
            .unwrap_or_else(|| self.strategy.default_hole_policy())
    }

    /// Whether memory may be left out ([`Planner::with_exclusions`]).
    pub const fn exclusions(&self) -> bool {
        self.exclusions
    }

    fn job<'a>(&self, memory: &'a MemoryMap, cmrs: &'a Cmrs) -> Job<'a> {
        Job {
            memory,
            cmrs,
            limits: self.limits(),
            strategy: self.strategy,
            holes: self.holes(),
            allow_exclusions: self.exclusions,
        }
    }

    /// Plans `memory` inside `cmrs`, placing PAMTs itself (then shaping the TDMRs for
    /// [`Planner::with_init_cpus`]): the optimal strategy carves them from TDX memory against
    /// reserved areas; the Linux strategy uses the model of the kernel's allocator set with
    /// [`Planner::with_pamt_model`] ([`BottomUpAllocator`] unless told otherwise). Either way
    /// the PAMT blocks are TDX memory the kernel must take out of its page allocator before
    /// TDH.SYS.CONFIG ([`crate::init::HostMemory::claim_pamt`] is how bring-up asks for it).
    pub fn plan(&self, memory: &MemoryMap, cmrs: &Cmrs) -> Result<Plan, PlanError> {
        memory.check_within(cmrs)?;
        let job = self.job(memory, cmrs);
        let plan = match self.strategy {
            Strategy::Linux => {
                let mut model: alloc::boxed::Box<dyn BlockSource> = match self.pamt_model {
                    PamtModel::BottomUp => alloc::boxed::Box::new(BottomUpAllocator::new(memory)),
                    PamtModel::TopDown => alloc::boxed::Box::new(TopDownAllocator::new(memory)),
                };
                linux::plan(&job, &mut *model, PamtOrigin::Carved)
            }
            Strategy::Optimal => optimal::plan(&job, None),
        }?;
        let plan = init_split::shape(&job, plan, self.init_cpus);
        module_version::fit(&job, self.module_version, plan)
    }

    /// Plans with PAMTs from the caller's allocator (one contiguous block per TDMR for the Linux
    /// strategy, one per NUMA node for the optimal one), fitting reserved areas around what it
    /// returns, or failing with the TDMR whose limit it broke.
    pub fn plan_with(
        &self,
        memory: &MemoryMap,
        cmrs: &Cmrs,
        alloc: &mut dyn PamtAllocator,
    ) -> Result<Plan, PlanError> {
        memory.check_within(cmrs)?;
        let job = self.job(memory, cmrs);
        let mut alloc = FromAllocator(alloc);
        let plan = match self.strategy {
            Strategy::Linux => linux::plan(&job, &mut alloc, PamtOrigin::Allocator),
            Strategy::Optimal => optimal::plan(&job, Some(&mut alloc)),
        }?;
        module_version::fit(&job, self.module_version, plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::{PageSize, PhysRange, SZ_1G};
    use crate::layout::ReservedKind;
    use crate::memmap::MemoryRegion;
    use alloc::vec::Vec;

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
    fn pamt_lands_where_the_model_puts_it_and_is_reserved_where_it_overlaps() {
        let m = map(&[(G, 4 * G, 0)]);
        let cmrs = Cmrs::covering(&m);
        let linux = Planner::new().with_strategy(Strategy::Linux);
        assert_eq!(linux.pamt_model(), PamtModel::BottomUp);
        // Bottom-up: ZONE_NORMAL of node 0 starts at 4 GiB; the request's 4108 pages are not a
        // power of two, so the kernel's ALIGN lands a little above it.
        let plan = linux.plan(&m, &cmrs).unwrap();
        let t = &plan.tdmrs()[0];
        assert_eq!(t.range(), PhysRange::new(G, 5 * G).unwrap());
        let total = t.pamt_bytes();
        let pages = total / 4096;
        let start = ((4 * G / 4096 + pages - 1) & !(pages - 1)) * 4096;
        assert_eq!(t.pamt(PageSize::Size4K).start(), start);
        assert_eq!(t.reserved().len(), 1);
        assert_eq!(t.reserved()[0].offset, start - G);
        assert_eq!(t.reserved()[0].kind, ReservedKind::Pamt);
        assert_eq!(plan.holes(), HolePolicy::Memory);
        // Top-down: the top of the node's highest region.
        let plan = linux
            .with_pamt_model(PamtModel::TopDown)
            .plan(&m, &cmrs)
            .unwrap();
        let t = &plan.tdmrs()[0];
        assert_eq!(t.pamt(PageSize::Size4K).start(), 5 * G - total);
        assert_eq!(t.reserved()[0].offset, 4 * G - total);
    }

    #[test]
    fn too_many_holes_fail_naming_the_tdmr() {
        let regions: Vec<_> = (0..8u64)
            .map(|i| (0x100_0000 + i * 0x200_0000, 0x100_0000, 0))
            .collect();
        let m = map(&regions);
        let cmrs = Cmrs::covering(&m);
        let limits = TdxLimits::default().with_max_reserved_per_tdmr(8);
        let err = Planner::new()
            .with_strategy(Strategy::Linux)
            .with_limits(limits)
            .plan(&m, &cmrs)
            .unwrap_err();
        assert_eq!(
            err,
            PlanError::ReservedAreasExhausted {
                tdmr: PhysRange::new(0, G).unwrap(),
                limit: 8
            }
        );
    }
}
