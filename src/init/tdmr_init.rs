//! TDH.SYS.TDMR.INIT until every TDMR is initialized, spread over the host's CPUs.
//!
//! The TDX module initializes different TDMRs on different LPs at once (one mutex per TDMR;
//! a second LP on the same TDMR gets `TDX_OPERAND_BUSY`), and one TDMR is always serial. So
//! the TDMRs go, longest first, each to the least loaded of the chosen CPUs — the schedule
//! [`crate::layout::Plan::init_work`] estimates — and the CPUs work through their lists at
//! once through [`Cpus::run_on_each`], one TDMR after another, calling TDH.SYS.TDMR.INIT on
//! each until it is done. A TDMR belongs to exactly one CPU and a CPU runs one call at a time,
//! so no TDMR is ever on two LPs and no LP ever has two calls in flight; which CPU does what is
//! fixed by the plan, not by timing. The CPUs are taken one per package in turn, so the PAMT
//! writes spread over the packages' memory controllers.
//!
//! Every TDMR is attempted and the error reported is the one of the lowest-numbered failing
//! TDMR, whatever the interleaving. A TDMR counts as initialized only when the module reported
//! it so: RDX equal to the TDMR's end, or `TDX_TDMR_ALREADY_INITIALIZED`.

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::error::InitErrorKind;
use super::retry::{RetryPolicy, SeamcallError, attempt};
use super::slot::{Outcome, Slot};
use super::{Cpu, CpuId, CpuUnavailable, Cpus};
use crate::addr::SZ_4K;
use crate::layout::assign_init_cpus;
use crate::seamcall::{Seamcall, SeamcallCounts};
use crate::tdx::status::{STATUS_MASK, TDX_SUCCESS, TDX_TDMR_ALREADY_INITIALIZED};
use crate::tdx::{Regs, leaf};

/// TDH.SYS.TDMR.INIT on TDMR `(base, size)` until the module reports it done, on the calling
/// CPU. Returns the SEAMCALLs made (attempts included) and the outcome. No allocation.
pub(crate) fn init_one<S, C>(
    seamcall: &S,
    cpus: &C,
    retry: RetryPolicy,
    (base, size): (u64, u64),
) -> (u64, Outcome)
where
    S: Seamcall + ?Sized,
    C: Cpus + ?Sized,
{
    let end = base.saturating_add(size);
    let inputs = Regs {
        rcx: base,
        ..Regs::ZERO
    };
    let mut last = base;
    let mut successes: u64 = 0;
    let mut calls: u64 = 0;
    let outcome = loop {
        let a = attempt(seamcall, retry, leaf::TDH_SYS_TDMR_INIT, &inputs);
        calls += u64::from(a.attempts);
        match a.out.status.raw() {
            TDX_SUCCESS => {
                let rdx = a.out.regs.rdx;
                if rdx < last || rdx > end {
                    break Outcome::BadProgress { rdx };
                }
                if rdx == end {
                    break Outcome::Done;
                }
                last = rdx;
                successes += 1;
                // The module does at least one 4 KiB page per call: more successful calls
                // than pages and it is not making progress.
                if successes > size / SZ_4K {
                    break Outcome::Stalled { calls: successes };
                }
            }
            raw if raw & STATUS_MASK == TDX_TDMR_ALREADY_INITIALIZED => break Outcome::Done,
            _ => break Outcome::Failed(a),
        }
        cpus.reschedule();
    };
    (calls, outcome)
}

/// At most `want` CPUs of `cpus`, one per package in turn (lowest package first, each
/// package's CPUs in the host's order).
pub(crate) fn spread(cpus: &[Cpu], want: usize) -> Vec<CpuId> {
    let mut packages: Vec<u32> = cpus.iter().map(|c| c.package).collect();
    packages.sort_unstable();
    packages.dedup();
    let mut per_package: Vec<Vec<CpuId>> = packages
        .iter()
        .map(|&p| {
            cpus.iter()
                .filter(|c| c.package == p)
                .map(|c| c.id)
                .collect()
        })
        .collect();
    for list in &mut per_package {
        list.reverse();
    }
    let mut out = Vec::with_capacity(want.min(cpus.len()));
    while out.len() < want {
        let mut took = false;
        for list in &mut per_package {
            if out.len() == want {
                break;
            }
            if let Some(c) = list.pop() {
                out.push(c);
                took = true;
            }
        }
        if !took {
            break;
        }
    }
    out
}

/// Initializes every TDMR `(base, size)` on up to one CPU per TDMR of `on`; returns the calls
/// made and the first failure by TDMR index.
pub(crate) fn init_all<S, C>(
    seamcall: &S,
    cpus: &C,
    on: &[CpuId],
    retry: RetryPolicy,
    tdmrs: &[(u64, u64)],
) -> (SeamcallCounts, Result<(), InitErrorKind>)
where
    S: Seamcall + Sync + ?Sized,
    C: Cpus + Sync + ?Sized,
{
    // Longest first, each to the least loaded CPU: the wall time is set by the CPU that
    // finishes last.
    let mut order: Vec<usize> = (0..tdmrs.len()).collect();
    order.sort_by_key(|&i| (core::cmp::Reverse(tdmrs[i].1), i));
    let on = &on[..on.len().min(tdmrs.len())];
    let sizes: Vec<u64> = tdmrs.iter().map(|t| t.1).collect();
    let owner = assign_init_cpus(&sizes, on.len());
    let slots: Vec<Slot> = tdmrs.iter().map(|_| Slot::default()).collect();
    let work = |cpu: CpuId| {
        let Some(me) = on.iter().position(|&c| c == cpu) else {
            return;
        };
        for &i in order.iter().filter(|&&i| owner[i] == me) {
            let (calls, outcome) = init_one(seamcall, cpus, retry, tdmrs[i]);
            slots[i].store(cpu, calls, outcome);
        }
    };
    let ran = if tdmrs.is_empty() {
        Ok(())
    } else {
        cpus.run_on_each(on, &work)
    };

    let mut counts = SeamcallCounts::new();
    let mut first_error = Ok(());
    for (i, slot) in slots.iter().enumerate() {
        let (cpu, calls, outcome) = slot.load();
        counts.add(leaf::TDH_SYS_TDMR_INIT, calls);
        let (base, _) = tdmrs[i];
        let r = match outcome {
            Outcome::Done => Ok(()),
            Outcome::NotRun => Err(InitErrorKind::Cpu(match ran {
                Err(e) => e,
                // `run_on_each` returned without running the work on this TDMR's CPU.
                Ok(()) => CpuUnavailable {
                    cpu: on.get(owner[i]).copied().unwrap_or(0),
                },
            })),
            Outcome::BadProgress { rdx } => {
                Err(InitErrorKind::TdmrInitBadProgress { tdmr: i, base, rdx })
            }
            Outcome::Stalled { calls } => Err(InitErrorKind::TdmrInitStalled {
                tdmr: i,
                base,
                calls,
            }),
            Outcome::Failed(a) => Err(InitErrorKind::Seamcall(Box::new(
                SeamcallError::from_attempt(
                    leaf::TDH_SYS_TDMR_INIT,
                    Some(cpu),
                    Regs {
                        rcx: base,
                        ..Regs::ZERO
                    },
                    a,
                ),
            ))),
        };
        if first_error.is_ok() {
            first_error = r;
        }
    }
    (counts, first_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(id: u32, package: u32) -> Cpu {
        Cpu { id, package }
    }

    #[test]
    fn spread_takes_one_cpu_per_package_in_turn() {
        let cpus = [
            cpu(0, 0),
            cpu(1, 0),
            cpu(2, 0),
            cpu(3, 1),
            cpu(4, 1),
            cpu(5, 2),
        ];
        assert_eq!(spread(&cpus, 4), [0, 3, 5, 1]);
        assert_eq!(spread(&cpus, 99), [0, 3, 5, 1, 4, 2]);
        assert_eq!(spread(&cpus, 0), Vec::<u32>::new());
        assert_eq!(spread(&[], 3), Vec::<u32>::new());
    }
}
