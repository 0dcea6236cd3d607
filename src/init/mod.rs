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
//!    TDMRs so that share is small.
//!
//! The backend and the CPUs are shared by every CPU doing work, so both must be `Sync` (the
//! real instruction is; the mock module is with the `std` feature). The closures bring-up hands
//! to [`Cpus::run_on`] and [`Cpus::run_on_each`] allocate nothing, except the metadata read on
//! the first CPU.
//!
//! Transient failures are retried per [`RetryPolicy`]; any other failure stops bring-up with
//! an [`InitError`] that keeps the raw status, leaf, CPU and registers, and says what to tear
//! down ([`Teardown`]). The result reports the plan, PAMT bytes and SEAMCALLs made per leaf.
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
mod error;
mod host_memory;
mod metadata;
mod retry;
mod slot;
mod tdmr_init;

pub use cpus::{Cpu, CpuId, CpuUnavailable, Cpus, PackageId};
pub use error::{InitError, InitErrorKind, MetadataError, Stage, Teardown};
pub use host_memory::{HostMemory, HostMemoryError};
pub use metadata::ModuleInfo;
pub use retry::{RetryPolicy, SeamcallError};

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use self::retry::{Caller, attempt};
use self::slot::{Outcome, Slot};
use crate::addr::PhysRange;
use crate::layout::{PamtOrigin, Plan, Planner};
use crate::memmap::MemoryMap;
use crate::pamt::PamtAllocator;
use crate::seamcall::{Seamcall, SeamcallCounts};
use crate::sysinfo::{PrivateKeyIds, TdxLimits};
use crate::tdx::abi::{TDMR_INFO_ALIGNMENT, TdmrInfoPaArray};
use crate::tdx::leaf::{self, Leaf};
use crate::tdx::status::{STATUS_MASK, TDX_KEY_CONFIGURED};
use crate::tdx::{Output, Regs};

/// The module is initialized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Initialized {
    /// What the module reported.
    pub info: ModuleInfo,
    /// The configuration it accepted.
    pub plan: Plan,
    /// The global private KeyID.
    pub global_keyid: u16,
    /// Whether Dynamic PAMT is on.
    pub dynamic_pamt: bool,
    /// SEAMCALLs made, per leaf.
    pub seamcalls: SeamcallCounts,
}

impl Initialized {
    /// PAMT bytes over all TDMRs (Linux prints this / 1024 as "KB allocated for PAMT").
    pub fn pamt_bytes(&self) -> u64 {
        self.plan.pamt_bytes()
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
    pamt_allocator: Option<&'a mut dyn PamtAllocator>,
}

impl<S: ?Sized, C: ?Sized, M: ?Sized> core::fmt::Debug for Bringup<'_, S, C, M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Bringup")
            .field("keyids", &self.keyids)
            .field("planner", &self.planner)
            .field("retry", &self.retry)
            .field("dynamic_pamt", &self.dynamic_pamt)
            .field("pamt_allocator", &self.pamt_allocator.is_some())
            .finish_non_exhaustive()
    }
}

/// State carried between steps.
struct Run {
    counts: SeamcallCounts,
    teardown: Option<Teardown>,
}

impl Run {
    fn fail(&mut self, stage: Stage, kind: InitErrorKind) -> InitError {
        InitError {
            stage,
            kind,
            teardown: self.teardown.take(),
            seamcalls: core::mem::take(&mut self.counts),
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
            pamt_allocator: None,
        }
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
            run.counts.add(leaf, u64::from(a.attempts));
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
            run.counts.add(leaf::TDH_SYS_LP_INIT, calls);
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

        let info = {
            let mut caller = Caller::new(self.seamcall, self.retry);
            let mut result = None;
            let ran = self.cpus.run_on(first, &mut || {
                result = Some(metadata::read_module_info(
                    &mut caller,
                    first,
                    self.dynamic_pamt,
                ));
            });
            run.counts.merge(&caller.counts);
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

        // One CPU per package, lowest CPU id first, packages in ascending order.
        let mut packages: BTreeMap<PackageId, CpuId> = BTreeMap::new();
        for c in &cpus {
            packages.entry(c.package).or_insert(c.id);
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
            .with_limits(planning_limits(&self.planner, info.limits));
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
        run.counts.merge(&counts);
        if let Err(kind) = result {
            return Err(run.fail(Stage::TdmrInit, kind));
        }

        Ok(Initialized {
            info,
            plan,
            global_keyid: self.keyids.first(),
            dynamic_pamt: self.dynamic_pamt,
            seamcalls: run.counts,
        })
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
                ..Regs::ZERO
            })
        })();
        let outcome = match result {
            Ok(inputs) => self
                .call_ok(run, Stage::Config, cpu, leaf::TDH_SYS_CONFIG, inputs, &[])
                .map(|_| ()),
            Err(kind) => Err(run.fail(Stage::Config, kind)),
        };
        for (pa, len) in placed {
            self.memory.release(pa, len);
        }
        outcome
    }
}
