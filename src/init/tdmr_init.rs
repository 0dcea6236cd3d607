//! TDH.SYS.TDMR.INIT until every TDMR is initialized, one TDMR after another on one CPU.
//! Every TDMR is attempted and the error reported is the one of the lowest-numbered failing
//! TDMR.

use alloc::boxed::Box;

use super::error::InitErrorKind;
use super::retry::{Caller, RetryPolicy, SeamcallError};
use super::{CpuId, CpuUnavailable, Cpus};
use crate::addr::SZ_4K;
use crate::seamcall::{Seamcall, SeamcallCounts};
use crate::tdx::status::{STATUS_MASK, TDX_SUCCESS, TDX_TDMR_ALREADY_INITIALIZED};
use crate::tdx::{Regs, leaf};

fn init_one<S, C>(
    seamcall: &S,
    cpus: &C,
    cpu: CpuId,
    retry: RetryPolicy,
    index: usize,
    (base, size): (u64, u64),
) -> (SeamcallCounts, Result<(), InitErrorKind>)
where
    S: Seamcall + ?Sized,
    C: Cpus + ?Sized,
{
    let mut caller = Caller::new(seamcall, retry);
    let end = base.saturating_add(size);
    let inputs = Regs {
        rcx: base,
        ..Regs::ZERO
    };
    let mut last = base;
    let mut successes: u64 = 0;
    let result = loop {
        let out = match caller.call(leaf::TDH_SYS_TDMR_INIT, inputs, Some(cpu)) {
            Ok(out) => out,
            Err(e) => break Err(InitErrorKind::Seamcall(e)),
        };
        match out.status.raw() {
            TDX_SUCCESS => {
                let rdx = out.regs.rdx;
                if rdx < last || rdx > end {
                    break Err(InitErrorKind::TdmrInitBadProgress {
                        tdmr: index,
                        base,
                        rdx,
                    });
                }
                if rdx == end {
                    break Ok(());
                }
                last = rdx;
                successes += 1;
                if successes > size / SZ_4K {
                    break Err(InitErrorKind::TdmrInitStalled {
                        tdmr: index,
                        base,
                        calls: successes,
                    });
                }
            }
            raw if raw & STATUS_MASK == TDX_TDMR_ALREADY_INITIALIZED => {
                break Ok(());
            }
            _ => {
                break Err(InitErrorKind::Seamcall(Box::new(SeamcallError {
                    leaf: leaf::TDH_SYS_TDMR_INIT,
                    cpu: Some(cpu),
                    inputs,
                    status: out.status,
                    outputs: out.regs,
                    attempts: caller.last_attempts,
                })));
            }
        }
        cpus.reschedule();
    };
    (caller.counts, result)
}

/// Initializes every TDMR `(base, size)` on `cpu`; returns the calls made and the first failure
/// by TDMR index.
pub(crate) fn init_all<S, C>(
    seamcall: &S,
    cpus: &C,
    cpu: CpuId,
    retry: RetryPolicy,
    tdmrs: &[(u64, u64)],
) -> (SeamcallCounts, Result<(), InitErrorKind>)
where
    S: Seamcall + ?Sized,
    C: Cpus + ?Sized,
{
    let mut counts = SeamcallCounts::new();
    let mut first_error = Ok(());
    for (i, &t) in tdmrs.iter().enumerate() {
        let mut outcome = None;
        let ran = cpus.run_on(cpu, &mut || {
            outcome = Some(init_one(seamcall, cpus, cpu, retry, i, t));
        });
        let r = match (ran, outcome) {
            (Ok(()), Some((c, r))) => {
                counts.merge(&c);
                r
            }
            (Err(e), _) => Err(InitErrorKind::Cpu(e)),
            (Ok(()), None) => Err(InitErrorKind::Cpu(CpuUnavailable { cpu })),
        };
        if first_error.is_ok() {
            first_error = r;
        }
    }
    (counts, first_error)
}
