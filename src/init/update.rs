//! Runtime TDX module update over the frozen layout: [`Update`] (documented there), the
//! [`ModuleLoader`] trait, the check's refusals, errors and results.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use super::error::MetadataError;
use super::retry::{Attempted, RetryPolicy, SeamcallError, attempt};
use super::slot::{Outcome, Slot};
use super::{CpuId, CpuUnavailable, Cpus, Initialized, MetadataSource};
use crate::addr::{PageSize, PhysRange};
use crate::seamcall::{Seamcall, SeamcallCounts};
use crate::sysinfo::TdxLimits;
use crate::tdx::metadata::{self as md, FieldId, ModuleVersion, features0};
use crate::tdx::status::{
    Status, TDX_METADATA_FIELD_ID_INCORRECT, TDX_SEAMCALL_VMFAILINVALID, TDX_SYS_BUSY,
    TDX_SYS_LP_INIT_DONE, TDX_UPDATE_COMPAT_SENSITIVE,
};
use crate::tdx::{Output, Regs, leaf};

/// What the host knows of the module it is about to install (from its image and the loader):
/// what the update check compares the frozen layout with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IncomingModule {
    /// Its version.
    pub version: ModuleVersion,
    /// Its TDX_FEATURES0.
    pub features0: u64,
    /// Its limits: MAX_TDMRS, MAX_RESERVED_PER_TDMR, PAMT entry sizes, and the Dynamic PAMT
    /// bitmap bits iff it supports Dynamic PAMT.
    pub limits: TdxLimits,
    /// 4 KiB pages its extensions need (0: none).
    pub extension_pages: u64,
    /// The add-on features it can keep enabled (TDX_FEATURES0 numbering).
    pub add_on_features: u64,
    /// The handoff versions it can take over from, `(oldest, newest)`.
    pub handoff_versions: (u16, u16),
}

/// The P-SEAMLDR, which installs a new TDX module (SEAMLDR.INSTALL, leaf
/// `0x8000000000000001`: RAX bit 63 selects the loader, not the module). A kernel implements
/// it with the SEAMCALL instruction and the module image it prepared; the mock's is
/// `mock::SeamLoader`. Shared by the CPUs of an update, so `Sync`.
pub trait ModuleLoader {
    /// What the module it installs reports (read from its image before anything changes).
    fn incoming(&self) -> IncomingModule;

    /// Runtime updates the platform still allows (`num_remaining_updates`), when known.
    fn remaining_updates(&self) -> Option<u32> {
        None
    }

    /// SEAMLDR.INSTALL on the calling CPU: status 0 on success; `TDX_SEAMCALL_VMFAILINVALID`
    /// when the loader is busy on another CPU (retried); anything else is the loader's error.
    fn install(&self) -> Output;
}

/// The steps of an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UpdateStep {
    /// Reading the handoff version and features; the frozen layout against the incoming
    /// module.
    Check,
    /// TDH.SYS.SHUTDOWN.
    Shutdown,
    /// SEAMLDR.INSTALL on every CPU.
    Install,
    /// TDH.SYS.LP.INIT on every CPU.
    LpInit,
    /// TDH.SYS.UPDATE.
    Update,
    /// Reading the new module's version and features.
    Verify,
}

impl UpdateStep {
    /// Every step, in order.
    pub const ALL: [UpdateStep; 6] = [
        UpdateStep::Check,
        UpdateStep::Shutdown,
        UpdateStep::Install,
        UpdateStep::LpInit,
        UpdateStep::Update,
        UpdateStep::Verify,
    ];

    /// Lower-case name for reports: `check`, `shutdown`, `install`, `lp_init`, `update`,
    /// `verify`.
    pub const fn name(self) -> &'static str {
        match self {
            UpdateStep::Check => "check",
            UpdateStep::Shutdown => "shutdown",
            UpdateStep::Install => "install",
            UpdateStep::LpInit => "lp_init",
            UpdateStep::Update => "update",
            UpdateStep::Verify => "verify",
        }
    }
}

impl fmt::Display for UpdateStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UpdateStep::Check => "the update check",
            UpdateStep::Shutdown => "TDH.SYS.SHUTDOWN",
            UpdateStep::Install => "SEAMLDR.INSTALL",
            UpdateStep::LpInit => "TDH.SYS.LP.INIT",
            UpdateStep::Update => "TDH.SYS.UPDATE",
            UpdateStep::Verify => "reading the new module's version",
        })
    }
}

/// The calls one step made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepCalls {
    /// SEAMCALLs to the TDX module, per leaf (attempts included).
    pub seamcalls: SeamcallCounts,
    /// Calls to the loader (SEAMLDR.INSTALL, attempts included).
    pub loader: u64,
}

/// Why the frozen layout cannot go on under the incoming module; nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpdateRefusal {
    /// The running module has no TD-preserving update (TDX_FEATURES0 bit 1), or reports no
    /// features at all (TDX 1.0).
    NotSupported {
        /// TDX_FEATURES0 of the running module (0 when it has none).
        features0: u64,
    },
    /// The version policy: same major.minor, a higher update number.
    NotAnUpdate {
        /// The running version.
        running: ModuleVersion,
        /// The incoming version.
        incoming: ModuleVersion,
    },
    /// The incoming module cannot take over from the running module's handoff version.
    HandoffVersion {
        /// The running module's MODULE_HANDOFF_VERSION.
        running: u16,
        /// Handoff versions the incoming module takes over from.
        incoming: (u16, u16),
    },
    /// More TDMRs than the incoming module's MAX_TDMRS.
    TooManyTdmrs {
        /// TDMRs configured.
        tdmrs: usize,
        /// Its MAX_TDMRS.
        limit: usize,
    },
    /// A TDMR with more reserved areas than its MAX_RESERVED_PER_TDMR.
    TooManyReservedAreas {
        /// The TDMR's index.
        index: usize,
        /// The TDMR.
        tdmr: PhysRange,
        /// Its reserved areas.
        areas: usize,
        /// The incoming module's MAX_RESERVED_PER_TDMR.
        limit: usize,
    },
    /// A PAMT level smaller than the incoming module's entry sizes need.
    PamtTooSmall {
        /// The TDMR's index.
        index: usize,
        /// The TDMR.
        tdmr: PhysRange,
        /// The level (4K is the page bitmap with Dynamic PAMT).
        level: PageSize,
        /// Bytes configured.
        bytes: u64,
        /// Bytes the incoming module needs.
        needs: u64,
    },
    /// Dynamic PAMT is on and the incoming module does not support it.
    DynamicPamtUnsupported {
        /// Its TDX_FEATURES0.
        features0: u64,
    },
    /// Dynamic PAMT is on and the incoming module's PAMT_4K entries have another size (the
    /// page pairs handed out at run time would be the wrong size).
    DynamicPamtEntrySize {
        /// PAMT_4K entry size configured.
        configured: u64,
        /// The incoming module's.
        incoming: u64,
    },
    /// Add-on features TDH.SYS.CONFIG enabled that the incoming module cannot keep.
    AddOnFeatures {
        /// The features enabled at boot that it lacks.
        missing: u64,
    },
    /// The incoming module's extensions need more memory than was added at boot (an update
    /// cannot allocate).
    ExtensionMemory {
        /// Pages it needs.
        needs: u64,
        /// Pages added at boot.
        added: u64,
    },
    /// The platform allows no more runtime updates.
    NoUpdatesLeft,
}

impl fmt::Display for UpdateRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            UpdateRefusal::NotSupported { features0 } => write!(
                f,
                "the running module has no TD-preserving update (TDX_FEATURES0 {features0:#x} lacks bit 1)"
            ),
            UpdateRefusal::NotAnUpdate { running, incoming } => write!(
                f,
                "{incoming} is not an update of {running} (same major.minor, higher update number)"
            ),
            UpdateRefusal::HandoffVersion { running, incoming } => write!(
                f,
                "the incoming module takes over from handoff versions {}..={}, the running module hands off version {running}",
                incoming.0, incoming.1
            ),
            UpdateRefusal::TooManyTdmrs { tdmrs, limit } => write!(
                f,
                "the layout has {tdmrs} TDMRs, the incoming module supports {limit}"
            ),
            UpdateRefusal::TooManyReservedAreas {
                index,
                tdmr,
                areas,
                limit,
            } => write!(
                f,
                "TDMR {index} {tdmr} has {areas} reserved areas, the incoming module supports {limit} per TDMR"
            ),
            UpdateRefusal::PamtTooSmall {
                index,
                tdmr,
                level,
                bytes,
                needs,
            } => write!(
                f,
                "TDMR {index} {tdmr}: its PAMT {} level has {bytes:#x} bytes, the incoming module needs {needs:#x}",
                level.label()
            ),
            UpdateRefusal::DynamicPamtUnsupported { features0 } => write!(
                f,
                "Dynamic PAMT is on and the incoming module lacks it (TDX_FEATURES0 {features0:#x})"
            ),
            UpdateRefusal::DynamicPamtEntrySize {
                configured,
                incoming,
            } => write!(
                f,
                "Dynamic PAMT is on with {configured}-byte PAMT_4K entries, the incoming module uses {incoming}"
            ),
            UpdateRefusal::AddOnFeatures { missing } => write!(
                f,
                "the incoming module cannot keep the add-on features {missing:#x} enabled at boot"
            ),
            UpdateRefusal::ExtensionMemory { needs, added } => write!(
                f,
                "the incoming module's extensions need {needs} pages, {added} were added at boot and an update cannot add more"
            ),
            UpdateRefusal::NoUpdatesLeft => {
                f.write_str("the platform allows no more runtime updates")
            }
        }
    }
}

impl core::error::Error for UpdateRefusal {}

/// The state a failed update left the TDX module in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModuleLeft {
    /// The old module still runs, as before (the update stopped before TDH.SYS.SHUTDOWN took
    /// effect).
    Running,
    /// The old module is shut down: no module serves until an install and TDH.SYS.UPDATE
    /// succeed ([`Update::resume`], with this or another image).
    ShutDown,
    /// TDH.SYS.UPDATE succeeded: the new module runs (the check after it failed).
    Updated,
}

/// What went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpdateErrorKind {
    /// The frozen layout does not fit the incoming module.
    Refused(UpdateRefusal),
    /// The module asked to try later (`TDX_UPDATE_COMPAT_SENSITIVE`, or `TDX_SYS_BUSY`, after
    /// every retry).
    TryLater {
        /// The status.
        status: Status,
    },
    /// A SEAMCALL failed (raw status, leaf, CPU and registers kept).
    Seamcall(Box<SeamcallError>),
    /// SEAMLDR.INSTALL failed on a CPU.
    Loader {
        /// The CPU.
        cpu: CpuId,
        /// The loader's status.
        status: Status,
        /// Attempts made.
        attempts: u32,
    },
    /// A metadata field the update reads is missing or unusable.
    Metadata(MetadataError),
    /// A CPU could not run code.
    Cpu(CpuUnavailable),
    /// The host listed no CPU.
    NoCpus,
    /// After TDH.SYS.UPDATE the module reports another version than the incoming one.
    NotTheIncoming {
        /// The incoming module's version.
        expected: ModuleVersion,
        /// What the module reports.
        found: ModuleVersion,
    },
}

impl fmt::Display for UpdateErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpdateErrorKind::Refused(r) => write!(f, "refused: {r}"),
            UpdateErrorKind::TryLater { status } => {
                write!(f, "the module asks to try later: {status}")
            }
            UpdateErrorKind::Seamcall(e) => write!(f, "{e}"),
            UpdateErrorKind::Loader {
                cpu,
                status,
                attempts,
            } => write!(
                f,
                "SEAMLDR.INSTALL on CPU {cpu} failed: {status} after {attempts} attempt{}",
                if *attempts == 1 { "" } else { "s" }
            ),
            UpdateErrorKind::Metadata(e) => write!(f, "{e}"),
            UpdateErrorKind::Cpu(e) => write!(f, "{e}"),
            UpdateErrorKind::NoCpus => f.write_str("no CPUs to update"),
            UpdateErrorKind::NotTheIncoming { expected, found } => write!(
                f,
                "after TDH.SYS.UPDATE the module reports version {found}, not the incoming {expected}"
            ),
        }
    }
}

/// An update that failed or was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateError {
    /// The step it stopped at.
    pub step: UpdateStep,
    /// What.
    pub kind: UpdateErrorKind,
    /// What state the module is in now.
    pub module: ModuleLeft,
    /// The running module's handoff version, once read (what [`Update::resume`] carries on
    /// with when the old module is shut down and cannot be asked any more).
    pub handoff_version: Option<u16>,
    /// The calls each step made, steps in order (the failing one included).
    pub steps: Vec<(UpdateStep, StepCalls)>,
}

impl fmt::Display for UpdateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let left = match self.module {
            ModuleLeft::Running => "the old module still runs",
            ModuleLeft::ShutDown => "the old module is shut down and no module serves",
            ModuleLeft::Updated => "the new module runs",
        };
        write!(
            f,
            "TDX module update failed at {}: {} ({left})",
            self.step, self.kind
        )
    }
}

impl core::error::Error for UpdateError {}

/// The module was updated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Updated {
    /// The version that ran before.
    pub from: ModuleVersion,
    /// The version that runs now.
    pub version: ModuleVersion,
    /// Its TDX_FEATURES0.
    pub features0: u64,
    /// The handoff version TDH.SYS.SHUTDOWN was given.
    pub handoff_version: u16,
    /// The calls each step made, steps in order.
    pub steps: Vec<(UpdateStep, StepCalls)>,
}

impl Updated {
    /// The calls `step` made (none for a step that did not run).
    pub fn calls(&self, step: UpdateStep) -> StepCalls {
        self.steps
            .iter()
            .find(|(s, _)| *s == step)
            .map(|(_, c)| c.clone())
            .unwrap_or_default()
    }

    /// SEAMCALLs over all steps, per leaf.
    pub fn seamcalls(&self) -> SeamcallCounts {
        let mut all = SeamcallCounts::new();
        for (_, c) in &self.steps {
            all.merge(&c.seamcalls);
        }
        all
    }
}

/// What [`Update::check`] found: the update may go ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checked {
    /// The running module's MODULE_HANDOFF_VERSION.
    pub handoff_version: u16,
    /// The running module's TDX_FEATURES0.
    pub features0: u64,
    /// The incoming module.
    pub incoming: IncomingModule,
}

/// A runtime update of the TDX module over the layout a bring-up configured, as Linux 7.2 runs
/// it and with the check Linux does not make.
///
/// The TDMR and PAMT layout chosen at boot stays for the life of the host: an update runs no
/// TDH.SYS.CONFIG, allocates nothing, and the incoming module takes over the configuration as
/// it is. So before anything irreversible, [`Update::check`] reads the running module's handoff
/// version (MODULE_HANDOFF_VERSION) and TDX_FEATURES0 and checks the frozen layout against what
/// the loader says of the incoming module ([`ModuleLoader::incoming`]), refusing with the
/// precise [`UpdateRefusal`]:
///
/// 1. the running module supports a TD-preserving update (TDX_FEATURES0 bit 1);
/// 2. the version policy (on by default, the reference userspace policy): same major.minor,
///    a higher update number;
/// 3. the incoming module takes over from the running one's handoff version;
/// 4. TDMRs within its MAX_TDMRS, reserved areas within its MAX_RESERVED_PER_TDMR;
/// 5. every PAMT level at least what its entry sizes need (with Dynamic PAMT, the 4K level is
///    the page bitmap: at least its bits per page);
/// 6. with Dynamic PAMT on: the incoming module supports it, with the same PAMT_4K entry size
///    (the page pairs handed out at run time are sized by it);
/// 7. it supports every add-on feature TDH.SYS.CONFIG enabled;
/// 8. it needs no more extension memory than was added at boot (none, if none was);
/// 9. the loader has updates left.
///
/// [`Update::run`] then runs the sequence in lock-step on every CPU, each step one
/// [`Cpus::run_on_each`] round over all of them, every CPU finishing a step before any starts
/// the next, the first failure stopping all (the host keeps other SEAMCALL users away for the
/// whole update — Linux runs it under `stop_machine`; a hotplug gate answers `Busy`):
///
/// 1. **Shutdown**: TDH.SYS.SHUTDOWN on the first CPU, RCX = the handoff version, plus bit 16
///    (avoid compatibility-sensitive work) when the module has update compatibility
///    (TDX_FEATURES0 bit 47); `TDX_UPDATE_COMPAT_SENSITIVE` and `TDX_SYS_BUSY` are retried as
///    busy, then reported as "try later" with the old module still running;
/// 2. **Install**: SEAMLDR.INSTALL on every CPU through the [`ModuleLoader`], one CPU at a time
///    (P-SEAMLDR calls are serialised; a busy loader answers VMfailInvalid, retried);
/// 3. **LP init**: TDH.SYS.LP.INIT on every CPU at once;
/// 4. **Update**: TDH.SYS.UPDATE on the first CPU (version 1 with R9 = the add-on features
///    TDH.SYS.CONFIG enabled, when it enabled any);
/// 5. **Verify**: the new module's version and TDX_FEATURES0 read back; the version must be the
///    incoming one.
///
/// Transient failures are retried per the [`RetryPolicy`] at every step; anything else stops
/// with the step, the CPU and the raw status, and says what state the module was left in
/// ([`ModuleLeft`]); [`Update::resume`] carries on from there (from the failed step when the old
/// module is already shut down). Every step's SEAMCALLs (and loader calls) are counted.
///
/// ```
/// # #[cfg(all(feature = "mock", feature = "std"))]
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tdmr::init::{Bringup, Update, UpdateStep};
/// use tdmr::memmap::parse_kernel_log;
/// use tdmr::mock::{ModuleProfile, MockModule, Platform, SeamLoader};
/// use tdmr::tdx::leaf;
///
/// let log = "virt/tdx: CMR: [0x100000, 0x7f000000)\nvirt/tdx: CMR: [0x100000000, 0x500000000)\n";
/// let input = parse_kernel_log(log)?;
/// let platform = Platform::new(input.cmrs().listed())?
///     .with_topology(4, 2)?
///     .with_module("1.5.06".parse()?);
/// let module = MockModule::new(platform);
/// let keyids = module.platform().private_keyids();
/// let boot = Bringup::new(&module, &module, &module, keyids).run(input.memory())?;
///
/// let loader = SeamLoader::new(&module, "1.5.25".parse()?);
/// let done = Update::new(&module, &module, &loader, &boot).run()?;
/// assert_eq!(done.version.to_string(), "1.5.25");
/// assert_eq!(done.calls(UpdateStep::Install).loader, 4); // one SEAMLDR.INSTALL per CPU
/// assert_eq!(done.calls(UpdateStep::LpInit).seamcalls.get(leaf::TDH_SYS_LP_INIT), 4);
///
/// // An incoming module with fewer reserved areas per TDMR than the layout uses is refused
/// // before TDH.SYS.SHUTDOWN: the module keeps running.
/// let small: ModuleProfile = "1.5.25,update=26,max_reserved=0".parse()?;
/// let err = Update::new(&module, &module, &SeamLoader::new(&module, small), &boot)
///     .run()
///     .unwrap_err();
/// assert_eq!(err.step, UpdateStep::Check);
/// assert_eq!(module.state(), tdmr::mock::SysState::SysReady);
/// # Ok(()) }
/// # #[cfg(not(all(feature = "mock", feature = "std")))]
/// # fn main() {}
/// ```
pub struct Update<'a, S: ?Sized, C: ?Sized, L: ?Sized> {
    seamcall: &'a S,
    cpus: &'a C,
    loader: &'a L,
    boot: &'a Initialized,
    retry: RetryPolicy,
    version_policy: bool,
    avoid_compat_sensitive: bool,
}

impl<S: ?Sized, C: ?Sized, L: ?Sized> fmt::Debug for Update<'_, S, C, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Update")
            .field("running", &self.boot.info.version)
            .field("retry", &self.retry)
            .field("version_policy", &self.version_policy)
            .field("avoid_compat_sensitive", &self.avoid_compat_sensitive)
            .finish_non_exhaustive()
    }
}

/// Whether the incoming module can run the frozen layout of `boot`: checks 4–8 of
/// [`Update`]'s list.
fn layout_fits(boot: &Initialized, incoming: &IncomingModule) -> Result<(), UpdateRefusal> {
    let plan = &boot.plan;
    let l = incoming.limits;
    if plan.tdmrs().len() > l.max_tdmrs() {
        return Err(UpdateRefusal::TooManyTdmrs {
            tdmrs: plan.tdmrs().len(),
            limit: l.max_tdmrs(),
        });
    }
    if let Some((index, t)) = plan
        .tdmrs()
        .iter()
        .enumerate()
        .find(|(_, t)| t.reserved().len() > l.max_reserved_per_tdmr())
    {
        return Err(UpdateRefusal::TooManyReservedAreas {
            index,
            tdmr: t.range(),
            areas: t.reserved().len(),
            limit: l.max_reserved_per_tdmr(),
        });
    }
    let dpamt = boot.dynamic_pamt;
    if dpamt && incoming.features0 & features0::DYNAMIC_PAMT == 0 {
        return Err(UpdateRefusal::DynamicPamtUnsupported {
            features0: incoming.features0,
        });
    }
    for (index, t) in plan.tdmrs().iter().enumerate() {
        for level in PageSize::ALL {
            let pages = t.size() / level.bytes();
            let needs = if dpamt && level == PageSize::Size4K {
                let bits = u64::from(l.dynamic_pamt_bits().unwrap_or(1));
                pages.saturating_mul(bits).div_ceil(8)
            } else {
                pages.saturating_mul(l.pamt_entry_size(level))
            };
            let bytes = t.pamt(level).size();
            if bytes < needs {
                return Err(UpdateRefusal::PamtTooSmall {
                    index,
                    tdmr: t.range(),
                    level,
                    bytes,
                    needs,
                });
            }
        }
    }
    let configured = plan.limits().pamt_entry_size(PageSize::Size4K);
    let entry = l.pamt_entry_size(PageSize::Size4K);
    if dpamt && entry != configured {
        return Err(UpdateRefusal::DynamicPamtEntrySize {
            configured,
            incoming: entry,
        });
    }
    let missing = boot.add_on_features & !incoming.add_on_features;
    if missing != 0 {
        return Err(UpdateRefusal::AddOnFeatures { missing });
    }
    let added = boot.extension_pages();
    if incoming.extension_pages > added {
        return Err(UpdateRefusal::ExtensionMemory {
            needs: incoming.extension_pages,
            added,
        });
    }
    Ok(())
}

/// One CPU's share of a lock-step round: `(its position, its id) -> (calls, outcome)`.
type RoundWork<'f> = dyn Fn(usize, CpuId) -> (u64, Outcome) + Sync + 'f;
/// Every CPU's `(id, calls, outcome)` by position, and whether the host ran them all.
type RoundResult = (Vec<(CpuId, u64, Outcome)>, Result<(), CpuUnavailable>);

/// State carried between steps.
struct Steps {
    done: Vec<(UpdateStep, StepCalls)>,
    handoff: Option<u16>,
}

impl Steps {
    fn at(&mut self, step: UpdateStep) -> &mut StepCalls {
        // The step under way is the last one recorded; a new step starts a new record.
        match self.done.len().checked_sub(1) {
            Some(last) if self.done[last].0 == step => &mut self.done[last].1,
            _ => &mut self.done.push_mut((step, StepCalls::default())).1,
        }
    }

    fn fail(&mut self, step: UpdateStep, kind: UpdateErrorKind, module: ModuleLeft) -> UpdateError {
        self.at(step);
        UpdateError {
            step,
            kind,
            module,
            handoff_version: self.handoff,
            steps: core::mem::take(&mut self.done),
        }
    }
}

fn is_loader_busy(s: Status) -> bool {
    s.raw() == TDX_SEAMCALL_VMFAILINVALID
}

/// SEAMLDR.INSTALL until it succeeds, fails for good or stays busy past the policy.
fn install_with_retry<L: ModuleLoader + ?Sized>(loader: &L, retry: RetryPolicy) -> Attempted {
    let mut attempts = 0u32;
    let mut spins = 1u32;
    loop {
        let out = loader.install();
        attempts = attempts.saturating_add(1);
        if out.status.is_success() || !is_loader_busy(out.status) || attempts >= retry.busy_attempts
        {
            return Attempted { out, attempts };
        }
        for _ in 0..spins {
            core::hint::spin_loop();
        }
        spins = spins.saturating_mul(2).min(retry.max_backoff_spins.max(1));
    }
}

impl<'a, S, C, L> Update<'a, S, C, L>
where
    S: Seamcall + Sync + ?Sized,
    C: Cpus + Sync + ?Sized,
    L: ModuleLoader + Sync + ?Sized,
{
    /// An update through `seamcall` on `cpus`, installing what `loader` holds, over the
    /// layout `boot` configured; default retries, the version policy on, compatibility-
    /// sensitive work avoided where the module can.
    pub fn new(seamcall: &'a S, cpus: &'a C, loader: &'a L, boot: &'a Initialized) -> Self {
        Update {
            seamcall,
            cpus,
            loader,
            boot,
            retry: RetryPolicy::default(),
            version_policy: true,
            avoid_compat_sensitive: true,
        }
    }

    /// Retries transient failures per `retry`.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Whether to require the reference policy (same major.minor, higher update number).
    pub fn with_version_policy(mut self, on: bool) -> Self {
        self.version_policy = on;
        self
    }

    /// Whether to ask TDH.SYS.SHUTDOWN to avoid compatibility-sensitive work (RCX bit 16)
    /// when the module has update compatibility (TDX_FEATURES0 bit 47).
    pub fn with_avoid_compat_sensitive(mut self, on: bool) -> Self {
        self.avoid_compat_sensitive = on;
        self
    }

    /// Reads `field` on `cpu`, counting the calls into `calls`.
    fn read(
        &self,
        cpu: CpuId,
        field: FieldId,
        calls: &mut StepCalls,
    ) -> Result<u64, UpdateErrorKind> {
        let inputs = Regs {
            rdx: field.raw(),
            ..Regs::ZERO
        };
        let mut result = None;
        let ran = self.cpus.run_on(cpu, &mut || {
            result = Some(attempt(
                self.seamcall,
                self.retry,
                leaf::TDH_SYS_RD,
                &inputs,
            ))
        });
        if let Err(e) = ran {
            return Err(UpdateErrorKind::Cpu(e));
        }
        let Some(a) = result else {
            return Err(UpdateErrorKind::Cpu(CpuUnavailable { cpu }));
        };
        calls.seamcalls.add(leaf::TDH_SYS_RD, u64::from(a.attempts));
        if a.out.status.is_success() {
            return Ok(a.out.regs.r8);
        }
        if a.out.status.code() == TDX_METADATA_FIELD_ID_INCORRECT {
            return Err(UpdateErrorKind::Metadata(MetadataError::FieldMissing {
                field,
                status: a.out.status,
            }));
        }
        Err(UpdateErrorKind::Seamcall(Box::new(
            SeamcallError::from_attempt(leaf::TDH_SYS_RD, Some(cpu), inputs, a),
        )))
    }

    /// The check before anything changes (see [`Update`]): reads the
    /// handoff version and TDX_FEATURES0 on the first CPU and checks the frozen layout against
    /// the incoming module.
    pub fn check(&self) -> Result<Checked, UpdateError> {
        let mut steps = Steps {
            done: Vec::new(),
            handoff: None,
        };
        self.check_into(&mut steps)
    }

    fn check_into(&self, steps: &mut Steps) -> Result<Checked, UpdateError> {
        let step = UpdateStep::Check;
        let fail = |steps: &mut Steps, kind| Err(steps.fail(step, kind, ModuleLeft::Running));
        let refuse = |steps: &mut Steps, r| fail(steps, UpdateErrorKind::Refused(r));
        let Some(first) = self.cpus.cpus().first().map(|c| c.id) else {
            return fail(steps, UpdateErrorKind::NoCpus);
        };
        let boot = self.boot;
        if boot.info.source == MetadataSource::SysInfo
            || boot.info.features0 & features0::TD_PRESERVING == 0
        {
            return refuse(
                steps,
                UpdateRefusal::NotSupported {
                    features0: boot.info.features0,
                },
            );
        }
        let incoming = self.loader.incoming();
        if let Err(r) = self.policy(&incoming) {
            return refuse(steps, r);
        }
        let mut calls = StepCalls::default();
        let read = self
            .read(first, md::TDX_FEATURES0, &mut calls)
            .and_then(|f| Ok((f, self.read(first, md::MODULE_HANDOFF_VERSION, &mut calls)?)));
        steps.at(step).seamcalls.merge(&calls.seamcalls);
        let (features0, handoff) = match read {
            Ok(v) => v,
            Err(kind) => return fail(steps, kind),
        };
        if features0 & features0::TD_PRESERVING == 0 {
            return refuse(steps, UpdateRefusal::NotSupported { features0 });
        }
        let Ok(handoff_version) = u16::try_from(handoff) else {
            let e = MetadataError::ValueOutOfRange {
                field: md::MODULE_HANDOFF_VERSION.raw(),
                value: handoff,
            };
            return fail(steps, UpdateErrorKind::Metadata(e));
        };
        steps.handoff = Some(handoff_version);
        if let Err(r) = self.frozen_fits(handoff_version, &incoming) {
            return refuse(steps, r);
        }
        Ok(Checked {
            handoff_version,
            features0,
            incoming,
        })
    }

    /// The version policy, when on.
    fn policy(&self, incoming: &IncomingModule) -> Result<(), UpdateRefusal> {
        let running = self.boot.info.version;
        let v = incoming.version;
        if self.version_policy
            && ((v.major, v.minor) != (running.major, running.minor) || v.update <= running.update)
        {
            return Err(UpdateRefusal::NotAnUpdate {
                running,
                incoming: v,
            });
        }
        Ok(())
    }

    /// The checks that need no SEAMCALL: handoff version, layout, budget.
    fn frozen_fits(&self, handoff: u16, incoming: &IncomingModule) -> Result<(), UpdateRefusal> {
        let (lo, hi) = incoming.handoff_versions;
        if !(lo..=hi).contains(&handoff) {
            return Err(UpdateRefusal::HandoffVersion {
                running: handoff,
                incoming: (lo, hi),
            });
        }
        layout_fits(self.boot, incoming)?;
        if self.loader.remaining_updates() == Some(0) {
            return Err(UpdateRefusal::NoUpdatesLeft);
        }
        Ok(())
    }

    /// Runs `f` on every CPU as one lock-step round; the per-CPU outcomes by CPU position.
    fn round(&self, ids: &[CpuId], f: &RoundWork<'_>) -> RoundResult {
        let mut index: Vec<(CpuId, usize)> = ids.iter().enumerate().map(|(i, &c)| (c, i)).collect();
        index.sort_unstable();
        let slots: Vec<Slot> = ids.iter().map(|_| Slot::default()).collect();
        let work = |cpu: CpuId| {
            let Ok(k) = index.binary_search_by_key(&cpu, |e| e.0) else {
                return;
            };
            let at = index[k].1;
            let (calls, outcome) = f(at, cpu);
            slots[at].store(cpu, calls, outcome);
        };
        let ran = self.cpus.run_on_each(ids, &work);
        (slots.iter().map(Slot::load).collect(), ran)
    }

    /// Runs the update (see [`Update`]).
    pub fn run(self) -> Result<Updated, UpdateError> {
        let mut steps = Steps {
            done: Vec::new(),
            handoff: None,
        };
        let checked = self.check_into(&mut steps)?;
        self.steps_from(UpdateStep::Shutdown, checked, steps)
    }

    /// Carries on after `failed`, an update of this module that stopped: from the start when
    /// the old module still runs; from the step that failed when it is shut down (the check
    /// is made again against this loader's image, with the handoff version read before —
    /// the shut-down module cannot be asked); from the check of the result when the new module
    /// already runs. The loader may hold another image than the failed attempt's, as long as
    /// the install had not completed.
    pub fn resume(self, failed: &UpdateError) -> Result<Updated, UpdateError> {
        let mut steps = Steps {
            done: Vec::new(),
            handoff: failed.handoff_version,
        };
        let start = match failed.module {
            ModuleLeft::Running => return self.run(),
            ModuleLeft::ShutDown => failed.step.max(UpdateStep::Install),
            ModuleLeft::Updated => UpdateStep::Verify,
        };
        let step = UpdateStep::Check;
        let Some(handoff_version) = failed.handoff_version else {
            let e = MetadataError::FieldMissing {
                field: md::MODULE_HANDOFF_VERSION,
                status: Status::new(TDX_METADATA_FIELD_ID_INCORRECT),
            };
            return Err(steps.fail(step, UpdateErrorKind::Metadata(e), failed.module));
        };
        let incoming = self.loader.incoming();
        if let Err(r) = self
            .policy(&incoming)
            .and_then(|()| self.frozen_fits(handoff_version, &incoming))
        {
            return Err(steps.fail(step, UpdateErrorKind::Refused(r), failed.module));
        }
        let checked = Checked {
            handoff_version,
            features0: self.boot.info.features0,
            incoming,
        };
        self.steps_from(start, checked, steps)
    }

    /// The steps from `start` on.
    fn steps_from(
        self,
        start: UpdateStep,
        checked: Checked,
        mut steps: Steps,
    ) -> Result<Updated, UpdateError> {
        let ids: Vec<CpuId> = self.cpus.cpus().iter().map(|c| c.id).collect();
        let Some(&first) = ids.first() else {
            let left = if start <= UpdateStep::Shutdown {
                ModuleLeft::Running
            } else {
                ModuleLeft::ShutDown
            };
            return Err(steps.fail(start, UpdateErrorKind::NoCpus, left));
        };
        let (seamcall, retry, loader) = (self.seamcall, self.retry, self.loader);

        // 1. TDH.SYS.SHUTDOWN on the first CPU; the others wait in the round.
        let compat = checked.features0 & features0::UPDATE_COMPATIBILITY != 0;
        let rcx = u64::from(checked.handoff_version)
            | if compat && self.avoid_compat_sensitive {
                1 << 16
            } else {
                0
            };
        let shutdown_in = Regs { rcx, ..Regs::ZERO };
        let on_first = |l: crate::tdx::leaf::Leaf, inputs: Regs| {
            move |at: usize, _cpu: CpuId| {
                if at != 0 {
                    return (0, Outcome::Done);
                }
                let a = attempt_busy(seamcall, retry, l, &inputs);
                let outcome = if a.out.status.is_success() {
                    Outcome::Done
                } else {
                    Outcome::Failed(a)
                };
                (u64::from(a.attempts), outcome)
            }
        };
        let step = UpdateStep::Shutdown;
        if start <= step {
            let (out, ran) = self.round(&ids, &on_first(leaf::TDH_SYS_SHUTDOWN, shutdown_in));
            let (_, calls, outcome) = out[0];
            steps.at(step).seamcalls.add(leaf::TDH_SYS_SHUTDOWN, calls);
            match outcome {
                Outcome::Done => {}
                Outcome::Failed(a) => {
                    let s = a.out.status;
                    let kind = if matches!(s.code(), TDX_UPDATE_COMPAT_SENSITIVE | TDX_SYS_BUSY) {
                        UpdateErrorKind::TryLater { status: s }
                    } else {
                        UpdateErrorKind::Seamcall(Box::new(SeamcallError::from_attempt(
                            leaf::TDH_SYS_SHUTDOWN,
                            Some(first),
                            shutdown_in,
                            a,
                        )))
                    };
                    return Err(steps.fail(step, kind, ModuleLeft::Running));
                }
                _ => {
                    let e = ran.err().unwrap_or(CpuUnavailable { cpu: first });
                    return Err(steps.fail(step, UpdateErrorKind::Cpu(e), ModuleLeft::Running));
                }
            }
            if let Err(e) = ran {
                return Err(steps.fail(step, UpdateErrorKind::Cpu(e), ModuleLeft::ShutDown));
            }
        }

        // 2. SEAMLDR.INSTALL on every CPU, one at a time.
        let step = UpdateStep::Install;
        if start <= step {
            let turn = AtomicBool::new(false);
            let install = |_at: usize, _cpu: CpuId| {
                while turn
                    .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_err()
                {
                    core::hint::spin_loop();
                }
                let a = install_with_retry(loader, retry);
                turn.store(false, Ordering::Release);
                let outcome = if a.out.status.is_success() {
                    Outcome::Done
                } else {
                    Outcome::Failed(a)
                };
                (u64::from(a.attempts), outcome)
            };
            let (out, ran) = self.round(&ids, &install);
            let mut failed = None;
            for &(cpu, calls, outcome) in &out {
                steps.at(step).loader += calls;
                match outcome {
                    Outcome::Done => {}
                    Outcome::Failed(a) => {
                        failed.get_or_insert(UpdateErrorKind::Loader {
                            cpu,
                            status: a.out.status,
                            attempts: a.attempts,
                        });
                    }
                    _ => {
                        failed.get_or_insert(UpdateErrorKind::Cpu(
                            ran.err().unwrap_or(CpuUnavailable { cpu }),
                        ));
                    }
                }
            }
            if let Some(kind) = failed {
                return Err(steps.fail(step, kind, ModuleLeft::ShutDown));
            }
        }

        // 3. TDH.SYS.LP.INIT on every CPU at once (an LP initialized by an earlier attempt
        //    answers TDX_SYS_LP_INIT_DONE: done).
        let step = UpdateStep::LpInit;
        if start <= step {
            let lp_init = |_at: usize, _cpu: CpuId| {
                let a = attempt(seamcall, retry, leaf::TDH_SYS_LP_INIT, &Regs::ZERO);
                let outcome = if a.ok() || a.out.status.code() == TDX_SYS_LP_INIT_DONE {
                    Outcome::Done
                } else {
                    Outcome::Failed(a)
                };
                (u64::from(a.attempts), outcome)
            };
            let (out, ran) = self.round(&ids, &lp_init);
            let mut failed = None;
            for &(cpu, calls, outcome) in &out {
                steps.at(step).seamcalls.add(leaf::TDH_SYS_LP_INIT, calls);
                match outcome {
                    Outcome::Done => {}
                    Outcome::Failed(a) => {
                        failed.get_or_insert(UpdateErrorKind::Seamcall(Box::new(
                            SeamcallError::from_attempt(
                                leaf::TDH_SYS_LP_INIT,
                                Some(cpu),
                                Regs::ZERO,
                                a,
                            ),
                        )));
                    }
                    _ => {
                        failed.get_or_insert(UpdateErrorKind::Cpu(
                            ran.err().unwrap_or(CpuUnavailable { cpu }),
                        ));
                    }
                }
            }
            if let Some(kind) = failed {
                return Err(steps.fail(step, kind, ModuleLeft::ShutDown));
            }
        }

        // 4. TDH.SYS.UPDATE on the first CPU, carrying the add-on features CONFIG enabled.
        let step = UpdateStep::Update;
        let add_ons = self.boot.add_on_features;
        let (update_leaf, update_in) = if add_ons != 0 {
            (
                leaf::TDH_SYS_UPDATE.with_version(1),
                Regs {
                    r9: add_ons,
                    ..Regs::ZERO
                },
            )
        } else {
            (leaf::TDH_SYS_UPDATE, Regs::ZERO)
        };
        if start <= step {
            let (out, ran) = self.round(&ids, &on_first(update_leaf, update_in));
            let (_, calls, outcome) = out[0];
            steps.at(step).seamcalls.add(update_leaf, calls);
            match outcome {
                Outcome::Done => {}
                Outcome::Failed(a) => {
                    let e = SeamcallError::from_attempt(update_leaf, Some(first), update_in, a);
                    let kind = UpdateErrorKind::Seamcall(Box::new(e));
                    return Err(steps.fail(step, kind, ModuleLeft::ShutDown));
                }
                _ => {
                    let e = ran.err().unwrap_or(CpuUnavailable { cpu: first });
                    return Err(steps.fail(step, UpdateErrorKind::Cpu(e), ModuleLeft::ShutDown));
                }
            }
        }

        // 5. What runs now.
        let step = UpdateStep::Verify;
        let mut calls = StepCalls::default();
        let read = (|| {
            let r16 = |calls: &mut StepCalls, id: FieldId| -> Result<u16, UpdateErrorKind> {
                let v = self.read(first, id, calls)?;
                u16::try_from(v).map_err(|_| {
                    UpdateErrorKind::Metadata(MetadataError::ValueOutOfRange {
                        field: id.raw(),
                        value: v,
                    })
                })
            };
            let version = ModuleVersion::new(
                r16(&mut calls, md::MAJOR_VERSION)?,
                r16(&mut calls, md::MINOR_VERSION)?,
                r16(&mut calls, md::UPDATE_VERSION)?,
            );
            let features0 = self.read(first, md::TDX_FEATURES0, &mut calls)?;
            Ok((version, features0))
        })();
        steps.at(step).seamcalls.merge(&calls.seamcalls);
        let (version, features0) = match read {
            Ok(v) => v,
            Err(kind) => return Err(steps.fail(step, kind, ModuleLeft::Updated)),
        };
        if version != checked.incoming.version {
            let kind = UpdateErrorKind::NotTheIncoming {
                expected: checked.incoming.version,
                found: version,
            };
            return Err(steps.fail(step, kind, ModuleLeft::Updated));
        }
        Ok(Updated {
            from: self.boot.info.version,
            version,
            features0,
            handoff_version: checked.handoff_version,
            steps: steps.done,
        })
    }
}

/// [`attempt`], also retrying `TDX_UPDATE_COMPAT_SENSITIVE` as busy (the module's "try
/// later").
fn attempt_busy<S: Seamcall + ?Sized>(
    seamcall: &S,
    retry: RetryPolicy,
    l: crate::tdx::leaf::Leaf,
    inputs: &Regs,
) -> Attempted {
    let mut total = 0u32;
    let mut spins = 1u32;
    loop {
        let a = attempt(seamcall, retry, l, inputs);
        total = total.saturating_add(a.attempts);
        if a.out.status.code() != TDX_UPDATE_COMPAT_SENSITIVE || total >= retry.busy_attempts {
            return Attempted {
                out: a.out,
                attempts: total,
            };
        }
        for _ in 0..spins {
            core::hint::spin_loop();
        }
        spins = spins.saturating_mul(2).min(retry.max_backoff_spins.max(1));
    }
}
