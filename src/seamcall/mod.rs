//! Issuing SEAMCALLs: the one-method [`Seamcall`] trait every backend implements, the real
//! instruction ([`SeamcallInstruction`], x86_64 only), [`FaultInjector`] (wraps any backend to
//! inject the module's transient failures), [`FuzzInjector`] (wraps any backend to make it lie:
//! corrupted statuses, output registers and metadata values) and [`SeamcallCounts`].
//!
//! The software TDX module that implements the trait for tests is `tdmr::mock` (feature
//! `mock`); the registers and status codes are the module's contract, in [`crate::tdx`].

#[cfg(target_arch = "x86_64")]
mod asm;
mod counts;
mod fault;
mod fuzz;
pub(crate) mod lock;

#[cfg(target_arch = "x86_64")]
pub use asm::SeamcallInstruction;
pub use counts::SeamcallCounts;
pub use fault::{FaultInjector, FaultKind, FaultSpec, FaultSpecError, Injection};
pub use fuzz::{FuzzInjector, Observed};

use crate::tdx::leaf::Leaf;
use crate::tdx::{Output, Regs};

/// A way to issue SEAMCALLs: the real instruction, a software TDX module, or a wrapper around
/// either.
///
/// One method: the leaf (number and version, which go into RAX) and the input registers in, the
/// status and output registers out. Calls take `&self` so that one backend can serve several
/// CPUs at once (TDH.SYS.TDMR.INIT runs concurrently across TDMRs); which logical processor
/// executes a call is the caller's business (see [`crate::init::Cpus`]).
///
/// ```
/// use tdmr::seamcall::Seamcall;
/// use tdmr::tdx::leaf::{self, Leaf};
/// use tdmr::tdx::status::{Status, TDX_SEAMCALL_VMFAILINVALID};
/// use tdmr::tdx::{Output, Regs};
///
/// /// A backend with no TDX module behind it: the instruction fails with VMfailInvalid.
/// struct NoModule;
/// impl Seamcall for NoModule {
///     fn seamcall(&self, _leaf: Leaf, _regs: &Regs) -> Output {
///         Output::new(Status::new(TDX_SEAMCALL_VMFAILINVALID), Regs::ZERO)
///     }
/// }
/// let out = NoModule.seamcall(leaf::TDH_SYS_INIT, &Regs::ZERO);
/// assert_eq!(out.status.name(), Some("TDX_SEAMCALL_VMFAILINVALID"));
/// ```
pub trait Seamcall {
    /// Issues SEAMCALL `leaf` with `regs` on the current logical processor.
    fn seamcall(&self, leaf: Leaf, regs: &Regs) -> Output;
}

impl<T: Seamcall + ?Sized> Seamcall for &T {
    #[inline]
    fn seamcall(&self, leaf: Leaf, regs: &Regs) -> Output {
        (**self).seamcall(leaf, regs)
    }
}
