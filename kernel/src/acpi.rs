//! The ACPI tables the firmware left in memory: RSDP (from the UEFI configuration table) →
//! XSDT → the SRAT, returned as its bytes for `tdmr::memmap::firmware::Srat::parse`, which
//! checks everything inside. Here only the walk to it: signatures, lengths and checksums of
//! the RSDP and XSDT (ACPI 6.5, §5.2.5 and §5.2.8). UEFI identity-maps physical memory, so a
//! table's physical address is where it can be read.

use alloc::vec::Vec;
use core::fmt;

/// Why the SRAT could not be found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// The configuration table has no ACPI 2.0 entry.
    NoRsdp,
    /// The RSDP's signature, revision or checksum is wrong.
    BadRsdp,
    /// The XSDT's signature, length or checksum is wrong.
    BadXsdt {
        /// Its address.
        at: u64,
    },
    /// No table of the XSDT is an SRAT.
    NoSrat,
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AcpiError::NoRsdp => f.write_str("no ACPI 2.0 RSDP in the UEFI configuration table"),
            AcpiError::BadRsdp => {
                f.write_str("the RSDP's signature, revision or checksum is wrong")
            }
            AcpiError::BadXsdt { at } => write!(f, "the XSDT at {at:#x} is malformed"),
            AcpiError::NoSrat => f.write_str("no SRAT among the ACPI tables (no NUMA information)"),
        }
    }
}

/// Bytes of an ACPI table header.
const HEADER: usize = 36;

/// A copy of `len` bytes of firmware memory at `pa`.
///
/// # Safety
///
/// `[pa, pa + len)` must be firmware memory that is mapped and not written while it is read:
/// an ACPI table, whose address and length the firmware published.
unsafe fn read(pa: u64, len: usize) -> Vec<u8> {
    // SAFETY: the caller's contract; UEFI identity-maps physical memory.
    unsafe { core::slice::from_raw_parts(pa as usize as *const u8, len) }.to_vec()
}

fn sums_to_zero(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b)) == 0
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// The SRAT's bytes, found from the RSDP at `rsdp`.
///
/// # Safety
///
/// `rsdp` must be the RSDP address the firmware's configuration table gave, with the tables
/// it leads to mapped and unchanged while they are read (true while boot services run).
pub unsafe fn srat_bytes(rsdp: u64) -> Result<Vec<u8>, AcpiError> {
    // SAFETY: the caller's contract: an RSDP (36 bytes in ACPI 2.0).
    let r = unsafe { read(rsdp, 36) };
    if &r[..8] != b"RSD PTR " || r[15] < 2 || !sums_to_zero(&r[..20]) || !sums_to_zero(&r) {
        return Err(AcpiError::BadRsdp);
    }
    let xsdt_at = u64_at(&r, 24);
    // SAFETY: the XSDT address the RSDP gives; its header first, then its whole length.
    let head = unsafe { read(xsdt_at, HEADER) };
    let len = u32_at(&head, 4) as usize;
    if &head[..4] != b"XSDT" || len < HEADER || !(len - HEADER).is_multiple_of(8) {
        return Err(AcpiError::BadXsdt { at: xsdt_at });
    }
    // SAFETY: as above, `len` bytes of the XSDT.
    let x = unsafe { read(xsdt_at, len) };
    if !sums_to_zero(&x) {
        return Err(AcpiError::BadXsdt { at: xsdt_at });
    }
    for k in 0..(len - HEADER) / 8 {
        let at = u64_at(&x, HEADER + 8 * k);
        // SAFETY: a table address the XSDT lists: its header, then its length.
        let h = unsafe { read(at, HEADER) };
        if &h[..4] == b"SRAT" {
            let n = u32_at(&h, 4) as usize;
            // SAFETY: the SRAT's own length; `Srat::parse` checks it and everything inside.
            return Ok(unsafe { read(at, n.max(HEADER)) });
        }
    }
    Err(AcpiError::NoSrat)
}
