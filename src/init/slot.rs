//! Where a CPU leaves the outcome of its share of concurrent work (TDH.SYS.LP.INIT on one
//! CPU, TDH.SYS.TDMR.INIT on one TDMR) for the CPU that started it: a few atomics written
//! once by the CPU doing the work and read once every CPU has finished. No lock and no
//! allocation, so the work can run on any CPU of any host (an AP under UEFI MP Services may not
//! allocate), and `Sync` without `std`.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::CpuId;
use super::retry::Attempted;
use crate::tdx::status::Status;
use crate::tdx::{Output, Regs};

/// What the work in a slot came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Nobody ran it (its CPU could not run code).
    NotRun,
    /// Done.
    Done,
    /// A SEAMCALL failed for good: its last attempt.
    Failed(Attempted),
    /// TDH.SYS.TDMR.INIT returned this next-to-initialize address: outside the TDMR or going
    /// back.
    BadProgress {
        /// RDX as returned.
        rdx: u64,
    },
    /// TDH.SYS.TDMR.INIT kept succeeding without finishing after this many successful calls.
    Stalled {
        /// Successful calls.
        calls: u64,
    },
}

const NOT_RUN: u32 = 0;
const DONE: u32 = 1;
const FAILED: u32 = 2;
const BAD_PROGRESS: u32 = 3;
const STALLED: u32 = 4;

/// One unit of concurrent work's outcome, and the CPU and SEAMCALLs it took.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    kind: AtomicU32,
    cpu: AtomicU32,
    calls: AtomicU64,
    value: AtomicU64,
    attempts: AtomicU32,
    status: AtomicU64,
    regs: [AtomicU64; 13],
}

fn regs_to_array(r: &Regs) -> [u64; 13] {
    [
        r.rcx, r.rdx, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rbx, r.rdi, r.rsi,
    ]
}

fn regs_from_array(a: [u64; 13]) -> Regs {
    Regs {
        rcx: a[0],
        rdx: a[1],
        r8: a[2],
        r9: a[3],
        r10: a[4],
        r11: a[5],
        r12: a[6],
        r13: a[7],
        r14: a[8],
        r15: a[9],
        rbx: a[10],
        rdi: a[11],
        rsi: a[12],
    }
}

impl Slot {
    /// Records the outcome of the work done on `cpu` with `calls` SEAMCALLs (attempts
    /// included). Called once, by that CPU.
    pub(crate) fn store(&self, cpu: CpuId, calls: u64, outcome: Outcome) {
        self.cpu.store(cpu, Ordering::Relaxed);
        self.calls.store(calls, Ordering::Relaxed);
        let kind = match outcome {
            Outcome::NotRun => NOT_RUN,
            Outcome::Done => DONE,
            Outcome::Failed(a) => {
                self.attempts.store(a.attempts, Ordering::Relaxed);
                self.status.store(a.out.status.raw(), Ordering::Relaxed);
                for (slot, v) in self.regs.iter().zip(regs_to_array(&a.out.regs)) {
                    slot.store(v, Ordering::Relaxed);
                }
                FAILED
            }
            Outcome::BadProgress { rdx } => {
                self.value.store(rdx, Ordering::Relaxed);
                BAD_PROGRESS
            }
            Outcome::Stalled { calls } => {
                self.value.store(calls, Ordering::Relaxed);
                STALLED
            }
        };
        // Publishes the fields above to whoever loads `kind` with Acquire.
        self.kind.store(kind, Ordering::Release);
    }

    /// The CPU that did the work, the SEAMCALLs it made and the outcome.
    pub(crate) fn load(&self) -> (CpuId, u64, Outcome) {
        let kind = self.kind.load(Ordering::Acquire);
        let cpu = self.cpu.load(Ordering::Relaxed);
        let calls = self.calls.load(Ordering::Relaxed);
        let value = self.value.load(Ordering::Relaxed);
        let outcome = match kind {
            DONE => Outcome::Done,
            FAILED => {
                let mut a = [0u64; 13];
                for (v, slot) in a.iter_mut().zip(&self.regs) {
                    *v = slot.load(Ordering::Relaxed);
                }
                Outcome::Failed(Attempted {
                    out: Output::new(
                        Status::new(self.status.load(Ordering::Relaxed)),
                        regs_from_array(a),
                    ),
                    attempts: self.attempts.load(Ordering::Relaxed),
                })
            }
            BAD_PROGRESS => Outcome::BadProgress { rdx: value },
            STALLED => Outcome::Stalled { calls: value },
            _ => Outcome::NotRun,
        };
        (cpu, calls, outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_round_trips() {
        let regs = Regs {
            rcx: 1,
            rdx: 2,
            rsi: 13,
            ..Regs::ZERO
        };
        let failed = Outcome::Failed(Attempted {
            out: Output::new(Status::new(0xC000_0100_0000_0001), regs),
            attempts: 7,
        });
        for o in [
            Outcome::Done,
            failed,
            Outcome::BadProgress { rdx: 0x4000_0000 },
            Outcome::Stalled { calls: 99 },
        ] {
            let s = Slot::default();
            assert_eq!(s.load().2, Outcome::NotRun);
            s.store(5, 42, o);
            assert_eq!(s.load(), (5, 42, o));
        }
    }
}
