//! Dynamic PAMT page pairs: TDH.PHYMEM.PAMT.ADD (58) and TDH.PHYMEM.PAMT.REMOVE (59), and the
//! test hook that stands in for the TD leaves taking 4 KiB pages into use.
//!
//! With Dynamic PAMT the PAMT_4K entries of a 2 MiB range (512 × 16 B) live in two 4 KiB pages
//! the host supplies with PAMT.ADD and takes back with PAMT.REMOVE. The mock checks, in this
//! order (tdx-module-rules.md §8):
//!
//! | check | status |
//! |---|---|
//! | Dynamic PAMT not enabled by TDH.SYS.CONFIG | `TDX_OPERAND_INVALID \| RAX` |
//! | RCX: level (bits 2:0) ≠ 1 (2 MiB), bits 11:3 or 63:52 set, HPA not 2 MiB aligned, HKID ≠ 0 | `TDX_OPERAND_INVALID \| RCX` |
//! | ADD: RDX / R8 not 4 KiB aligned, ≥ 2^52 or HKID ≠ 0 | `TDX_OPERAND_INVALID \| RDX` / `R8` |
//! | another LP's PAMT.ADD or PAMT.REMOVE on the same 2 MiB range is in flight | `TDX_OPERAND_BUSY \| RCX` |
//! | RCX not in a 1 GiB block of a TDMR that TDH.SYS.TDMR.INIT finished | `TDX_OPERAND_ADDR_RANGE_ERROR \| RCX` |
//! | ADD: the range already has a pair | `TDX_HPA_RANGE_NOT_FREE \| RCX` |
//! | ADD: page RDX (then R8) not in an initialized TDMR block | `TDX_OPERAND_ADDR_RANGE_ERROR \| RDX` / `R8` |
//! | ADD: page's bitmap bit set (reserved area, or already a PAMT page; R8 = RDX counts) | `TDX_PAGE_NOT_FREE \| RDX` / `R8` |
//! | ADD: page in use, when it lies outside the range being backed | `TDX_PAGE_NOT_FREE \| RDX` / `R8` |
//! | REMOVE: the range has no pair | `TDX_NO_PAMT_PAGE_PAIR \| RCX` |
//! | REMOVE: a 4 KiB page of the range is in use | `TDX_PAMT_PAGE_NOT_EMPTY` |
//!
//! The module locks PAMT entries at 2 MiB: a call holds its range from its operand checks to
//! its end, and a concurrent PAMT.ADD or PAMT.REMOVE on that range meanwhile gets
//! `TDX_OPERAND_BUSY | RCX` (the references say BUSY; the operand is RCX, which names the
//! range, as TDH.SYS.TDMR.INIT names its TDMR). Like TDH.SYS.TDMR.INIT, a call spans two
//! sections of the mock's lock, so the overlap is seen.
//! [`super::MockModule::pamt_range_in_flight`] holds a range as if a call were inside, for
//! tests. Pages of the extensions' pool count as taken (`TDX_PAGE_NOT_FREE`).
//!
//! The rules give no operand for `TDX_PAMT_PAGE_NOT_EMPTY`; the mock leaves bits 31:0 zero.
//! A failed call changes nothing. On success ADD records the pair, sets both pages' bitmap bits
//! and zeroes them (the module clears them through the global KeyID); REMOVE clears the bits and
//! returns the pair in RDX (page 0) and R8 (page 1).
//!
//! The PAMT page bitmap is not materialised: a page's bit is set when it lies in a reserved area
//! of its TDMR (TDH.SYS.TDMR.INIT sets those bits, and the leaves here only look at initialized
//! 1 GiB blocks) or when it is a PAMT page now. State is sparse: one map entry per 2 MiB range
//! that has a pair or a page in use, one per PAMT page; nothing per byte of address space.
//!
//! The mock has no TD leaves. [`super::MockModule::mark_in_use`] and
//! [`super::MockModule::mark_free`] stand in for them (TDH.MNG.ADDCX, TDH.MEM.PAGE.ADD/AUG, ...
//! and their reclaim): they take a 4 KiB page into use and release it with the checks those
//! leaves share — the page must be free and, with Dynamic PAMT, its 2 MiB range must have a
//! pair (`TDX_MISSING_PAMT_PAGE_PAIR`). That is what makes `TDX_PAMT_PAGE_NOT_EMPTY` reachable.

use super::page_pairs::Pair;
use super::platform::Platform;
use super::state::{State, SysState};
use crate::addr::{MAX_PA, SZ_2M, SZ_4K, align_down, is_aligned};
use crate::tdx::status::{
    Status, TDX_HPA_RANGE_NOT_FREE, TDX_MISSING_PAMT_PAGE_PAIR, TDX_NO_PAMT_PAGE_PAIR,
    TDX_OPERAND_ADDR_RANGE_ERROR, TDX_OPERAND_BUSY, TDX_OPERAND_INVALID, TDX_PAGE_NOT_FREE,
    TDX_PAMT_PAGE_NOT_EMPTY, TDX_SUCCESS, TDX_SYS_NOT_READY, operand,
};
use crate::tdx::{Output, Regs};

/// RCX bits 2:0: the page level of the range (1 = 2 MiB, `TDX_PS_2M`).
pub(crate) const LEVEL_2M: u64 = 1;
/// RCX bits 11:3, reserved.
const RCX_RESERVED_LOW: u64 = 0xFF8;

fn status(raw: u64, regs: &Regs) -> Output {
    Output::new(Status::new(raw), *regs)
}

/// The 2 MiB range RCX names, or `None` if RCX is malformed.
fn range_operand(p: &Platform, rcx: u64) -> Option<u64> {
    let base = rcx & !(SZ_4K - 1);
    let ok = rcx & 0b111 == LEVEL_2M
        && rcx & RCX_RESERVED_LOW == 0
        && rcx < MAX_PA
        && is_aligned(base, SZ_2M)
        && p.hkid(base) == 0;
    ok.then_some(base)
}

/// A page operand: 4 KiB aligned, below 2^52, KeyID bits clear.
fn page_operand_ok(p: &Platform, pa: u64) -> bool {
    is_aligned(pa, SZ_4K) && p.valid_pa(pa)
}

/// Whether `pa` lies in an initialized 1 GiB block of a configured TDMR.
fn initialized(st: &State, pa: u64) -> bool {
    st.tdmr_containing(pa).is_some_and(|t| t.initialized(pa))
}

/// The page's bit in the PAMT page bitmap (only meaningful in initialized blocks): set for
/// pages of reserved areas and for PAMT pages; pages of the extensions' pool count too.
fn bitmap_bit(st: &State, pa: u64) -> bool {
    st.pamt.pages.contains_key(&pa)
        || st.ext.pages.contains(&pa)
        || st.tdmr_containing(pa).is_some_and(|t| t.in_reserved(pa))
}

/// Takes the 2 MiB lock of `range` for `lp`: `false` if another call holds it.
fn lock_range(st: &mut State, range: u64, lp: u32) -> bool {
    if st.pamt_busy.iter().any(|&(r, _)| r == range) {
        return false;
    }
    st.pamt_busy.push((range, lp));
    true
}

/// Releases the 2 MiB lock of `range`.
pub(crate) fn unlock_range(st: &mut State, range: u64) {
    if let Some(i) = st.pamt_busy.iter().position(|&(r, _)| r == range) {
        st.pamt_busy.swap_remove(i);
    }
}

/// TDH.PHYMEM.PAMT.ADD on `lp`: RCX = 2 MiB HPA | level, RDX = page 0, R8 = page 1. Returns
/// the range whose lock the call holds until its end, if it took one.
pub(crate) fn add(p: &Platform, st: &mut State, lp: u32, regs: &Regs) -> (Output, Option<u64>) {
    if !st.dynamic_pamt {
        return (
            status(TDX_OPERAND_INVALID | operand::RAX as u64, regs),
            None,
        );
    }
    let Some(range) = range_operand(p, regs.rcx) else {
        return (
            status(TDX_OPERAND_INVALID | operand::RCX as u64, regs),
            None,
        );
    };
    for (op, pa) in [(operand::RDX, regs.rdx), (operand::R8, regs.r8)] {
        if !page_operand_ok(p, pa) {
            return (status(TDX_OPERAND_INVALID | op as u64, regs), None);
        }
    }
    if !lock_range(st, range, lp) {
        return (status(TDX_OPERAND_BUSY | operand::RCX as u64, regs), None);
    }
    (add_locked(st, range, regs), Some(range))
}

fn add_locked(st: &mut State, range: u64, regs: &Regs) -> Output {
    if !initialized(st, range) {
        return status(TDX_OPERAND_ADDR_RANGE_ERROR | operand::RCX as u64, regs);
    }
    if st.pamt.pairs.contains_key(&range) {
        return status(TDX_HPA_RANGE_NOT_FREE | operand::RCX as u64, regs);
    }
    for (op, pa) in [(operand::RDX, regs.rdx), (operand::R8, regs.r8)] {
        if !initialized(st, pa) {
            return status(TDX_OPERAND_ADDR_RANGE_ERROR | op as u64, regs);
        }
        // Page 0's bit is set by the time page 1 is checked: R8 = RDX is a PAMT page already.
        let taken = bitmap_bit(st, pa) || (op == operand::R8 && pa == regs.rdx);
        // A page's own PAMT entry can only be checked when it lies outside the range being
        // backed (inside, the 4K entries are the ones being supplied).
        let busy = align_down(pa, SZ_2M) != range && st.pamt.page_in_use(pa);
        if taken || busy {
            return status(TDX_PAGE_NOT_FREE | op as u64, regs);
        }
    }
    let pair = Pair {
        page0: regs.rdx,
        page1: regs.r8,
    };
    for page in [pair.page0, pair.page1] {
        // Valid below 2^52: checked above.
        let _ = st.mem.zero(page, SZ_4K as usize);
        st.pamt.pages.insert(page, range);
    }
    st.pamt.pairs.insert(range, pair);
    status(TDX_SUCCESS, regs)
}

/// TDH.PHYMEM.PAMT.REMOVE on `lp`: RCX = 2 MiB HPA | level; returns RDX = page 0, R8 = page
/// 1, and the range whose lock the call holds until its end, if it took one.
pub(crate) fn remove(p: &Platform, st: &mut State, lp: u32, regs: &Regs) -> (Output, Option<u64>) {
    if !st.dynamic_pamt {
        return (
            status(TDX_OPERAND_INVALID | operand::RAX as u64, regs),
            None,
        );
    }
    let Some(range) = range_operand(p, regs.rcx) else {
        return (
            status(TDX_OPERAND_INVALID | operand::RCX as u64, regs),
            None,
        );
    };
    if !lock_range(st, range, lp) {
        return (status(TDX_OPERAND_BUSY | operand::RCX as u64, regs), None);
    }
    (remove_locked(st, range, regs), Some(range))
}

fn remove_locked(st: &mut State, range: u64, regs: &Regs) -> Output {
    if !initialized(st, range) {
        return status(TDX_OPERAND_ADDR_RANGE_ERROR | operand::RCX as u64, regs);
    }
    let Some(&pair) = st.pamt.pairs.get(&range) else {
        return status(TDX_NO_PAMT_PAGE_PAIR | operand::RCX as u64, regs);
    };
    if st.pamt.range_in_use(range) {
        return status(TDX_PAMT_PAGE_NOT_EMPTY, regs);
    }
    st.pamt.pairs.remove(&range);
    st.pamt.pages.remove(&pair.page0);
    st.pamt.pages.remove(&pair.page1);
    let out = Regs {
        rdx: pair.page0,
        r8: pair.page1,
        ..*regs
    };
    Output::new(Status::new(TDX_SUCCESS), out)
}

/// Takes the 4 KiB page at `pa` into use, as a TD leaf would (see the module docs).
pub(crate) fn mark_in_use(p: &Platform, st: &mut State, pa: u64) -> Result<(), Status> {
    let err = |raw: u64| Err(Status::new(raw));
    if st.sys != SysState::SysReady {
        return err(TDX_SYS_NOT_READY);
    }
    if !page_operand_ok(p, pa) {
        return err(TDX_OPERAND_INVALID | operand::RCX as u64);
    }
    if !initialized(st, pa) {
        return err(TDX_OPERAND_ADDR_RANGE_ERROR | operand::RCX as u64);
    }
    if bitmap_bit(st, pa) {
        return err(TDX_PAGE_NOT_FREE | operand::RCX as u64);
    }
    if st.dynamic_pamt && !st.pamt.pairs.contains_key(&align_down(pa, SZ_2M)) {
        return err(TDX_MISSING_PAMT_PAGE_PAIR);
    }
    if !st.pamt.take_page(pa) {
        return err(TDX_PAGE_NOT_FREE | operand::RCX as u64);
    }
    Ok(())
}

/// Releases the page at `pa`; whether it was in use.
pub(crate) fn mark_free(st: &mut State, pa: u64) -> bool {
    is_aligned(pa, SZ_4K) && st.pamt.free_page(pa)
}
