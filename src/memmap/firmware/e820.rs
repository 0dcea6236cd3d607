//! The BIOS E820 memory map: entries of address, length and type, and the RAM they describe
//! once the kernel has sanitised them.
//!
//! Types (ACPI 6.5, §15.1, and the kernel's extensions): 1 usable RAM, 2 reserved, 3 ACPI
//! reclaimable, 4 ACPI NVS, 5 unusable, 7 persistent memory, 12 legacy persistent memory. Where
//! entries overlap the kernel keeps the more restrictive type (a higher number wins), so RAM is
//! what usable entries cover and no other entry does.

use alloc::vec::Vec;
use core::fmt;

use crate::addr::{PhysRange, RangeSet};

/// E820 type 1: usable RAM.
pub const E820_USABLE: u32 = 1;
/// E820 type 2: reserved.
pub const E820_RESERVED: u32 = 2;
/// E820 type 3: ACPI tables, reclaimable after they are read.
pub const E820_ACPI: u32 = 3;
/// E820 type 4: ACPI non-volatile storage.
pub const E820_NVS: u32 = 4;
/// E820 type 5: unusable (bad) memory.
pub const E820_UNUSABLE: u32 = 5;
/// E820 type 7: persistent memory.
pub const E820_PMEM: u32 = 7;

/// One E820 entry as the BIOS reports it (INT 15h, AX=E820h) or the boot loader hands it over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct E820Entry {
    /// First byte.
    pub addr: u64,
    /// Bytes.
    pub size: u64,
    /// The type (1 = usable RAM).
    pub kind: u32,
}

impl E820Entry {
    /// An entry from its three fields.
    pub const fn new(addr: u64, size: u64, kind: u32) -> Self {
        E820Entry { addr, size, kind }
    }
}

/// An E820 entry whose address + length overflows 64 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Error {
    /// Index of the entry.
    pub index: usize,
    /// The entry.
    pub entry: E820Entry,
}

impl fmt::Display for E820Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.entry;
        write!(
            f,
            "E820 entry {} (address {:#x}, length {:#x}, type {}) overflows 64 bits",
            self.index, e.addr, e.size, e.kind
        )
    }
}

impl core::error::Error for E820Error {}

/// The RAM an E820 map describes: what usable entries cover and no other entry does. Entries
/// may come in any order and overlap; empty ones are ignored. O(n log n).
///
/// ```
/// use tdmr::addr::PhysRange;
/// use tdmr::memmap::firmware::{E820Entry, E820_RESERVED, E820_USABLE, ram_from_e820};
/// let ram = ram_from_e820(&[
///     E820Entry::new(0x10_0000, 0x7ff0_0000, E820_USABLE),
///     E820Entry::new(0x7000_0000, 0x1000, E820_RESERVED), // a hole the firmware reserved
/// ])?;
/// assert_eq!(ram.as_slice(), [PhysRange::new(0x10_0000, 0x7000_0000)?, PhysRange::new(0x7000_1000, 0x8000_0000)?]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn ram_from_e820(entries: &[E820Entry]) -> Result<RangeSet, E820Error> {
    let mut usable = Vec::new();
    let mut other = Vec::new();
    for (index, &entry) in entries.iter().enumerate() {
        let range = PhysRange::from_base_size(entry.addr, entry.size)
            .map_err(|_| E820Error { index, entry })?;
        if entry.kind == E820_USABLE {
            usable.push(range);
        } else {
            other.push(range);
        }
    }
    Ok(RangeSet::from_ranges(usable).subtract(&RangeSet::from_ranges(other)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_other_type_wins_over_usable_where_they_overlap() {
        let r = |a, b| PhysRange::new(a, b).unwrap();
        for kind in [
            E820_RESERVED,
            E820_ACPI,
            E820_NVS,
            E820_UNUSABLE,
            E820_PMEM,
            12,
            0xF00,
        ] {
            let ram = ram_from_e820(&[
                E820Entry::new(0x3000, 0x1000, kind),
                E820Entry::new(0x1000, 0x4000, E820_USABLE),
                E820Entry::new(0x4000, 0x2000, E820_USABLE), // overlaps the first usable one
                E820Entry::new(0x9000, 0, E820_USABLE),      // empty
            ])
            .unwrap();
            assert_eq!(
                ram.as_slice(),
                [r(0x1000, 0x3000), r(0x4000, 0x6000)],
                "type {kind}"
            );
        }
        assert_eq!(
            ram_from_e820(&[E820Entry::new(u64::MAX, 2, E820_USABLE)]),
            Err(E820Error {
                index: 0,
                entry: E820Entry::new(u64::MAX, 2, E820_USABLE)
            })
        );
    }
}
