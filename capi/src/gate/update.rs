//! A runtime TDX module update through the gate: `tdmr_gate_begin_update` before
//! TDH.SYS.SHUTDOWN, `tdmr_update_ticket_finish` after TDH.SYS.UPDATE (or once the update
//! failed). Meanwhile memory and CPU hotplug and new guest KeyIDs answer `TDMR_ERR_BUSY`; the
//! gate ends initialized with the same frozen memory and refusals.

use tdmr::hotplug_gate::UpdateTicket;

use super::{Token, gate, tdmr_gate, token};
use crate::error::{tdmr_code, tdmr_error};
use crate::ffi::{self, Handle, Out};

/// Opaque: the right to end the one runtime update in progress. End it with
/// `tdmr_update_ticket_finish`. Owned by the caller; one thread at a time (any thread).
#[derive(Debug)]
pub struct tdmr_update_ticket {
    _opaque: [u8; 0],
}

impl Handle for Token<UpdateTicket<'static>> {
    const MAGIC: u64 = u64::from_le_bytes(*b"tdmr.upd");
    const KIND: &'static str = "tdmr_update_ticket";
}

/// Starts a runtime module update: from initialized, once no CPU online or offline is in
/// flight. Call it before TDH.SYS.SHUTDOWN, once the incoming module is known to take the
/// frozen TDMR and PAMT layout.
///
/// With CPU onlines or offlines in flight it answers `TDMR_ERR_BUSY` and marks the update
/// *pending*: new CPU onlines and offlines answer `TDMR_ERR_BUSY`, so a later call begins once
/// those have ended (memory hotplug goes on meanwhile, by the initialized rules). A caller
/// that gives up must `tdmr_gate_cancel_update`. While the ticket is out the state is
/// `TDMR_STATE_UPDATING`: memory additions and removals, CPU onlines and offlines (any CPU)
/// and new guest KeyIDs answer `TDMR_ERR_BUSY` (releasing one is allowed).
///
/// Returns `TDMR_OK` and `*out`; `TDMR_ERR_BUSY` (CPU hotplug in flight, or another update in
/// progress: retry); `TDMR_ERR_STATE` (the module is not initialized); or a pointer error.
///
/// Ownership: `*out` belongs to the caller until `tdmr_update_ticket_finish`; it keeps the
/// gate alive.
///
/// # Safety
///
/// `gate` is a live gate; `out` points at a writable `tdmr_update_ticket *`; `err` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_gate_begin_update(
    gate: *const tdmr_gate,
    out: *mut *mut tdmr_update_ticket,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promises, forwarded to each check.
        let g = unsafe { self::gate(gate, "gate") }?;
        // SAFETY: as above.
        let out = unsafe { Out::new(out, "out") }?;
        let ticket = g.gate.begin_update()?;
        // SAFETY: `g` is live for the whole call.
        let t = unsafe {
            token(
                g,
                // SAFETY: only the lifetime changes (see `token`).
                core::mem::transmute::<UpdateTicket<'_>, UpdateTicket<'static>>(ticket),
            )
        }?;
        out.write(t.cast::<tdmr_update_ticket>());
        Ok(())
    })
}

/// Ends the update, however it went: the gate is initialized again with TDX memory as frozen
/// at initialization (a module that refused the update runs the old layout; one gone after
/// SHUTDOWN still owns what it owned). Consumes the ticket.
///
/// Returns `TDMR_OK`, or `TDMR_ERR_NULL_POINTER` / `TDMR_ERR_INVALID_HANDLE` (nothing happens).
///
/// # Safety
///
/// `ticket` is a live ticket from `tdmr_gate_begin_update`, used by no other call now or
/// later.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_update_ticket_finish(ticket: *mut tdmr_update_ticket) -> tdmr_code {
    ffi::entry(core::ptr::null_mut(), || {
        let ptr = ticket.cast::<Token<UpdateTicket<'static>>>();
        // SAFETY: forwarded.
        unsafe { ffi::handle(ptr.cast_const(), "ticket") }?;
        // SAFETY: a live ticket; the caller gives it up. Dropping it ends the update while the
        // token's reference still holds the gate.
        drop(unsafe { ffi::take(ptr) });
        Ok(())
    })
}

/// Withdraws a pending update (see `tdmr_gate_begin_update`): CPU hotplug is admitted again.
/// `*was_pending` (when not NULL) is 1 when one was pending, else 0. An update in progress is
/// not affected (end it with its ticket). Never blocks.
///
/// # Safety
///
/// `gate` is a live gate; `was_pending` is NULL or a writable `uint32_t`; `err` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_gate_cancel_update(
    gate: *const tdmr_gate,
    was_pending: *mut u32,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promises, forwarded to each check.
        let g = unsafe { self::gate(gate, "gate") }?;
        // SAFETY: as above.
        let was = unsafe { Out::new_opt(was_pending, "was_pending") }?;
        let cancelled = g.gate.cancel_update();
        if let Some(w) = was {
            w.write(u32::from(cancelled));
        }
        Ok(())
    })
}
