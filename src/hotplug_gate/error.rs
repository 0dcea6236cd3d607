//! The gate's errors: one small enum per operation, each naming the offending value.

use core::fmt;

use super::metadata::MetadataHolder;
use super::module_state::ModuleState;
use crate::addr::{Bytes, PhysRange};

/// Why a memory addition was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdmitError {
    /// The range holds no byte.
    Empty {
        /// Where the empty range sits.
        at: u64,
    },
    /// The range does not start and end on 4 KiB page boundaries.
    Misaligned {
        /// The range asked for.
        range: PhysRange,
    },
    /// TDX module initialization is pending or in progress: retry once it has finished. Never
    /// blocks.
    Busy,
    /// Before initialization: part of the range lies outside every CMR, so a TDMR could not
    /// cover it and initialization would fail.
    NotConvertible {
        /// The range asked for.
        range: PhysRange,
        /// The first part of it that no CMR holds.
        outside: PhysRange,
    },
    /// After initialization: part of the range is not TDX memory of the published plan (not in
    /// a TDMR's non-reserved space, not TDX memory at init, or a PAMT block).
    NotTdxMemory {
        /// The range asked for.
        range: PhysRange,
        /// The first part of it that is not TDX memory.
        outside: PhysRange,
    },
    /// The state word's in-flight counter is full.
    TooManyInFlight {
        /// Most hotplug operations the gate tracks at once.
        limit: u32,
    },
}

impl AdmitError {
    /// Whether the same request may succeed later without any change on the caller's side.
    pub fn is_retryable(&self) -> bool {
        matches!(self, AdmitError::Busy | AdmitError::TooManyInFlight { .. })
    }
}

impl fmt::Display for AdmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AdmitError::Empty { at } => write!(f, "memory range at {at:#x} is empty"),
            AdmitError::Misaligned { range } => {
                write!(f, "memory range {range} is not 4 KiB aligned")
            }
            AdmitError::Busy => write!(
                f,
                "TDX module initialization or update pending or in progress; retry the memory addition later"
            ),
            AdmitError::NotConvertible { range, outside } => write!(
                f,
                "memory range {range} is not convertible: {outside} lies outside every CMR"
            ),
            AdmitError::NotTdxMemory { range, outside } => write!(
                f,
                "memory range {range} is not TDX memory of the initialized module: {outside} is not"
            ),
            AdmitError::TooManyInFlight { limit } => {
                write!(f, "{limit} hotplug operations already in flight")
            }
        }
    }
}

impl core::error::Error for AdmitError {}

/// Why a memory removal was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoveError {
    /// The range holds no byte.
    Empty {
        /// Where the empty range sits.
        at: u64,
    },
    /// The range does not start and end on 4 KiB page boundaries.
    Misaligned {
        /// The range asked for.
        range: PhysRange,
    },
    /// TDX module initialization is pending or in progress: retry once it has finished.
    /// Never blocks.
    Busy,
    /// After initialization: part of the range is memory the TDX module owns.
    HoldsTdxMetadata {
        /// The range asked for.
        range: PhysRange,
        /// The bytes of it that the holder owns (for Dynamic PAMT pages: the bytes of it in
        /// the 2 MiB range that holds them).
        overlap: PhysRange,
        /// What owns them: the first static PAMT block or extension memory the range
        /// overlaps, else the first 2 MiB range holding Dynamic PAMT pages.
        holder: MetadataHolder,
    },
    /// After initialization: the module's metadata did not fit the gate's refusal set
    /// ([`super::GateConfig::metadata_capacity`]), so no removal is admitted (failing closed).
    MetadataUnknown {
        /// The range asked for.
        range: PhysRange,
        /// Blocks of metadata the plan has.
        blocks: usize,
        /// Blocks the gate holds.
        capacity: usize,
    },
    /// After initialization with Dynamic PAMT: the gate has no range table
    /// ([`super::GateConfig::with_dynamic_pamt`]) or no Dynamic PAMT manager counts its pair
    /// pages in it ([`crate::dpamt::DynamicPamt::for_plan_with_table`]), so it cannot know
    /// where the pairs are and admits no removal (failing closed).
    DynamicPamtUntracked {
        /// The range asked for.
        range: PhysRange,
    },
    /// Too many removals in flight at once.
    TooManyInFlight {
        /// Most the gate tracks at once.
        limit: u32,
    },
}

impl RemoveError {
    /// Whether the same request may succeed later without any change on the caller's side
    /// (Dynamic PAMT pages go back when the module lets go of the memory they track).
    pub fn is_retryable(&self) -> bool {
        match self {
            RemoveError::Busy | RemoveError::TooManyInFlight { .. } => true,
            RemoveError::HoldsTdxMetadata { holder, .. } => !holder.is_for_good(),
            _ => false,
        }
    }
}

impl fmt::Display for RemoveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RemoveError::Empty { at } => write!(f, "memory range at {at:#x} is empty"),
            RemoveError::Misaligned { range } => {
                write!(f, "memory range {range} is not 4 KiB aligned")
            }
            RemoveError::Busy => write!(
                f,
                "TDX module initialization or update pending or in progress; retry the memory removal later"
            ),
            RemoveError::HoldsTdxMetadata {
                range,
                overlap,
                holder,
            } => {
                let verb = match holder {
                    MetadataHolder::DynamicPamtPages { .. } => "lies",
                    _ => "is",
                };
                write!(
                    f,
                    "memory range {range} holds TDX metadata: {overlap} ({}) {verb} {holder}",
                    Bytes(overlap.size())
                )
            }
            RemoveError::MetadataUnknown {
                range,
                blocks,
                capacity,
            } => write!(
                f,
                "memory range {range} may hold TDX metadata: the plan has {blocks} metadata \
                 blocks and the hotplug gate holds {capacity}"
            ),
            RemoveError::DynamicPamtUntracked { range } => write!(
                f,
                "memory range {range} may hold Dynamic PAMT pages the hotplug gate does not \
                 track (build the gate with_dynamic_pamt and the manager with its range table)"
            ),
            RemoveError::TooManyInFlight { limit } => {
                write!(f, "{limit} memory removals already in flight")
            }
        }
    }
}

impl core::error::Error for RemoveError {}

/// Why initialization could not begin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BeginInitError {
    /// Hotplug operations (memory additions and removals, CPU onlines, last-CPU offlines)
    /// admitted before initialization have not finished yet. Initialization is pending now:
    /// no new one is admitted (bar CPUs coming online into a package without one), so retry
    /// once these have drained.
    Busy {
        /// How many were in flight (never more than at the previous refusal, bar CPUs coming
        /// online into a package without one).
        in_flight: u32,
    },
    /// Another initialization is in progress.
    InProgress,
    /// The module is already initialized (its TDX memory is frozen).
    AlreadyInitialized,
    /// A package has no online CPU, so TDH.SYS.KEY.CONFIG could not run on it.
    /// Initialization stays pending: a CPU of the package may still come online (bring one
    /// up, then call again), or withdraw with [`super::HotplugGate::cancel_init`].
    PackageOffline {
        /// The first such package.
        package: u32,
    },
}

impl BeginInitError {
    /// Whether the same request may succeed later without any change on the caller's side.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            BeginInitError::Busy { .. } | BeginInitError::InProgress
        )
    }
}

impl fmt::Display for BeginInitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BeginInitError::Busy { in_flight } => write!(
                f,
                "{in_flight} hotplug operations in flight; retry TDX initialization later"
            ),
            BeginInitError::InProgress => write!(f, "TDX initialization already in progress"),
            BeginInitError::AlreadyInitialized => write!(f, "TDX module already initialized"),
            BeginInitError::PackageOffline { package } => write!(
                f,
                "package {package} has no online CPU; TDH.SYS.KEY.CONFIG needs one in every package"
            ),
        }
    }
}

impl core::error::Error for BeginInitError {}

/// Why a runtime module update could not begin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BeginUpdateError {
    /// Only an initialized module is updated.
    NotInitialized {
        /// The state seen.
        state: ModuleState,
    },
    /// Another update is in progress.
    InProgress,
    /// CPU onlines or offlines are in flight. The update is pending now: no new one is
    /// admitted, so retry once these have finished (or withdraw with
    /// [`super::HotplugGate::cancel_update`]).
    Busy {
        /// How many hotplug operations were in flight.
        in_flight: u32,
    },
}

impl BeginUpdateError {
    /// Whether the same request may succeed later without any change on the caller's side.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            BeginUpdateError::Busy { .. } | BeginUpdateError::InProgress
        )
    }
}

impl fmt::Display for BeginUpdateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BeginUpdateError::NotInitialized { state } => {
                write!(
                    f,
                    "the TDX module is {state}; only an initialized one is updated"
                )
            }
            BeginUpdateError::InProgress => write!(f, "a TDX module update is already in progress"),
            BeginUpdateError::Busy { in_flight } => write!(
                f,
                "{in_flight} CPU hotplug operations in flight; retry the TDX module update later"
            ),
        }
    }
}

impl core::error::Error for BeginUpdateError {}

/// Why a plan could not be published in full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishError {
    /// The frozen TDX memory has more ranges than the gate was built to hold. The gate is
    /// initialized anyway and admits no memory (failing closed: the module is configured, so
    /// the pre-initialization CMR rule no longer applies).
    SnapshotTooLarge {
        /// Ranges of frozen TDX memory.
        ranges: usize,
        /// The gate's capacity ([`super::GateConfig::snapshot_capacity`]).
        capacity: usize,
    },
    /// The TDX metadata (PAMT blocks, extension memory) has more blocks than the gate was
    /// built to hold. The gate is initialized anyway and refuses every memory removal
    /// ([`RemoveError::MetadataUnknown`]).
    MetadataTooLarge {
        /// Blocks of metadata.
        blocks: usize,
        /// The gate's capacity ([`super::GateConfig::metadata_capacity`]).
        capacity: usize,
    },
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PublishError::SnapshotTooLarge { ranges, capacity } => write!(
                f,
                "frozen TDX memory has {ranges} ranges but the hotplug gate holds {capacity}; \
                 no memory will be admitted"
            ),
            PublishError::MetadataTooLarge { blocks, capacity } => write!(
                f,
                "TDX metadata has {blocks} blocks but the hotplug gate holds {capacity}; \
                 no memory removal will be admitted"
            ),
        }
    }
}

impl core::error::Error for PublishError {}

/// Why a CPU may not come online.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CpuOnlineError {
    /// The CPU number is beyond the gate's topology.
    NoSuchCpu {
        /// The CPU asked for.
        cpu: u32,
        /// CPUs the gate knows.
        cpus: u32,
    },
    /// The package number is beyond the gate's topology.
    NoSuchPackage {
        /// The package asked for.
        package: u32,
        /// Packages the gate knows.
        packages: u32,
    },
    /// The CPU is already online.
    AlreadyOnline {
        /// The CPU.
        cpu: u32,
        /// The package it is online in.
        package: u32,
    },
    /// Another online or offline of this CPU is in progress.
    CpuBusy {
        /// The CPU.
        cpu: u32,
    },
    /// TDX module initialization is in progress (it needs TDH.SYS.LP.INIT on every CPU before
    /// TDH.SYS.CONFIG), or pending and the CPU's package has an online CPU already: retry once
    /// it has finished. Never blocks.
    Busy,
    /// The state word's in-flight counter is full.
    TooManyInFlight {
        /// Most hotplug operations the gate tracks at once.
        limit: u32,
    },
}

impl CpuOnlineError {
    /// Whether the same request may succeed later without any change on the caller's side.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            CpuOnlineError::Busy
                | CpuOnlineError::CpuBusy { .. }
                | CpuOnlineError::TooManyInFlight { .. }
        )
    }
}

impl fmt::Display for CpuOnlineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CpuOnlineError::NoSuchCpu { cpu, cpus } => {
                write!(f, "CPU {cpu} does not exist (the gate knows {cpus} CPUs)")
            }
            CpuOnlineError::NoSuchPackage { package, packages } => write!(
                f,
                "package {package} does not exist (the gate knows {packages} packages)"
            ),
            CpuOnlineError::AlreadyOnline { cpu, package } => {
                write!(f, "CPU {cpu} is already online in package {package}")
            }
            CpuOnlineError::CpuBusy { cpu } => {
                write!(f, "another online/offline of CPU {cpu} is in progress")
            }
            CpuOnlineError::Busy => write!(
                f,
                "TDX module initialization or update pending or in progress; retry the CPU online later"
            ),
            CpuOnlineError::TooManyInFlight { limit } => {
                write!(f, "{limit} hotplug operations already in flight")
            }
        }
    }
}

impl core::error::Error for CpuOnlineError {}

/// Why a CPU may not go offline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CpuOfflineError {
    /// The CPU number is beyond the gate's topology.
    NoSuchCpu {
        /// The CPU asked for.
        cpu: u32,
        /// CPUs the gate knows.
        cpus: u32,
    },
    /// The package number is beyond the gate's topology.
    NoSuchPackage {
        /// The package asked for.
        package: u32,
        /// Packages the gate knows.
        packages: u32,
    },
    /// The CPU is not online.
    NotOnline {
        /// The CPU.
        cpu: u32,
    },
    /// The CPU is online in another package than the one given.
    WrongPackage {
        /// The CPU.
        cpu: u32,
        /// The package given.
        package: u32,
        /// The package it came online in.
        online_in: u32,
    },
    /// Another online or offline of this CPU is in progress.
    CpuBusy {
        /// The CPU.
        cpu: u32,
    },
    /// It is the last online CPU of its package and TDX initialization is pending or in
    /// progress (TDH.SYS.KEY.CONFIG must run in every package), or a runtime module update is
    /// pending or in progress (it runs in lock-step on every CPU): retry once it has finished.
    Busy {
        /// The CPU.
        cpu: u32,
        /// Its package.
        package: u32,
    },
    /// It is the last online CPU of its package and guest KeyIDs are in use (cache write-back
    /// of TD private memory needs a CPU in every package).
    GuestKeyIdsInUse {
        /// The CPU.
        cpu: u32,
        /// Its package.
        package: u32,
        /// Guest KeyIDs in use.
        guest_keyids: u32,
    },
    /// The state word's in-flight counter is full.
    TooManyInFlight {
        /// Most hotplug operations the gate tracks at once.
        limit: u32,
    },
}

impl CpuOfflineError {
    /// Whether the same request may succeed later without any change on the caller's side.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            CpuOfflineError::Busy { .. }
                | CpuOfflineError::CpuBusy { .. }
                | CpuOfflineError::TooManyInFlight { .. }
        )
    }
}

impl fmt::Display for CpuOfflineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CpuOfflineError::NoSuchCpu { cpu, cpus } => {
                write!(f, "CPU {cpu} does not exist (the gate knows {cpus} CPUs)")
            }
            CpuOfflineError::NoSuchPackage { package, packages } => write!(
                f,
                "package {package} does not exist (the gate knows {packages} packages)"
            ),
            CpuOfflineError::NotOnline { cpu } => write!(f, "CPU {cpu} is not online"),
            CpuOfflineError::WrongPackage {
                cpu,
                package,
                online_in,
            } => write!(
                f,
                "CPU {cpu} is online in package {online_in}, not in package {package}"
            ),
            CpuOfflineError::CpuBusy { cpu } => {
                write!(f, "another online/offline of CPU {cpu} is in progress")
            }
            CpuOfflineError::Busy { cpu, package } => write!(
                f,
                "CPU {cpu} of package {package} cannot go offline while TDX initialization (for \
                 the last CPU of a package) or a TDX module update (for any CPU) is pending or \
                 in progress; retry later"
            ),
            CpuOfflineError::GuestKeyIdsInUse {
                cpu,
                package,
                guest_keyids,
            } => write!(
                f,
                "CPU {cpu} is the last online CPU of package {package} and {guest_keyids} guest \
                 KeyIDs are in use; TDX needs an online CPU in every package"
            ),
            CpuOfflineError::TooManyInFlight { limit } => {
                write!(f, "{limit} hotplug operations already in flight")
            }
        }
    }
}

impl core::error::Error for CpuOfflineError {}

/// Why the guest KeyID count could not change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyIdError {
    /// Guest KeyIDs exist only once the module is initialized.
    NotInitialized {
        /// The module state seen.
        state: ModuleState,
    },
    /// The last CPU of a package, or a CPU during a runtime update, is going offline or
    /// online right now, or an update runs: retry.
    Busy,
    /// A package has no online CPU, so TD private memory could not be written back there.
    PackageOffline {
        /// The first such package.
        package: u32,
    },
    /// The count is at its maximum.
    TooMany {
        /// Most guest KeyIDs the gate counts.
        limit: u32,
    },
    /// A release with no guest KeyID in use.
    NoneInUse,
}

impl KeyIdError {
    /// Whether the same request may succeed later without any change on the caller's side.
    pub fn is_retryable(&self) -> bool {
        matches!(self, KeyIdError::Busy)
    }
}

impl fmt::Display for KeyIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            KeyIdError::NotInitialized { state } => write!(
                f,
                "guest KeyIDs need an initialized TDX module (state: {})",
                state.name()
            ),
            KeyIdError::Busy => write!(
                f,
                "a CPU is going online or offline, or the TDX module is being updated; retry the guest KeyID later"
            ),
            KeyIdError::PackageOffline { package } => write!(
                f,
                "package {package} has no online CPU; guest KeyIDs need one in every package"
            ),
            KeyIdError::TooMany { limit } => {
                write!(f, "{limit} guest KeyIDs already counted")
            }
            KeyIdError::NoneInUse => write!(f, "no guest KeyID is in use"),
        }
    }
}

impl core::error::Error for KeyIdError {}

/// Why a gate could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GateConfigError {
    /// CPUs and packages do not fit together: packages must be 0 exactly when CPUs are (no CPU
    /// tracking), fewer than `u32::MAX`, and no more than the CPUs.
    Topology {
        /// CPUs given.
        cpus: u32,
        /// Packages given.
        packages: u32,
    },
    /// With Dynamic PAMT tracking: a CMR reaching beyond 2^52, which the range table cannot
    /// cover.
    RangeTable {
        /// The CMR.
        range: PhysRange,
    },
}

impl fmt::Display for GateConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            GateConfigError::Topology { cpus, packages } => write!(
                f,
                "{cpus} CPUs in {packages} packages is not a topology the gate can track"
            ),
            GateConfigError::RangeTable { range } => write!(
                f,
                "CMR {range} reaches beyond 2^52; no Dynamic PAMT range table can cover it"
            ),
        }
    }
}

impl core::error::Error for GateConfigError {}
