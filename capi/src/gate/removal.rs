//! Memory removal through the gate: before initialization any memory may leave (the removal
//! holds initialization off until it ends), while initialization is pending or runs and
//! during an update the answer is `TDMR_ERR_BUSY`, and afterwards a removal is refused where
//! the TDX module owns the memory (its PAMT blocks), naming the TDMR and level.

use tdmr::addr::PhysRange;
use tdmr::hotplug_gate::{MemoryRemoval, MetadataHolder, RemovalRule, RemoveError};

use super::{Token, gate, tdmr_gate, token};
use crate::error::{Detail, Fail, TDMR_ERR_BAD_RANGE, tdmr_code, tdmr_error};
use crate::ffi::{self, Handle, Out};
use crate::memory::tdmr_range;

/// A static PAMT block of one TDMR (`tdmr`, `pamt_level`).
pub const TDMR_HOLDER_PAMT: u32 = 1;
/// Pages of Dynamic PAMT pairs the module holds in a 2 MiB range (`dpamt_range`,
/// `dpamt_pages`); they go back when the module lets go of the memory they track.
pub const TDMR_HOLDER_DYNAMIC_PAMT_PAGES: u32 = 2;
/// Memory given to the TDX module for its extensions, never reclaimable.
pub const TDMR_HOLDER_EXTENSION: u32 = 3;
/// A holder this header does not name yet (the message says what it is).
pub const TDMR_HOLDER_OTHER: u32 = 0xFFFF_FFFF;

/// PAMT level of 4 KiB pages (PAMT_4K; with Dynamic PAMT, its page bitmap). The level codes
/// are the TDX module's, as in the info bytes of its statuses.
pub const TDMR_PAMT_LEVEL_4K: u32 = 0;
/// PAMT level of 2 MiB pages (PAMT_2M).
pub const TDMR_PAMT_LEVEL_2M: u32 = 1;
/// PAMT level of 1 GiB pages (PAMT_1G).
pub const TDMR_PAMT_LEVEL_1G: u32 = 2;

const _: () = {
    use tdmr::addr::PageSize;
    assert!(TDMR_PAMT_LEVEL_4K as usize == PageSize::Size4K.index());
    assert!(TDMR_PAMT_LEVEL_2M as usize == PageSize::Size2M.index());
    assert!(TDMR_PAMT_LEVEL_1G as usize == PageSize::Size1G.index());
};

/// Why a removal was refused with `TDMR_ERR_HOLDS_TDX_METADATA`: whose memory it is and which
/// bytes of the range asked for. Fields a holder does not use are 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct tdmr_removal_refusal {
    /// `TDMR_HOLDER_*`.
    pub holder: u32,
    /// `TDMR_HOLDER_PAMT`: the block's `TDMR_PAMT_LEVEL_*`.
    pub pamt_level: u32,
    /// `TDMR_HOLDER_PAMT`: the TDMR's index in the plan (its `TDMR_INFO`'s index).
    pub tdmr: u32,
    /// `TDMR_HOLDER_DYNAMIC_PAMT_PAGES`: pair pages counted in `dpamt_range`.
    pub dpamt_pages: u32,
    /// The bytes of the range asked for that the holder owns (for Dynamic PAMT pages: the
    /// bytes of it in the 2 MiB range holding them). The first such holder by address.
    pub overlap: tdmr_range,
    /// `TDMR_HOLDER_DYNAMIC_PAMT_PAGES`: the 2 MiB range holding the pages.
    pub dpamt_range: tdmr_range,
}

fn range(r: PhysRange) -> tdmr_range {
    tdmr_range {
        base: r.start(),
        size: r.size(),
    }
}

const NO_RANGE: tdmr_range = tdmr_range { base: 0, size: 0 };

fn refusal(overlap: PhysRange, holder: MetadataHolder) -> tdmr_removal_refusal {
    let mut r = tdmr_removal_refusal {
        holder: TDMR_HOLDER_OTHER,
        pamt_level: 0,
        tdmr: 0,
        dpamt_pages: 0,
        overlap: range(overlap),
        dpamt_range: NO_RANGE,
    };
    match holder {
        MetadataHolder::Pamt { tdmr, level } => {
            r.holder = TDMR_HOLDER_PAMT;
            r.pamt_level = level.index() as u32;
            r.tdmr = u32::try_from(tdmr).unwrap_or(u32::MAX);
        }
        MetadataHolder::DynamicPamtPages {
            range: hosting,
            pages,
        } => {
            r.holder = TDMR_HOLDER_DYNAMIC_PAMT_PAGES;
            r.dpamt_range = range(hosting);
            r.dpamt_pages = pages;
        }
        MetadataHolder::Extension => r.holder = TDMR_HOLDER_EXTENSION,
        _ => {}
    }
    r
}

/// Opaque: a memory removal admitted through the gate. End it with
/// `tdmr_memory_removal_finish` (the memory left) or `tdmr_memory_removal_abandon` (it stays).
/// Owned by the caller; one thread at a time (any thread).
#[derive(Debug)]
pub struct tdmr_memory_removal {
    _opaque: [u8; 0],
}

impl Handle for Token<MemoryRemoval<'static>> {
    const MAGIC: u64 = u64::from_le_bytes(*b"tdmr.rem");
    const KIND: &'static str = "tdmr_memory_removal";
}

/// Decides whether memory `[base, base + size)` may be removed (offlined or hot-removed).
///
/// - Uninitialized or failed: admitted; `*out` is then a token that holds initialization off
///   (`tdmr_gate_begin_init` answers `TDMR_ERR_BUSY`) until the memory is out of the kernel's
///   map and the token ended (`tdmr_memory_removal_finish`, or `tdmr_memory_removal_abandon`
///   when the memory stays), so the map initialization reads no longer holds it.
/// - Initialization pending or in progress, or an update in progress: `TDMR_ERR_BUSY`, at
///   once.
/// - Initialized: refused with `TDMR_ERR_HOLDS_TDX_METADATA` where the range overlaps memory
///   the TDX module owns: a static PAMT block (the message names the TDMR and level, e.g.
///   "the PAMT_2M block of TDMR 1", and the bytes), module-extension memory, or a 2 MiB range
///   holding Dynamic PAMT pages; `*refusal` (when not NULL) then says the same as values.
///   Admitted otherwise, TDX memory included (the TDMRs still cover it; it may come back with
///   `tdmr_gate_admit_memory`): wait-free and allocation-free, and `*out` is NULL (nothing to
///   end; ending NULL is allowed). A plan with Dynamic PAMT, or with more PAMT blocks than
///   `tdmr_gate_options.metadata_capacity`, makes every removal `TDMR_ERR_METADATA_UNTRACKED`
///   (this ABI has no Dynamic PAMT manager to track pair pages): the gate fails closed.
///
/// An empty or unaligned range, or one whose end overflows, is `TDMR_ERR_BAD_RANGE`.
/// `*refusal` is written only with `TDMR_ERR_HOLDS_TDX_METADATA`, `*out` only on `TDMR_OK`.
///
/// Ownership: a non-NULL `*out` belongs to the caller until it is ended; it keeps the gate
/// alive.
///
/// # Safety
///
/// `gate` is a live gate; `out` points at a writable `tdmr_memory_removal *`; `refusal` is
/// NULL or a writable `tdmr_removal_refusal`; `err` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_gate_admit_removal(
    gate: *const tdmr_gate,
    base: u64,
    size: u64,
    out: *mut *mut tdmr_memory_removal,
    refusal: *mut tdmr_removal_refusal,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promises, forwarded to each check.
        let g = unsafe { self::gate(gate, "gate") }?;
        // SAFETY: as above.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: as above.
        let why = unsafe { Out::new_opt(refusal, "refusal") }?;
        let range = PhysRange::from_base_size(base, size)
            .map_err(|e| Fail::new(TDMR_ERR_BAD_RANGE, Detail::Range("base + size", e)))?;
        let removal = match g.gate.admit_removal(range) {
            Ok(r) => r,
            Err(e) => {
                if let (
                    RemoveError::HoldsTdxMetadata {
                        overlap, holder, ..
                    },
                    Some(w),
                ) = (e, why)
                {
                    w.write(self::refusal(overlap, holder));
                }
                return Err(e.into());
            }
        };
        // After initialization a removal marks the Dynamic PAMT range table, the one thing it
        // may hold, only when the gate has one (a C gate has none).
        if removal.rule() == RemovalRule::NoTdxMetadata && g.gate.range_table().is_none() {
            removal.finish();
            out.write(core::ptr::null_mut());
            return Ok(());
        }
        // SAFETY: `g` is live (checked above) for the whole call.
        let t = unsafe {
            token(
                g,
                // SAFETY: only the lifetime changes; the token's reference to the same gate
                // keeps it valid (see `token`).
                core::mem::transmute::<MemoryRemoval<'_>, MemoryRemoval<'static>>(removal),
            )
        }?;
        out.write(t.cast::<tdmr_memory_removal>());
        Ok(())
    })
}

/// Ends a removal token (both ends do the same to the gate; the names say what happened).
///
/// # Safety
///
/// As `tdmr_memory_removal_finish`.
unsafe fn end(removal: *mut tdmr_memory_removal) -> tdmr_code {
    ffi::entry(core::ptr::null_mut(), || {
        if removal.is_null() {
            return Ok(());
        }
        let ptr = removal.cast::<Token<MemoryRemoval<'static>>>();
        // SAFETY: forwarded.
        unsafe { ffi::handle(ptr.cast_const(), "removal") }?;
        // SAFETY: a live removal token; the caller gives it up. Dropping it ends the removal
        // while the token's reference still holds the gate.
        drop(unsafe { ffi::take(ptr) });
        Ok(())
    })
}

/// Ends a memory removal: the memory is out of the kernel's map. NULL (what a removal after
/// initialization gives) is allowed and does nothing.
///
/// Returns `TDMR_OK`, or `TDMR_ERR_INVALID_HANDLE` for what is detectably not a live removal
/// (then nothing happens).
///
/// # Safety
///
/// `removal` is NULL or a token from `tdmr_gate_admit_removal` not yet ended, used by no other
/// call now or later.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_memory_removal_finish(
    removal: *mut tdmr_memory_removal,
) -> tdmr_code {
    // SAFETY: forwarded.
    unsafe { end(removal) }
}

/// Ends a memory removal that did not happen: the memory stays (offlining failed). The gate
/// does the same as for `tdmr_memory_removal_finish`: before initialization the memory is in
/// the map initialization reads either way. NULL is allowed and does nothing.
///
/// Returns as `tdmr_memory_removal_finish`.
///
/// # Safety
///
/// As `tdmr_memory_removal_finish`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_memory_removal_abandon(
    removal: *mut tdmr_memory_removal,
) -> tdmr_code {
    // SAFETY: forwarded.
    unsafe { end(removal) }
}
