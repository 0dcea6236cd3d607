//! The module's state: the global state machine, per-LP and per-package flags, the recorded
//! TDMRs with their initialization progress, and simulated memory.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use super::log::{CallLog, CallLogMode};
use super::phys_mem::PhysMem;
use super::platform::Platform;

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
    /// TDH.SYS.SHUTDOWN done.
    Shutdown,
}

impl fmt::Display for SysState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SysState::SysinitPending => "SYSINIT_PENDING",
            SysState::SysinitDone => "SYSINIT_DONE",
            SysState::SysconfigDone => "SYSCONFIG_DONE",
            SysState::SysReady => "SYS_READY",
            SysState::Shutdown => "SYS_SHUTDOWN",
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
}

#[derive(Debug)]
pub(crate) struct State {
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
}

impl State {
    pub(crate) fn new(p: &Platform, log: CallLogMode) -> Self {
        State {
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
        }
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
}
