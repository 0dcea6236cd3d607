//! Runtime update, the module's side: TDH.SYS.SHUTDOWN (52), the loader installing a new
//! module on every LP (see [`super::SeamLoader`]), then TDH.SYS.LP.INIT on every LP and
//! TDH.SYS.UPDATE (53). No TDH.SYS.CONFIG: the TDMRs, PAMTs, global KeyID, Dynamic PAMT pairs,
//! add-on features and extension memory of the boot configuration carry over (tdx-2026.md §4).
//!
//! TDH.SYS.SHUTDOWN (only in SYS_READY, by the dispatcher), in this order:
//!
//! | check | status |
//! |---|---|
//! | another LP is inside a SEAMCALL | `TDX_SYS_BUSY` |
//! | RCX bits 63:17 set, bit 16 without update compatibility (TDX_FEATURES0 bit 47), or the handoff version (bits 15:0) outside `[min, module's]` | `TDX_OPERAND_INVALID \| RCX` |
//! | bit 16 set while compatibility-sensitive work runs ([`super::MockModule::set_compat_sensitive`]) | `TDX_UPDATE_COMPAT_SENSITIVE` |
//!
//! On success the module is in SYS_SHUTDOWN with the handoff data written: every leaf but
//! TDH.SYS.LP.SHUTDOWN answers `TDX_SYS_SHUTDOWN` until the loader has installed the new
//! module on every LP. The new module then waits in SYSINIT_DONE with the handoff pending:
//! TDH.SYS.LP.INIT on every LP, then TDH.SYS.UPDATE:
//!
//! | check | status |
//! |---|---|
//! | no handoff pending (not after an install), or an LP not yet initialized | `TDX_SYS_STATE_INCORRECT` |
//! | version 1: R9 ≠ the add-on features TDH.SYS.CONFIG enabled | `TDX_OPERAND_INVALID \| R9` |
//! | version 0 while TDH.SYS.CONFIG enabled add-on features | `TDX_OPERAND_INVALID \| RAX` |
//! | the handed-off configuration does not fit the new module (handoff version outside its range; more TDMRs or reserved areas than it allows; a PAMT level smaller than it needs; Dynamic PAMT on and unsupported, or another PAMT_4K entry size; add-on features it lacks; more extension memory than was added) | `TDX_SYS_STATE_INCORRECT` |
//!
//! A refused TDH.SYS.UPDATE leaves the new module waiting: TDX is unusable until an update
//! that fits. The references describe the sequence, not these refusals' codes; every status
//! above but `TDX_SYS_BUSY`, `TDX_OPERAND_INVALID` and `TDX_UPDATE_COMPAT_SENSITIVE` is the
//! mock's choice (the module's generic wrong-state code). On success the module is SYS_READY
//! again, running the new module.

use alloc::vec;

use super::platform::Platform;
use super::profile::ModuleProfile;
use super::state::{Handoff, Loaded, State, SysState};
use crate::addr::PageSize;
use crate::tdx::metadata::features0;
use crate::tdx::status::{
    Status, TDX_OPERAND_INVALID, TDX_SUCCESS, TDX_SYS_BUSY, TDX_SYS_STATE_INCORRECT,
    TDX_UPDATE_COMPAT_SENSITIVE, operand,
};
use crate::tdx::{Output, Regs};

/// TDH.SYS.SHUTDOWN RCX bit 16: avoid compatibility-sensitive work.
pub(crate) const AVOID_COMPAT_SENSITIVE: u64 = 1 << 16;

fn answer(raw: u64, regs: &Regs) -> Output {
    Output::new(Status::new(raw), *regs)
}

/// TDH.SYS.SHUTDOWN on `lp`: RCX = requested handoff version | bit 16.
pub(crate) fn shutdown(st: &mut State, lp: u32, regs: &Regs) -> Output {
    if st.other_lp_in_flight(lp) {
        return answer(TDX_SYS_BUSY, regs);
    }
    let m = st.profile();
    let compat = m.features0() & features0::UPDATE_COMPATIBILITY != 0;
    let allowed = if compat {
        0xFFFF | AVOID_COMPAT_SENSITIVE
    } else {
        0xFFFF
    };
    let version = regs.rcx & 0xFFFF;
    let in_range =
        (u64::from(m.min_handoff_version())..=u64::from(m.handoff_version())).contains(&version);
    if regs.rcx & !allowed != 0 || !in_range {
        return answer(TDX_OPERAND_INVALID | operand::RCX as u64, regs);
    }
    if regs.rcx & AVOID_COMPAT_SENSITIVE != 0 && st.compat_sensitive {
        return answer(TDX_UPDATE_COMPAT_SENSITIVE, regs);
    }
    st.sys = SysState::Shutdown;
    st.handoff = Handoff {
        version: Some(version as u16),
        incoming: None,
        installed: vec![false; st.lp_init.len()],
        pending: false,
    };
    answer(TDX_SUCCESS, regs)
}

/// What a loader install on `lp` came to, before the loader's own checks.
pub(crate) enum Install {
    /// Installed on this LP (the new module runs once every LP has it).
    Done,
    /// Installed on the last LP: the new module replaced the old one.
    Swapped,
    /// The module is not shut down for an update.
    NotShutDown,
    /// Another image is being installed.
    OtherImage,
}

/// The loader installs `image` on `lp`; once every LP has it, the new module replaces the old
/// one, waiting for TDH.SYS.LP.INIT everywhere and TDH.SYS.UPDATE.
pub(crate) fn install(p: &Platform, st: &mut State, lp: u32, image: &ModuleProfile) -> Install {
    if st.sys != SysState::Shutdown || st.handoff.version.is_none() {
        return Install::NotShutDown;
    }
    match &st.handoff.incoming {
        Some(i) if i != image => return Install::OtherImage,
        Some(_) => {}
        None => st.handoff.incoming = Some(image.clone()),
    }
    if let Some(done) = st.handoff.installed.get_mut(lp as usize) {
        *done = true;
    }
    if st.handoff.installed.iter().all(|&d| d) {
        st.module = Loaded::new(p, image.clone());
        st.lp_init.iter_mut().for_each(|f| *f = false);
        st.lps_initialized = 0;
        st.sys = SysState::SysinitDone;
        st.handoff.pending = true;
        return Install::Swapped;
    }
    Install::Done
}

/// Whether the configuration `st` holds can go on under `m`.
pub(crate) fn fits(st: &State, m: &ModuleProfile) -> bool {
    let l = m.limits();
    let handoff_ok = st.handoff.version.is_some_and(|v| {
        (m.min_handoff_version()..=m.handoff_version()).contains(&v) && m.supports_update()
    });
    let tdmrs_ok = st.tdmrs.len() <= l.max_tdmrs()
        && st
            .tdmrs
            .iter()
            .all(|t| t.reserved.len() <= l.max_reserved_per_tdmr());
    let pamt_ok = st.tdmrs.iter().all(|t| {
        PageSize::ALL.iter().all(|&level| {
            let pages = t.progress.size / level.bytes();
            let need = if st.dynamic_pamt && level == PageSize::Size4K {
                let bits = u64::from(l.dynamic_pamt_bits().unwrap_or(1));
                (pages * bits).div_ceil(8)
            } else {
                pages.saturating_mul(l.pamt_entry_size(level))
            };
            t.pamt_sizes[level.index()] >= need
        })
    });
    let dpamt_ok = !st.dynamic_pamt
        || (m.supports_dynamic_pamt()
            && l.pamt_entry_size(PageSize::Size4K) == st.pamt_4k_entry_size);
    let add_ons_ok = st.add_ons & !m.add_on_features() == 0;
    let ext_ok = m.extension_pages() == 0
        || (st.ext.initialized && st.ext.pages.len() as u64 >= u64::from(m.extension_pages()));
    handoff_ok && tdmrs_ok && pamt_ok && dpamt_ok && add_ons_ok && ext_ok
}

/// TDH.SYS.UPDATE at `version` (1: R9 = add-on features).
pub(crate) fn update(p: &Platform, st: &mut State, version: u8, regs: &Regs) -> Output {
    if !st.handoff.pending || st.lps_initialized < p.lps {
        return answer(TDX_SYS_STATE_INCORRECT, regs);
    }
    match version {
        0 if st.add_ons != 0 => return answer(TDX_OPERAND_INVALID | operand::RAX as u64, regs),
        1 if regs.r9 != st.add_ons => {
            return answer(TDX_OPERAND_INVALID | operand::R9 as u64, regs);
        }
        _ => {}
    }
    let m = st.module.profile.clone();
    if !fits(st, &m) {
        return answer(TDX_SYS_STATE_INCORRECT, regs);
    }
    st.sys = SysState::SysReady;
    st.handoff = Handoff::default();
    st.updates += 1;
    answer(TDX_SUCCESS, regs)
}
