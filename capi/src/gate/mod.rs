//! `tdmr_gate`: the lock-free hotplug gate. Before TDX initialization it admits memory inside
//! the CMRs and any removal; once initialization is asked for (pending) and while it runs it
//! answers `TDMR_ERR_BUSY` at once; afterwards it admits only TDX memory of the published plan
//! and refuses removals of the module's memory ([`tdmr_gate_admit_removal`]); during a runtime
//! module update ([`tdmr_gate_begin_update`]) hotplug answers `TDMR_ERR_BUSY`. The last online
//! CPU of a package cannot go offline while initialization is pending or runs or guest KeyIDs
//! are in use. Nothing blocks.
//!
//! The gate is reference-counted: `tdmr_gate_free` drops the caller's reference, and every
//! outstanding token (admission, removal, CPU online, init and update tickets) keeps the gate
//! alive until it is finished, so the order in which they are released never matters.

mod removal;
mod update;

pub use removal::*;
pub use update::*;

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};

use tdmr::addr::PhysRange;
use tdmr::hotplug_gate::{
    AdmissionRule, CpuOnline, GateConfig, HotplugGate, InitTicket, MemoryAdmission, ModuleState,
    PreInitPolicy,
};

use crate::error::{
    ArgProblem, Detail, Fail, TDMR_ERR_BAD_RANGE, TDMR_ERR_INVALID_HANDLE, tdmr_code, tdmr_error,
};
use crate::ffi::{self, Handle, Out};
use crate::memory::{cmrs_from, tdmr_cmr};
use crate::plan::{plan, tdmr_plan};

/// Before initialization, admit only memory inside the CMRs (default).
pub const TDMR_PRE_INIT_CONVERTIBLE: u32 = 0;
/// Before initialization, admit any memory (as Linux does with TDX off; initialization then
/// fails on non-convertible memory unless the plan leaves it out).
pub const TDMR_PRE_INIT_ANY_MEMORY: u32 = 1;

/// The module has not been initialized.
pub const TDMR_STATE_UNINITIALIZED: u32 = 0;
/// Initialization is in progress (an init ticket is out).
pub const TDMR_STATE_INITIALIZING: u32 = 1;
/// The module is initialized: its TDX memory is frozen.
pub const TDMR_STATE_INITIALIZED: u32 = 2;
/// The last initialization failed; it may be retried.
pub const TDMR_STATE_FAILED: u32 = 3;
/// A runtime module update is in progress (an update ticket is out): hotplug answers busy,
/// TDX memory stays frozen.
pub const TDMR_STATE_UPDATING: u32 = 4;

/// How to build a gate. Fill with `tdmr_gate_options_default`, then change fields.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct tdmr_gate_options {
    /// `TDMR_PRE_INIT_CONVERTIBLE` (default) or `TDMR_PRE_INIT_ANY_MEMORY`.
    pub pre_init: u32,
    /// Most ranges of frozen TDX memory the gate holds (allocated up front, 16 bytes each;
    /// default 2048).
    pub snapshot_capacity: usize,
    /// `uint64_t` words of the section bitmap, the fast path of the initialized check
    /// (allocated up front; 0 turns it off; default 512).
    pub section_bitmap_words: usize,
    /// Most blocks of TDX metadata (PAMT blocks: three per TDMR) the gate holds for the
    /// removal check (allocated up front, 32 bytes each; default 256, enough for 64 TDMRs).
    /// A plan with more makes `tdmr_init_ticket_publish` answer
    /// `TDMR_ERR_METADATA_UNTRACKED`, and the gate then admits no removal.
    pub metadata_capacity: usize,
}

/// The gate's state now (each field read on its own: a snapshot only while nothing else
/// calls the gate).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct tdmr_gate_info {
    /// `TDMR_STATE_*`.
    pub state: u32,
    /// Hotplug operations in flight: memory additions and removals and CPU onlines admitted
    /// before initialization and not finished, last-CPU offlines under way, and after
    /// initialization CPU onlines and offlines under way.
    pub in_flight: u32,
    /// Guest KeyIDs counted in use.
    pub guest_keyids: u32,
    /// Ranges of frozen TDX memory (0 before initialization).
    pub frozen_ranges: usize,
    /// 1 while initialization is pending: a `tdmr_gate_begin_init` answered `TDMR_ERR_BUSY` or
    /// `TDMR_ERR_PACKAGE_OFFLINE`, and hotplug answers `TDMR_ERR_BUSY` until initialization
    /// begins or `tdmr_gate_cancel_init` withdraws it; else 0.
    pub init_pending: u32,
    /// 1 while a runtime update is pending: a `tdmr_gate_begin_update` answered
    /// `TDMR_ERR_BUSY`, and CPU hotplug answers `TDMR_ERR_BUSY` until the update begins or
    /// `tdmr_gate_cancel_update` withdraws it; else 0.
    pub update_pending: u32,
}

/// Opaque: a hotplug gate. Made by `tdmr_gate_new`; `tdmr_gate_free` drops the caller's
/// reference. Every `tdmr_gate_*` call may run on any number of threads at once.
#[derive(Debug)]
pub struct tdmr_gate {
    _opaque: [u8; 0],
}

/// Opaque: a memory addition admitted before initialization, which holds initialization off
/// until `tdmr_memory_admission_finish`. Owned by the caller; one thread at a time.
#[derive(Debug)]
pub struct tdmr_memory_admission {
    _opaque: [u8; 0],
}

/// Opaque: a CPU coming online. End with `tdmr_cpu_online_finish` (the CPU is up) or
/// `tdmr_cpu_online_abandon` (it stays offline). Owned by the caller; one thread at a time.
#[derive(Debug)]
pub struct tdmr_cpu_online {
    _opaque: [u8; 0],
}

/// Opaque: the right to end the one initialization in progress. End with
/// `tdmr_init_ticket_publish` or `tdmr_init_ticket_fail`. Owned by the caller; one thread at a
/// time (any thread).
#[derive(Debug)]
pub struct tdmr_init_ticket {
    _opaque: [u8; 0],
}

#[repr(C)]
pub(crate) struct GateHandle {
    magic: u64,
    /// Set once by `tdmr_gate_free`: the caller's reference is gone.
    released: AtomicBool,
    pub(crate) gate: HotplugGate,
}

// The header lets any thread call a gate at any time and end a token on any thread.
const _: () = {
    const fn shared<T: Send + Sync>() {}
    const fn sent<T: Send>() {}
    shared::<GateHandle>();
    sent::<Token<MemoryAdmission<'static>>>();
    sent::<Token<CpuOnline<'static>>>();
    sent::<Token<InitTicket<'static>>>();
    sent::<Token<tdmr::hotplug_gate::MemoryRemoval<'static>>>();
    sent::<Token<tdmr::hotplug_gate::UpdateTicket<'static>>>();
};

impl Handle for GateHandle {
    const MAGIC: u64 = u64::from_le_bytes(*b"tdmrgate");
    const KIND: &'static str = "tdmr_gate";
}

/// The gate behind a `tdmr_gate *` whose caller reference is still held.
///
/// # Safety
///
/// `ptr` is NULL or a `tdmr_gate_new` result whose memory is still allocated.
pub(crate) unsafe fn gate<'a>(
    ptr: *const tdmr_gate,
    name: &'static str,
) -> Result<&'a GateHandle, Fail> {
    // SAFETY: forwarded.
    let g = unsafe { ffi::handle(ptr.cast::<GateHandle>(), name) }?;
    if g.released.load(Ordering::Acquire) {
        return Err(Fail::arg(
            TDMR_ERR_INVALID_HANDLE,
            name,
            ArgProblem::Freed("tdmr_gate"),
        ));
    }
    Ok(g)
}

/// One more reference to the gate `g` (which `ptr` points at).
///
/// # Safety
///
/// `g` was returned by [`gate`] for `ptr`, in this call: the caller's reference is alive.
unsafe fn new_ref(g: &GateHandle) -> Arc<GateHandle> {
    let ptr: *const GateHandle = g;
    // SAFETY: `ptr` came from `Arc::into_raw` in `tdmr_gate_new`, and the caller's reference
    // (at least) keeps the count above zero during this call.
    unsafe {
        Arc::increment_strong_count(ptr);
        Arc::from_raw(ptr)
    }
}

/// A token that borrows the gate, kept with a reference to it so the gate outlives it.
#[repr(C)]
pub(crate) struct Token<T> {
    magic: u64,
    /// The borrow of `gate`'s gate; dropped first (see `Drop`).
    value: Option<T>,
    gate: core::mem::ManuallyDrop<Arc<GateHandle>>,
}

impl<T> Drop for Token<T> {
    fn drop(&mut self) {
        // The borrow ends before the reference that makes it valid is released.
        drop(self.value.take());
        // SAFETY: `gate` is taken exactly once, here, and never used again.
        let mut gate = unsafe { core::mem::ManuallyDrop::take(&mut self.gate) };
        if let Some(last) = Arc::get_mut(&mut gate) {
            // The last reference (the caller freed the gate before this token): mark it so
            // that a stale gate pointer reads as no gate while the memory stays mapped.
            last.magic = ffi::FREED;
        }
    }
}

impl Handle for Token<MemoryAdmission<'static>> {
    const MAGIC: u64 = u64::from_le_bytes(*b"tdmr.adm");
    const KIND: &'static str = "tdmr_memory_admission";
}

impl Handle for Token<CpuOnline<'static>> {
    const MAGIC: u64 = u64::from_le_bytes(*b"tdmr.cpu");
    const KIND: &'static str = "tdmr_cpu_online";
}

impl Handle for Token<InitTicket<'static>> {
    const MAGIC: u64 = u64::from_le_bytes(*b"tdmrinit");
    const KIND: &'static str = "tdmr_init_ticket";
}

/// Boxes `value`, a borrow of `g`'s gate stretched to `'static`, with its own reference to
/// the gate.
///
/// # Safety
///
/// As [`new_ref`]; and `value` borrows `g.gate` (nothing else). That makes the `'static` sound:
/// the token stores an `Arc` of the same allocation (whose contents never move) and drops the
/// value before it (see [`Token`]'s `Drop`); the value leaves the token only to be consumed
/// inside a call that still holds the token.
pub(crate) unsafe fn token<T>(g: &GateHandle, value: T) -> Result<*mut Token<T>, Fail>
where
    Token<T>: Handle,
{
    // SAFETY: forwarded.
    let arc = unsafe { new_ref(g) };
    ffi::try_box(Token {
        magic: <Token<T> as Handle>::MAGIC,
        value: Some(value),
        gate: core::mem::ManuallyDrop::new(arc),
    })
}

fn state_code(s: ModuleState) -> u32 {
    match s {
        ModuleState::Uninitialized => TDMR_STATE_UNINITIALIZED,
        ModuleState::Initializing => TDMR_STATE_INITIALIZING,
        ModuleState::Initialized => TDMR_STATE_INITIALIZED,
        ModuleState::Failed => TDMR_STATE_FAILED,
        ModuleState::Updating => TDMR_STATE_UPDATING,
    }
}

fn default_options() -> tdmr_gate_options {
    let c = GateConfig::new(0, 0);
    tdmr_gate_options {
        pre_init: TDMR_PRE_INIT_CONVERTIBLE,
        snapshot_capacity: c.snapshot_capacity,
        section_bitmap_words: c.section_bitmap_words,
        metadata_capacity: c.metadata_capacity,
    }
}

/// Writes the default gate options to `*out`.
///
/// # Safety
///
/// `out` points at a writable `tdmr_gate_options`; `err` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_gate_options_default(
    out: *mut tdmr_gate_options,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promise, forwarded.
        unsafe { Out::new(out, "out") }?.write(default_options());
        Ok(())
    })
}

/// A gate for a machine with these CMRs (at most 32), `cpus` CPUs numbered `0..cpus` in
/// `packages` packages numbered `0..packages` (both 0: no CPU tracking), in the uninitialized
/// state with every CPU offline: bring the boot CPUs online with `tdmr_gate_cpu_online`.
/// `options` NULL means `tdmr_gate_options_default`.
///
/// Returns `TDMR_OK` and `*out`, `TDMR_ERR_CMRS`, `TDMR_ERR_GATE_CONFIG` (packages must be 0
/// exactly when CPUs are, and at most the CPUs), `TDMR_ERR_INVALID_ARGUMENT`, or a pointer
/// error. The CMR array is copied.
///
/// Ownership: the caller holds one reference in `*out` and drops it with `tdmr_gate_free`.
///
/// # Safety
///
/// `cmrs` points at `cmr_count` readable `tdmr_cmr`s (or is NULL with 0); `options` is NULL or
/// readable; `out` points at a writable `tdmr_gate *`; `err` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_gate_new(
    cmrs: *const tdmr_cmr,
    cmr_count: usize,
    cpus: u32,
    packages: u32,
    options: *const tdmr_gate_options,
    out: *mut *mut tdmr_gate,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promises, forwarded to each check.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: as above.
        let cmrs = unsafe { cmrs_from(cmrs, cmr_count, "cmrs") }?;
        // SAFETY: as above.
        let o = unsafe { ffi::input_opt(options, "options") }?.unwrap_or_else(default_options);
        let pre_init = match o.pre_init {
            TDMR_PRE_INIT_CONVERTIBLE => PreInitPolicy::Convertible,
            TDMR_PRE_INIT_ANY_MEMORY => PreInitPolicy::AnyMemory,
            p => return Err(Fail::bad_value("options.pre_init", u64::from(p))),
        };
        let config = GateConfig::new(cpus, packages)
            .with_pre_init(pre_init)
            .with_snapshot_capacity(o.snapshot_capacity)
            .with_section_bitmap_words(o.section_bitmap_words)
            .with_metadata_capacity(o.metadata_capacity);
        let gate = HotplugGate::new(cmrs, config)?;
        let arc = Arc::new(GateHandle {
            magic: GateHandle::MAGIC,
            released: AtomicBool::new(false),
            gate,
        });
        out.write(Arc::into_raw(arc).cast_mut().cast::<tdmr_gate>());
        Ok(())
    })
}

/// Drops the caller's reference to the gate. The gate itself goes when the last outstanding
/// token is finished too. NULL, a second free of the same gate while tokens keep it alive, and
/// handles detectably not a gate are ignored.
///
/// # Safety
///
/// `gate` is NULL or a `tdmr_gate_new` result; no `tdmr_gate_*` call uses it meanwhile or
/// afterwards (its tokens stay usable).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_gate_free(gate: *mut tdmr_gate) {
    // SAFETY: forwarded.
    let Ok(g) = (unsafe { self::gate(gate, "gate") }) else {
        return;
    };
    if g.released.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: the pointer came from `Arc::into_raw`, and this is the caller's one reference
    // (the flag above lets it go once).
    let mut arc = unsafe { Arc::from_raw(gate.cast_const().cast::<GateHandle>()) };
    if let Some(last) = Arc::get_mut(&mut arc) {
        // Nobody else holds it: mark it so that a stale pointer reads as no gate while the
        // memory stays mapped.
        last.magic = ffi::FREED;
    }
}

/// The gate's state, in-flight count, guest KeyIDs, frozen ranges and pending flags, in
/// `*out`.
///
/// # Safety
///
/// `gate` is a live gate; `out` points at a writable `tdmr_gate_info`; `err` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_gate_get_info(
    gate: *const tdmr_gate,
    out: *mut tdmr_gate_info,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promises, forwarded.
        let g = &unsafe { self::gate(gate, "gate") }?.gate;
        // SAFETY: as above.
        let out = unsafe { Out::new(out, "out") }?;
        out.write(tdmr_gate_info {
            state: state_code(g.state()),
            in_flight: g.in_flight(),
            guest_keyids: g.guest_keyids(),
            frozen_ranges: g.frozen_memory().count(),
            init_pending: u32::from(g.init_pending()),
            update_pending: u32::from(g.update_pending()),
        });
        Ok(())
    })
}

/// Decides whether memory `[base, base + size)` may be added (hot-added or onlined).
///
/// - Uninitialized or failed: admitted iff inside the CMRs (or any memory with
///   `TDMR_PRE_INIT_ANY_MEMORY`); `*out` is then a token that holds initialization off
///   (`tdmr_gate_begin_init` answers `TDMR_ERR_BUSY`) until `tdmr_memory_admission_finish`:
///   add the memory to the kernel's map, then finish it (finish it too when the addition is
///   abandoned). Refused outside the CMRs with `TDMR_ERR_NOT_CONVERTIBLE`.
/// - Initialization pending (see `tdmr_gate_begin_init`) or in progress: `TDMR_ERR_BUSY`, at
///   once.
/// - Initialized (an update pending too): admitted iff every byte is TDX memory of the
///   published plan (in a TDMR's non-reserved space, TDX memory at init, no PAMT block), else
///   `TDMR_ERR_NOT_TDX_MEMORY`. Wait-free and allocation-free; `*out` is NULL (nothing to
///   finish, and finishing NULL is allowed).
/// - Updating: `TDMR_ERR_BUSY`, at once.
///
/// An empty or unaligned range, or one whose end overflows, is `TDMR_ERR_BAD_RANGE`. Refusals
/// name the first part of the range that broke the rule.
///
/// Ownership: a non-NULL `*out` belongs to the caller until `tdmr_memory_admission_finish`;
/// it keeps the gate alive.
///
/// # Safety
///
/// `gate` is a live gate; `out` points at a writable `tdmr_memory_admission *`; `err` is NULL
/// or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_gate_admit_memory(
    gate: *const tdmr_gate,
    base: u64,
    size: u64,
    out: *mut *mut tdmr_memory_admission,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promises, forwarded to each check.
        let g = unsafe { self::gate(gate, "gate") }?;
        // SAFETY: as above.
        let out = unsafe { Out::new(out, "out") }?;
        let range = PhysRange::from_base_size(base, size)
            .map_err(|e| Fail::new(TDMR_ERR_BAD_RANGE, Detail::Range("base + size", e)))?;
        let admission = g.gate.admit_memory(range)?;
        if admission.rule() == AdmissionRule::TdxMemory {
            // Holds nothing in flight: no token to keep.
            admission.finish();
            out.write(core::ptr::null_mut());
            return Ok(());
        }
        // The admission holds initialization off; carry it in a token. Dropping the borrow
        // first and admitting again through the token's own reference would open a window
        // for begin_init, so the existing admission is moved in.
        // SAFETY: `g` is live (checked above) for the whole call.
        let t = unsafe {
            token(
                g,
                // SAFETY: only the lifetime changes; the token's reference to the same gate
                // keeps it valid (see `token`).
                core::mem::transmute::<MemoryAdmission<'_>, MemoryAdmission<'static>>(admission),
            )
        }?;
        out.write(t.cast::<tdmr_memory_admission>());
        Ok(())
    })
}

/// Ends a memory addition: the memory is in the kernel's map, or the addition was abandoned.
/// NULL (what an admission after initialization gives) is allowed and does nothing.
///
/// Returns `TDMR_OK`, or `TDMR_ERR_INVALID_HANDLE` for what is detectably not a live
/// admission (then nothing happens).
///
/// # Safety
///
/// `admission` is NULL or a token from `tdmr_gate_admit_memory` not yet finished, used by no
/// other call now or later.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_memory_admission_finish(
    admission: *mut tdmr_memory_admission,
) -> tdmr_code {
    ffi::entry(core::ptr::null_mut(), || {
        if admission.is_null() {
            return Ok(());
        }
        let ptr = admission.cast::<Token<MemoryAdmission<'static>>>();
        // SAFETY: forwarded.
        unsafe { ffi::handle(ptr.cast_const(), "admission") }?;
        // SAFETY: a live admission token; the caller gives it up.
        drop(unsafe { ffi::take(ptr) });
        Ok(())
    })
}

/// Starts TDX module initialization: from uninitialized or failed, with no hotplug operation
/// in flight, and an online CPU in every package.
///
/// With hotplug operations in flight it answers `TDMR_ERR_BUSY` and marks initialization
/// *pending*: from then on memory additions and removals, CPU onlines into a package that
/// has an online CPU, and the offline of a package's last CPU answer `TDMR_ERR_BUSY`, so
/// those in flight can only drain, and a later call begins once they have (hotplug cannot
/// starve initialization). `TDMR_ERR_PACKAGE_OFFLINE` leaves it pending too (bring a CPU of
/// that package online, then call again). It stays pending until it begins or
/// `tdmr_gate_cancel_init` withdraws it: a caller that gives up must cancel, or hotplug stays
/// refused (`tdmr_gate_get_info` says `init_pending`).
///
/// While the ticket is out, memory additions, removals and CPU onlines are refused with
/// `TDMR_ERR_BUSY`, and so is the offline of the last CPU of a package; the memory map read
/// after this call holds every addition and removal admitted before it. Returns `TDMR_OK`
/// and `*out`; `TDMR_ERR_BUSY` (operations in flight, or another initialization in progress:
/// retry); `TDMR_ERR_STATE` (already initialized: the TDX memory is frozen);
/// `TDMR_ERR_PACKAGE_OFFLINE`; or a pointer error.
///
/// Ownership: `*out` belongs to the caller until `tdmr_init_ticket_publish` or
/// `tdmr_init_ticket_fail`; it keeps the gate alive.
///
/// # Safety
///
/// `gate` is a live gate; `out` points at a writable `tdmr_init_ticket *`; `err` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_gate_begin_init(
    gate: *const tdmr_gate,
    out: *mut *mut tdmr_init_ticket,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promises, forwarded to each check.
        let g = unsafe { self::gate(gate, "gate") }?;
        // SAFETY: as above.
        let out = unsafe { Out::new(out, "out") }?;
        let ticket = g.gate.begin_init()?;
        // SAFETY: `g` is live for the whole call.
        let t = unsafe {
            token(
                g,
                // SAFETY: only the lifetime changes (see `token`).
                core::mem::transmute::<InitTicket<'_>, InitTicket<'static>>(ticket),
            )
        }?;
        out.write(t.cast::<tdmr_init_ticket>());
        Ok(())
    })
}

/// Freezes the TDX memory of `plan` (made from the memory map read after
/// `tdmr_gate_begin_init`) and marks the module initialized. Call it once TDH.SYS.CONFIG
/// accepted the plan's configuration. `*frozen_ranges` (when not NULL) is how many disjoint
/// ranges of TDX memory the gate now admits.
///
/// Returns `TDMR_OK`, or `TDMR_ERR_SNAPSHOT_TOO_LARGE` (the gate is initialized all the same
/// and admits no memory: it fails closed). Both consume the ticket. On an argument error
/// (`plan` not a live plan, `frozen_ranges` misaligned, `ticket` not a live ticket) nothing
/// happens: the ticket stays the caller's and initialization stays in progress.
///
/// # Safety
///
/// `ticket` is a live ticket used by no other call now (or later, once consumed); `plan` a
/// live plan; `frozen_ranges` NULL or a writable `size_t`; `err` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_init_ticket_publish(
    ticket: *mut tdmr_init_ticket,
    plan: *const tdmr_plan,
    frozen_ranges: *mut usize,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        let ptr = ticket.cast::<Token<InitTicket<'static>>>();
        // SAFETY: the caller's promises, forwarded to each check.
        unsafe { ffi::handle(ptr.cast_const(), "ticket") }?;
        // SAFETY: as above.
        let p = unsafe { self::plan(plan, "plan") }?;
        // SAFETY: as above.
        let frozen = unsafe { Out::new_opt(frozen_ranges, "frozen_ranges") }?;
        // SAFETY: a live ticket; from here on it is consumed.
        let Some(mut t) = (unsafe { ffi::take(ptr) }) else {
            return Err(Fail::arg(
                TDMR_ERR_INVALID_HANDLE,
                "ticket",
                ArgProblem::NotAHandle("tdmr_init_ticket"),
            ));
        };
        let Some(init) = t.value.take() else {
            // A ticket is made with its value and consumed with its box: not reached.
            return Err(Fail::arg(
                TDMR_ERR_INVALID_HANDLE,
                "ticket",
                ArgProblem::NotAHandle("tdmr_init_ticket"),
            ));
        };
        let published = init.publish(&p.plan, &p.memory);
        drop(t);
        let ranges = published?;
        if let Some(f) = frozen {
            f.write(ranges);
        }
        Ok(())
    })
}

/// Marks the initialization failed (the pre-initialization rule applies again and
/// `tdmr_gate_begin_init` may be retried), and consumes the ticket.
///
/// Returns `TDMR_OK`, or `TDMR_ERR_NULL_POINTER` / `TDMR_ERR_INVALID_HANDLE` (nothing happens).
///
/// # Safety
///
/// `ticket` is a live ticket used by no other call now or later.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_init_ticket_fail(ticket: *mut tdmr_init_ticket) -> tdmr_code {
    ffi::entry(core::ptr::null_mut(), || {
        let ptr = ticket.cast::<Token<InitTicket<'static>>>();
        // SAFETY: forwarded.
        unsafe { ffi::handle(ptr.cast_const(), "ticket") }?;
        // SAFETY: a live ticket; the caller gives it up.
        let Some(mut t) = (unsafe { ffi::take(ptr) }) else {
            return Ok(());
        };
        // The ticket is consumed while the token's reference still holds the gate.
        if let Some(init) = t.value.take() {
            init.fail();
        }
        drop(t);
        Ok(())
    })
}

/// Withdraws a pending initialization (see `tdmr_gate_begin_init`): hotplug is admitted by
/// the pre-initialization rules again. `*was_pending` (when not NULL) is 1 when one was
/// pending, else 0. An initialization in progress is not affected (end it with its ticket),
/// nor is anything after initialization. Never blocks.
///
/// # Safety
///
/// `gate` is a live gate; `was_pending` is NULL or a writable `uint32_t`; `err` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_gate_cancel_init(
    gate: *const tdmr_gate,
    was_pending: *mut u32,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promises, forwarded to each check.
        let g = unsafe { self::gate(gate, "gate") }?;
        // SAFETY: as above.
        let was = unsafe { Out::new_opt(was_pending, "was_pending") }?;
        let cancelled = g.gate.cancel_init();
        if let Some(w) = was {
            w.write(u32::from(cancelled));
        }
        Ok(())
    })
}

/// Decides whether `cpu` of `package` may come online. `*lp_init_required` (when not NULL) is
/// 1 once the module is initialized: the CPU must run TDH.SYS.LP.INIT before any other
/// SEAMCALL; before that, initialization runs it on every online CPU. The online is in flight
/// until its token ends (before initialization, `tdmr_gate_begin_init` waits for it; after,
/// `tdmr_gate_begin_update` and `tdmr_gate_acquire_guest_keyid`).
///
/// Returns `TDMR_OK` and `*out`; `TDMR_ERR_BUSY` (initialization in progress, or pending
/// while the package has an online CPU already; an update pending or in progress; another
/// online/offline of this CPU); `TDMR_ERR_NO_SUCH_CPU`; `TDMR_ERR_CPU_STATE` (already online);
/// or a pointer error.
///
/// Ownership: `*out` belongs to the caller until `tdmr_cpu_online_finish` or
/// `tdmr_cpu_online_abandon`; it keeps the gate alive.
///
/// # Safety
///
/// `gate` is a live gate; `out` points at a writable `tdmr_cpu_online *`; `lp_init_required`
/// is NULL or a writable `uint32_t`; `err` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_gate_cpu_online(
    gate: *const tdmr_gate,
    cpu: u32,
    package: u32,
    out: *mut *mut tdmr_cpu_online,
    lp_init_required: *mut u32,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promises, forwarded to each check.
        let g = unsafe { self::gate(gate, "gate") }?;
        // SAFETY: as above.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: as above.
        let lp = unsafe { Out::new_opt(lp_init_required, "lp_init_required") }?;
        let online = g.gate.cpu_online(cpu, package)?;
        let required = online.lp_init_required();
        // SAFETY: `g` is live for the whole call.
        let t = unsafe {
            token(
                g,
                // SAFETY: only the lifetime changes (see `token`).
                core::mem::transmute::<CpuOnline<'_>, CpuOnline<'static>>(online),
            )
        }?;
        if let Some(lp) = lp {
            lp.write(u32::from(required));
        }
        out.write(t.cast::<tdmr_cpu_online>());
        Ok(())
    })
}

/// The CPU is up: count it online in its package, and consume the token.
///
/// Returns `TDMR_OK`, or `TDMR_ERR_NULL_POINTER` / `TDMR_ERR_INVALID_HANDLE` (nothing happens).
///
/// # Safety
///
/// `online` is a live token from `tdmr_gate_cpu_online`, used by no other call now or later.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_cpu_online_finish(online: *mut tdmr_cpu_online) -> tdmr_code {
    ffi::entry(core::ptr::null_mut(), || {
        let ptr = online.cast::<Token<CpuOnline<'static>>>();
        // SAFETY: forwarded.
        unsafe { ffi::handle(ptr.cast_const(), "online") }?;
        // SAFETY: a live token; the caller gives it up.
        let Some(mut t) = (unsafe { ffi::take(ptr) }) else {
            return Ok(());
        };
        // The online is finished while the token's reference still holds the gate.
        if let Some(o) = t.value.take() {
            o.finish();
        }
        drop(t);
        Ok(())
    })
}

/// The CPU did not come up: it stays offline. Consumes the token.
///
/// Returns `TDMR_OK`, or `TDMR_ERR_NULL_POINTER` / `TDMR_ERR_INVALID_HANDLE` (nothing happens).
///
/// # Safety
///
/// As `tdmr_cpu_online_finish`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_cpu_online_abandon(online: *mut tdmr_cpu_online) -> tdmr_code {
    ffi::entry(core::ptr::null_mut(), || {
        let ptr = online.cast::<Token<CpuOnline<'static>>>();
        // SAFETY: forwarded.
        unsafe { ffi::handle(ptr.cast_const(), "online") }?;
        // SAFETY: a live token; the caller gives it up. Dropping it abandons the online.
        drop(unsafe { ffi::take(ptr) });
        Ok(())
    })
}

/// Takes `cpu` of `package` offline in the gate's books, unless it is the last online CPU of
/// its package while initialization is pending or in progress (`TDMR_ERR_BUSY`) or guest
/// KeyIDs are in use (`TDMR_ERR_GUEST_KEYIDS_IN_USE`), or (any CPU) while a runtime update is
/// pending or in progress (`TDMR_ERR_BUSY`). Also `TDMR_ERR_NO_SUCH_CPU`, `TDMR_ERR_CPU_STATE`
/// (not online, or online in another package). Never blocks.
///
/// # Safety
///
/// `gate` is a live gate; `err` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_gate_cpu_offline(
    gate: *const tdmr_gate,
    cpu: u32,
    package: u32,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promises, forwarded.
        let g = unsafe { self::gate(gate, "gate") }?;
        Ok(g.gate.cpu_offline(cpu, package)?)
    })
}

/// Counts one more guest KeyID in use (from then on the last CPU of a package cannot go
/// offline). Needs an initialized module (`TDMR_ERR_STATE`) and an online CPU in every
/// package (`TDMR_ERR_PACKAGE_OFFLINE`); `TDMR_ERR_BUSY` while a CPU online or offline is
/// under way or an update runs; `TDMR_ERR_LIMIT_REACHED` at 2^32 - 1.
///
/// # Safety
///
/// `gate` is a live gate; `err` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_gate_acquire_guest_keyid(
    gate: *const tdmr_gate,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promises, forwarded.
        let g = unsafe { self::gate(gate, "gate") }?;
        Ok(g.gate.acquire_guest_keyid()?)
    })
}

/// Counts one guest KeyID fewer in use; `TDMR_ERR_STATE` when none is.
///
/// # Safety
///
/// `gate` is a live gate; `err` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_gate_release_guest_keyid(
    gate: *const tdmr_gate,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promises, forwarded.
        let g = unsafe { self::gate(gate, "gate") }?;
        Ok(g.gate.release_guest_keyid()?)
    })
}
