//! The module extensions (TDX_FEATURES0 bit 39): TDH.EXT.MEM.ADD (61) and TDH.EXT.INIT (60),
//! on profiles that have them (`next`); elsewhere the leaves are unknown. Both are TD-side
//! leaves for the dispatcher: they run once the module is ready (`TDX_SYS_NOT_READY` before).
//!
//! TDH.EXT.MEM.ADD: RCX = the HPA list info — list page PFN in bits 51:12, first entry index
//! in bits 11:3, last entry index in bits 63:55; the list page holds up to 512 page addresses.
//! Checks, in order (the statuses are the mock's reading of the module's conventions; the
//! references give the RCX layout and resumption, not the codes):
//!
//! | check | status |
//! |---|---|
//! | TDH.EXT.INIT already done | `TDX_SYS_STATE_INCORRECT` |
//! | RCX bits 2:0 or 54:52 set, first index above last, the list page not a valid shared address | `TDX_OPERAND_INVALID \| RCX` |
//! | then per entry, from the first: not 4 KiB aligned, beyond 2^52 or with KeyID bits; or the pool already has every page it needs | `TDX_OPERAND_INVALID \| RCX` |
//! | the page is not in an initialized 1 GiB block of a TDMR | `TDX_OPERAND_ADDR_RANGE_ERROR \| RCX` |
//! | the page is in a reserved area, a Dynamic PAMT page, in use, or the pool's already | `TDX_PAGE_NOT_FREE \| RCX` |
//!
//! Entries before a failing one stay added; the RCX returned then carries the failing entry's
//! index as its first index, so the host sees where it stopped. After [`EXT_MEM_ADD_BATCH`]
//! entries a call stops with `TDX_INTERRUPTED_RESUMABLE` and RCX's first index advanced to the
//! next entry (the module yields to interrupts; the mock does so deterministically); the host
//! calls again with that RCX. Pages in the pool are the module's for good (TDH.SYS.DISABLE
//! aside): the mock's TD stand-ins ([`super::MockModule::mark_in_use`]) and TDH.PHYMEM.PAMT.ADD
//! refuse them. They need no Dynamic PAMT page pair (a model choice: the module keeps its pool
//! outside PAMT_4K).
//!
//! TDH.EXT.INIT: `TDX_SYS_STATE_INCORRECT` once done, or while the pool lacks pages; otherwise
//! it initializes up to [`EXT_INIT_BATCH`] pages per call, answering
//! `TDX_INTERRUPTED_RESUMABLE` until the last, then `TDX_SUCCESS`. EXT_REQUIRED then reads 0.

use super::platform::Platform;
use super::state::State;
use crate::addr::{MAX_PA, SZ_4K, is_aligned};
use crate::tdx::status::{
    Status, TDX_INTERRUPTED_RESUMABLE, TDX_OPERAND_ADDR_RANGE_ERROR, TDX_OPERAND_INVALID,
    TDX_PAGE_NOT_FREE, TDX_SUCCESS, TDX_SYS_STATE_INCORRECT, operand,
};
use crate::tdx::{Output, Regs};

/// Entries one TDH.EXT.MEM.ADD call takes before it yields (`TDX_INTERRUPTED_RESUMABLE`): a
/// model choice.
pub const EXT_MEM_ADD_BATCH: u64 = 64;
/// Pages one TDH.EXT.INIT call initializes before it yields: a model choice.
pub const EXT_INIT_BATCH: u64 = 4096;

/// RCX bits of the list page's address.
const LIST_PFN: u64 = 0x000F_FFFF_FFFF_F000;
/// RCX bits that must be zero: 2:0 and 54:52.
const RESERVED: u64 = 0b111 | 0b111 << 52;

fn answer(raw: u64, regs: Regs) -> Output {
    Output::new(Status::new(raw), regs)
}

fn first(rcx: u64) -> u64 {
    (rcx >> 3) & 0x1FF
}

fn last(rcx: u64) -> u64 {
    rcx >> 55
}

fn with_first(rcx: u64, i: u64) -> u64 {
    rcx & !(0x1FF << 3) | (i & 0x1FF) << 3
}

/// Why page `pa` cannot join the pool, as the status to return.
fn page_refused(st: &State, p: &Platform, pa: u64) -> Option<u64> {
    if !is_aligned(pa, SZ_4K) || pa >= MAX_PA || p.hkid(pa) != 0 {
        return Some(TDX_OPERAND_INVALID | operand::RCX as u64);
    }
    if !st.tdmr_containing(pa).is_some_and(|t| t.initialized(pa)) {
        return Some(TDX_OPERAND_ADDR_RANGE_ERROR | operand::RCX as u64);
    }
    let reserved = st.tdmr_containing(pa).is_some_and(|t| t.in_reserved(pa));
    if reserved
        || st.pamt.pages.contains_key(&pa)
        || st.pamt.page_in_use(pa)
        || st.ext.pages.contains(&pa)
    {
        return Some(TDX_PAGE_NOT_FREE | operand::RCX as u64);
    }
    None
}

/// TDH.EXT.MEM.ADD.
pub(crate) fn mem_add(p: &Platform, st: &mut State, regs: &Regs) -> Output {
    if st.ext.initialized {
        return answer(TDX_SYS_STATE_INCORRECT, *regs);
    }
    let rcx = regs.rcx;
    let list = rcx & LIST_PFN;
    let list_ok = p.config_env(st.profile(), false).shared_hpa_ok(list, SZ_4K);
    if rcx & RESERVED != 0 || first(rcx) > last(rcx) || !list_ok {
        return answer(TDX_OPERAND_INVALID | operand::RCX as u64, *regs);
    }
    let needed = u64::from(st.profile().extension_pages());
    let mut i = first(rcx);
    let mut done = 0u64;
    while i <= last(rcx) {
        let stop = |raw: u64, at: u64| {
            answer(
                raw,
                Regs {
                    rcx: with_first(rcx, at),
                    ..*regs
                },
            )
        };
        if done == EXT_MEM_ADD_BATCH {
            return stop(TDX_INTERRUPTED_RESUMABLE, i);
        }
        let Ok(pa) = st.mem.read_u64(list + 8 * i) else {
            return stop(TDX_OPERAND_INVALID | operand::RCX as u64, i);
        };
        if st.ext.pages.len() as u64 >= needed {
            return stop(TDX_OPERAND_INVALID | operand::RCX as u64, i);
        }
        if let Some(raw) = page_refused(st, p, pa) {
            return stop(raw, i);
        }
        st.ext.pages.insert(pa);
        done += 1;
        i += 1;
    }
    answer(TDX_SUCCESS, *regs)
}

/// TDH.EXT.INIT.
pub(crate) fn init(st: &mut State, regs: &Regs) -> Output {
    let needed = u64::from(st.profile().extension_pages());
    if st.ext.initialized || (st.ext.pages.len() as u64) < needed {
        return answer(TDX_SYS_STATE_INCORRECT, *regs);
    }
    st.ext.init_done = (st.ext.init_done + EXT_INIT_BATCH).min(needed);
    if st.ext.init_done < needed {
        return answer(TDX_INTERRUPTED_RESUMABLE, *regs);
    }
    st.ext.initialized = true;
    answer(TDX_SUCCESS, *regs)
}
