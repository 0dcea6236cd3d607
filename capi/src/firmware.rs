//! Firmware tables in: a `tdmr_memory` from what a C kernel has at boot — an E820 map or a UEFI
//! memory map, the ACPI SRAT's bytes, and the CMRs TDH.SYS.INFO reports — by the kernel's
//! rules (the library's `memmap::firmware`: whole pages from 1 MiB up, split at SRAT nodes,
//! hot-pluggable ranges kept apart, NUMA off when more than 1 MiB of RAM has no node).

use core::ffi::c_void;
use core::mem::{align_of, offset_of, size_of};

use tdmr::addr::RangeSet;
use tdmr::memmap::MapWarning;
use tdmr::memmap::firmware::{
    self as fw, E820Entry, Srat, parse_uefi_memory_map, ram_from_e820, ram_from_uefi,
};

use crate::error::{Fail, tdmr_code, tdmr_error};
use crate::ffi::{self, Out};
use crate::memory::{cmrs_from, new_handle, tdmr_cmr, tdmr_memory};

/// E820 type 1: usable RAM (the only type that is RAM).
pub const TDMR_E820_USABLE: u32 = 1;
/// E820 type 2: reserved.
pub const TDMR_E820_RESERVED: u32 = 2;
/// E820 type 3: ACPI tables, reclaimable after they are read.
pub const TDMR_E820_ACPI: u32 = 3;
/// E820 type 4: ACPI non-volatile storage.
pub const TDMR_E820_NVS: u32 = 4;
/// E820 type 5: unusable (bad) memory.
pub const TDMR_E820_UNUSABLE: u32 = 5;
/// E820 type 7: persistent memory.
pub const TDMR_E820_PMEM: u32 = 7;

/// Bytes of the fields of a UEFI memory descriptor: the least `descriptor_size` accepted.
pub const TDMR_EFI_MEMORY_DESCRIPTOR_MIN: usize = 40;

/// Warning bit: more than 1 MiB of RAM lies in no SRAT node, so (as x86 Linux does) NUMA is
/// off: all memory is on node 0.
pub const TDMR_MAP_WARN_NUMA_OFF: u32 = 1;
/// Warning bit: up to 1 MiB of TDX memory lies in no SRAT node; Linux keeps NUMA on and gives
/// it no node; the memory map puts it on node 0.
pub const TDMR_MAP_WARN_RAM_WITHOUT_NODE: u32 = 2;
/// Warning bit: a warning this header does not name yet.
pub const TDMR_MAP_WARN_OTHER: u32 = 0x8000_0000;

// The header's copies are the library's values.
const _: () = {
    assert!(TDMR_E820_USABLE == fw::E820_USABLE);
    assert!(TDMR_E820_RESERVED == fw::E820_RESERVED);
    assert!(TDMR_E820_ACPI == fw::E820_ACPI);
    assert!(TDMR_E820_NVS == fw::E820_NVS);
    assert!(TDMR_E820_UNUSABLE == fw::E820_UNUSABLE);
    assert!(TDMR_E820_PMEM == fw::E820_PMEM);
    assert!(TDMR_EFI_MEMORY_DESCRIPTOR_MIN == fw::EFI_MEMORY_DESCRIPTOR_MIN);
};

/// One E820 entry, laid out as the BIOS returns it and as Linux keeps it (`struct
/// boot_e820_entry` in `boot_params`, `struct e820_entry`): 20 bytes, packed, so a kernel
/// passes its table as it is. Entries may come in any order and overlap; where they overlap,
/// any other type wins over usable (the kernel's sanitising).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct tdmr_e820_entry {
    /// First byte.
    pub addr: u64,
    /// Bytes.
    pub size: u64,
    /// The type (`TDMR_E820_USABLE` = 1 is RAM; any other value is not).
    pub kind: u32,
}

const _: () = {
    assert!(size_of::<tdmr_e820_entry>() == 20);
    assert!(align_of::<tdmr_e820_entry>() == 1);
    assert!(offset_of!(tdmr_e820_entry, size) == 8);
    assert!(offset_of!(tdmr_e820_entry, kind) == 16);
};

/// The SRAT at `[srat, srat + srat_len)`: none for NULL with 0; anything else is parsed (a
/// non-NULL pointer with length 0 is a table too short to be one).
///
/// # Safety
///
/// As [`ffi::input`].
unsafe fn srat_from(srat: *const c_void, srat_len: usize) -> Result<Option<Srat>, Fail> {
    if srat.is_null() && srat_len == 0 {
        return Ok(None);
    }
    // SAFETY: forwarded.
    let bytes = unsafe { ffi::input(srat.cast::<u8>(), srat_len, "srat") }?;
    Ok(Some(Srat::parse(&bytes)?))
}

fn warning_bits(warnings: &[MapWarning]) -> u32 {
    warnings.iter().fold(0, |bits, w| {
        bits | match w {
            MapWarning::NumaOff { .. } => TDMR_MAP_WARN_NUMA_OFF,
            MapWarning::RamWithoutNode { .. } => TDMR_MAP_WARN_RAM_WITHOUT_NODE,
            _ => TDMR_MAP_WARN_OTHER,
        }
    })
}

/// The checked arguments every firmware constructor shares.
struct Tables {
    srat: Option<Srat>,
    cmrs: Option<tdmr::memmap::Cmrs>,
    out: Out<*mut tdmr_memory>,
    warnings: Option<Out<u32>>,
}

impl Tables {
    /// # Safety
    ///
    /// As the constructors' contracts for these arguments.
    unsafe fn new(
        srat: *const c_void,
        srat_len: usize,
        cmrs: *const tdmr_cmr,
        cmr_count: usize,
        out: *mut *mut tdmr_memory,
        warnings: *mut u32,
    ) -> Result<Self, Fail> {
        // SAFETY: forwarded to each check.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: as above.
        let warnings = unsafe { Out::new_opt(warnings, "warnings") }?;
        let cmrs = match cmr_count {
            0 => None,
            // SAFETY: as above.
            n => Some(unsafe { cmrs_from(cmrs, n, "cmrs") }?),
        };
        // SAFETY: as above.
        let srat = unsafe { srat_from(srat, srat_len) }?;
        Ok(Tables {
            srat,
            cmrs,
            out,
            warnings,
        })
    }

    /// TDX memory from `ram` and the SRAT, checked against the CMRs, into `*out`.
    fn finish(self, ram: &RangeSet) -> Result<(), Fail> {
        let memory = fw::memory_map(ram, self.srat.as_ref())?;
        let bits = warning_bits(memory.warnings());
        let handle = new_handle(memory.into_memory(), self.cmrs)?;
        self.out.write(handle);
        if let Some(w) = self.warnings {
            w.write(bits);
        }
        Ok(())
    }
}

/// Builds TDX memory from the firmware's E820 map and, optionally, its SRAT, by the kernel's
/// rules: RAM is what usable entries cover and no other entry does, in whole 4 KiB pages from
/// 1 MiB up, split at the SRAT's nodes (numbered as Linux numbers them: proximity domains in
/// the order the processor and then the memory affinity structures name them), RAM in a
/// hot-pluggable range kept a region of its own; when more than 1 MiB of RAM lies in no
/// node, NUMA is off and all memory is on node 0 (`TDMR_MAP_WARN_NUMA_OFF`).
///
/// - `entries`: `entry_count` E820 entries (20 bytes each, as in `boot_params`), any order;
///   NULL with 0 describes no RAM (`TDMR_ERR_MEMORY_MAP`).
/// - `srat`, `srat_len`: the whole ACPI SRAT, header included, exactly `srat_len` bytes (its
///   length field must say the same and its checksum hold). NULL and 0: no SRAT, one node.
/// - `cmrs`, `cmr_count`: the CMRs (at most 32) every byte of the memory must lie in; 0 makes
///   the memory itself stand in for them, as `tdmr_memory_new` does.
/// - `*warnings` (when not NULL): a bitmask of `TDMR_MAP_WARN_*`, 0 when the kernel would warn
///   about nothing; written on success.
///
/// Returns `TDMR_OK` and `*out`; `TDMR_ERR_MEMORY_TABLE` (an entry's end overflows; the message
/// names it by index); `TDMR_ERR_SRAT` (bad SRAT bytes, named by offset, or overlapping
/// affinity structures of different nodes, named by index: call again without the SRAT to go
/// on without NUMA information); `TDMR_ERR_MEMORY_MAP` (no RAM from 1 MiB up, RAM beyond 2^52,
/// an SRAT boundary inside a page, or memory outside the CMRs); `TDMR_ERR_CMRS`; or a pointer
/// error. The tables are copied: the caller may free them when the call returns.
///
/// Ownership: `*out` belongs to the caller, who frees it with `tdmr_memory_free`.
///
/// ```c
/// // A kernel with boot_params, the SRAT mapped, and the CMRs from TDH.SYS.INFO:
/// tdmr_memory *mem;  uint32_t warn;  tdmr_error err;
/// if (tdmr_memory_from_e820((const tdmr_e820_entry *)bp->e820_table, bp->e820_entries,
///                           srat, srat->length, cmrs, n_cmrs, &mem, &warn, &err) != TDMR_OK) {
///         pr_err("tdmr: %s: %s\n", tdmr_error_name(err.code), err.message);
///         return -EINVAL;
/// }
/// if (warn & TDMR_MAP_WARN_NUMA_OFF)
///         pr_warn("tdmr: RAM outside every SRAT node: NUMA off, one node\n");
/// ```
///
/// # Safety
///
/// `entries` points at `entry_count` readable `tdmr_e820_entry`s (or is NULL with 0), `srat`
/// at `srat_len` readable bytes (or is NULL with 0), `cmrs` at `cmr_count` `tdmr_cmr`s (or is
/// NULL with 0); nothing writes them during the call. `out` points at a writable
/// `tdmr_memory *`, `warnings` is NULL or a writable `uint32_t`, `err` is NULL or writable.
#[allow(clippy::too_many_arguments)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_memory_from_e820(
    entries: *const tdmr_e820_entry,
    entry_count: usize,
    srat: *const c_void,
    srat_len: usize,
    cmrs: *const tdmr_cmr,
    cmr_count: usize,
    out: *mut *mut tdmr_memory,
    warnings: *mut u32,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promises above, forwarded to each check.
        let tables = unsafe { Tables::new(srat, srat_len, cmrs, cmr_count, out, warnings) }?;
        // SAFETY: as above (the entry type is packed: alignment 1, any bit pattern valid).
        let raw = unsafe { ffi::input(entries, entry_count, "entries") }?;
        let entries: alloc::vec::Vec<E820Entry> = raw
            .iter()
            .map(|e| E820Entry::new(e.addr, e.size, e.kind))
            .collect();
        tables.finish(&ram_from_e820(&entries)?)
    })
}

/// Builds TDX memory from the firmware's UEFI memory map (as `GetMemoryMap` returns it) and,
/// optionally, its SRAT, by the same rules as `tdmr_memory_from_e820`. RAM is what loader
/// code and data, boot services code and data, conventional and unaccepted memory cover,
/// unless marked `EFI_MEMORY_SP` (specific purpose), and no other descriptor does — as the
/// kernel's EFI stub turns the map into E820 types.
///
/// - `map`, `map_len`: the descriptors, `map_len` bytes (a whole number of descriptors; no
///   alignment needed); NULL with 0 describes no RAM.
/// - `descriptor_size`: the stride `GetMemoryMap` returned (at least
///   `TDMR_EFI_MEMORY_DESCRIPTOR_MIN`, a multiple of 8; usually 48). Never assume
///   `sizeof(EFI_MEMORY_DESCRIPTOR)`.
/// - the SRAT, the CMRs and `*warnings` as in `tdmr_memory_from_e820`.
///
/// Returns as `tdmr_memory_from_e820`; `TDMR_ERR_MEMORY_TABLE` here names a bad descriptor size,
/// a length that is no whole number of descriptors, or a descriptor (by index) whose start is
/// not 4 KiB aligned or whose end overflows.
///
/// # Safety
///
/// `map` points at `map_len` readable bytes (or is NULL with 0); the rest as
/// `tdmr_memory_from_e820`.
#[allow(clippy::too_many_arguments)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_memory_from_uefi(
    map: *const c_void,
    map_len: usize,
    descriptor_size: usize,
    srat: *const c_void,
    srat_len: usize,
    cmrs: *const tdmr_cmr,
    cmr_count: usize,
    out: *mut *mut tdmr_memory,
    warnings: *mut u32,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promises above, forwarded to each check.
        let tables = unsafe { Tables::new(srat, srat_len, cmrs, cmr_count, out, warnings) }?;
        // SAFETY: as above.
        let bytes = unsafe { ffi::input(map.cast::<u8>(), map_len, "map") }?;
        let descriptors = parse_uefi_memory_map(&bytes, descriptor_size)?;
        tables.finish(&ram_from_uefi(&descriptors)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_warning_has_its_bit() {
        let first = tdmr::addr::PhysRange::new(0, 0x1000).unwrap();
        assert_eq!(warning_bits(&[]), 0);
        assert_eq!(
            warning_bits(&[MapWarning::NumaOff {
                uncovered: 1,
                first
            }]),
            TDMR_MAP_WARN_NUMA_OFF
        );
        assert_eq!(
            warning_bits(&[
                MapWarning::RamWithoutNode {
                    uncovered: 1,
                    first
                },
                MapWarning::NumaOff {
                    uncovered: 1,
                    first
                }
            ]),
            TDMR_MAP_WARN_NUMA_OFF | TDMR_MAP_WARN_RAM_WITHOUT_NODE
        );
    }
}
