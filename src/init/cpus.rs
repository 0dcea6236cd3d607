//! The host's CPUs as the bring-up driver needs them: where they are, running code on one, and
//! running code on a set of them at the same time.

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

/// The host's CPUs: list them, run a closure on one or on several at once, flush caches
/// everywhere.
///
/// A kernel implements this with its CPU-online mask, `smp_call_function_single`-style
/// cross-calls, per-CPU work in a context that may reschedule (Linux: a work item on each
/// CPU's queue, as `schedule_on_each_cpu` does, then waiting for all) and a WBINVD broadcast;
/// a hypervisor with its IPIs; a UEFI program with MP Services (start the procedure on each AP
/// without blocking, run it on the BSP too if it is in the set, wait for the APs' events).
/// Nothing on the call path needs an allocation: the set comes as a slice, the work as one
/// shared closure that receives the CPU it runs on.
///
/// The mock module (feature `mock`) implements it for its simulated logical processors, one
/// after another; `mock::LpThreads` (features `mock` and `std`) runs each on its own OS thread.
pub trait Cpus {
    /// Every CPU the TDX module must see initialized (every LP MCHECK enumerated), with its
    /// package, in a stable order. The first CPU issues the global SEAMCALLs.
    fn cpus(&self) -> Vec<Cpu>;

    /// Runs `f` on `cpu` and waits for it to finish.
    fn run_on(&self, cpu: CpuId, f: &mut dyn FnMut()) -> Result<(), CpuUnavailable>;

    /// Runs `f(cpu)` once on every CPU of `cpus` (distinct ids), at the same time where the
    /// host can, and returns when every one has finished. `f` must never run twice at once
    /// on one CPU (bring-up relies on it: an LP issues one SEAMCALL at a time).
    ///
    /// If a CPU cannot run code, the others still run `f` and the first such CPU is returned
    /// as the error.
    ///
    /// The default runs `f` on each CPU in turn with [`Cpus::run_on`]: correct on any host,
    /// but serial. Override it to get TDH.SYS.LP.INIT and TDH.SYS.TDMR.INIT in parallel.
    fn run_on_each(
        &self,
        cpus: &[CpuId],
        f: &(dyn Fn(CpuId) + Sync),
    ) -> Result<(), CpuUnavailable> {
        let mut first_error = Ok(());
        for &cpu in cpus {
            let ran = self.run_on(cpu, &mut || f(cpu));
            if first_error.is_ok() {
                first_error = ran;
            }
        }
        first_error
    }

    /// Writes back and invalidates the caches of every CPU (WBINVD on all CPUs). Called after
    /// TDH.SYS.CONFIG and before the first TDH.SYS.KEY.CONFIG: PAMT memory may still have
    /// dirty cache lines written with KeyID 0, which must not later overwrite lines the module
    /// writes with the global private KeyID.
    fn flush_caches(&self);

    /// A scheduling point between the many TDH.SYS.TDMR.INIT calls of one CPU (Linux:
    /// `cond_resched`); called on that CPU, inside [`Cpus::run_on_each`]. The default does
    /// nothing.
    fn reschedule(&self) {}
}
