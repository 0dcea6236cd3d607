//! `tdmr_plan`: TDMRs and PAMTs over a `tdmr_memory`, with strategy, hole policy, the module's
//! limits and optionally the caller's PAMT allocator; its `TDMR_INFO` array written into
//! caller memory; the PAMT blocks the kernel must take from its page allocator.

use alloc::vec::Vec;
use core::ffi::c_void;
use core::mem::{align_of, offset_of, size_of};

use tdmr::addr::{PageSize, PhysRange};
use tdmr::layout::{HolePolicy, PamtOrigin, Plan, Planner, Strategy};
use tdmr::memmap::{MemoryMap, NodeId};
use tdmr::pamt::PamtAllocator;
use tdmr::sysinfo::TdxLimits;
use tdmr::tdx::abi::{
    TDMR_INFO_ALIGNMENT as LIB_TDMR_INFO_ALIGNMENT, TDMR_INFO_RESERVED_SLOTS as LIB_SLOTS,
    TdmrInfo, TdmrInfoPaArray,
};

use crate::error::{Fail, tdmr_code, tdmr_error};
use crate::ffi::{self, Handle, Out, OutArray};
use crate::memory::{memory, tdmr_memory, tdmr_range};

/// The optimal strategy (the default): least covered span, so least PAMT, then the fewest
/// node-mixing TDMRs, TDMRs and reserved areas; never fails where the Linux strategy plans.
pub const TDMR_STRATEGY_OPTIMAL: u32 = 0;
/// Linux mainline's construction, exactly, failure included ("reserved areas exhausted").
pub const TDMR_STRATEGY_LINUX: u32 = 1;

/// The strategy's own hole basis (Linux: memory; optimal: CMRs).
pub const TDMR_HOLES_DEFAULT: u32 = 0;
/// Reserve every gap between TDX memory regions inside a TDMR.
pub const TDMR_HOLES_MEMORY: u32 = 1;
/// Reserve only non-convertible gaps (outside the CMRs).
pub const TDMR_HOLES_CMR: u32 = 2;

/// Bytes of one `TDMR_INFO`.
pub const TDMR_INFO_SIZE: usize = 512;
/// Alignment the TDX module requires of each `TDMR_INFO` and of the PA array.
pub const TDMR_INFO_ALIGNMENT: usize = 512;
/// Reserved-area slots in one `TDMR_INFO`.
pub const TDMR_INFO_RESERVED_SLOTS: usize = 16;

/// The TDX module's memory-configuration limits (what TDH.SYS.RD reports). Fill with
/// `tdmr_limits_default` (TDX module 1.5) and change what the module says.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct tdmr_limits {
    /// MAX_TDMRS (at least 1).
    pub max_tdmrs: u16,
    /// MAX_RESERVED_PER_TDMR.
    pub max_reserved_per_tdmr: u16,
    /// PAMT_4K_ENTRY_SIZE in bytes (at least 1).
    pub pamt_4k_entry_size: u16,
    /// PAMT_2M_ENTRY_SIZE in bytes (at least 1).
    pub pamt_2m_entry_size: u16,
    /// PAMT_1G_ENTRY_SIZE in bytes (at least 1).
    pub pamt_1g_entry_size: u16,
    /// Dynamic PAMT: bits per 4 KiB page of the PAMT_4K bitmap (1 on current modules), or 0
    /// for static PAMT. At most 255.
    pub dynamic_pamt_bits: u16,
}

impl From<TdxLimits> for tdmr_limits {
    fn from(l: TdxLimits) -> Self {
        let narrow = |v: u64| u16::try_from(v).unwrap_or(u16::MAX);
        tdmr_limits {
            max_tdmrs: narrow(l.max_tdmrs() as u64),
            max_reserved_per_tdmr: narrow(l.max_reserved_per_tdmr() as u64),
            pamt_4k_entry_size: narrow(l.pamt_entry_size(PageSize::Size4K)),
            pamt_2m_entry_size: narrow(l.pamt_entry_size(PageSize::Size2M)),
            pamt_1g_entry_size: narrow(l.pamt_entry_size(PageSize::Size1G)),
            dynamic_pamt_bits: l.dynamic_pamt_bits().map_or(0, u16::from),
        }
    }
}

impl tdmr_limits {
    /// The library's limits, refusing zero TDMRs, zero entry sizes and bitmap bits above 255.
    pub(crate) fn to_limits(self, name: &'static str) -> Result<TdxLimits, Fail> {
        let limits = TdxLimits::new(
            self.max_tdmrs,
            self.max_reserved_per_tdmr,
            [
                self.pamt_4k_entry_size,
                self.pamt_2m_entry_size,
                self.pamt_1g_entry_size,
            ],
        )?;
        match self.dynamic_pamt_bits {
            0 => Ok(limits),
            bits => {
                let bits =
                    u8::try_from(bits).map_err(|_| Fail::bad_value(name, u64::from(bits)))?;
                Ok(limits.with_dynamic_pamt(bits)?)
            }
        }
    }
}

/// The caller's PAMT allocator (NULL: none). Asked for one PAMT block: `size` bytes (a multiple of 4 KiB), 4 KiB
/// aligned, preferably on NUMA node `node`. On success it stores the block's physical base in
/// `*base` and returns non-zero; it returns 0 when it has no such block.
///
/// Contract (the library's `unsafe trait PamtAllocator`): every block it returns is out of
/// every other use (out of the kernel's page allocator, not mapped for or reachable by
/// anything else, not shared with devices) and stays so for the life of the TDX module once
/// TDH.SYS.CONFIG accepted a configuration holding it, or until the caller frees the plan
/// without configuring the module. Two blocks never overlap. The planner checks size,
/// alignment, that the block is TDX memory and overlaps no other PAMT, and fails the plan
/// with `TDMR_ERR_PAMT_ALLOCATION` otherwise, but it cannot check the promise about the
/// memory's use. The function must return (not unwind or longjmp) and must not call back
/// into the plan being made.
pub type tdmr_pamt_alloc_fn =
    Option<unsafe extern "C" fn(ctx: *mut c_void, size: u64, node: u32, base: *mut u64) -> i32>;

/// How to plan. Fill with `tdmr_plan_options_default`, then change fields.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tdmr_plan_options {
    /// `TDMR_STRATEGY_OPTIMAL` (default) or `TDMR_STRATEGY_LINUX`.
    pub strategy: u32,
    /// `TDMR_HOLES_DEFAULT`, `TDMR_HOLES_MEMORY` or `TDMR_HOLES_CMR`.
    pub holes: u32,
    /// 1: with the optimal strategy, when no layout covers all TDX memory, return the one
    /// that leaves the least memory out (see `tdmr_plan_excluded`: the kernel must then keep
    /// it from its page allocator). 0 (default): memory is never left out.
    pub allow_exclusions: u32,
    /// The module's limits.
    pub limits: tdmr_limits,
    /// NULL (default): the planner places the PAMT blocks in TDX memory itself (see
    /// `tdmr_plan_pamt_ranges`: the kernel must take them from its page allocator before
    /// TDH.SYS.CONFIG). Otherwise every block comes from this allocator.
    pub pamt_alloc: tdmr_pamt_alloc_fn,
    /// Passed to `pamt_alloc` as is.
    pub pamt_alloc_ctx: *mut c_void,
}

/// What a plan is: counts and totals, and how it was made.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct tdmr_plan_summary {
    /// TDMRs (the `TDMR_INFO` count).
    pub tdmr_count: usize,
    /// Reserved areas over all TDMRs.
    pub reserved_areas: usize,
    /// Most reserved areas in one TDMR.
    pub max_reserved_in_one_tdmr: usize,
    /// TDMRs holding memory of more than one NUMA node.
    pub node_mixing_tdmrs: usize,
    /// Bytes of PAMT over all TDMRs (Linux prints this / 1024 as "KB allocated for PAMT").
    pub pamt_bytes: u64,
    /// Bytes the TDMRs span.
    pub covered_bytes: u64,
    /// Bytes of TDX memory left out (only with `allow_exclusions`).
    pub excluded_bytes: u64,
    /// The strategy used (`TDMR_STRATEGY_*`; `UINT32_MAX` for one this header does not name).
    pub strategy: u32,
    /// The hole basis used (`TDMR_HOLES_MEMORY` or `TDMR_HOLES_CMR`).
    pub holes: u32,
    /// 1 when the planner carved the PAMT blocks out of TDX memory (the kernel must take them
    /// from its page allocator), 0 when the caller's `pamt_alloc` supplied them.
    pub pamt_carved: u32,
    /// The limits planned against.
    pub limits: tdmr_limits,
}

/// One reserved area of a `TDMR_INFO`: `size` bytes at `offset` from the TDMR's base; size 0
/// is a null entry, and every entry after a null one is null too.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct tdmr_reserved_area {
    /// Offset from the TDMR base.
    pub offset: u64,
    /// Bytes; 0 marks a null entry.
    pub size: u64,
}

/// `TDMR_INFO` exactly as TDH.SYS.CONFIG reads it: 512 bytes, little-endian, and every one
/// the module is given must be 512-byte aligned (`TDMR_INFO_ALIGNMENT`; this type's own
/// alignment is only 8, so allocate arrays of it with that alignment).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct tdmr_tdmr_info {
    /// TDMR base (1 GiB aligned).
    pub base: u64,
    /// TDMR size (a multiple of 1 GiB).
    pub size: u64,
    /// PAMT_1G base.
    pub pamt_1g_base: u64,
    /// PAMT_1G size.
    pub pamt_1g_size: u64,
    /// PAMT_2M base.
    pub pamt_2m_base: u64,
    /// PAMT_2M size.
    pub pamt_2m_size: u64,
    /// PAMT_4K base (the page bitmap with Dynamic PAMT).
    pub pamt_4k_base: u64,
    /// PAMT_4K size.
    pub pamt_4k_size: u64,
    /// Reserved areas, sorted by offset, nulls last.
    pub reserved_areas: [tdmr_reserved_area; TDMR_INFO_RESERVED_SLOTS],
    /// Zero; the module does not read it.
    pub padding: [u8; 192],
}

const _: () = {
    assert!(size_of::<tdmr_tdmr_info>() == TDMR_INFO_SIZE);
    assert!(TDMR_INFO_ALIGNMENT == LIB_TDMR_INFO_ALIGNMENT);
    assert!(TDMR_INFO_RESERVED_SLOTS == LIB_SLOTS);
    assert!(offset_of!(tdmr_tdmr_info, pamt_4k_size) == 56);
    assert!(offset_of!(tdmr_tdmr_info, reserved_areas) == 64);
    assert!(offset_of!(tdmr_tdmr_info, padding) == 320);
    assert!(align_of::<tdmr_tdmr_info>() == 8);
};

impl From<&TdmrInfo> for tdmr_tdmr_info {
    fn from(t: &TdmrInfo) -> Self {
        let mut reserved_areas = [tdmr_reserved_area::default(); TDMR_INFO_RESERVED_SLOTS];
        for (dst, src) in reserved_areas.iter_mut().zip(t.reserved.iter()) {
            *dst = tdmr_reserved_area {
                offset: src.offset,
                size: src.size,
            };
        }
        tdmr_tdmr_info {
            base: t.base,
            size: t.size,
            pamt_1g_base: t.pamt_1g_base,
            pamt_1g_size: t.pamt_1g_size,
            pamt_2m_base: t.pamt_2m_base,
            pamt_2m_size: t.pamt_2m_size,
            pamt_4k_base: t.pamt_4k_base,
            pamt_4k_size: t.pamt_4k_size,
            reserved_areas,
            padding: [0; 192],
        }
    }
}

impl From<&tdmr_tdmr_info> for TdmrInfo {
    fn from(c: &tdmr_tdmr_info) -> Self {
        let mut t = TdmrInfo::ZERO;
        t.base = c.base;
        t.size = c.size;
        t.pamt_1g_base = c.pamt_1g_base;
        t.pamt_1g_size = c.pamt_1g_size;
        t.pamt_2m_base = c.pamt_2m_base;
        t.pamt_2m_size = c.pamt_2m_size;
        t.pamt_4k_base = c.pamt_4k_base;
        t.pamt_4k_size = c.pamt_4k_size;
        for (dst, src) in t.reserved.iter_mut().zip(c.reserved_areas.iter()) {
            dst.offset = src.offset;
            dst.size = src.size;
        }
        t
    }
}

/// Opaque: a plan. Made by `tdmr_plan_new`, freed by `tdmr_plan_free`; immutable, so any
/// number of threads may read it at once.
#[derive(Debug)]
pub struct tdmr_plan {
    _opaque: [u8; 0],
}

#[repr(C)]
pub(crate) struct PlanHandle {
    magic: u64,
    pub(crate) plan: Plan,
    /// The memory the plan was made from (what the hotplug gate freezes).
    pub(crate) memory: MemoryMap,
}

// The header lets any number of threads read a plan (and a memory map) at once.
const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<PlanHandle>();
    shared::<crate::memory::MemoryHandle>();
};

impl Handle for PlanHandle {
    const MAGIC: u64 = u64::from_le_bytes(*b"tdmrplan");
    const KIND: &'static str = "tdmr_plan";
}

/// The plan handle behind a `tdmr_plan *`.
///
/// # Safety
///
/// `ptr` is NULL or a pointer `tdmr_plan_new` returned that is still allocated.
pub(crate) unsafe fn plan<'a>(
    ptr: *const tdmr_plan,
    name: &'static str,
) -> Result<&'a PlanHandle, Fail> {
    // SAFETY: forwarded.
    unsafe { ffi::handle(ptr.cast::<PlanHandle>(), name) }
}

/// The caller's allocator as the library's `PamtAllocator`.
struct CallerAllocator {
    alloc: unsafe extern "C" fn(ctx: *mut c_void, size: u64, node: u32, base: *mut u64) -> i32,
    ctx: *mut c_void,
}

// SAFETY: `tdmr_pamt_alloc_fn`'s contract in the header is this trait's: every block returned
// is out of every other use until the module is done with it, and blocks never overlap. The
// C caller who sets `pamt_alloc` makes that promise; a block that is not the size asked for,
// not aligned, not TDX memory or overlapping is refused by the planner.
unsafe impl PamtAllocator for CallerAllocator {
    fn allocate(&mut self, size: u64, node: NodeId) -> Option<PhysRange> {
        let mut base = 0u64;
        // SAFETY: the caller gave this function pointer and context for exactly this call;
        // `base` is a valid, aligned `u64` on our stack.
        let got = unsafe { (self.alloc)(self.ctx, size, node, &mut base) };
        if got == 0 {
            return None;
        }
        // A block whose end overflows is no block (the planner reports the allocation failed).
        PhysRange::from_base_size(base, size).ok()
    }
}

fn default_options() -> tdmr_plan_options {
    tdmr_plan_options {
        strategy: TDMR_STRATEGY_OPTIMAL,
        holes: TDMR_HOLES_DEFAULT,
        allow_exclusions: 0,
        limits: TdxLimits::DEFAULT.into(),
        pamt_alloc: None,
        pamt_alloc_ctx: core::ptr::null_mut(),
    }
}

fn strategy_code(s: Strategy) -> u32 {
    match s {
        Strategy::Linux => TDMR_STRATEGY_LINUX,
        Strategy::Optimal => TDMR_STRATEGY_OPTIMAL,
        // A strategy this header does not name yet.
        _ => u32::MAX,
    }
}

fn holes_code(h: HolePolicy) -> u32 {
    match h {
        HolePolicy::Memory => TDMR_HOLES_MEMORY,
        HolePolicy::Cmr => TDMR_HOLES_CMR,
    }
}

/// Writes TDX module 1.5's limits (64 TDMRs, 16 reserved areas per TDMR, 16-byte PAMT
/// entries, static PAMT) to `*out`.
///
/// # Safety
///
/// `out` points at a writable `tdmr_limits`; `err` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_limits_default(
    out: *mut tdmr_limits,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promise, forwarded.
        unsafe { Out::new(out, "out") }?.write(TdxLimits::DEFAULT.into());
        Ok(())
    })
}

/// Writes the default options to `*out`: optimal strategy, its hole basis, no exclusions,
/// `tdmr_limits_default`'s limits, PAMT placed by the planner.
///
/// # Safety
///
/// `out` points at a writable `tdmr_plan_options`; `err` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_plan_options_default(
    out: *mut tdmr_plan_options,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promise, forwarded.
        unsafe { Out::new(out, "out") }?.write(default_options());
        Ok(())
    })
}

/// Plans TDMRs and PAMTs over `memory` inside its CMRs. `options` NULL means the defaults
/// (`tdmr_plan_options_default`).
///
/// Returns `TDMR_OK` and `*out`; `TDMR_ERR_NO_LAYOUT` when no layout fits the limits (with the
/// Linux strategy, Linux's own failure: "TDMR [0x0, 0x80000000): reserved areas exhausted");
/// `TDMR_ERR_PAMT_ALLOCATION` when `pamt_alloc` failed; `TDMR_ERR_LIMITS` or
/// `TDMR_ERR_INVALID_ARGUMENT` for bad options; or a pointer error. Deterministic: the same
/// input gives the same plan. Cost grows with the number of regions, not with the memory's
/// size.
///
/// Ownership: `*out` belongs to the caller, who frees it with `tdmr_plan_free`. The plan keeps
/// its own copy of the memory map, so `memory` may be freed first.
///
/// # Safety
///
/// `memory` is a live handle; `options` is NULL or points at a readable `tdmr_plan_options`
/// (whose `pamt_alloc`, when set, follows `tdmr_pamt_alloc_fn`'s contract); `out` points at a
/// writable `tdmr_plan *`; `err` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_plan_new(
    memory: *const tdmr_memory,
    options: *const tdmr_plan_options,
    out: *mut *mut tdmr_plan,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promises, forwarded to each check.
        let m = unsafe { self::memory(memory, "memory") }?;
        // SAFETY: as above.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: as above.
        let o = unsafe { ffi::input_opt(options, "options") }?.unwrap_or_else(default_options);
        let strategy = match o.strategy {
            TDMR_STRATEGY_OPTIMAL => Strategy::Optimal,
            TDMR_STRATEGY_LINUX => Strategy::Linux,
            s => return Err(Fail::bad_value("options.strategy", u64::from(s))),
        };
        let mut planner = Planner::new()
            .with_strategy(strategy)
            .with_limits(o.limits.to_limits("options.limits.dynamic_pamt_bits")?);
        planner = match o.holes {
            TDMR_HOLES_DEFAULT => planner,
            TDMR_HOLES_MEMORY => planner.with_holes(HolePolicy::Memory),
            TDMR_HOLES_CMR => planner.with_holes(HolePolicy::Cmr),
            h => return Err(Fail::bad_value("options.holes", u64::from(h))),
        };
        planner = match o.allow_exclusions {
            0 => planner,
            1 => planner.with_exclusions(true),
            x => return Err(Fail::bad_value("options.allow_exclusions", u64::from(x))),
        };
        let plan = match o.pamt_alloc {
            None => planner.plan(&m.map, &m.cmrs)?,
            Some(alloc) => {
                let mut a = CallerAllocator {
                    alloc,
                    ctx: o.pamt_alloc_ctx,
                };
                planner.plan_with(&m.map, &m.cmrs, &mut a)?
            }
        };
        let handle = ffi::try_box(PlanHandle {
            magic: PlanHandle::MAGIC,
            plan,
            memory: m.map.clone(),
        })?;
        out.write(handle.cast::<tdmr_plan>());
        Ok(())
    })
}

/// Frees a plan. NULL, and handles detectably not a live `tdmr_plan`, are ignored.
///
/// # Safety
///
/// `plan` is NULL or a `tdmr_plan_new` result not yet freed, used by no other call now or
/// later.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_plan_free(plan: *mut tdmr_plan) {
    // SAFETY: forwarded.
    drop(unsafe { ffi::take(plan.cast::<PlanHandle>()) });
}

/// Counts, totals and how the plan was made, in `*out`.
///
/// # Safety
///
/// `plan` is a live handle; `out` points at a writable `tdmr_plan_summary`; `err` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_plan_get_summary(
    plan: *const tdmr_plan,
    out: *mut tdmr_plan_summary,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promises, forwarded.
        let p = &unsafe { self::plan(plan, "plan") }?.plan;
        // SAFETY: as above.
        let out = unsafe { Out::new(out, "out") }?;
        out.write(tdmr_plan_summary {
            tdmr_count: p.tdmrs().len(),
            reserved_areas: p.reserved_area_count(),
            max_reserved_in_one_tdmr: p.max_reserved_in_one_tdmr(),
            node_mixing_tdmrs: p.node_mixing_tdmrs(),
            pamt_bytes: p.pamt_bytes(),
            covered_bytes: p.covered_bytes(),
            excluded_bytes: p.excluded_bytes(),
            strategy: strategy_code(p.strategy()),
            holes: holes_code(p.holes()),
            pamt_carved: u32::from(p.pamt_origin() == PamtOrigin::Carved),
            limits: (*p.limits()).into(),
        });
        Ok(())
    })
}

/// The plan's `TDMR_INFO` array, in TDMR order, written into `out` (sizes asked first: with
/// `out` NULL and `capacity` 0, only `*count` is written).
///
/// `out` must be 512-byte aligned (`TDMR_ERR_MISALIGNED` otherwise), so every `TDMR_INFO` in
/// it is; `capacity` counts `tdmr_tdmr_info` slots. `*count` is set to the number of TDMRs on
/// `TDMR_OK` and on `TDMR_ERR_BUFFER_TOO_SMALL` (then nothing else is written). Hand the
/// module each entry's physical address (`tdmr_tdmr_info_pa_array`).
///
/// Ownership: `out` is the caller's memory; the library writes it during the call only.
///
/// # Safety
///
/// `plan` is a live handle; `out` points at `capacity` writable `tdmr_tdmr_info`s (or is NULL
/// with 0); `count` at a writable `size_t`; `err` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_plan_tdmr_infos(
    plan: *const tdmr_plan,
    out: *mut tdmr_tdmr_info,
    capacity: usize,
    count: *mut usize,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promises, forwarded.
        let p = &unsafe { self::plan(plan, "plan") }?.plan;
        // SAFETY: as above.
        let dst =
            unsafe { OutArray::new(out, capacity, TDMR_INFO_ALIGNMENT, count, "out", "count") }?;
        let infos: Vec<tdmr_tdmr_info> = p.tdmr_infos()?.iter().map(Into::into).collect();
        dst.write(&infos)
    })
}

/// The PAMT blocks of the plan, merged and sorted (sizes asked first, as
/// `tdmr_memory_regions`). When the planner carved them (`pamt_carved`), these are TDX memory
/// the kernel must take out of its page allocator before TDH.SYS.CONFIG.
///
/// # Safety
///
/// `plan` is a live handle; `out` points at `capacity` writable `tdmr_range`s (or is NULL
/// with 0); `count` at a writable `size_t`; `err` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_plan_pamt_ranges(
    plan: *const tdmr_plan,
    out: *mut tdmr_range,
    capacity: usize,
    count: *mut usize,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promises, forwarded.
        let p = &unsafe { self::plan(plan, "plan") }?.plan;
        // SAFETY: as above.
        let dst = unsafe { OutArray::new(out, capacity, 1, count, "out", "count") }?;
        let ranges: Vec<tdmr_range> = p
            .pamt_ranges()
            .iter()
            .map(|r| tdmr_range {
                base: r.start(),
                size: r.size(),
            })
            .collect();
        dst.write(&ranges)
    })
}

/// TDX memory the plan leaves out (only with `allow_exclusions`): the kernel must keep it
/// from its page allocator. Sizes asked first, as `tdmr_memory_regions`.
///
/// # Safety
///
/// As `tdmr_plan_pamt_ranges`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_plan_excluded(
    plan: *const tdmr_plan,
    out: *mut tdmr_range,
    capacity: usize,
    count: *mut usize,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promises, forwarded.
        let p = &unsafe { self::plan(plan, "plan") }?.plan;
        // SAFETY: as above.
        let dst = unsafe { OutArray::new(out, capacity, 1, count, "out", "count") }?;
        let ranges: Vec<tdmr_range> = p
            .excluded()
            .iter()
            .map(|r| tdmr_range {
                base: r.start(),
                size: r.size(),
            })
            .collect();
        dst.write(&ranges)
    })
}

/// The array of `TDMR_INFO` physical addresses TDH.SYS.CONFIG takes in RCX, from `pa_count`
/// addresses: `max(roundup_pow_of_two(8 * pa_count), 512)` bytes, zero after the last
/// address, written into `out` (512-byte aligned, `capacity` `uint64_t` slots; sizes asked
/// first: `*count` is the number of slots needed, on `TDMR_OK` and
/// `TDMR_ERR_BUFFER_TOO_SMALL`).
///
/// Returns `TDMR_ERR_ABI` when an address is not 512-byte aligned (the message names it).
///
/// # Safety
///
/// `pas` points at `pa_count` readable `uint64_t`s (or is NULL with 0); `out` at `capacity`
/// writable `uint64_t`s (or NULL with 0); `count` at a writable `size_t`; `err` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_tdmr_info_pa_array(
    pas: *const u64,
    pa_count: usize,
    out: *mut u64,
    capacity: usize,
    count: *mut usize,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promises, forwarded to each check.
        let pas = unsafe { ffi::input(pas, pa_count, "pas") }?;
        // SAFETY: as above.
        let dst =
            unsafe { OutArray::new(out, capacity, TDMR_INFO_ALIGNMENT, count, "out", "count") }?;
        let array = TdmrInfoPaArray::new(&pas)?;
        let words: Vec<u64> = array
            .to_bytes()
            .chunks_exact(8)
            .map(|c| {
                let mut w = [0u8; 8];
                w.copy_from_slice(c);
                u64::from_le_bytes(w)
            })
            .collect();
        dst.write(&words)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tdmr::tdx::abi::TdmrReservedEntry;

    #[test]
    fn the_c_struct_holds_the_bytes_the_module_reads() {
        let mut t = TdmrInfo::ZERO;
        let mut x = 0x1000u64;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x
        };
        t.base = next();
        t.size = next();
        t.pamt_1g_base = next();
        t.pamt_1g_size = next();
        t.pamt_2m_base = next();
        t.pamt_2m_size = next();
        t.pamt_4k_base = next();
        t.pamt_4k_size = next();
        for e in t.reserved.iter_mut() {
            *e = TdmrReservedEntry {
                offset: next(),
                size: next(),
            };
        }
        let c = tdmr_tdmr_info::from(&t);
        // SAFETY: `tdmr_tdmr_info` is repr(C) of integers with no padding bytes (asserted
        // layout above), so viewing it as 512 bytes reads initialised memory.
        let bytes: &[u8; TDMR_INFO_SIZE] = unsafe { &*(&raw const c).cast() };
        assert_eq!(bytes, &t.to_bytes());
        assert_eq!(TdmrInfo::from(&c), t);
    }

    #[test]
    fn limits_round_trip_and_refuse_what_the_library_refuses() {
        let l = TdxLimits::DEFAULT.with_dynamic_pamt(1).unwrap();
        assert_eq!(tdmr_limits::from(l).to_limits("x").unwrap(), l);
        let mut c = tdmr_limits::from(TdxLimits::DEFAULT);
        c.dynamic_pamt_bits = 256;
        assert!(c.to_limits("x").is_err());
        c.dynamic_pamt_bits = 0;
        c.max_tdmrs = 0;
        assert!(c.to_limits("x").is_err());
    }
}
