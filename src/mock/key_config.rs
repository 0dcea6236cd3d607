//! TDH.SYS.KEY.CONFIG: program the global KeyID's key on the calling LP's package.

use super::platform::Platform;
use super::state::{State, SysState};
use crate::tdx::status::{Status, TDX_KEY_CONFIGURED, TDX_SUCCESS, TDX_SYS_KEY_CONFIG_NOT_PENDING};
use crate::tdx::{Output, Regs};

pub(crate) fn key_config(p: &Platform, st: &mut State, lp: u32, regs: &Regs) -> Output {
    if st.sys != SysState::SysconfigDone {
        return Output::new(Status::new(TDX_SYS_KEY_CONFIG_NOT_PENDING), *regs);
    }
    let Some(pkg) = p.package_of(lp) else {
        return Output::new(Status::new(TDX_SYS_KEY_CONFIG_NOT_PENDING), *regs);
    };
    let Some(done) = st.pkg_configured.get_mut(pkg as usize) else {
        return Output::new(Status::new(TDX_SYS_KEY_CONFIG_NOT_PENDING), *regs);
    };
    if *done {
        return Output::new(Status::new(TDX_KEY_CONFIGURED), *regs);
    }
    *done = true;
    st.pkgs_configured += 1;
    if st.pkgs_configured == p.packages {
        st.sys = SysState::SysReady;
    }
    Output::new(Status::new(TDX_SUCCESS), *regs)
}
