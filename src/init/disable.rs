//! TDH.SYS.DISABLE for kexec and kdump: [`disable()`] (documented there).

use core::fmt;

use crate::seamcall::Seamcall;
use crate::tdx::status::{
    Status, TDX_INTERRUPTED_RESUMABLE, TDX_OPERAND_INVALID, TDX_SYS_BUSY, TDX_SYS_NOT_READY,
    operand,
};
use crate::tdx::{Regs, leaf};

/// How long [`disable`] keeps going.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DisablePolicy {
    /// Most calls in all (resumptions and busy retries together).
    pub max_calls: u32,
    /// Spin iterations between two calls answered `TDX_SYS_BUSY` (resumptions follow at once).
    pub busy_spins: u32,
}

impl Default for DisablePolicy {
    /// One million calls, 256 spins after a busy answer.
    fn default() -> Self {
        DisablePolicy {
            max_calls: 1 << 20,
            busy_spins: 256,
        }
    }
}

/// The module is disabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Disabled {
    /// TDH.SYS.DISABLE calls made.
    pub calls: u32,
    /// Of which answered `TDX_INTERRUPTED_RESUMABLE`.
    pub resumed: u32,
    /// Of which answered `TDX_SYS_BUSY`.
    pub busy: u32,
}

/// TDH.SYS.DISABLE did not disable the module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisableError {
    /// The module has no TDH.SYS.DISABLE (every released module), or none is loaded.
    Unsupported {
        /// What the call returned.
        status: Status,
    },
    /// The module refused.
    Failed {
        /// The status.
        status: Status,
        /// Calls made.
        calls: u32,
    },
    /// Still interrupted or busy after the policy's calls.
    GaveUp {
        /// The last status.
        status: Status,
        /// Calls made.
        calls: u32,
    },
}

impl fmt::Display for DisableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DisableError::Unsupported { status } => write!(
                f,
                "the TDX module has no TDH.SYS.DISABLE (or none is loaded): {status}"
            ),
            DisableError::Failed { status, calls } => {
                write!(f, "TDH.SYS.DISABLE failed after {calls} calls: {status}")
            }
            DisableError::GaveUp { status, calls } => write!(
                f,
                "TDH.SYS.DISABLE still not done after {calls} calls: {status}"
            ),
        }
    }
}

impl core::error::Error for DisableError {}

/// Disables the TDX module on the calling CPU: TDH.SYS.DISABLE, again while it answers
/// `TDX_INTERRUPTED_RESUMABLE` or `TDX_SYS_BUSY` (leaf 69, for kexec and kdump).
///
/// Linux 7.2 calls it from the kexec and crash paths, looping while the module answers
/// `TDX_INTERRUPTED_RESUMABLE` (the reclaim is long and yields to interrupts) or
/// `TDX_SYS_BUSY` (another CPU is inside the module). It is destructive: the module gives up
/// everything it holds — PAMTs, Dynamic PAMT pages, extension memory, KeyIDs — and the next
/// kernel may bring TDX up from the start. No released module implements it; on those the
/// leaf is unknown (`TDX_OPERAND_INVALID | RAX`, or `TDX_SYS_NOT_READY` before the module is
/// ready), which it reports as [`DisableError::Unsupported`] — harmless on the kexec
/// path, where the old way (caches flushed, the module left configured) still applies; a
/// SEAMCALL that fails as an instruction (no module loaded) is reported the same way.
///
/// Runs on the calling CPU, allocates nothing and takes no lock, so a crash path can call it.
/// The loop is bounded ([`DisablePolicy`]): a module that never finishes is reported, not
/// waited for forever.
///
/// ```
/// # #[cfg(feature = "mock")]
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tdmr::init::{DisableError, DisablePolicy, disable};
/// use tdmr::memmap::Cmr;
/// use tdmr::mock::{MockModule, Platform, SysState};
///
/// let cmrs = [Cmr::new(0x10_0000, 0x7ff0_0000)];
/// // A released module has no TDH.SYS.DISABLE.
/// let old = MockModule::new(Platform::new(&cmrs)?.with_module("2.0.08".parse()?));
/// assert!(matches!(disable(&old, DisablePolicy::default()), Err(DisableError::Unsupported { .. })));
/// // `next` has: the module is disabled, whatever state it was in.
/// let next = MockModule::new(Platform::new(&cmrs)?.with_module("next".parse()?));
/// let done = disable(&next, DisablePolicy::default())?;
/// assert_eq!(done.calls, 1);
/// assert_eq!(next.state(), SysState::Disabled);
/// # Ok(()) }
/// # #[cfg(not(feature = "mock"))]
/// # fn main() {}
/// ```
pub fn disable<S: Seamcall + ?Sized>(
    seamcall: &S,
    policy: DisablePolicy,
) -> Result<Disabled, DisableError> {
    let mut done = Disabled {
        calls: 0,
        resumed: 0,
        busy: 0,
    };
    loop {
        let out = seamcall.seamcall(leaf::TDH_SYS_DISABLE, &Regs::ZERO);
        done.calls = done.calls.saturating_add(1);
        let status = out.status;
        match status.code() {
            _ if status.is_success() => return Ok(done),
            TDX_INTERRUPTED_RESUMABLE => done.resumed += 1,
            TDX_SYS_BUSY => {
                done.busy += 1;
                for _ in 0..policy.busy_spins {
                    core::hint::spin_loop();
                }
            }
            TDX_SYS_NOT_READY => return Err(DisableError::Unsupported { status }),
            TDX_OPERAND_INVALID if status.operand() == operand::RAX => {
                return Err(DisableError::Unsupported { status });
            }
            _ if status.is_host_side() => return Err(DisableError::Unsupported { status }),
            _ => {
                return Err(DisableError::Failed {
                    status,
                    calls: done.calls,
                });
            }
        }
        if done.calls >= policy.max_calls {
            return Err(DisableError::GaveUp {
                status,
                calls: done.calls,
            });
        }
    }
}
