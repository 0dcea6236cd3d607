//! TDH.SYS.DISABLE (69), on profiles that implement it (`next`; no released module does):
//! the module gives up everything it holds so that a new kernel (kexec, kdump) can bring TDX
//! up from the start.
//!
//! Accepted in every state, before the dispatcher's state gating, at version 0 only:
//!
//! | check | status |
//! |---|---|
//! | another LP is inside a SEAMCALL | `TDX_SYS_BUSY` |
//! | reclaim work left after this call | `TDX_INTERRUPTED_RESUMABLE` |
//!
//! The reclaim is modelled as one unit of work per configured TDMR (at least one), one unit per
//! call: a configuration of `n` TDMRs takes `n` calls, the first `n − 1` answering
//! `TDX_INTERRUPTED_RESUMABLE` (the references say Linux loops on that status and on
//! `TDX_SYS_BUSY`; how much one call does is the mock's choice). When done the module is
//! [`SysState::Disabled`]: TDMRs, PAMT state, Dynamic PAMT pairs, pages in use, extension
//! memory, the global KeyID, add-on features, an update in progress and every LP's and
//! package's initialization are gone; the loaded module stays. Only TDH.SYS.INIT moves it on;
//! every other leaf answers as before TDH.SYS.INIT. TDH.SYS.DISABLE again succeeds at once.

use super::page_pairs::PamtPages;
use super::state::{Extensions, Handoff, State, SysState};
use crate::tdx::status::{Status, TDX_INTERRUPTED_RESUMABLE, TDX_SUCCESS, TDX_SYS_BUSY};
use crate::tdx::{Output, Regs};

pub(crate) fn disable(st: &mut State, lp: u32, regs: &Regs) -> Output {
    if st.other_lp_in_flight(lp) {
        return Output::new(Status::new(TDX_SYS_BUSY), *regs);
    }
    let left = st.disable_left.unwrap_or(st.tdmrs.len().max(1)) - 1;
    if left > 0 {
        st.disable_left = Some(left);
        return Output::new(Status::new(TDX_INTERRUPTED_RESUMABLE), *regs);
    }
    st.sys = SysState::Disabled;
    st.lp_init.iter_mut().for_each(|f| *f = false);
    st.lps_initialized = 0;
    st.global_keyid = None;
    st.dynamic_pamt = false;
    st.tdmrs.clear();
    st.images.clear();
    st.pkg_configured.iter_mut().for_each(|c| *c = false);
    st.pkgs_configured = 0;
    st.pamt = PamtPages::default();
    st.add_ons = 0;
    st.ext = Extensions::default();
    st.handoff = Handoff::default();
    st.pamt_busy.clear();
    st.disable_left = None;
    Output::new(Status::new(TDX_SUCCESS), *regs)
}
