//! `tdmr_memory`: TDX memory (regions, each on one NUMA node) and the CMRs, from arrays.

use alloc::vec::Vec;

use tdmr::memmap::{Cmr, Cmrs, MemoryMap, MemoryRegion};

use crate::error::{Fail, tdmr_code, tdmr_error};
use crate::ffi::{self, Handle, Out, OutArray};

/// One range of TDX memory on one NUMA node: `[base, base + size)`, 4 KiB aligned, below
/// 2^52. This is the RAM the kernel hands its page allocator (usable firmware memory from
/// 1 MiB up, split at NUMA node boundaries).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct tdmr_region {
    /// First byte.
    pub base: u64,
    /// Bytes (a non-zero multiple of 4 KiB).
    pub size: u64,
    /// The NUMA node holding it.
    pub node: u32,
}

/// One convertible memory range (CMR) as the TDX module reports it: `[base, base + size)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct tdmr_cmr {
    /// First byte (4 KiB aligned).
    pub base: u64,
    /// Bytes (a non-zero multiple of 4 KiB).
    pub size: u64,
}

/// A physical range `[base, base + size)` the library reports (PAMT blocks, excluded memory).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct tdmr_range {
    /// First byte.
    pub base: u64,
    /// Bytes.
    pub size: u64,
}

/// Opaque: a validated memory map and its CMRs. Made by `tdmr_memory_new`,
/// `tdmr_memory_from_e820` or `tdmr_memory_from_uefi`, freed by `tdmr_memory_free`;
/// immutable, so any number of threads may read it at once.
#[derive(Debug)]
pub struct tdmr_memory {
    _opaque: [u8; 0],
}

#[repr(C)]
pub(crate) struct MemoryHandle {
    magic: u64,
    pub(crate) map: MemoryMap,
    pub(crate) cmrs: Cmrs,
}

impl Handle for MemoryHandle {
    const MAGIC: u64 = u64::from_le_bytes(*b"tdmr.mem");
    const KIND: &'static str = "tdmr_memory";
}

/// The memory handle behind a `tdmr_memory *`.
///
/// # Safety
///
/// `ptr` is NULL or a pointer a `tdmr_memory_*` constructor returned that is still allocated.
pub(crate) unsafe fn memory<'a>(
    ptr: *const tdmr_memory,
    name: &'static str,
) -> Result<&'a MemoryHandle, Fail> {
    // SAFETY: forwarded.
    unsafe { ffi::handle(ptr.cast::<MemoryHandle>(), name) }
}

/// The CMR list from C: `count` CMRs at `ptr`, at most 32 (the module's slots).
///
/// # Safety
///
/// As [`ffi::input`].
pub(crate) unsafe fn cmrs_from(
    ptr: *const tdmr_cmr,
    count: usize,
    name: &'static str,
) -> Result<Cmrs, Fail> {
    // SAFETY: forwarded.
    let raw = unsafe { ffi::input(ptr, count, name) }?;
    Ok(Cmrs::new(
        raw.iter().map(|c| Cmr::new(c.base, c.size)).collect(),
    )?)
}

/// Builds a memory map from `region_count` regions and `cmr_count` CMRs.
///
/// Regions must be sorted by address, non-overlapping (abutting is fine: a node boundary
/// often falls there), 4 KiB aligned, non-empty and below 2^52; CMRs likewise, at most 32.
/// Every byte of memory must lie in a CMR. With `cmr_count` 0 (`cmrs` may then be NULL) the
/// memory itself stands in for the CMRs: a what-if analysis for maps that come without a
/// CMR list ("if all of this memory were convertible"), never what a TDX host should do.
///
/// Returns `TDMR_OK` and `*out`; `TDMR_ERR_MEMORY_MAP` (the message names the first bad
/// region and why), `TDMR_ERR_CMRS`, or a pointer error. The arrays are copied: the caller
/// may free them when the call returns.
///
/// Ownership: `*out` belongs to the caller, who frees it with `tdmr_memory_free` (after every
/// plan made from it may still be used: plans keep their own copy, so any order is fine).
///
/// # Safety
///
/// `regions` points at `region_count` readable `tdmr_region`s (or is NULL with 0), `cmrs` at
/// `cmr_count` `tdmr_cmr`s, `out` at a writable `tdmr_memory *`, `err` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_memory_new(
    regions: *const tdmr_region,
    region_count: usize,
    cmrs: *const tdmr_cmr,
    cmr_count: usize,
    out: *mut *mut tdmr_memory,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promises above, forwarded to each check.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: as above.
        let raw = unsafe { ffi::input(regions, region_count, "regions") }?;
        let map = MemoryMap::new(
            raw.iter()
                .map(|r| MemoryRegion::new(r.base, r.size, r.node))
                .collect(),
        )?;
        let cmrs = if cmr_count == 0 {
            None
        } else {
            // SAFETY: as above.
            Some(unsafe { cmrs_from(cmrs, cmr_count, "cmrs") }?)
        };
        out.write(new_handle(map, cmrs)?);
        Ok(())
    })
}

/// A memory handle for `map`, checked against `cmrs` (`None`: the memory itself stands in for
/// them).
pub(crate) fn new_handle(map: MemoryMap, cmrs: Option<Cmrs>) -> Result<*mut tdmr_memory, Fail> {
    let cmrs = cmrs.unwrap_or_else(|| Cmrs::covering(&map));
    map.check_within(&cmrs)?;
    let handle = ffi::try_box(MemoryHandle {
        magic: MemoryHandle::MAGIC,
        map,
        cmrs,
    })?;
    Ok(handle.cast::<tdmr_memory>())
}

/// Frees a memory map. NULL, and handles detectably not a live `tdmr_memory`, are ignored.
///
/// # Safety
///
/// `memory` is NULL or a `tdmr_memory_new`, `tdmr_memory_from_e820` or
/// `tdmr_memory_from_uefi` result not yet freed, used by no other call now or later.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_memory_free(memory: *mut tdmr_memory) {
    // Freeing runs no code of the library but drops; nothing here can panic.
    // SAFETY: forwarded.
    drop(unsafe { ffi::take(memory.cast::<MemoryHandle>()) });
}

/// The regions of the map, sorted by address (sizes asked first: with `out` NULL and
/// `capacity` 0, only `*count` is written).
///
/// `*count` is set to the number of regions on `TDMR_OK` and `TDMR_ERR_BUFFER_TOO_SMALL`
/// (then nothing else is written).
///
/// # Safety
///
/// `memory` is a live handle; `out` points at `capacity` writable `tdmr_region`s (or is NULL
/// with 0); `count` at a writable `size_t`; `err` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_memory_regions(
    memory: *const tdmr_memory,
    out: *mut tdmr_region,
    capacity: usize,
    count: *mut usize,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promises, forwarded.
        let m = unsafe { self::memory(memory, "memory") }?;
        // SAFETY: as above.
        let dst = unsafe { OutArray::new(out, capacity, 1, count, "out", "count") }?;
        let regions: Vec<tdmr_region> = m
            .map
            .regions()
            .iter()
            .map(|r| tdmr_region {
                base: r.base,
                size: r.size,
                node: r.node,
            })
            .collect();
        dst.write(&regions)
    })
}

/// The CMRs the map was checked against (the memory itself when none were given), sizes
/// asked first as in `tdmr_memory_regions`.
///
/// # Safety
///
/// As `tdmr_memory_regions`, with `tdmr_cmr` slots.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_memory_cmrs(
    memory: *const tdmr_memory,
    out: *mut tdmr_cmr,
    capacity: usize,
    count: *mut usize,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promises, forwarded.
        let m = unsafe { self::memory(memory, "memory") }?;
        // SAFETY: as above.
        let dst = unsafe { OutArray::new(out, capacity, 1, count, "out", "count") }?;
        let cmrs: Vec<tdmr_cmr> = m
            .cmrs
            .listed()
            .iter()
            .map(|c| tdmr_cmr {
                base: c.base,
                size: c.size,
            })
            .collect();
        dst.write(&cmrs)
    })
}

/// Bytes of TDX memory in the map, in `*bytes`.
///
/// # Safety
///
/// `memory` is a live handle; `bytes` points at a writable `uint64_t`; `err` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_memory_total_bytes(
    memory: *const tdmr_memory,
    bytes: *mut u64,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promises, forwarded.
        let m = unsafe { self::memory(memory, "memory") }?;
        // SAFETY: as above.
        let out = unsafe { Out::new(bytes, "bytes") }?;
        out.write(m.map.total_bytes());
        Ok(())
    })
}
