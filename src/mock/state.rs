//! The module's state: the global state machine, per-LP and per-package flags, the recorded
//! TDMRs with their initialization progress, and simulated memory.

use alloc::collections::BTreeSet;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use super::log::{CallLog, CallLogMode};
use super::metadata::Metadata;
use super::page_pairs::PamtPages;
use super::pamt_work::{ResidentPamt, SharedImage};
use super::phys_mem::PhysMem;
use super::platform::Platform;
use super::profile::ModuleProfile;
use crate::addr::{PhysRange, RangeSet, SZ_1G, align_down};
use crate::seamcall::SeamcallCounts;

/// The module's global state (`sys_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SysState {
    /// Before TDH.SYS.INIT.
    SysinitPending,
    /// TDH.SYS.INIT done; LPs initialize, then TDH.SYS.CONFIG.
    SysinitDone,
    /// TDH.SYS.CONFIG done; TDH.SYS.KEY.CONFIG on every package.
    SysconfigDone,
    /// Every package configured: TDMR initialization and TD leaves run.
    SysReady,
    /// TDH.SYS.SHUTDOWN done (before a runtime update: the loader installs a new module).
    Shutdown,
    /// TDH.SYS.DISABLE done: everything the module held is reclaimed and it is back where it
    /// booted — only TDH.SYS.INIT (a new kernel bringing TDX up) moves it on, every other leaf
    /// answers as before TDH.SYS.INIT.
    Disabled,
}

impl fmt::Display for SysState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SysState::SysinitPending => "SYSINIT_PENDING",
            SysState::SysinitDone => "SYSINIT_DONE",
            SysState::SysconfigDone => "SYSCONFIG_DONE",
            SysState::SysReady => "SYS_READY",
            SysState::Shutdown => "SYS_SHUTDOWN",
            SysState::Disabled => "DISABLED",
        })
    }
}

/// One configured TDMR and how far TDH.SYS.TDMR.INIT got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TdmrProgress {
    /// TDMR base.
    pub base: u64,
    /// TDMR size.
    pub size: u64,
    /// Next address to initialize (`base + size` when done).
    pub next: u64,
}

impl TdmrProgress {
    /// Whether the whole TDMR is initialized.
    pub fn is_done(&self) -> bool {
        self.next >= self.base + self.size
    }
}

#[derive(Clone, Debug)]
pub(crate) struct TdmrRecord {
    pub(crate) progress: TdmrProgress,
    /// The LP inside TDH.SYS.TDMR.INIT on this TDMR (the per-TDMR mutex), if any.
    pub(crate) busy: Option<u32>,
    /// The non-null reserved areas as absolute ranges, in the (ascending) order TDH.SYS.CONFIG
    /// accepted them. TDH.SYS.TDMR.INIT marks their pages in the PAMT (PT_RSVD, or the
    /// Dynamic PAMT bitmap); the mock keeps the list instead of a per-page structure.
    pub(crate) reserved: Vec<PhysRange>,
    /// PAMT bytes per level (4K or bitmap, 2M, 1G) as configured: what a module taking over
    /// at TDH.SYS.UPDATE must be able to use.
    pub(crate) pamt_sizes: [u64; 3],
}

impl TdmrRecord {
    /// Whether `pa` lies in a 1 GiB block TDH.SYS.TDMR.INIT has finished: the module's PAMT
    /// lookups refuse addresses at or above the next-to-initialize address rounded down to
    /// 1 GiB.
    pub(crate) fn initialized(&self, pa: u64) -> bool {
        let p = &self.progress;
        pa >= p.base && pa < align_down(p.next, SZ_1G)
    }

    /// Whether `pa` lies in one of the TDMR's reserved areas (binary search).
    pub(crate) fn in_reserved(&self, pa: u64) -> bool {
        let i = self.reserved.partition_point(|r| r.end() <= pa);
        self.reserved.get(i).is_some_and(|r| r.contains(pa))
    }
}

/// The TDX module running now: its profile and metadata table (a runtime update replaces it).
#[derive(Clone, Debug)]
pub(crate) struct Loaded {
    pub(crate) profile: ModuleProfile,
    pub(crate) metadata: Metadata,
}

impl Loaded {
    pub(crate) fn new(p: &Platform, profile: ModuleProfile) -> Self {
        Loaded {
            metadata: Metadata::new(p, &profile),
            profile,
        }
    }
}

/// The module extensions' memory pool and initialization.
#[derive(Clone, Debug, Default)]
pub(crate) struct Extensions {
    /// Pages TDH.EXT.MEM.ADD took (never given back but by TDH.SYS.DISABLE).
    pub(crate) pages: BTreeSet<u64>,
    /// Pages TDH.EXT.INIT has initialized so far.
    pub(crate) init_done: u64,
    /// Whether TDH.EXT.INIT completed.
    pub(crate) initialized: bool,
}

/// A runtime update in progress, from TDH.SYS.SHUTDOWN to TDH.SYS.UPDATE.
#[derive(Clone, Debug, Default)]
pub(crate) struct Handoff {
    /// The handoff version TDH.SYS.SHUTDOWN wrote (its RCX), if it ran.
    pub(crate) version: Option<u16>,
    /// The image the loader is installing, once it started.
    pub(crate) incoming: Option<ModuleProfile>,
    /// LPs the loader installed it on.
    pub(crate) installed: Vec<bool>,
    /// The new module is loaded on every LP and waits for LP.INIT and TDH.SYS.UPDATE.
    pub(crate) pending: bool,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) module: Loaded,
    pub(crate) sys: SysState,
    pub(crate) lp_init: Vec<bool>,
    pub(crate) lps_initialized: u32,
    pub(crate) global_keyid: Option<u16>,
    pub(crate) dynamic_pamt: bool,
    pub(crate) tdmrs: Vec<TdmrRecord>,
    pub(crate) pkg_configured: Vec<bool>,
    pub(crate) pkgs_configured: u32,
    pub(crate) mem: PhysMem,
    pub(crate) log: CallLog,
    /// Host buffers the mock's `HostMemory` handed out: `(pa, len)`.
    pub(crate) host_buffers: Vec<(u64, u64)>,
    /// Dynamic PAMT page pairs and 4 KiB pages in use (sparse, per 2 MiB range).
    pub(crate) pamt: PamtPages,
    /// PAMT memory the host side claimed (`HostMemory::claim_pamt`).
    pub(crate) claimed_pamt: RangeSet,
    /// Memory the host side gave for the module extensions (`HostMemory::claim_extension_pages`).
    pub(crate) host_extension: RangeSet,
    /// Work mode: each configured TDMR's PAMT image, written by TDH.SYS.TDMR.INIT.
    pub(crate) images: Vec<SharedImage>,
    /// Work mode with resident PAMT memory: PAMT_4K blocks written ahead of TDH.SYS.CONFIG.
    pub(crate) resident_pamt: ResidentPamt,
    /// Whether each LP is inside a SEAMCALL now.
    pub(crate) lp_in_flight: Vec<bool>,
    /// SEAMCALLs served per LP, per leaf.
    pub(crate) per_lp: Vec<SeamcallCounts>,
    /// Calls refused because their LP had a call in flight.
    pub(crate) lp_conflicts: u64,
    /// Add-on features TDH.SYS.CONFIG v1 enabled (R9).
    pub(crate) add_ons: u64,
    /// The PAMT_4K entry size of the module that accepted the configuration (the Dynamic PAMT
    /// page pairs are sized by it).
    pub(crate) pamt_4k_entry_size: u64,
    /// The module extensions.
    pub(crate) ext: Extensions,
    /// A runtime update under way.
    pub(crate) handoff: Handoff,
    /// Runtime updates completed.
    pub(crate) updates: u32,
    /// 2 MiB ranges with a TDH.PHYMEM.PAMT.ADD/REMOVE in flight, and the LP holding each: the
    /// module locks PAMT entries at 2 MiB.
    pub(crate) pamt_busy: Vec<(u64, u32)>,
    /// Compatibility-sensitive work in progress (a test hook: TD operations an update must
    /// not interrupt when TDH.SYS.SHUTDOWN asks to avoid them).
    pub(crate) compat_sensitive: bool,
    /// TDMRs an interrupted TDH.SYS.DISABLE has still to reclaim.
    pub(crate) disable_left: Option<usize>,
}

impl State {
    pub(crate) fn new(p: &Platform, log: CallLogMode) -> Self {
        State {
            module: Loaded::new(p, p.module.clone()),
            sys: SysState::SysinitPending,
            lp_init: vec![false; p.lps as usize],
            lps_initialized: 0,
            global_keyid: None,
            dynamic_pamt: false,
            tdmrs: Vec::new(),
            pkg_configured: vec![false; p.packages as usize],
            pkgs_configured: 0,
            mem: PhysMem::new(),
            log: CallLog::new(log),
            host_buffers: Vec::new(),
            pamt: PamtPages::default(),
            claimed_pamt: RangeSet::new(),
            host_extension: RangeSet::new(),
            images: Vec::new(),
            resident_pamt: ResidentPamt::default(),
            lp_in_flight: vec![false; p.lps as usize],
            per_lp: vec![SeamcallCounts::new(); p.lps as usize],
            lp_conflicts: 0,
            add_ons: 0,
            pamt_4k_entry_size: 16,
            ext: Extensions::default(),
            handoff: Handoff::default(),
            updates: 0,
            pamt_busy: Vec::new(),
            compat_sensitive: false,
            disable_left: None,
        }
    }

    /// The running module's profile.
    pub(crate) fn profile(&self) -> &ModuleProfile {
        &self.module.profile
    }

    /// Whether an LP other than `lp` is inside a SEAMCALL now.
    pub(crate) fn other_lp_in_flight(&self, lp: u32) -> bool {
        self.lp_in_flight
            .iter()
            .enumerate()
            .any(|(i, &busy)| busy && i != lp as usize)
    }

    pub(crate) fn lp_is_init(&self, lp: u32) -> bool {
        self.lp_init.get(lp as usize).copied().unwrap_or(false)
    }

    /// Index of the TDMR whose base is `base`.
    pub(crate) fn tdmr_at(&self, base: u64) -> Option<usize> {
        self.tdmrs
            .binary_search_by_key(&base, |t| t.progress.base)
            .ok()
    }

    /// The TDMR containing `pa` (binary search; TDMRs are sorted and disjoint).
    pub(crate) fn tdmr_containing(&self, pa: u64) -> Option<&TdmrRecord> {
        let i = self
            .tdmrs
            .partition_point(|t| t.progress.base + t.progress.size <= pa);
        self.tdmrs.get(i).filter(|t| t.progress.base <= pa)
    }
}
