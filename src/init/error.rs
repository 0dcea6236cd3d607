//! Why bring-up failed, where, and what the caller must clean up.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use super::{CpuUnavailable, HostMemoryError, SeamcallError};
use crate::addr::PhysRange;
use crate::layout::{PamtOrigin, PlanError};
use crate::memmap::{CmrError, MemoryMapError};
use crate::seamcall::SeamcallCounts;
use crate::sysinfo::LimitsError;
use crate::tdx::abi::AbiError;
use crate::tdx::leaf::Leaf;
use crate::tdx::metadata::FieldId;
use crate::tdx::status::Status;

/// The step bring-up had reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Checking the inputs (CPUs, KeyIDs).
    Inputs,
    /// TDH.SYS.INIT.
    SysInit,
    /// TDH.SYS.LP.INIT on every CPU.
    LpInit,
    /// Reading global metadata (TDH.SYS.RD).
    Metadata,
    /// Planning TDMRs and PAMTs.
    Plan,
    /// Claiming the PAMT memory the planner carved from TDX memory.
    PamtClaim,
    /// TDH.SYS.CONFIG (and preparing its buffers).
    Config,
    /// TDH.SYS.KEY.CONFIG on every package.
    KeyConfig,
    /// TDH.SYS.TDMR.INIT on every TDMR.
    TdmrInit,
    /// The module extensions: their memory sized after TDH.SYS.CONFIG, handed over with
    /// TDH.EXT.MEM.ADD, then TDH.EXT.INIT.
    Extensions,
}

impl Stage {
    /// Every stage, in the order bring-up runs them.
    pub const ALL: [Stage; 10] = [
        Stage::Inputs,
        Stage::SysInit,
        Stage::LpInit,
        Stage::Metadata,
        Stage::Plan,
        Stage::PamtClaim,
        Stage::Config,
        Stage::KeyConfig,
        Stage::TdmrInit,
        Stage::Extensions,
    ];

    /// Lower-case name for reports: `inputs`, `sys_init`, `lp_init`, `metadata`, `plan`,
    /// `pamt_claim`, `config`, `key_config`, `tdmr_init`, `extensions`.
    pub const fn name(self) -> &'static str {
        match self {
            Stage::Inputs => "inputs",
            Stage::SysInit => "sys_init",
            Stage::LpInit => "lp_init",
            Stage::Metadata => "metadata",
            Stage::Plan => "plan",
            Stage::PamtClaim => "pamt_claim",
            Stage::Config => "config",
            Stage::KeyConfig => "key_config",
            Stage::TdmrInit => "tdmr_init",
            Stage::Extensions => "extensions",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Inputs => "input checks",
            Stage::SysInit => "TDH.SYS.INIT",
            Stage::LpInit => "TDH.SYS.LP.INIT",
            Stage::Metadata => "metadata read",
            Stage::Plan => "TDMR planning",
            Stage::PamtClaim => "PAMT memory claim",
            Stage::Config => "TDH.SYS.CONFIG",
            Stage::KeyConfig => "TDH.SYS.KEY.CONFIG",
            Stage::TdmrInit => "TDH.SYS.TDMR.INIT",
            Stage::Extensions => "module extensions",
        })
    }
}

/// Something wrong with what the module reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetadataError {
    /// The module has no such field: TDH.SYS.RD answered `TDX_METADATA_FIELD_ID_INCORRECT`
    /// (how an old module fails a newer kernel).
    FieldMissing {
        /// The field read.
        field: FieldId,
        /// The raw status.
        status: Status,
    },
    /// Add-on features were asked for (TDH.SYS.CONFIG v1) that TDX_FEATURES0 does not report.
    AddOnUnsupported {
        /// The features asked for.
        requested: u64,
        /// TDX_FEATURES0 as read.
        features0: u64,
    },
    /// TDX_FEATURES0 lacks NO_RBP_MOD (bit 18): the module may clobber RBP.
    NoRbpModMissing {
        /// TDX_FEATURES0 as read.
        features0: u64,
    },
    /// Dynamic PAMT was asked for but TDX_FEATURES0 bit 36 is clear.
    DynamicPamtUnsupported {
        /// TDX_FEATURES0 as read.
        features0: u64,
    },
    /// A limit or PAMT entry size the planner cannot use.
    Limits(LimitsError),
    /// NUM_CMRS above the 32 CMR slots.
    TooManyCmrSlots {
        /// NUM_CMRS as read.
        num_cmrs: u64,
    },
    /// The CMR list is not sorted, aligned or disjoint.
    Cmrs(CmrError),
    /// A field does not fit the size its id promises.
    ValueOutOfRange {
        /// The field id.
        field: u64,
        /// The value.
        value: u64,
    },
}

impl fmt::Display for MetadataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MetadataError::FieldMissing { field, status } => write!(
                f,
                "the TDX module lacks metadata field {field}: TDH.SYS.RD answered {status}"
            ),
            MetadataError::AddOnUnsupported {
                requested,
                features0,
            } => write!(
                f,
                "add-on features {requested:#x} requested but TDX_FEATURES0 {features0:#x} lacks {:#x}",
                requested & !features0
            ),
            MetadataError::NoRbpModMissing { features0 } => write!(
                f,
                "TDX_FEATURES0 {features0:#x} lacks NO_RBP_MOD (bit 18): the module may clobber RBP"
            ),
            MetadataError::DynamicPamtUnsupported { features0 } => write!(
                f,
                "Dynamic PAMT requested but TDX_FEATURES0 {features0:#x} lacks bit 36"
            ),
            MetadataError::Limits(e) => write!(f, "module limits: {e}"),
            MetadataError::TooManyCmrSlots { num_cmrs } => {
                write!(f, "NUM_CMRS {num_cmrs} exceeds the 32 CMR slots")
            }
            MetadataError::Cmrs(e) => write!(f, "module CMRs: {e}"),
            MetadataError::ValueOutOfRange { field, value } => {
                write!(
                    f,
                    "metadata field {field:#x} holds {value:#x}, out of range"
                )
            }
        }
    }
}

impl core::error::Error for MetadataError {}

/// What went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InitErrorKind {
    /// A SEAMCALL failed (raw status, leaf, CPU and registers kept).
    Seamcall(Box<SeamcallError>),
    /// The host listed no CPU.
    NoCpus,
    /// The host listed a CPU twice ([`super::Cpus::cpus`] must list each LP once: the module
    /// refuses a second TDH.SYS.LP.INIT on an LP).
    DuplicateCpu {
        /// The CPU listed more than once.
        cpu: super::CpuId,
    },
    /// The host could not run code on a CPU.
    Cpu(CpuUnavailable),
    /// Fewer than two private KeyIDs (one global, at least one for guests), as Linux requires.
    TooFewKeyIds {
        /// Private KeyIDs given.
        count: u16,
    },
    /// The module reported something unusable.
    Metadata(MetadataError),
    /// Some package the module knows has no CPU to run TDH.SYS.KEY.CONFIG on.
    PackagesWithoutCpu {
        /// NUM_PKGS as read.
        module: u32,
        /// Distinct packages among the host's CPUs.
        online: u32,
    },
    /// TDX memory outside the CMRs the module reported.
    Memory(MemoryMapError),
    /// No TDMR layout.
    Plan(PlanError),
    /// The layout does not fit `TDMR_INFO`.
    Abi(AbiError),
    /// No buffer for `TDMR_INFO`s or their PA array, or PAMT memory the host could not give.
    HostMemory(HostMemoryError),
    /// TDH.SYS.TDMR.INIT reported a next-to-initialize address outside the TDMR or going back.
    TdmrInitBadProgress {
        /// Index of the TDMR.
        tdmr: usize,
        /// Its base.
        base: u64,
        /// RDX as returned.
        rdx: u64,
    },
    /// A resumable leaf (TDH.EXT.MEM.ADD, TDH.EXT.INIT) kept answering
    /// `TDX_INTERRUPTED_RESUMABLE` past any progress it could be making.
    ResumeStalled {
        /// The leaf.
        leaf: Leaf,
        /// Calls made.
        calls: u64,
    },
    /// TDH.SYS.TDMR.INIT kept succeeding without finishing: more successful calls than the
    /// TDMR has 4 KiB pages.
    TdmrInitStalled {
        /// Index of the TDMR.
        tdmr: usize,
        /// Its base.
        base: u64,
        /// Successful calls made.
        calls: u64,
    },
}

impl fmt::Display for InitErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitErrorKind::Seamcall(e) => write!(f, "{e}"),
            InitErrorKind::NoCpus => f.write_str("no CPUs to initialize"),
            InitErrorKind::DuplicateCpu { cpu } => {
                write!(f, "the host lists CPU {cpu} more than once")
            }
            InitErrorKind::Cpu(e) => write!(f, "{e}"),
            InitErrorKind::TooFewKeyIds { count } => write!(
                f,
                "{count} private KeyIDs; TDX needs at least 2 (one global, one for guests)"
            ),
            InitErrorKind::Metadata(e) => write!(f, "{e}"),
            InitErrorKind::PackagesWithoutCpu { module, online } => write!(
                f,
                "the module knows {module} packages but only {online} have a CPU to configure keys on"
            ),
            InitErrorKind::Memory(e) => write!(f, "TDX memory vs module CMRs: {e}"),
            InitErrorKind::Plan(e) => write!(f, "{e}"),
            InitErrorKind::Abi(e) => write!(f, "{e}"),
            InitErrorKind::HostMemory(e) => write!(f, "{e}"),
            InitErrorKind::TdmrInitBadProgress { tdmr, base, rdx } => write!(
                f,
                "TDH.SYS.TDMR.INIT on TDMR {tdmr} at {base:#x} returned next address {rdx:#x}, outside the TDMR or going back"
            ),
            InitErrorKind::ResumeStalled { leaf, calls } => write!(
                f,
                "{leaf} still interrupted after {calls} calls: no progress"
            ),
            InitErrorKind::TdmrInitStalled { tdmr, base, calls } => write!(
                f,
                "TDH.SYS.TDMR.INIT on TDMR {tdmr} at {base:#x} did not finish after {calls} successful calls"
            ),
        }
    }
}

/// What the caller must undo after a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Teardown {
    /// The plan's PAMT memory, contiguous ranges merged, in address order: give it back — to
    /// the page allocator with [`super::HostMemory::unclaim_pamt`] when the planner carved it
    /// ([`PamtOrigin::Carved`]), to the caller's PAMT allocator otherwise.
    pub pamt: Vec<PhysRange>,
    /// Where that memory came from.
    pub origin: PamtOrigin,
    /// TDH.SYS.CONFIG succeeded, so the module may have written the PAMTs with the global
    /// private KeyID: write back and invalidate caches on every CPU and, on CPUs with the
    /// partial-write erratum, reset the PAMT memory (MOVDIR64B) before freeing it. The module
    /// stays configured until the platform resets; it cannot be configured again.
    pub reset_required: bool,
    /// Memory handed to the module extensions with TDH.EXT.MEM.ADD before the failure: the
    /// module keeps it (it is never reclaimable short of TDH.SYS.DISABLE or a reset): do not
    /// free it.
    pub extension_memory: Vec<PhysRange>,
}

/// Bring-up failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitError {
    /// Where.
    pub stage: Stage,
    /// What.
    pub kind: InitErrorKind,
    /// What to clean up, once PAMT memory was planned.
    pub teardown: Option<Teardown>,
    /// SEAMCALLs made before failing.
    pub seamcalls: SeamcallCounts,
    /// The same, per stage, stages in order (those that made calls).
    pub seamcalls_by_stage: Vec<(Stage, SeamcallCounts)>,
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TDX module initialization failed at {}: {}",
            self.stage, self.kind
        )
    }
}

impl core::error::Error for InitError {}
