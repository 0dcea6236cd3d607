//! TDH.SYS.TDMR.INIT until every TDMR is initialized: one TDMR after another, or all at once
//! with the `parallel` feature. Every TDMR is attempted either way and the error reported is
//! the one of the lowest-numbered failing TDMR, so the outcome and the call counts do not
//! depend on scheduling.

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::error::InitErrorKind;
use super::retry::{Caller, RetryPolicy, SeamcallError};
use super::{Cpus, MaybeSync};
use crate::addr::SZ_4K;
use crate::seamcall::status::{TDX_SUCCESS, TDX_TDMR_ALREADY_INITIALIZED};
use crate::seamcall::{Regs, Seamcall, SeamcallCounts, leaf};

fn init_one<S, C>(
    seamcall: &S,
    cpus: &C,
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
        let out = match caller.call(leaf::TDH_SYS_TDMR_INIT, inputs, None) {
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
            raw if raw & crate::seamcall::status::STATUS_MASK == TDX_TDMR_ALREADY_INITIALIZED => {
                break Ok(());
            }
            _ => {
                break Err(InitErrorKind::Seamcall(Box::new(SeamcallError {
                    leaf: leaf::TDH_SYS_TDMR_INIT,
                    cpu: None,
                    inputs,
                    status: out.status,
                    outputs: out.regs,
                    attempts: 1,
                })));
            }
        }
        cpus.reschedule();
    };
    (caller.counts, result)
}

/// Initializes every TDMR `(base, size)`; returns the calls made and the first failure by TDMR
/// index.
pub(crate) fn init_all<S, C>(
    seamcall: &S,
    cpus: &C,
    retry: RetryPolicy,
    tdmrs: &[(u64, u64)],
) -> (SeamcallCounts, Result<(), InitErrorKind>)
where
    S: Seamcall + MaybeSync + ?Sized,
    C: Cpus + MaybeSync + ?Sized,
{
    #[cfg(feature = "parallel")]
    let results: Vec<_> = {
        use rayon::prelude::*;
        tdmrs
            .par_iter()
            .enumerate()
            .map(|(i, &t)| init_one(seamcall, cpus, retry, i, t))
            .collect()
    };
    #[cfg(not(feature = "parallel"))]
    let results: Vec<_> = tdmrs
        .iter()
        .enumerate()
        .map(|(i, &t)| init_one(seamcall, cpus, retry, i, t))
        .collect();

    let mut counts = SeamcallCounts::new();
    let mut first_error = Ok(());
    for (c, r) in results {
        counts.merge(&c);
        if first_error.is_ok() {
            first_error = r;
        }
    }
    (counts, first_error)
}
