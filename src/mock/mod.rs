//! A software TDX module for testing a host's bring-up without TDX hardware.
//!
//! [`MockModule`] models what the host can observe of a released TDX module — its
//! [`ModuleProfile`]: version and build, TDX_FEATURES0, metadata fields, limits, the leaves it
//! implements; 1.5.25 unless [`Platform::with_module`] says otherwise — during initialization,
//! runtime update and shutdown:
//!
//! - the global state machine SYSINIT_PENDING → SYSINIT_DONE → SYSCONFIG_DONE → SYS_READY
//!   (and SYS_SHUTDOWN), per-LP initialization flags and per-package key configuration, with
//!   the exact status each leaf returns out of order or repeated;
//! - the dispatcher's gating: in SYS_SHUTDOWN every leaf but TDH.SYS.LP.SHUTDOWN returns
//!   `TDX_SYS_SHUTDOWN`; before SYS_READY only the SYS leaves the module allows get through
//!   (everything else, TDH.SYS.TDMR.INIT included, returns `TDX_SYS_NOT_READY`); unknown leaves
//!   and SYS leaves with a non-zero version return `TDX_OPERAND_INVALID | RAX`;
//! - TDH.SYS.RD, TDH.SYS.RDALL and TDH.SYS.INFO over the fields the profile has (a field it
//!   lacks answers `TDX_METADATA_FIELD_ID_INCORRECT`; TDX 1.0 has no TDH.SYS.RD at all);
//! - TDH.SYS.CONFIG (version 1 with add-on features on profiles that accept it) reading
//!   `TDMR_INFO`s from simulated physical memory and checking them with
//!   [`crate::tdx::validate`], with the profile's version quirks;
//! - with module extensions, TDH.EXT.MEM.ADD and TDH.EXT.INIT, resumable (`extensions.rs`);
//! - TDH.SYS.SHUTDOWN, the loader installing a new module ([`SeamLoader`]), TDH.SYS.LP.INIT
//!   and TDH.SYS.UPDATE over the configuration frozen at boot (`update.rs`);
//! - TDH.SYS.DISABLE and the state after it (`disable.rs`);
//! - TDH.SYS.KEY.CONFIG once per package and TDH.SYS.TDMR.INIT in 4 MiB steps (16 MiB with
//!   Dynamic PAMT), tracked per TDMR;
//! - with Dynamic PAMT, TDH.PHYMEM.PAMT.ADD and TDH.PHYMEM.PAMT.REMOVE with the module's checks
//!   and statuses, the module's 2 MiB locking (a concurrent PAMT.ADD/REMOVE on one 2 MiB range
//!   answers `TDX_OPERAND_BUSY`), and [`MockModule::mark_in_use`] / [`MockModule::mark_free`]
//!   standing in for the TD leaves that take 4 KiB pages into use (see `pamt_pages.rs`).
//!
//! It also plays the host's side for [`crate::init`]: it implements [`crate::init::Cpus`]
//! (its logical processors and packages; `run_on` makes calls execute on that LP) and
//! [`crate::init::HostMemory`] (buffers placed in simulated memory; PAMT claims recorded, and
//! refused where [`Platform::with_pinned`] pinned host memory). [`PagePool`] hands out
//! Dynamic PAMT page pairs from simulated memory. [`crate::seamcall::FaultInjector`] wraps it
//! (or any backend) to inject the module's transient failures.
//!
//! Leaves the profile lacks and leaves the mock does not model (TD leaves) return
//! `TDX_OPERAND_INVALID | RAX` once they pass the dispatcher's gating (before SYS_READY:
//! `TDX_SYS_NOT_READY`); so do TDH.PHYMEM.PAMT.ADD/REMOVE unless TDH.SYS.CONFIG enabled Dynamic
//! PAMT.
//!
//! ```
//! use tdmr::memmap::Cmr;
//! use tdmr::mock::{MockModule, Platform, SysState};
//! use tdmr::seamcall::Seamcall;
//! use tdmr::tdx::status::TDX_SYS_INIT_NOT_PENDING;
//! use tdmr::tdx::{leaf, Regs};
//!
//! let module = MockModule::new(Platform::new(&[Cmr::new(0x10_0000, 0x7ff0_0000)]).unwrap());
//! assert!(module.seamcall(leaf::TDH_SYS_INIT, &Regs::ZERO).status.is_success());
//! assert_eq!(module.state(), SysState::SysinitDone);
//! let again = module.seamcall(leaf::TDH_SYS_INIT, &Regs::ZERO);
//! assert_eq!(again.status.raw(), TDX_SYS_INIT_NOT_PENDING);
//! ```

mod config;
mod disable;
mod extensions;
mod key_config;
mod loader;
mod log;
mod lp;
mod metadata;
mod page_pairs;
mod page_pool;
mod pamt_pages;
mod pamt_work;
mod phys_mem;
mod platform;
mod profile;
mod state;
mod sys_init;
mod sys_rd;
mod tdmr_init;
#[cfg(feature = "std")]
mod threads;
mod update;

pub use extensions::{EXT_INIT_BATCH, EXT_MEM_ADD_BATCH};
pub use loader::{LoaderHeld, SeamLoader};
pub use log::{CallLog, CallLogMode, CallRecord, LogEntry};
pub use page_pool::PagePool;
pub use phys_mem::PhysMemError;
pub use platform::{Platform, PlatformError};
pub use profile::{FEATURES0_TDX_1_5, ModuleProfile, NEXT_EXTENSION_PAGES, ProfileError};
pub use state::{SysState, TdmrProgress};
#[cfg(feature = "std")]
pub use threads::LpThreads;

use alloc::vec::Vec;

use self::lp::LpContext;
use self::state::State;
use self::tdmr_init::Begin;
use crate::addr::{PhysRange, RangeSet, SZ_4K, align_up};
use crate::init::{Cpu, CpuId, CpuUnavailable, Cpus, HostMemory, HostMemoryError};
use crate::seamcall::Seamcall;
use crate::seamcall::SeamcallCounts;
use crate::seamcall::lock::Lock;
use crate::tdx::leaf::{self, Leaf};
use crate::tdx::status::{
    Status, TDX_OPERAND_INVALID, TDX_SEAMCALL_UD, TDX_SUCCESS, TDX_SYS_NOT_READY, TDX_SYS_SHUTDOWN,
    operand,
};
use crate::tdx::{Output, Regs};

/// The software TDX module. See the [module documentation](self).
#[derive(Debug)]
pub struct MockModule {
    platform: Platform,
    state: Lock<State>,
    lp: LpContext,
    /// The host's answer to "which CPU am I" (see [`MockModule::with_lp_source`]).
    lp_source: Option<fn() -> u32>,
    work: bool,
}

// The module, the injectors around it and its host side are shared between CPUs with or
// without `std` (a UEFI program drives it from its APs).
const _: () = {
    const fn sync<T: Sync + Send>() {}
    sync::<MockModule>();
    sync::<crate::seamcall::FaultInjector<&MockModule>>();
};

/// Leaves the dispatcher lets through before SYS_READY.
fn allowed_before_ready(leaf: Leaf) -> bool {
    matches!(leaf.number(), 31 | 32 | 33 | 34 | 35 | 37 | 44 | 45 | 53)
}

/// Whether module `m` implements `leaf` (any version).
fn implements(m: &ModuleProfile, leaf: Leaf) -> bool {
    match leaf.number() {
        31..=33 | 35 | 36 | 44 | 45 => true,
        34 | 37 => m.implements_sys_rd(),
        52 | 53 => m.supports_update(),
        58 | 59 => m.supports_dynamic_pamt(),
        60 | 61 => m.has_extensions(),
        69 => m.implements_disable(),
        _ => false,
    }
}

/// The highest version of `leaf` module `m` accepts.
fn max_version(m: &ModuleProfile, leaf: Leaf) -> u8 {
    match leaf.number() {
        45 | 53 if m.accepts_config_v1() => 1,
        _ => 0,
    }
}

impl MockModule {
    /// A module on `platform`, before TDH.SYS.INIT, keeping per-leaf counts but no call log.
    pub fn new(platform: Platform) -> Self {
        Self::with_log(platform, CallLogMode::Counts)
    }

    /// The same, keeping the call log as `mode` says.
    pub fn with_log(platform: Platform, mode: CallLogMode) -> Self {
        MockModule {
            state: Lock::new(State::new(&platform, mode)),
            platform,
            lp: LpContext::new(),
            lp_source: None,
            work: false,
        }
    }

    /// Tells the mock which LP each call comes from by asking `source` (the host's "which CPU
    /// am I": a kernel's `smp_processor_id`, UEFI MP Services' `WhoAmI`, the local APIC id
    /// mapped to a CPU number), instead of its own [`Cpus::run_on`] context. For hosts that run
    /// the calls on CPUs of their own — through another [`Cpus`] than the mock's — where the
    /// mock cannot see who calls. The answer must be below [`Platform::lps`]; calls answered
    /// with another number are served as that LP's anyway and refused by the per-LP checks.
    ///
    /// ```
    /// use tdmr::memmap::Cmr;
    /// use tdmr::mock::{MockModule, Platform};
    /// use tdmr::seamcall::Seamcall;
    /// use tdmr::tdx::{leaf, Regs};
    /// fn always_cpu_one() -> u32 { 1 }
    /// let p = Platform::new(&[Cmr::new(0x10_0000, 0x7ff0_0000)])?.with_topology(2, 1)?;
    /// let m = MockModule::new(p).with_lp_source(always_cpu_one);
    /// m.seamcall(leaf::TDH_SYS_INIT, &Regs::ZERO);
    /// assert!(m.seamcall(leaf::TDH_SYS_LP_INIT, &Regs::ZERO).status.is_success());
    /// assert!(m.lp_initialized(1) && !m.lp_initialized(0));
    /// # Ok::<(), tdmr::mock::PlatformError>(())
    /// ```
    pub fn with_lp_source(mut self, source: fn() -> u32) -> Self {
        self.lp_source = Some(source);
        self
    }

    /// The LP the current call comes from: the host's answer when it gave a source, else the
    /// innermost [`Cpus::run_on`] of this module, else none (served as LP 0).
    fn calling_lp(&self) -> Option<u32> {
        match self.lp_source {
            Some(source) => Some(source()),
            None => self.lp.current(),
        }
    }

    /// Work mode (off by default): each TDH.SYS.TDMR.INIT call writes the PAMT entries of its
    /// chunk (4 MiB, 16 MiB with Dynamic PAMT) into memory the mock allocates at
    /// TDH.SYS.CONFIG — 16 bytes per 4 KiB page of every TDMR (a bit per page with Dynamic
    /// PAMT) — outside the module's global lock, so concurrent calls on different TDMRs do
    /// their work in parallel. For benchmarks: the fast default only advances a pointer.
    pub fn with_tdmr_init_work(mut self, on: bool) -> Self {
        self.work = on;
        self
    }

    /// Work mode over PAMT memory that is resident before bring-up starts: writes, now,
    /// 16 bytes per 4 KiB page of every GiB a CMR touches, which TDH.SYS.CONFIG then hands to
    /// the TDMRs covering them — so that TDH.SYS.TDMR.INIT's writes land on mapped memory, as a
    /// kernel's PAMT memory is, and a benchmark of bring-up measures the module's work rather
    /// than the host OS's first-touch page faults. Costs that memory for the module's life
    /// (256 MiB for 64 GiB of CMRs); implies [`with_tdmr_init_work(true)`](Self::with_tdmr_init_work).
    ///
    /// ```
    /// use tdmr::memmap::Cmr;
    /// use tdmr::mock::{MockModule, Platform};
    /// let p = Platform::new(&[Cmr::new(0, 2 << 30)])?;
    /// let m = MockModule::new(p).with_resident_pamt_memory();
    /// assert!(m.tdmr_init_work());
    /// assert_eq!(m.resident_pamt_bytes(), 2 * (16 << 18));
    /// # Ok::<(), tdmr::mock::PlatformError>(())
    /// ```
    pub fn with_resident_pamt_memory(mut self) -> Self {
        let cmrs = self.platform.cmrs().iter().filter_map(|c| {
            let end = c.base.checked_add(c.size)?;
            crate::addr::PhysRange::new(c.base, end).ok()
        });
        let resident = pamt_work::ResidentPamt::for_ranges(cmrs);
        self.state.with(|s| s.resident_pamt = resident);
        self.work = true;
        self
    }

    /// Bytes of resident PAMT memory not yet handed to a TDMR
    /// ([`with_resident_pamt_memory`](Self::with_resident_pamt_memory)).
    pub fn resident_pamt_bytes(&self) -> u64 {
        self.state.with(|s| s.resident_pamt.bytes())
    }

    /// Whether work mode is on.
    pub fn tdmr_init_work(&self) -> bool {
        self.work
    }

    /// In work mode, the PAMT_4K entry TDH.SYS.TDMR.INIT wrote for the page at `pa` as
    /// `(page type, flags)`: `(0, 1 << 63)` for a page not yet assigned (PT_NDA), `(1, 1 << 63)`
    /// for a page of a reserved area (PT_RSVD), `(0, 0)` where no call has written yet. `None`
    /// outside every TDMR, without work mode, or with Dynamic PAMT (see
    /// [`MockModule::pamt_bitmap_bit`]).
    pub fn pamt_entry(&self, pa: u64) -> Option<(u64, u64)> {
        let image = self.image_of(pa)?;
        image.with(|i| i.entry_4k(pa))
    }

    /// In work mode with Dynamic PAMT, the PAMT bitmap bit of the page at `pa` (set for pages
    /// of reserved areas once initialized).
    pub fn pamt_bitmap_bit(&self, pa: u64) -> Option<bool> {
        let image = self.image_of(pa)?;
        image.with(|i| i.bitmap_bit(pa))
    }

    /// In work mode, PAMT entries written so far over all TDMRs: 4K-level entries (bitmap
    /// pages with Dynamic PAMT), 2M-level entries, 1G-level entries.
    pub fn pamt_entries_written(&self) -> (u64, u64, u64) {
        let images = self.state.with(|s| s.images.clone());
        images.iter().fold((0, 0, 0), |(a, b, c), img| {
            img.with(|i| {
                let (m, g) = i.initialized_nodes();
                (a + i.initialized_4k(), b + m, c + g)
            })
        })
    }

    fn image_of(&self, pa: u64) -> Option<pamt_work::SharedImage> {
        self.state.with(|s| {
            let i = s
                .tdmrs
                .partition_point(|t| t.progress.base + t.progress.size <= pa);
            s.tdmrs.get(i).filter(|t| t.progress.base <= pa)?;
            s.images.get(i).cloned()
        })
    }

    /// SEAMCALLs served per LP, per leaf (index = LP). Refused calls are not counted.
    pub fn calls_per_lp(&self) -> Vec<SeamcallCounts> {
        self.state.with(|s| s.per_lp.clone())
    }

    /// Calls refused because their LP already had a SEAMCALL in flight — which a processor
    /// cannot do, so a host that makes this non-zero runs two things at once on one CPU.
    pub fn lp_conflicts(&self) -> u64 {
        self.state.with(|s| s.lp_conflicts)
    }

    /// The simulated machine.
    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// The global state.
    pub fn state(&self) -> SysState {
        self.state.with(|s| s.sys)
    }

    /// The TDX module running now (the platform's, until a runtime update replaces it).
    pub fn module(&self) -> ModuleProfile {
        self.state.with(|s| s.module.profile.clone())
    }

    /// Runtime updates completed (TDH.SYS.UPDATE succeeded).
    pub fn updates(&self) -> u32 {
        self.state.with(|s| s.updates)
    }

    /// Whether a new module is loaded on every LP and waits for TDH.SYS.UPDATE.
    pub fn update_pending(&self) -> bool {
        self.state.with(|s| s.handoff.pending)
    }

    /// Starts or ends compatibility-sensitive work (standing in for the TD operations an
    /// update must not interrupt): while it runs, TDH.SYS.SHUTDOWN with RCX bit 16 answers
    /// `TDX_UPDATE_COMPAT_SENSITIVE`.
    pub fn set_compat_sensitive(&self, on: bool) {
        self.state.with(|s| s.compat_sensitive = on);
    }

    /// The add-on features TDH.SYS.CONFIG v1 enabled.
    pub fn add_on_features(&self) -> u64 {
        self.state.with(|s| s.add_ons)
    }

    /// Pages in the extensions' pool (TDH.EXT.MEM.ADD).
    pub fn extension_pages(&self) -> u64 {
        self.state.with(|s| s.ext.pages.len() as u64)
    }

    /// Whether TDH.EXT.INIT completed.
    pub fn extensions_initialized(&self) -> bool {
        self.state.with(|s| s.ext.initialized)
    }

    /// Runs `f` on the platform and the locked state (for the loader).
    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&Platform, &mut State) -> R) -> R {
        self.state.with(|s| f(&self.platform, s))
    }

    /// Whether TDH.SYS.LP.INIT succeeded on `lp`.
    pub fn lp_initialized(&self, lp: u32) -> bool {
        self.state.with(|s| s.lp_is_init(lp))
    }

    /// Packages whose key TDH.SYS.KEY.CONFIG programmed, since the last TDH.SYS.CONFIG.
    pub fn packages_configured(&self) -> Vec<u32> {
        self.state.with(|s| {
            s.pkg_configured
                .iter()
                .enumerate()
                .filter(|(_, c)| **c)
                .map(|(i, _)| i as u32)
                .collect()
        })
    }

    /// The global KeyID TDH.SYS.CONFIG recorded.
    pub fn global_keyid(&self) -> Option<u16> {
        self.state.with(|s| s.global_keyid)
    }

    /// Whether the accepted configuration enabled Dynamic PAMT.
    pub fn dynamic_pamt(&self) -> bool {
        self.state.with(|s| s.dynamic_pamt)
    }

    /// The configured TDMRs and their initialization progress.
    pub fn tdmrs(&self) -> Vec<TdmrProgress> {
        self.state
            .with(|s| s.tdmrs.iter().map(|t| t.progress).collect())
    }

    /// 2 MiB ranges holding a Dynamic PAMT page pair (TDH.PHYMEM.PAMT.ADD done, not removed).
    pub fn pamt_pair_count(&self) -> usize {
        self.state.with(|s| s.pamt.pairs.len())
    }

    /// The page pair `(page 0, page 1)` backing the 2 MiB range at `range_base`, if any.
    pub fn pamt_pair(&self, range_base: u64) -> Option<(u64, u64)> {
        self.state
            .with(|s| s.pamt.pairs.get(&range_base).map(|p| (p.page0, p.page1)))
    }

    /// Takes the 4 KiB page at `pa` into use, standing in for the TD leaves the mock does not
    /// model (TDH.MNG.ADDCX, TDH.MEM.PAGE.ADD/AUG, ...), with the checks they share:
    ///
    /// - `TDX_SYS_NOT_READY` before SYS_READY;
    /// - `TDX_OPERAND_INVALID | RCX` if `pa` is not 4 KiB aligned, beyond 2^52 or has KeyID bits
    ///   (the page taken as the leaf's RCX operand);
    /// - `TDX_OPERAND_ADDR_RANGE_ERROR | RCX` outside the initialized blocks of the TDMRs;
    /// - `TDX_PAGE_NOT_FREE | RCX` for a page of a reserved area, a PAMT page, or a page in use;
    /// - with Dynamic PAMT, `TDX_MISSING_PAMT_PAGE_PAIR` if its 2 MiB range has no page pair.
    ///
    /// While any page of a range is in use, TDH.PHYMEM.PAMT.REMOVE on that range returns
    /// `TDX_PAMT_PAGE_NOT_EMPTY`.
    ///
    /// ```
    /// # use tdmr::mock::{MockModule, Platform};
    /// # use tdmr::memmap::Cmr;
    /// # let m = MockModule::new(Platform::new(&[Cmr::new(0, 1 << 30)]).unwrap());
    /// use tdmr::tdx::status::TDX_SYS_NOT_READY;
    /// assert_eq!(m.mark_in_use(0x20_0000).unwrap_err().raw(), TDX_SYS_NOT_READY);
    /// ```
    pub fn mark_in_use(&self, pa: u64) -> Result<(), Status> {
        self.state
            .with(|s| pamt_pages::mark_in_use(&self.platform, s, pa))
    }

    /// Releases a page [`MockModule::mark_in_use`] took into use (as the TD leaves' reclaim
    /// would); whether it was in use.
    pub fn mark_free(&self, pa: u64) -> bool {
        self.state.with(|s| pamt_pages::mark_free(s, pa))
    }

    /// 4 KiB pages [`MockModule::mark_in_use`] holds in use.
    pub fn pages_in_use(&self) -> u64 {
        self.state.with(|s| s.pamt.pages_in_use())
    }

    /// The call log (a snapshot).
    pub fn log(&self) -> CallLog {
        self.state.with(|s| s.log.clone())
    }

    /// Writes `bytes` to simulated physical memory at `pa` (what the host does to hand the
    /// module a buffer).
    pub fn write_phys(&self, pa: u64, bytes: &[u8]) -> Result<(), PhysMemError> {
        self.state.with(|s| s.mem.write(pa, bytes))
    }

    /// Reads simulated physical memory at `pa` (what the host does to read a module output).
    pub fn read_phys(&self, pa: u64, buf: &mut [u8]) -> Result<(), PhysMemError> {
        self.state.with(|s| s.mem.read(pa, buf))
    }

    /// 4 KiB pages of simulated memory holding data.
    pub fn phys_pages(&self) -> usize {
        self.state.with(|s| s.mem.pages())
    }

    /// The LP calls from here execute on now (LP 0 outside [`Cpus::run_on`], unless the host
    /// gave an [LP source](MockModule::with_lp_source)).
    pub fn current_lp(&self) -> u32 {
        self.calling_lp().unwrap_or(0)
    }

    /// Holds TDMR `base`'s mutex as if LP `lp` were inside TDH.SYS.TDMR.INIT on it, until the
    /// returned guard drops: other calls on that TDMR get `TDX_OPERAND_BUSY | RCX`, and any
    /// call from `lp` is refused (its LP has a call in flight). Fails with the status a
    /// TDH.SYS.TDMR.INIT call would get when `base` cannot be entered now, or with
    /// `TDX_SEAMCALL_UD` when `lp` has a call in flight already.
    pub fn tdmr_init_in_flight(&self, lp: u32, base: u64) -> Result<InFlight<'_>, Status> {
        self.state.with(|s| {
            if s.sys != SysState::SysReady {
                return Err(Status::new(TDX_SYS_NOT_READY));
            }
            let regs = Regs {
                rcx: base,
                ..Regs::ZERO
            };
            if s.lp_in_flight.get(lp as usize).is_none_or(|&busy| busy) {
                return Err(Status::new(TDX_SEAMCALL_UD));
            }
            match tdmr_init::begin(&self.platform, s, lp, &regs) {
                Begin::Done(out) => Err(out.status),
                Begin::Started(index) => {
                    s.lp_in_flight[lp as usize] = true;
                    Ok(InFlight {
                        module: self,
                        held: Held::Tdmr(index),
                        lp,
                    })
                }
            }
        })
    }

    /// Holds the 2 MiB lock of the range at `range_base` as if LP `lp` were inside
    /// TDH.PHYMEM.PAMT.ADD on it, until the returned guard drops: PAMT.ADD and PAMT.REMOVE on
    /// that range from other LPs get `TDX_OPERAND_BUSY | RCX`, and any call from `lp` is
    /// refused. Fails with `TDX_SYS_NOT_READY` before SYS_READY, `TDX_OPERAND_BUSY | RCX` when
    /// the range is held already, or `TDX_SEAMCALL_UD` when `lp` has a call in flight.
    pub fn pamt_range_in_flight(&self, lp: u32, range_base: u64) -> Result<InFlight<'_>, Status> {
        let range = crate::addr::align_down(range_base, crate::addr::SZ_2M);
        self.state.with(|s| {
            if s.sys != SysState::SysReady {
                return Err(Status::new(TDX_SYS_NOT_READY));
            }
            if s.lp_in_flight.get(lp as usize).is_none_or(|&busy| busy) {
                return Err(Status::new(TDX_SEAMCALL_UD));
            }
            if s.pamt_busy.iter().any(|&(r, _)| r == range) {
                return Err(Status::new(
                    crate::tdx::status::TDX_OPERAND_BUSY | operand::RCX as u64,
                ));
            }
            s.pamt_busy.push((range, lp));
            s.lp_in_flight[lp as usize] = true;
            Ok(InFlight {
                module: self,
                held: Held::PamtRange(range),
                lp,
            })
        })
    }

    fn log_call(s: &mut State, lp: u32, leaf: Leaf, inputs: &Regs, output: Output) -> Output {
        s.log.call(CallRecord {
            lp,
            leaf,
            inputs: *inputs,
            output,
        });
        output
    }

    /// The dispatcher: the first section of every call.
    fn dispatch(&self, s: &mut State, lp: u32, leaf: Leaf, regs: &Regs) -> Dispatched {
        let p = &self.platform;
        let rax_invalid = TDX_OPERAND_INVALID | operand::RAX as u64;
        let status = |raw: u64| Dispatched::Answered(Output::new(Status::new(raw), *regs));
        let m = &s.module.profile;
        // TDH.SYS.DISABLE is accepted in every state by the modules that have it.
        if leaf.number() == leaf::TDH_SYS_DISABLE.number() && m.implements_disable() {
            if leaf.version() != 0 {
                return status(rax_invalid);
            }
            return Dispatched::Answered(disable::disable(s, lp, regs));
        }
        if s.sys == SysState::Shutdown && leaf != leaf::TDH_SYS_LP_SHUTDOWN {
            return status(TDX_SYS_SHUTDOWN);
        }
        let implemented = implements(m, leaf);
        if s.sys != SysState::SysReady && !(allowed_before_ready(leaf) && implemented) {
            return status(TDX_SYS_NOT_READY);
        }
        if !implemented || leaf.version() > max_version(m, leaf) {
            return status(rax_invalid);
        }
        let v = leaf.version();
        let answered = match leaf.number() {
            33 => sys_init::sys_init(p, s, regs),
            35 => sys_init::lp_init(s, lp, regs),
            34 => sys_rd::sys_rd(s, lp, regs),
            37 => sys_rd::sys_rdall(p, s, lp, regs),
            32 => sys_rd::sys_info(p, s, lp, regs),
            45 => config::sys_config(p, s, v, regs, self.work),
            31 => key_config::key_config(p, s, lp, regs),
            44 => Output::new(Status::new(TDX_SUCCESS), *regs),
            52 => update::shutdown(s, lp, regs),
            53 => update::update(p, s, v, regs),
            58 | 59 => {
                let (out, held) = if leaf.number() == 58 {
                    pamt_pages::add(p, s, lp, regs)
                } else {
                    pamt_pages::remove(p, s, lp, regs)
                };
                return match held {
                    Some(range) => Dispatched::PamtRange(range, out),
                    None => Dispatched::Answered(out),
                };
            }
            60 => extensions::init(s, regs),
            61 => extensions::mem_add(p, s, regs),
            36 => match tdmr_init::begin(p, s, lp, regs) {
                Begin::Done(out) => out,
                Begin::Started(index) => return Dispatched::TdmrInit(index),
            },
            _ => Output::new(Status::new(rax_invalid), *regs),
        };
        Dispatched::Answered(answered)
    }
}

/// What the first section of a call decided.
enum Dispatched {
    /// The call is answered.
    Answered(Output),
    /// TDH.SYS.TDMR.INIT holds TDMR `index`'s mutex.
    TdmrInit(usize),
    /// TDH.PHYMEM.PAMT.ADD/REMOVE is done and holds this 2 MiB range's lock until its end.
    PamtRange(u64, Output),
}

/// What the first half of a call left for the second.
enum Half {
    /// The call is answered.
    Answered(Output),
    /// TDH.SYS.TDMR.INIT holds TDMR `index`'s mutex; in work mode, with the chunk to write.
    Started(usize, Option<(pamt_work::SharedImage, u64, u64)>),
    /// A PAMT leaf holds a 2 MiB range's lock; its answer.
    Holding(u64, Output),
}

impl Seamcall for MockModule {
    /// Serves the call on the LP the calling thread runs on ([`Cpus::run_on`]; LP 0
    /// outside it). A call from an LP that has one in flight is refused with
    /// `TDX_SEAMCALL_UD` and counted in [`MockModule::lp_conflicts`]: a processor cannot issue
    /// a second SEAMCALL before the first returns, so the host is running two things on one
    /// CPU. Every call spans two sections of the module's lock, so such overlaps are seen.
    /// Calls made outside any [`Cpus::run_on`] (threads standing for CPUs of their own, as in
    /// tests of the Dynamic PAMT manager) are served as LP 0's without that check.
    fn seamcall(&self, leaf: Leaf, regs: &Regs) -> Output {
        let entered = self.calling_lp();
        let lp = entered.unwrap_or(0);
        let first = self.state.with(|s| {
            if entered.is_some() {
                match s.lp_in_flight.get_mut(lp as usize) {
                    Some(busy) if !*busy => *busy = true,
                    _ => {
                        s.lp_conflicts += 1;
                        return None;
                    }
                }
            }
            Some(match self.dispatch(s, lp, leaf, regs) {
                Dispatched::Answered(out) => Half::Answered(out),
                Dispatched::PamtRange(range, out) => Half::Holding(range, out),
                Dispatched::TdmrInit(index) => {
                    let work = match (s.images.get(index), tdmr_init::chunk(s, index)) {
                        (Some(img), Some((from, to))) => Some((img.clone(), from, to)),
                        _ => None,
                    };
                    Half::Started(index, work)
                }
            })
        });
        let Some(first) = first else {
            return Output::new(Status::new(TDX_SEAMCALL_UD), *regs);
        };
        if let Half::Started(_, Some((img, from, to))) = &first {
            // The module's work for the chunk, under the TDMR's mutex only.
            let dynamic_pamt = self.state.with(|s| s.dynamic_pamt);
            img.with(|i| i.initialize(*from, *to, dynamic_pamt));
        }
        self.state.with(|s| {
            let out = match first {
                Half::Answered(out) => out,
                Half::Holding(range, out) => {
                    pamt_pages::unlock_range(s, range);
                    out
                }
                Half::Started(index, _) => tdmr_init::finish(s, index, regs),
            };
            if entered.is_some()
                && let Some(busy) = s.lp_in_flight.get_mut(lp as usize)
            {
                *busy = false;
            }
            if let Some(c) = s.per_lp.get_mut(lp as usize) {
                c.add(leaf, 1);
            }
            Self::log_call(s, lp, leaf, regs, out)
        })
    }
}

/// What an [`InFlight`] call holds.
#[derive(Clone, Copy, Debug)]
enum Held {
    /// TDMR `index`'s mutex.
    Tdmr(usize),
    /// A 2 MiB range's PAMT lock.
    PamtRange(u64),
}

/// A call held in progress by [`MockModule::tdmr_init_in_flight`] or
/// [`MockModule::pamt_range_in_flight`].
#[derive(Debug)]
pub struct InFlight<'a> {
    module: &'a MockModule,
    held: Held,
    lp: u32,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        // Release what it holds without progress: the held call did nothing.
        self.module.state.with(|s| {
            match self.held {
                Held::Tdmr(index) => {
                    if let Some(t) = s.tdmrs.get_mut(index) {
                        t.busy = None;
                    }
                }
                Held::PamtRange(range) => pamt_pages::unlock_range(s, range),
            }
            if let Some(f) = s.lp_in_flight.get_mut(self.lp as usize) {
                *f = false;
            }
        });
    }
}

impl Cpus for MockModule {
    fn cpus(&self) -> Vec<Cpu> {
        (0..self.platform.lps)
            .map(|id| Cpu {
                id,
                package: self.platform.package_of(id).unwrap_or(0),
            })
            .collect()
    }

    fn run_on(&self, cpu: CpuId, f: &mut dyn FnMut()) -> Result<(), CpuUnavailable> {
        if cpu >= self.platform.lps {
            return Err(CpuUnavailable { cpu });
        }
        let saved = self.lp.enter(cpu);
        f();
        self.lp.leave(saved);
        Ok(())
    }

    fn flush_caches(&self) {
        self.state.with(|s| s.log.cache_flush());
    }
}

// SAFETY: the "host memory" is the mock's simulated physical memory. Buffers are placed
// first-fit between live ones, so no two overlap until released; PAMT claims are recorded and
// refused when they overlap a live claim, the buffer window or memory pinned by the platform,
// so a claimed range is the configuration's alone until unclaimed.
#[allow(unsafe_code)]
unsafe impl HostMemory for MockModule {
    fn place(&self, bytes: &[u8], align: u64) -> Result<u64, HostMemoryError> {
        let window = self.platform.host_buffers;
        let err = HostMemoryError::NoBuffer {
            bytes: bytes.len(),
            align,
        };
        if !align.is_power_of_two() {
            return Err(err);
        }
        self.state.with(|s| {
            // First fit in address order between live buffers.
            let mut live = s.host_buffers.clone();
            live.sort_unstable();
            let mut cursor = window.start();
            for &(pa, len) in live.iter().chain(core::iter::once(&(window.end(), 0))) {
                let start = align_up(cursor, align).ok_or(err)?;
                if start
                    .checked_add(bytes.len() as u64)
                    .is_some_and(|end| end <= pa)
                {
                    s.mem.write(start, bytes).map_err(|_| err)?;
                    s.host_buffers.push((start, bytes.len() as u64));
                    return Ok(start);
                }
                cursor = cursor.max(pa + len);
            }
            Err(err)
        })
    }

    fn release(&self, pa: u64, len: usize) {
        self.state.with(|s| {
            if let Some(i) = s.host_buffers.iter().position(|&b| b == (pa, len as u64)) {
                s.host_buffers.swap_remove(i);
            }
        });
    }

    fn claim_pamt(&self, range: PhysRange) -> Result<(), HostMemoryError> {
        let refused = Err(HostMemoryError::PamtUnavailable { range });
        let one = RangeSet::from_ranges([range]);
        if range.is_empty()
            || range.overlaps(self.platform.host_buffers)
            || !one.intersect(&self.platform.pinned).is_empty()
        {
            return refused;
        }
        self.state.with(|s| {
            if !s.claimed_pamt.intersect(&one).is_empty() {
                return refused;
            }
            s.claimed_pamt = s.claimed_pamt.union(&one);
            Ok(())
        })
    }

    fn unclaim_pamt(&self, range: PhysRange) {
        let one = RangeSet::from_ranges([range]);
        self.state
            .with(|s| s.claimed_pamt = s.claimed_pamt.subtract(&one));
    }

    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), HostMemoryError> {
        let err = HostMemoryError::Unreadable { pa, len: buf.len() };
        self.state.with(|s| {
            let end = pa.checked_add(buf.len() as u64).ok_or(err)?;
            let inside = s
                .host_buffers
                .iter()
                .any(|&(b, len)| b <= pa && end <= b + len);
            if !inside {
                return Err(err);
            }
            s.mem.read(pa, buf).map_err(|_| err)
        })
    }

    /// Pages of the configured TDMRs' non-reserved memory, highest first, that nothing else
    /// holds: not claimed PAMT, the buffer window, pinned memory, pages in use, Dynamic PAMT
    /// pages, or pages given before.
    fn claim_extension_pages(&self, pages: u64) -> Result<Vec<PhysRange>, HostMemoryError> {
        let err = HostMemoryError::NoExtensionMemory { pages };
        self.state.with(|s| {
            let mut taken = s
                .claimed_pamt
                .union(&self.platform.pinned)
                .union(&s.host_extension)
                .union(&RangeSet::from_ranges([self.platform.host_buffers]));
            let mut free: Vec<PhysRange> = Vec::new();
            for t in &s.tdmrs {
                let range =
                    PhysRange::new_unchecked(t.progress.base, t.progress.base + t.progress.size);
                let mut cursor = range.start();
                for r in t
                    .reserved
                    .iter()
                    .chain(core::iter::once(&PhysRange::new_unchecked(
                        range.end(),
                        range.end(),
                    )))
                {
                    if cursor < r.start() {
                        free.push(PhysRange::new_unchecked(cursor, r.start()));
                    }
                    cursor = cursor.max(r.end());
                }
            }
            let free = RangeSet::from_ranges(free).subtract(&taken);
            let mut got: Vec<PhysRange> = Vec::new();
            let mut left = pages;
            'ranges: for r in free.as_slice().iter().rev() {
                let mut pa = crate::addr::align_down(r.end(), SZ_4K);
                while left > 0 && pa >= r.start() + SZ_4K {
                    pa -= SZ_4K;
                    let busy = s.pamt.page_in_use(pa)
                        || s.pamt.pages.contains_key(&pa)
                        || s.ext.pages.contains(&pa);
                    if !busy {
                        match got.last_mut() {
                            Some(last) if last.start() == pa + SZ_4K => {
                                *last = PhysRange::new_unchecked(pa, last.end());
                            }
                            _ => got.push(PhysRange::new_unchecked(pa, pa + SZ_4K)),
                        }
                        left -= 1;
                    }
                }
                if left == 0 {
                    break 'ranges;
                }
            }
            if left > 0 {
                return Err(err);
            }
            got.reverse();
            taken = RangeSet::from_ranges(got.iter().copied());
            s.host_extension = s.host_extension.union(&taken);
            Ok(got)
        })
    }
}

impl MockModule {
    /// PAMT memory the simulated host has claimed for the configuration
    /// ([`HostMemory::claim_pamt`]) and not given back.
    pub fn claimed_pamt(&self) -> RangeSet {
        self.state.with(|s| s.claimed_pamt.clone())
    }
}
