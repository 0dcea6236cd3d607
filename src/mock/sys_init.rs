//! TDH.SYS.INIT and TDH.SYS.LP.INIT.

use super::platform::Platform;
use super::state::{State, SysState};
use crate::addr::{MAX_PA, SZ_4K, is_aligned};
use crate::tdx::status::{
    Status, TDX_CMR_LIST_INVALID, TDX_OPERAND_INVALID, TDX_SUCCESS, TDX_SYS_INIT_NOT_PENDING,
    TDX_SYS_LP_INIT_DONE, TDX_SYS_LP_INIT_NOT_PENDING, operand,
};
use crate::tdx::{Output, Regs};

/// The sanity rules TDH.SYS.INIT applies to the CMR list MCHECK left: every non-null CMR has
/// 4 KiB-aligned base and size, does not overflow, has no KeyID bits in its first and last
/// byte, lies below 2^52, and starts at or after the end of the previous non-null CMR.
pub(crate) fn cmr_list_valid(p: &Platform) -> bool {
    let mut prev_end: Option<u64> = None;
    for c in p.cmrs.iter().filter(|c| c.size != 0) {
        let Some(end) = c.base.checked_add(c.size) else {
            return false;
        };
        let last = end - 1;
        if !is_aligned(c.base, SZ_4K) || !is_aligned(c.size, SZ_4K) {
            return false;
        }
        if last >= MAX_PA || p.hkid(c.base) != 0 || p.hkid(last) != 0 {
            return false;
        }
        if prev_end.is_some_and(|e| c.base < e) {
            return false;
        }
        prev_end = Some(end);
    }
    true
}

/// TDH.SYS.INIT: RCX = attributes (all reserved, must be 0). Zeroes RCX, RDX, R8–R10.
pub(crate) fn sys_init(p: &Platform, st: &mut State, regs: &Regs) -> Output {
    if regs.rcx != 0 {
        return Output::new(
            Status::new(TDX_OPERAND_INVALID | operand::RCX as u64),
            *regs,
        );
    }
    // After TDH.SYS.DISABLE the module is back where it booted: a new kernel may start over.
    if !matches!(st.sys, SysState::SysinitPending | SysState::Disabled) {
        return Output::new(Status::new(TDX_SYS_INIT_NOT_PENDING), *regs);
    }
    if !cmr_list_valid(p) {
        return Output::new(Status::new(TDX_CMR_LIST_INVALID), *regs);
    }
    st.sys = SysState::SysinitDone;
    let mut out = *regs;
    out.rcx = 0;
    out.rdx = 0;
    out.r8 = 0;
    out.r9 = 0;
    out.r10 = 0;
    Output::new(Status::new(TDX_SUCCESS), out)
}

/// TDH.SYS.LP.INIT on `lp`. Zeroes RCX, RDX, R8.
pub(crate) fn lp_init(st: &mut State, lp: u32, regs: &Regs) -> Output {
    if st.sys != SysState::SysinitDone {
        return Output::new(Status::new(TDX_SYS_LP_INIT_NOT_PENDING), *regs);
    }
    let Some(flag) = st.lp_init.get_mut(lp as usize) else {
        // An LP MCHECK did not enumerate cannot enter SEAM at all; the mock treats it like a
        // repeated call rather than inventing a code.
        return Output::new(Status::new(TDX_SYS_LP_INIT_DONE), *regs);
    };
    if *flag {
        return Output::new(Status::new(TDX_SYS_LP_INIT_DONE), *regs);
    }
    *flag = true;
    st.lps_initialized += 1;
    let mut out = *regs;
    out.rcx = 0;
    out.rdx = 0;
    out.r8 = 0;
    Output::new(Status::new(TDX_SUCCESS), out)
}
