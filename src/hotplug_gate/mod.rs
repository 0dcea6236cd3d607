//! The lock-free hotplug gate: memory and CPU hotplug admission against TDX module
//! initialization.
//!
//! Before the TDX module is initialized, new memory is admitted only if it lies in the CMRs
//! (a TDMR could not cover anything else). Once it is initialized the TDX memory configuration
//! is frozen, so only memory that is already TDX memory of the published plan is admitted.
//! Memory may leave at any time except while initialization runs, and after it never where the
//! module owns it (PAMT blocks, Dynamic PAMT pairs added now, extension memory).
//! Initialization and hotplug exclude each other: additions and removals admitted before
//! initialization hold it off until they finish; once it is asked for
//! ([`HotplugGate::begin_init`] marks it pending) and while it runs they are refused with
//! `Busy`, so hotplug cannot starve it. Linux did the frozen check with a list walk under the
//! memory-hotplug lock and a mutex, and checks no removal; the gate does both with one atomic
//! state word, and nothing on any path blocks.
//!
//! | state | memory addition | memory removal | CPU online | last CPU of a package offline |
//! |---|---|---|---|---|
//! | uninitialized / failed | inside the CMRs ([`PreInitPolicy`]), in flight until finished | in flight until finished | in flight until finished | allowed (in flight while it happens) |
//! | initialization pending | `Busy` | `Busy` | `Busy`, unless the package has no online CPU | `Busy` |
//! | initializing | `Busy` | `Busy` | `Busy` | `Busy` |
//! | initialized | TDX memory of the plan (wait-free) | refused where the module owns memory (wait-free) | allowed, must run TDH.SYS.LP.INIT, in flight until finished | refused while guest KeyIDs are in use |
//! | update pending | as initialized | as initialized | `Busy` | `Busy` (any CPU) |
//! | updating ([`HotplugGate::begin_update`]) | `Busy` | `Busy` | `Busy` | `Busy` (any CPU) |
//!
//! Files: `module_state.rs` (the states), `state.rs` (the word and the initialization
//! transitions), `update.rs` (the runtime module update's transitions), `memory.rs` (memory admission), `removal.rs` (memory removal),
//! `snapshot.rs` (the frozen TDX memory), `metadata.rs` (the memory the module owns for good),
//! `sections.rs` (the fast path of the frozen check), `cpu.rs` (CPU rules, guest KeyIDs),
//! `error.rs`, `sync.rs` (atomics, swapped for loom's under `cfg(loom)`).
//!
//! ```
//! use tdmr::addr::PhysRange;
//! use tdmr::hotplug_gate::{AdmitError, GateConfig, HotplugGate, ModuleState};
//! use tdmr::layout::Planner;
//! use tdmr::memmap::parse_kernel_log;
//!
//! let log = "CMR: [0x100000, 0x77800000)\nCMR: [0x100000000, 0x407a000000)\n";
//! let (memory, cmrs) = parse_kernel_log(log)?.into_parts();
//! let gate = HotplugGate::new(cmrs.clone(), GateConfig::new(2, 1))?;
//! for cpu in 0..2 {
//!     gate.cpu_online(cpu, 0)?.finish();
//! }
//!
//! // Before initialization: anything inside the CMRs.
//! let block = PhysRange::from_base_size(0x200000000, 0x8000000)?;
//! gate.admit_memory(block)?.finish();
//! let beyond = PhysRange::from_base_size(0x407a000000, 0x8000000)?;
//! assert!(matches!(gate.admit_memory(beyond), Err(AdmitError::NotConvertible { .. })));
//!
//! // Initialization: plan, configure the module, publish.
//! let init = gate.begin_init()?;
//! assert_eq!(gate.admit_memory(block).unwrap_err(), AdmitError::Busy);
//! let plan = Planner::new().plan(&memory, &cmrs)?;
//! init.publish(&plan, &memory)?;
//! assert_eq!(gate.state(), ModuleState::Initialized);
//!
//! // After: only TDX memory of the plan (PAMT blocks are not).
//! assert!(gate.admit_memory(block).is_ok());
//! let pamt = plan.tdmrs()[1].pamt(tdmr::addr::PageSize::Size4K);
//! assert!(matches!(gate.admit_memory(pamt), Err(AdmitError::NotTdxMemory { .. })));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cpu;
mod error;
mod memory;
mod metadata;
mod module_state;
mod removal;
mod sections;
mod snapshot;
mod state;
mod sync;
mod update;

pub use cpu::CpuOnline;
pub use error::{
    AdmitError, BeginInitError, BeginUpdateError, CpuOfflineError, CpuOnlineError, GateConfigError,
    KeyIdError, PublishError, RemoveError,
};
pub use memory::{AdmissionRule, MemoryAdmission, PreInitPolicy};
pub use metadata::{MetadataHolder, tdx_metadata};
pub use module_state::ModuleState;
pub use removal::{MemoryRemoval, RemovalRule};
pub use snapshot::frozen_tdx_memory;
pub use state::{InitTicket, MAX_GUEST_KEYIDS, MAX_IN_FLIGHT};
pub use update::UpdateTicket;

use alloc::boxed::Box;
use core::fmt;

use self::sync::{AtomicBool, AtomicU32, Ordering};
use crate::addr::PhysRange;
use crate::dpamt::RangeTable;
use crate::memmap::Cmrs;

/// Default [`GateConfig::snapshot_capacity`]: 2048 ranges (32 KiB). TDX module 1.5 allows
/// 64 TDMRs of at most 17 non-reserved segments each (1088); the rest is room for memory maps
/// more fragmented than their TDMRs (a plan with CMR-based holes).
pub const DEFAULT_SNAPSHOT_CAPACITY: usize = 2048;

/// Default [`GateConfig::section_bitmap_words`]: 512 words (4 KiB, 32768 sections).
pub const DEFAULT_SECTION_BITMAP_WORDS: usize = 512;

/// Default [`GateConfig::metadata_capacity`]: 256 blocks (8 KiB): the three PAMT blocks of
/// each of 64 TDMRs (TDX module 1.5's limit) and 64 ranges of extension memory.
pub const DEFAULT_METADATA_CAPACITY: usize = 256;

/// How a [`HotplugGate`] is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GateConfig {
    /// CPUs the gate tracks, numbered `0..cpus` (0 with `packages` 0: no CPU tracking).
    pub cpus: u32,
    /// Physical packages, numbered `0..packages`.
    pub packages: u32,
    /// What memory is admitted before initialization.
    pub pre_init: PreInitPolicy,
    /// Most ranges of frozen TDX memory the gate can hold (allocated up front, 16 bytes each).
    pub snapshot_capacity: usize,
    /// `u64` words of the section bitmap, the fast path of the initialized check (allocated
    /// up front; 0 turns it off). Sections are the smallest power of two from 2 MiB whose
    /// bits span the frozen memory; a query inside sections covered whole is admitted
    /// without searching the ranges.
    pub section_bitmap_words: usize,
    /// Most blocks of TDX metadata (PAMT blocks, extension memory) the gate can hold for the
    /// removal check (allocated up front, 32 bytes each).
    pub metadata_capacity: usize,
    /// Whether the gate allocates a Dynamic PAMT range table over its CMRs (4 bytes per
    /// 2 MiB, shared with the manager, which then allocates none): needed to admit memory
    /// removals after an initialization with Dynamic PAMT.
    pub dynamic_pamt: bool,
}

impl GateConfig {
    /// `cpus` CPUs in `packages` packages, CMR rule before initialization, default capacity.
    pub const fn new(cpus: u32, packages: u32) -> Self {
        GateConfig {
            cpus,
            packages,
            pre_init: PreInitPolicy::Convertible,
            snapshot_capacity: DEFAULT_SNAPSHOT_CAPACITY,
            section_bitmap_words: DEFAULT_SECTION_BITMAP_WORDS,
            metadata_capacity: DEFAULT_METADATA_CAPACITY,
            dynamic_pamt: false,
        }
    }

    /// With room for this many blocks of TDX metadata.
    pub const fn with_metadata_capacity(mut self, blocks: usize) -> Self {
        self.metadata_capacity = blocks;
        self
    }

    /// With (or without) a Dynamic PAMT range table ([`HotplugGate::range_table`]): the words
    /// the Dynamic PAMT manager counts in and the gate reads when memory is removed.
    pub const fn with_dynamic_pamt(mut self, on: bool) -> Self {
        self.dynamic_pamt = on;
        self
    }

    /// With this pre-initialization policy.
    pub const fn with_pre_init(mut self, policy: PreInitPolicy) -> Self {
        self.pre_init = policy;
        self
    }

    /// With this many words of section bitmap (0: no fast path).
    pub const fn with_section_bitmap_words(mut self, words: usize) -> Self {
        self.section_bitmap_words = words;
        self
    }

    /// With room for this many frozen ranges.
    pub const fn with_snapshot_capacity(mut self, ranges: usize) -> Self {
        self.snapshot_capacity = ranges;
        self
    }
}

/// Admits memory and CPU hotplug against TDX module initialization, without locks. Share it
/// between threads by reference (it is `Sync`); see the [module docs](self).
pub struct HotplugGate {
    word: state::StateWord,
    cmrs: Cmrs,
    /// The merged CMRs' bounds, laid out for [`snapshot::first_uncovered`].
    cmr_starts: Box<[u64]>,
    cmr_ends: Box<[u64]>,
    policy: PreInitPolicy,
    snapshot: snapshot::Snapshot,
    /// What removals are refused for after initialization (static PAMT, extensions).
    metadata: metadata::MetadataSet,
    /// Whether the published plan uses Dynamic PAMT (written once, like the snapshot).
    dynamic_pamt: AtomicBool,
    /// Where Dynamic PAMT pair pages are counted (`GateConfig::dynamic_pamt`).
    table: Option<RangeTable>,
    /// Removals after initialization marking the range table now.
    removals: AtomicU32,
    cpus: cpu::CpuTable,
}

impl HotplugGate {
    /// A gate for a machine with these CMRs, in the uninitialized state with every CPU offline
    /// (bring the boot CPUs online with [`HotplugGate::cpu_online`]).
    pub fn new(cmrs: Cmrs, config: GateConfig) -> Result<Self, GateConfigError> {
        let GateConfig {
            cpus,
            packages,
            pre_init,
            snapshot_capacity,
            section_bitmap_words,
            metadata_capacity,
            dynamic_pamt,
        } = config;
        if (cpus == 0) != (packages == 0) || cpus < packages || packages == u32::MAX {
            return Err(GateConfigError::Topology { cpus, packages });
        }
        let table = if dynamic_pamt {
            let merged = cmrs.merged().iter().copied();
            Some(RangeTable::new(merged).map_err(|e| GateConfigError::RangeTable { range: e.0 })?)
        } else {
            None
        };
        Ok(HotplugGate {
            word: state::StateWord::new(),
            cmr_starts: cmrs.merged().iter().map(PhysRange::start).collect(),
            cmr_ends: cmrs.merged().iter().map(PhysRange::end).collect(),
            cmrs,
            policy: pre_init,
            snapshot: snapshot::Snapshot::with_capacity(snapshot_capacity, section_bitmap_words),
            metadata: metadata::MetadataSet::with_capacity(metadata_capacity),
            dynamic_pamt: AtomicBool::new(false),
            table,
            removals: AtomicU32::new(0),
            cpus: cpu::CpuTable::new(cpus, packages),
        })
    }

    /// The module state now.
    pub fn state(&self) -> ModuleState {
        self.word.load().state()
    }

    /// Hotplug operations in flight now (memory additions, removals and CPU onlines admitted
    /// before initialization and not finished, last-CPU offlines under way).
    pub fn in_flight(&self) -> u32 {
        self.word.load().in_flight()
    }

    /// Guest KeyIDs counted in use.
    pub fn guest_keyids(&self) -> u32 {
        self.word.load().guest_keyids()
    }

    /// CPUs counted online in `package` (`None` for an unknown package).
    pub fn online_cpus(&self, package: u32) -> Option<u32> {
        self.cpus.online_in(package)
    }

    /// The package `cpu` is online in, or `None` when it is offline, moving, or unknown.
    pub fn cpu_package(&self, cpu: u32) -> Option<u32> {
        self.cpus.package_of(cpu)
    }

    /// The CMRs the pre-initialization rule checks against.
    pub fn cmrs(&self) -> &Cmrs {
        &self.cmrs
    }

    /// The pre-initialization policy.
    pub fn pre_init(&self) -> PreInitPolicy {
        self.policy
    }

    /// Most frozen ranges the gate can hold.
    pub fn snapshot_capacity(&self) -> usize {
        self.snapshot.capacity()
    }

    /// Words of section bitmap (the fast path of the initialized check).
    pub fn section_bitmap_words(&self) -> usize {
        self.snapshot.bitmap_words()
    }

    /// The frozen TDX memory admitted after initialization, in address order; empty before.
    pub fn frozen_memory(&self) -> impl Iterator<Item = PhysRange> + '_ {
        let initialized = matches!(
            self.state(),
            ModuleState::Initialized | ModuleState::Updating
        );
        self.snapshot
            .iter()
            .take(if initialized { usize::MAX } else { 0 })
    }

    /// The memory the module owns for good, which no removal may take after initialization
    /// (static PAMT blocks, extension memory), in address order; empty before.
    pub fn tdx_metadata(&self) -> impl Iterator<Item = (PhysRange, MetadataHolder)> + '_ {
        let initialized = matches!(
            self.state(),
            ModuleState::Initialized | ModuleState::Updating
        );
        self.metadata
            .iter()
            .take(if initialized { usize::MAX } else { 0 })
    }

    /// Most blocks of TDX metadata the gate can hold.
    pub fn metadata_capacity(&self) -> usize {
        self.metadata.capacity()
    }

    /// The Dynamic PAMT range table ([`GateConfig::with_dynamic_pamt`]): build the manager
    /// with it ([`crate::dpamt::DynamicPamt::for_plan_with_table`]).
    pub fn range_table(&self) -> Option<&RangeTable> {
        self.table.as_ref()
    }

    /// Memory removals after initialization in flight now that mark the Dynamic PAMT range
    /// table (no page pair may be placed in their ranges meanwhile).
    pub fn removals_in_flight(&self) -> u32 {
        self.removals.load(Ordering::Acquire)
    }
}

impl fmt::Debug for HotplugGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.word.load();
        f.debug_struct("HotplugGate")
            .field("state", &w.state())
            .field("pending", &w.pending())
            .field("in_flight", &w.in_flight())
            .field("guest_keyids", &w.guest_keyids())
            .field("policy", &self.policy)
            .field("cmrs", &self.cmrs.merged().len())
            .field("frozen_ranges", &self.snapshot.len())
            .field("dynamic_pamt_table", &self.table.is_some())
            .field("cpus", &self.cpus.cpus())
            .field("packages", &self.cpus.packages())
            .finish()
    }
}
