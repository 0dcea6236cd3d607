//! The host's CPUs as the bring-up driver needs them: where they are, and running code on one.

use alloc::vec::Vec;
use core::fmt;

/// A logical processor (LP) as the host numbers it.
pub type CpuId = u32;
/// A physical package (socket) as the host numbers it.
pub type PackageId = u32;

/// One CPU and the package it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cpu {
    /// The CPU.
    pub id: CpuId,
    /// Its package.
    pub package: PackageId,
}

/// A CPU that cannot run code right now (offline or unknown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuUnavailable {
    /// The CPU asked for.
    pub cpu: CpuId,
}

impl fmt::Display for CpuUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CPU {} cannot run code (offline or unknown)", self.cpu)
    }
}

impl core::error::Error for CpuUnavailable {}

/// The host's CPUs: list them, run a closure on one, flush caches everywhere.
///
/// A kernel implements this with its CPU-online mask, `smp_call_function_single`-style
/// cross-calls and a WBINVD broadcast; the mock module (feature `mock`) implements it for
/// its simulated logical processors.
pub trait Cpus {
    /// Every CPU the TDX module must see initialized (every LP MCHECK enumerated), with its
    /// package, in a stable order. The first CPU issues the global SEAMCALLs.
    fn cpus(&self) -> Vec<Cpu>;

    /// Runs `f` on `cpu` and waits for it to finish.
    fn run_on(&self, cpu: CpuId, f: &mut dyn FnMut()) -> Result<(), CpuUnavailable>;

    /// Writes back and invalidates the caches of every CPU (WBINVD on all CPUs). Called after
    /// TDH.SYS.CONFIG and before the first TDH.SYS.KEY.CONFIG: PAMT memory may still have
    /// dirty cache lines written with KeyID 0, which must not later overwrite lines the module
    /// writes with the global private KeyID.
    fn flush_caches(&self);

    /// A scheduling point between the many TDH.SYS.TDMR.INIT calls (Linux: `cond_resched`).
    /// The default does nothing.
    fn reschedule(&self) {}
}
