//! TDX module bring-up: from an uninitialized module to every TDMR initialized.
//!
//! [`Bringup`] drives any [`Seamcall`] backend on the host's [`Cpus`], placing the module's
//! input buffers with [`HostMemory`]:
//!
//! 1. TDH.SYS.INIT once, on the first CPU;
//! 2. TDH.SYS.LP.INIT on every CPU, all at once ([`Cpus::run_on_each`]);
//! 3. global metadata (TDH.SYS.RD): version, TDX_FEATURES0 (NO_RBP_MOD required), NUM_PKGS,
//!    the TDMR limits and PAMT entry sizes, the CMRs (null slots skipped);
//! 4. a plan for the TDX memory inside those CMRs, made by the caller's [`Planner`] within the
//!    module's limits;
//! 5. PAMT memory the planner carved out of TDX memory claimed from the host
//!    ([`HostMemory::claim_pamt`]; a PAMT from the caller's [`crate::pamt::PamtAllocator`] is
//!    the allocator's already);
//! 6. the `TDMR_INFO`s and their PA array written to host memory, then TDH.SYS.CONFIG with the
//!    first private KeyID as global KeyID (buffers released afterwards);
//! 7. [`Cpus::flush_caches`], then TDH.SYS.KEY.CONFIG once per package, one package at a time,
//!    each on a CPU of that package;
//! 8. TDH.SYS.TDMR.INIT on each TDMR until it reports the TDMR's end, spread over the CPUs
//!    with [`Cpus::run_on_each`]: longest TDMR first, one TDMR per CPU at a time, never a TDMR
//!    on two CPUs (the module's per-TDMR lock) nor two calls on one CPU. The wall time is then
//!    set by the largest share of work one CPU gets; [`Planner::with_init_cpus`] shapes the
//!    TDMRs so that share is small;
//! 9. with module extensions (TDX_FEATURES0 bit 39): their memory, sized now that
//!    TDH.SYS.CONFIG has run, handed over with TDH.EXT.MEM.ADD, then TDH.EXT.INIT (see
//!    `extensions.rs`).
//!
//! Bring-up reads only what the module says it has and gates every feature on its
//! TDX_FEATURES0 bits (see `metadata.rs`): TDX 1.0, which has no TDH.SYS.RD, is read through
//! TDH.SYS.INFO; the plan is made for the version the module reports
//! ([`Planner::with_module_version`]: TDX 1.0 refuses some layouts 1.5 accepts); Dynamic PAMT
//! needs bit 36, add-on features ([`Bringup::with_add_on_features`], TDH.SYS.CONFIG version 1
//! with the bitmap in R9) their own bits, the extensions bit 39. [`Update`] replaces the
//! running module over the frozen layout; [`disable()`] disables it for kexec.
//!
//! The backend and the CPUs are shared by every CPU doing work, so both must be `Sync` (the
//! real instruction is; the mock module is with the `std` feature). The closures bring-up hands
//! to [`Cpus::run_on`] and [`Cpus::run_on_each`] allocate nothing, except the metadata read on
//! the first CPU.
//!
//! Transient failures are retried per [`RetryPolicy`]; any other failure stops bring-up with
//! an [`InitError`] that keeps the raw status, leaf, CPU and registers, and says what to tear
//! down ([`Teardown`]). The result reports the plan, PAMT bytes, extension memory and the
//! SEAMCALLs made per leaf, per stage.
//!
//! ```
//! # #[cfg(all(feature = "mock", feature = "std"))]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tdmr::init::Bringup;
//! use tdmr::memmap::parse_kernel_log;
//! use tdmr::mock::{MockModule, Platform};
//! use tdmr::tdx::leaf;
//!
//! let log = "virt/tdx: CMR: [0x100000, 0x77800000)\nvirt/tdx: CMR: [0x100000000, 0x207a000000)\n";
//! let input = parse_kernel_log(log)?;
//! let platform = Platform::new(input.cmrs().listed())?.with_topology(4, 2)?;
//! let keyids = platform.private_keyids();
//! let module = MockModule::new(platform);
//! let done = Bringup::new(&module, &module, &module, keyids).run(input.memory())?;
//! assert_eq!(done.plan.tdmrs().len(), 2);
//! // 2 GiB + 126 GiB of TDMRs, 4 MiB per call.
//! assert_eq!(done.seamcalls.get(leaf::TDH_SYS_TDMR_INIT), 128 * 256);
//! assert_eq!(done.seamcalls.get(leaf::TDH_SYS_KEY_CONFIG), 2);
//! # Ok(()) }
//! # #[cfg(not(all(feature = "mock", feature = "std")))]
//! # fn main() {}
//! ```

mod cpus;
mod disable;
mod error;
mod extensions;
mod host_memory;
mod metadata;
mod retry;
mod slot;
mod tdmr_init;
mod update;

pub use cpus::{Cpu, CpuId, CpuUnavailable, Cpus, PackageId};
pub use disable::{DisableError, DisablePolicy, Disabled, disable};
pub use error::{InitError, InitErrorKind, MetadataError, Stage, Teardown};
pub use extensions::{EXT_LIST_ENTRIES, ext_mem_add_rcx};
pub use host_memory::{HostMemory, HostMemoryError};
pub use metadata::{MetadataSource, ModuleInfo};
pub use retry::{RetryPolicy, SeamcallError};
pub use update::{
    Checked, IncomingModule, ModuleLeft, ModuleLoader, StepCalls, Update, UpdateError,
    UpdateErrorKind, UpdateRefusal, UpdateStep, Updated,
};

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use self::retry::{Caller, attempt};
use self::slot::{Outcome, Slot};
use crate::addr::{PhysRange, SZ_4K};
use crate::layout::{PamtOrigin, Plan, Planner};
use crate::memmap::MemoryMap;
use crate::pamt::PamtAllocator;
use crate::seamcall::{Seamcall, SeamcallCounts};
use crate::sysinfo::{PrivateKeyIds, TdxLimits};
use crate::tdx::abi::{TDMR_INFO_ALIGNMENT, TdmrInfoPaArray};
use crate::tdx::leaf::{self, Leaf};
use crate::tdx::metadata::features0;
use crate::tdx::status::{STATUS_MASK, TDX_KEY_CONFIGURED};
use crate::tdx::{Output, Regs};

/// The module is initialized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Initialized {
    /// What the module reported (after an update: see [`Initialized::record_update`]).
    pub info: ModuleInfo,
    /// The configuration it accepted: frozen for the life of the host.
    pub plan: Plan,
    /// The global private KeyID.
    pub global_keyid: u16,
    /// Whether Dynamic PAMT is on.
    pub dynamic_pamt: bool,
    /// The add-on features TDH.SYS.CONFIG (version 1) enabled.
    pub add_on_features: u64,
    /// Memory handed to the module extensions (TDH.EXT.MEM.ADD), whole 4 KiB pages: the
    /// module keeps it for good.
    pub extension_memory: Vec<PhysRange>,
    /// SEAMCALLs made, per leaf.
    pub seamcalls: SeamcallCounts,
    /// The same, per stage, stages in order (those that made calls).
    pub seamcalls_by_stage: Vec<(Stage, SeamcallCounts)>,
}

impl Initialized {
    /// PAMT bytes over all TDMRs (Linux prints this / 1024 as "KB allocated for PAMT").
    pub fn pamt_bytes(&self) -> u64 {
        self.plan.pamt_bytes()
    }

    /// 4 KiB pages handed to the module extensions.
    pub fn extension_pages(&self) -> u64 {
        self.extension_memory.iter().map(|r| r.size() / SZ_4K).sum()
    }

    /// Bytes handed to the module extensions (Linux prints this / 1024 as "KB consumed for TDX
    /// module extensions").
    pub fn extension_bytes(&self) -> u64 {
        self.extension_pages() * SZ_4K
    }

    /// What TDX holds for good from now on, beside the TDX memory it manages: the static PAMT
    /// and the extension memory (neither reclaimable while the module runs).
    pub fn memory_budget(&self) -> u64 {
        self.pamt_bytes().saturating_add(self.extension_bytes())
    }

    /// The SEAMCALLs stage `stage` made (none if it made none).
    pub fn seamcalls_at(&self, stage: Stage) -> SeamcallCounts {
        self.seamcalls_by_stage
            .iter()
            .find(|(s, _)| *s == stage)
            .map(|(_, c)| c.clone())
            .unwrap_or_default()
    }

    /// Records that [`Update`] replaced the module: the version and TDX_FEATURES0 are the new
    /// module's; the layout, and the limits it was planned with (`info.limits`), stay the
    /// boot's.
    pub fn record_update(&mut self, updated: &Updated) {
        self.info.version = updated.version;
        self.info.features0 = updated.features0;
    }
}

/// TDX module bring-up. See the [module documentation](self).
pub struct Bringup<'a, S: ?Sized, C: ?Sized, M: ?Sized> {
    seamcall: &'a S,
    cpus: &'a C,
    memory: &'a M,
    keyids: PrivateKeyIds,
    planner: Planner,
    retry: RetryPolicy,
    dynamic_pamt: bool,
    add_on_features: u64,
    pamt_allocator: Option<&'a mut dyn PamtAllocator>,
}

impl<S: ?Sized, C: ?Sized, M: ?Sized> core::fmt::Debug for Bringup<'_, S, C, M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Bringup")
            .field("keyids", &self.keyids)
            .field("planner", &self.planner)
            .field("retry", &self.retry)
            .field("dynamic_pamt", &self.dynamic_pamt)
            .field("add_on_features", &self.add_on_features)
            .field("pamt_allocator", &self.pamt_allocator.is_some())
            .finish_non_exhaustive()
    }
}

/// State carried between steps.
struct Run {
    counts: SeamcallCounts,
    by_stage: Vec<(Stage, SeamcallCounts)>,
    teardown: Option<Teardown>,
}

impl Run {
    fn at(&mut self, stage: Stage) -> &mut SeamcallCounts {
        let i = match self.by_stage.iter().position(|(s, _)| *s == stage) {
            Some(i) => i,
            None => {
                self.by_stage.push((stage, SeamcallCounts::new()));
                self.by_stage.len() - 1
            }
        };
        &mut self.by_stage[i].1
    }

    fn add(&mut self, stage: Stage, leaf: Leaf, n: u64) {
        if n > 0 {
            self.counts.add(leaf, n);
            self.at(stage).add(leaf, n);
        }
    }

    fn merge(&mut self, stage: Stage, counts: &SeamcallCounts) {
        if counts.total() > 0 {
            self.counts.merge(counts);
            self.at(stage).merge(counts);
        }
    }

    fn fail(&mut self, stage: Stage, kind: InitErrorKind) -> InitError {
        InitError {
            stage,
            kind,
            teardown: self.teardown.take(),
            seamcalls: core::mem::take(&mut self.counts),
            seamcalls_by_stage: core::mem::take(&mut self.by_stage),
        }
    }
}

/// The limits to plan with: the module's, tightened by the planner's when the caller set them
/// (fewer TDMRs or reserved areas than the module allows, to keep room for later); the PAMT
/// geometry is always the module's.
fn planning_limits(planner: &Planner, module: TdxLimits) -> TdxLimits {
    let Some(asked) = planner.limits_if_set() else {
        return module;
    };
    let tdmrs = asked.max_tdmrs().min(module.max_tdmrs()) as u16;
    let reserved = asked
        .max_reserved_per_tdmr()
        .min(module.max_reserved_per_tdmr()) as u16;
    // `tdmrs` is at least 1: both limits are.
    module
        .with_max_tdmrs(tdmrs)
        .unwrap_or(module)
        .with_max_reserved_per_tdmr(reserved)
}

// `InitError` carries everything a caller needs to report and tear down (raw status,
// registers, per-stage calls, the memory to give back or leave with the module): large, and
// returned once per bring-up, off any hot path.
#[allow(clippy::result_large_err)]
impl<'a, S, C, M> Bringup<'a, S, C, M>
where
    S: Seamcall + Sync + ?Sized,
    C: Cpus + Sync + ?Sized,
    M: HostMemory + ?Sized,
{
    /// Bring-up through `seamcall` on `cpus`, with buffers and PAMT memory from `memory` and
    /// these private KeyIDs; the default [`Planner`] (optimal strategy), default retries, no
    /// Dynamic PAMT, PAMTs carved by the planner and claimed from `memory`.
    pub fn new(seamcall: &'a S, cpus: &'a C, memory: &'a M, keyids: PrivateKeyIds) -> Self {
        Bringup {
            seamcall,
            cpus,
            memory,
            keyids,
            planner: Planner::new(),
            retry: RetryPolicy::default(),
            dynamic_pamt: false,
            add_on_features: 0,
            pamt_allocator: None,
        }
    }

    /// Enables add-on features `bits` (TDX_FEATURES0 numbering) with TDH.SYS.CONFIG version 1,
    /// R9 = `bits`; the module must report every one. 0 (the default) uses version 0.
    pub fn with_add_on_features(mut self, bits: u64) -> Self {
        self.add_on_features = bits;
        self
    }

    /// Plans with this planner: its strategy, hole policy and exclusions, within the module's
    /// limits (and within the planner's own, when it was given stricter ones).
    pub fn with_planner(mut self, planner: Planner) -> Self {
        self.planner = planner;
        self
    }

    /// Retries transient failures per `retry`.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Enables Dynamic PAMT (the module must support it).
    pub fn with_dynamic_pamt(mut self, on: bool) -> Self {
        self.dynamic_pamt = on;
        self
    }

    /// Places PAMTs with the caller's allocator (the kernel's contiguous allocator) instead of
    /// carving them from TDX memory and claiming them.
    pub fn with_pamt_allocator(mut self, alloc: &'a mut dyn PamtAllocator) -> Self {
        self.pamt_allocator = Some(alloc);
        self
    }

    /// The planner in effect.
    pub fn planner(&self) -> &Planner {
        &self.planner
    }

    /// Issues `leaf` on `cpu` with retries; the output of a call that did not fail. The closure
    /// run on `cpu` does not allocate.
    fn call_on(
        &self,
        run: &mut Run,
        stage: Stage,
        cpu: CpuId,
        leaf: Leaf,
        inputs: Regs,
    ) -> Result<(Output, u32), InitError> {
        let mut result = None;
        let ran = self.cpus.run_on(cpu, &mut || {
            result = Some(attempt(self.seamcall, self.retry, leaf, &inputs))
        });
        if let Some(a) = &result {
            run.add(stage, leaf, u64::from(a.attempts));
        }
        if let Err(e) = ran {
            return Err(run.fail(stage, InitErrorKind::Cpu(e)));
        }
        match result {
            Some(a) if a.ok() => Ok((a.out, a.attempts)),
            Some(a) => Err(run.fail(
                stage,
                InitErrorKind::Seamcall(Box::new(SeamcallError::from_attempt(
                    leaf,
                    Some(cpu),
                    inputs,
                    a,
                ))),
            )),
            // `run_on` returned without running the closure.
            None => Err(run.fail(stage, InitErrorKind::Cpu(CpuUnavailable { cpu }))),
        }
    }

    /// TDH.SYS.LP.INIT on every CPU at once; the first failure in the host's CPU order.
    fn lp_init_all(&self, run: &mut Run, cpus: &[Cpu]) -> Result<(), InitError> {
        // Slot of each CPU, found by binary search from the id the work is handed.
        let mut index: Vec<(CpuId, usize)> =
            cpus.iter().enumerate().map(|(i, c)| (c.id, i)).collect();
        index.sort_unstable();
        let slots: Vec<Slot> = cpus.iter().map(|_| Slot::default()).collect();
        let ids: Vec<CpuId> = cpus.iter().map(|c| c.id).collect();
        let (seamcall, retry) = (self.seamcall, self.retry);
        let work = |cpu: CpuId| {
            let Ok(k) = index.binary_search_by_key(&cpu, |e| e.0) else {
                return;
            };
            let a = attempt(seamcall, retry, leaf::TDH_SYS_LP_INIT, &Regs::ZERO);
            let outcome = if a.ok() {
                Outcome::Done
            } else {
                Outcome::Failed(a)
            };
            slots[index[k].1].store(cpu, u64::from(a.attempts), outcome);
        };
        let ran = self.cpus.run_on_each(&ids, &work);
        let mut first_error = None;
        for (c, slot) in cpus.iter().zip(&slots) {
            let (_, calls, outcome) = slot.load();
            run.add(Stage::LpInit, leaf::TDH_SYS_LP_INIT, calls);
            let kind = match outcome {
                Outcome::Done => continue,
                Outcome::Failed(a) => InitErrorKind::Seamcall(Box::new(
                    SeamcallError::from_attempt(leaf::TDH_SYS_LP_INIT, Some(c.id), Regs::ZERO, a),
                )),
                _ => InitErrorKind::Cpu(match ran {
                    Err(e) => e,
                    Ok(()) => CpuUnavailable { cpu: c.id },
                }),
            };
            first_error.get_or_insert(kind);
        }
        match first_error {
            Some(kind) => Err(run.fail(Stage::LpInit, kind)),
            None => Ok(()),
        }
    }

    /// Like `call_on`, but only `TDX_SUCCESS` (or one of `also_ok`) is accepted.
    fn call_ok(
        &self,
        run: &mut Run,
        stage: Stage,
        cpu: CpuId,
        leaf: Leaf,
        inputs: Regs,
        also_ok: &[u64],
    ) -> Result<Output, InitError> {
        let (out, attempts) = self.call_on(run, stage, cpu, leaf, inputs)?;
        if out.status.is_success() || also_ok.contains(&(out.status.raw() & STATUS_MASK)) {
            return Ok(out);
        }
        Err(run.fail(
            stage,
            InitErrorKind::Seamcall(Box::new(SeamcallError {
                leaf,
                cpu: Some(cpu),
                inputs,
                status: out.status,
                outputs: out.regs,
                attempts,
            })),
        ))
    }

    /// Runs bring-up for the TDX memory `tdx_memory`.
    pub fn run(mut self, tdx_memory: &MemoryMap) -> Result<Initialized, InitError> {
        let mut run = Run {
            counts: SeamcallCounts::new(),
            by_stage: Vec::new(),
            teardown: None,
        };
        let cpus = self.cpus.cpus();
        let Some(first) = cpus.first().map(|c| c.id) else {
            return Err(run.fail(Stage::Inputs, InitErrorKind::NoCpus));
        };
        let mut ids: Vec<CpuId> = cpus.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            let cpu = w[0];
            return Err(run.fail(Stage::Inputs, InitErrorKind::DuplicateCpu { cpu }));
        }
        if self.keyids.count() < 2 {
            let count = self.keyids.count();
            return Err(run.fail(Stage::Inputs, InitErrorKind::TooFewKeyIds { count }));
        }

        self.call_ok(
            &mut run,
            Stage::SysInit,
            first,
            leaf::TDH_SYS_INIT,
            Regs::ZERO,
            &[],
        )?;
        self.lp_init_all(&mut run, &cpus)?;

        // One CPU per package, lowest CPU id first, packages in ascending order.
        let mut packages: BTreeMap<PackageId, CpuId> = BTreeMap::new();
        for c in &cpus {
            packages.entry(c.package).or_insert(c.id);
        }

        let info = {
            let mut caller = Caller::new(self.seamcall, self.retry);
            let mut result = None;
            let host_packages = packages.len() as u32;
            let ran = self.cpus.run_on(first, &mut || {
                let read = metadata::read_module_info(&mut caller, first, self.dynamic_pamt);
                result = Some(match read {
                    Ok(info) => Ok(info),
                    Err(metadata::ReadFailure::Failed(kind)) => Err(kind),
                    // TDX 1.0: no TDH.SYS.RD; TDH.SYS.INFO has what bring-up needs.
                    Err(metadata::ReadFailure::NoSysRd) => metadata::read_sys_info(
                        &mut caller,
                        self.memory,
                        first,
                        self.dynamic_pamt,
                        host_packages,
                    ),
                });
            });
            run.merge(Stage::Metadata, &caller.counts);
            match (ran, result) {
                (Err(e), _) => return Err(run.fail(Stage::Metadata, InitErrorKind::Cpu(e))),
                (Ok(()), None) => {
                    let e = CpuUnavailable { cpu: first };
                    return Err(run.fail(Stage::Metadata, InitErrorKind::Cpu(e)));
                }
                (Ok(()), Some(Err(kind))) => return Err(run.fail(Stage::Metadata, kind)),
                (Ok(()), Some(Ok(info))) => info,
            }
        };
        let missing = self.add_on_features & !info.features0;
        if missing != 0 {
            let kind = InitErrorKind::Metadata(MetadataError::AddOnUnsupported {
                requested: self.add_on_features,
                features0: info.features0,
            });
            return Err(run.fail(Stage::Metadata, kind));
        }
        if (packages.len() as u64) < u64::from(info.packages) {
            let kind = InitErrorKind::PackagesWithoutCpu {
                module: info.packages,
                online: packages.len() as u32,
            };
            return Err(run.fail(Stage::Metadata, kind));
        }

        if let Err(e) = tdx_memory.check_within(&info.cmrs) {
            return Err(run.fail(Stage::Plan, InitErrorKind::Memory(e)));
        }
        let planner = self
            .planner
            .with_limits(planning_limits(&self.planner, info.limits))
            .with_module_version(info.version);
        let planned = match self.pamt_allocator.take() {
            Some(alloc) => planner.plan_with(tdx_memory, &info.cmrs, alloc),
            None => planner.plan(tdx_memory, &info.cmrs),
        };
        let plan = match planned {
            Ok(p) => p,
            Err(e) => return Err(run.fail(Stage::Plan, InitErrorKind::Plan(e))),
        };

        let pamt = plan.pamt_ranges().into_vec();
        if plan.pamt_origin() == PamtOrigin::Carved {
            self.claim_pamt(&mut run, &pamt)?;
        }
        run.teardown = Some(Teardown {
            pamt,
            origin: plan.pamt_origin(),
            reset_required: false,
            extension_memory: Vec::new(),
        });

        self.configure(&mut run, first, &plan)?;
        if let Some(t) = run.teardown.as_mut() {
            t.reset_required = true;
        }

        self.cpus.flush_caches();
        for (_, &cpu) in packages.iter() {
            self.call_ok(
                &mut run,
                Stage::KeyConfig,
                cpu,
                leaf::TDH_SYS_KEY_CONFIG,
                Regs::ZERO,
                // Someone configured this package already: the key is in place.
                &[TDX_KEY_CONFIGURED],
            )?;
        }

        let tdmrs: Vec<(u64, u64)> = plan.tdmrs().iter().map(|t| (t.base(), t.size())).collect();
        let on = tdmr_init::spread(&cpus, tdmrs.len());
        let (counts, result) =
            tdmr_init::init_all(self.seamcall, self.cpus, &on, self.retry, &tdmrs);
        run.merge(Stage::TdmrInit, &counts);
        if let Err(kind) = result {
            return Err(run.fail(Stage::TdmrInit, kind));
        }

        let extension_memory = if info.features0 & features0::MODULE_EXTENSIONS != 0 {
            self.extensions(&mut run, first)?
        } else {
            Vec::new()
        };

        Ok(Initialized {
            info,
            plan,
            global_keyid: self.keyids.first(),
            dynamic_pamt: self.dynamic_pamt,
            add_on_features: self.add_on_features,
            extension_memory,
            seamcalls: run.counts,
            seamcalls_by_stage: run.by_stage,
        })
    }

    /// The module extensions on `cpu` (see `extensions.rs`): the memory handed over.
    fn extensions(&self, run: &mut Run, cpu: CpuId) -> Result<Vec<PhysRange>, InitError> {
        let mut caller = Caller::new(self.seamcall, self.retry);
        let mut result = None;
        let ran = self.cpus.run_on(cpu, &mut || {
            result = Some(extensions::init_extensions(&mut caller, self.memory, cpu));
        });
        run.merge(Stage::Extensions, &caller.counts);
        match (ran, result) {
            (Err(e), _) => Err(run.fail(Stage::Extensions, InitErrorKind::Cpu(e))),
            (Ok(()), None) => {
                let e = CpuUnavailable { cpu };
                Err(run.fail(Stage::Extensions, InitErrorKind::Cpu(e)))
            }
            (Ok(()), Some(Ok(done))) => Ok(done.memory),
            (Ok(()), Some(Err(failed))) => {
                if let Some(t) = run.teardown.as_mut() {
                    t.extension_memory = failed.memory;
                }
                Err(run.fail(Stage::Extensions, failed.kind))
            }
        }
    }

    /// Claims every PAMT range from the host, or gives back what it claimed and fails.
    fn claim_pamt(&self, run: &mut Run, pamt: &[PhysRange]) -> Result<(), InitError> {
        for (i, &range) in pamt.iter().enumerate() {
            if let Err(e) = self.memory.claim_pamt(range) {
                for &claimed in &pamt[..i] {
                    self.memory.unclaim_pamt(claimed);
                }
                return Err(run.fail(Stage::PamtClaim, InitErrorKind::HostMemory(e)));
            }
        }
        Ok(())
    }

    /// Writes the `TDMR_INFO`s and their PA array to host memory and issues TDH.SYS.CONFIG;
    /// the buffers are released whatever the outcome.
    fn configure(&self, run: &mut Run, cpu: CpuId, plan: &Plan) -> Result<(), InitError> {
        let infos = match plan.tdmr_infos() {
            Ok(i) => i,
            Err(e) => return Err(run.fail(Stage::Config, InitErrorKind::Abi(e))),
        };
        let align = TDMR_INFO_ALIGNMENT as u64;
        let mut placed: Vec<(u64, usize)> = Vec::with_capacity(infos.len() + 1);
        let result = (|| {
            let mut pas = Vec::with_capacity(infos.len());
            for info in &infos {
                let bytes = info.to_bytes();
                let pa = self
                    .memory
                    .place(&bytes, align)
                    .map_err(InitErrorKind::HostMemory)?;
                placed.push((pa, bytes.len()));
                pas.push(pa);
            }
            let array = TdmrInfoPaArray::new(&pas).map_err(InitErrorKind::Abi)?;
            let bytes = array.to_bytes();
            let pa = self
                .memory
                .place(&bytes, align)
                .map_err(InitErrorKind::HostMemory)?;
            placed.push((pa, bytes.len()));
            Ok(Regs {
                rcx: pa,
                rdx: infos.len() as u64,
                r8: u64::from(self.keyids.first()) | if self.dynamic_pamt { 1 << 16 } else { 0 },
                r9: self.add_on_features,
                ..Regs::ZERO
            })
        })();
        // Version 1 carries the add-on bitmap; version 0 when there is none.
        let config = if self.add_on_features != 0 {
            leaf::TDH_SYS_CONFIG.with_version(1)
        } else {
            leaf::TDH_SYS_CONFIG
        };
        let outcome = match result {
            Ok(inputs) => self
                .call_ok(run, Stage::Config, cpu, config, inputs, &[])
                .map(|_| ()),
            Err(kind) => Err(run.fail(Stage::Config, kind)),
        };
        for (pa, len) in placed {
            self.memory.release(pa, len);
        }
        outcome
    }
}
