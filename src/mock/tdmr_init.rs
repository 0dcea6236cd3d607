//! TDH.SYS.TDMR.INIT: RCX = TDMR base; initializes the next 4 MiB (16 MiB with Dynamic PAMT)
//! of that TDMR's PAMT and returns RDX = next address to initialize, rounded down to 1 GiB.
//!
//! A call runs in two steps with the module's lock released in between, so that a second LP
//! calling on the same TDMR meanwhile finds the per-TDMR mutex held (`TDX_OPERAND_BUSY | RCX`),
//! while calls on other TDMRs proceed. Progress is one address per TDMR: a 16 TiB configuration
//! costs a few bytes per TDMR, never anything per page.
//!
//! By default what a call writes is not materialised (in work mode it is, see `pamt_work.rs`):
//! the 4K entries (or, with Dynamic PAMT, the page
//! bitmap bits) of pages in reserved areas are marked by the TDMR's recorded reserved areas,
//! which the PAMT leaves consult for addresses below the initialized 1 GiB boundary only.

use super::platform::Platform;
use super::state::State;
use crate::addr::{SZ_1G, SZ_1M, align_down, is_aligned};
use crate::tdx::status::{
    Status, TDX_OPERAND_BUSY, TDX_OPERAND_INVALID, TDX_SUCCESS, TDX_TDMR_ALREADY_INITIALIZED,
    operand,
};
use crate::tdx::{Output, Regs};

/// PAMT_4K entries one call initializes, times 4 KiB.
const STEP: u64 = 4 * SZ_1M;
/// The same with Dynamic PAMT.
const STEP_DYNAMIC_PAMT: u64 = 16 * SZ_1M;

/// What the first step decided.
pub(crate) enum Begin {
    /// The call is over (error, or already initialized).
    Done(Output),
    /// The per-TDMR mutex is now held by the caller for TDMR `index`.
    Started(usize),
}

/// The chunk a started call initializes: `[next, next + step)` clipped to the TDMR.
pub(crate) fn chunk(st: &State, index: usize) -> Option<(u64, u64)> {
    let t = st.tdmrs.get(index)?;
    let end = t.progress.base + t.progress.size;
    Some((t.progress.next, (t.progress.next + step(st)).min(end)))
}

fn step(st: &State) -> u64 {
    if st.dynamic_pamt {
        STEP_DYNAMIC_PAMT
    } else {
        STEP
    }
}

pub(crate) fn begin(p: &Platform, st: &mut State, lp: u32, regs: &Regs) -> Begin {
    let mut out = *regs;
    out.rdx = 0;
    let base = regs.rcx;
    let invalid = Output::new(Status::new(TDX_OPERAND_INVALID | operand::RCX as u64), out);
    if !is_aligned(base, SZ_1G) || !p.valid_pa(base) {
        return Begin::Done(invalid);
    }
    let Some(index) = st.tdmr_at(base) else {
        return Begin::Done(invalid);
    };
    let t = &mut st.tdmrs[index];
    if t.busy.is_some() {
        return Begin::Done(Output::new(
            Status::new(TDX_OPERAND_BUSY | operand::RCX as u64),
            out,
        ));
    }
    if t.progress.is_done() {
        return Begin::Done(Output::new(Status::new(TDX_TDMR_ALREADY_INITIALIZED), out));
    }
    t.busy = Some(lp);
    Begin::Started(index)
}

pub(crate) fn finish(st: &mut State, index: usize, regs: &Regs) -> Output {
    let step = step(st);
    let mut out = *regs;
    out.rdx = 0;
    // The TDMR list only changes in TDH.SYS.CONFIG, which cannot run while the module is ready.
    if let Some(t) = st.tdmrs.get_mut(index) {
        let end = t.progress.base + t.progress.size;
        t.progress.next = (t.progress.next + step).min(end);
        t.busy = None;
        out.rdx = align_down(t.progress.next, SZ_1G);
    }
    Output::new(Status::new(TDX_SUCCESS), out)
}
