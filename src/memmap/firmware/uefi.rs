//! The UEFI memory map (`GetMemoryMap`): descriptors of type, physical start, pages and
//! attributes, and the RAM they describe as the kernel's EFI stub turns them into E820 types.
//!
//! `EFI_MEMORY_DESCRIPTOR` (UEFI 2.10, §7.2.3): type `u32` at 0, physical start `u64` at 8,
//! virtual start `u64` at 16, number of 4 KiB pages `u64` at 24, attribute `u64` at 32; the
//! firmware's descriptor size (at least 40, usually 48) is the stride of the array.
//!
//! RAM, as the kernel's EFI stub maps types to E820: loader code and data (1, 2), boot
//! services code and data (3, 4), conventional memory (7) and unaccepted memory (15) are
//! usable — unless the descriptor carries `EFI_MEMORY_SP` (attribute bit 18, "specific
//! purpose"), which makes it soft-reserved; everything else (reserved, runtime services, ACPI
//! reclaim and NVS, MMIO, PAL code, persistent, unusable) is not RAM.

use alloc::vec::Vec;
use core::fmt;

use crate::addr::{PhysRange, RangeSet, SZ_4K};

/// `EfiLoaderCode`.
pub const EFI_LOADER_CODE: u32 = 1;
/// `EfiLoaderData`.
pub const EFI_LOADER_DATA: u32 = 2;
/// `EfiBootServicesCode`.
pub const EFI_BOOT_SERVICES_CODE: u32 = 3;
/// `EfiBootServicesData`.
pub const EFI_BOOT_SERVICES_DATA: u32 = 4;
/// `EfiConventionalMemory`.
pub const EFI_CONVENTIONAL_MEMORY: u32 = 7;
/// `EfiUnacceptedMemoryType`.
pub const EFI_UNACCEPTED_MEMORY: u32 = 15;
/// `EFI_MEMORY_SP`: specific-purpose memory, kept from the page allocator (soft-reserved).
pub const EFI_MEMORY_SP: u64 = 1 << 18;

/// Bytes of the fields of a descriptor the firmware must provide.
pub const EFI_MEMORY_DESCRIPTOR_MIN: usize = 40;

/// One UEFI memory descriptor (the fields that matter for RAM).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UefiDescriptor {
    /// `EFI_MEMORY_TYPE`.
    pub kind: u32,
    /// Physical start (4 KiB aligned).
    pub phys_start: u64,
    /// Number of 4 KiB pages.
    pub pages: u64,
    /// Attribute bits (`EFI_MEMORY_*`).
    pub attribute: u64,
}

impl UefiDescriptor {
    /// A descriptor from its fields.
    pub const fn new(kind: u32, phys_start: u64, pages: u64, attribute: u64) -> Self {
        UefiDescriptor {
            kind,
            phys_start,
            pages,
            attribute,
        }
    }

    /// Whether the kernel takes this memory as usable RAM.
    pub const fn is_ram(&self) -> bool {
        let usable_type = matches!(
            self.kind,
            EFI_LOADER_CODE
                | EFI_LOADER_DATA
                | EFI_BOOT_SERVICES_CODE
                | EFI_BOOT_SERVICES_DATA
                | EFI_CONVENTIONAL_MEMORY
                | EFI_UNACCEPTED_MEMORY
        );
        usable_type && self.attribute & EFI_MEMORY_SP == 0
    }
}

/// Why UEFI memory-map bytes or descriptors were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UefiMapError {
    /// The descriptor size is smaller than the 40 bytes of fields, or not a multiple of 8.
    DescriptorSize {
        /// The size given.
        size: usize,
    },
    /// The map's length is not a whole number of descriptors.
    Length {
        /// Bytes given.
        len: usize,
        /// The descriptor size.
        size: usize,
    },
    /// A descriptor's start is not 4 KiB aligned, or start + pages × 4 KiB overflows 64 bits.
    Descriptor {
        /// Index of the descriptor.
        index: usize,
        /// The descriptor.
        descriptor: UefiDescriptor,
    },
}

impl fmt::Display for UefiMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            UefiMapError::DescriptorSize { size } => write!(
                f,
                "UEFI descriptor size {size} is below {EFI_MEMORY_DESCRIPTOR_MIN} or not a multiple of 8"
            ),
            UefiMapError::Length { len, size } => write!(
                f,
                "UEFI memory map of {len} bytes is not a whole number of {size}-byte descriptors"
            ),
            UefiMapError::Descriptor { index, descriptor } => write!(
                f,
                "UEFI descriptor {index} (type {}, start {:#x}, {} pages) is misaligned or overflows",
                descriptor.kind, descriptor.phys_start, descriptor.pages
            ),
        }
    }
}

impl core::error::Error for UefiMapError {}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Reads the descriptors of a memory map as `GetMemoryMap` returns it: `bytes` with a stride
/// of `descriptor_size`. O(descriptors).
///
/// ```
/// use tdmr::memmap::firmware::{parse_uefi_memory_map, EFI_CONVENTIONAL_MEMORY};
/// let mut map = vec![0u8; 48];
/// map[0..4].copy_from_slice(&EFI_CONVENTIONAL_MEMORY.to_le_bytes());
/// map[8..16].copy_from_slice(&0x10_0000u64.to_le_bytes());
/// map[24..32].copy_from_slice(&256u64.to_le_bytes());
/// let d = parse_uefi_memory_map(&map, 48)?;
/// assert!(d[0].is_ram() && d[0].pages == 256);
/// # Ok::<(), tdmr::memmap::firmware::UefiMapError>(())
/// ```
pub fn parse_uefi_memory_map(
    bytes: &[u8],
    descriptor_size: usize,
) -> Result<Vec<UefiDescriptor>, UefiMapError> {
    if descriptor_size < EFI_MEMORY_DESCRIPTOR_MIN || !descriptor_size.is_multiple_of(8) {
        return Err(UefiMapError::DescriptorSize {
            size: descriptor_size,
        });
    }
    if !bytes.len().is_multiple_of(descriptor_size) {
        return Err(UefiMapError::Length {
            len: bytes.len(),
            size: descriptor_size,
        });
    }
    Ok(bytes
        .chunks_exact(descriptor_size)
        .map(|d| {
            let mut kind = [0u8; 4];
            kind.copy_from_slice(&d[..4]);
            UefiDescriptor::new(
                u32::from_le_bytes(kind),
                u64_at(d, 8),
                u64_at(d, 24),
                u64_at(d, 32),
            )
        })
        .collect())
}

/// The RAM of a UEFI memory map: what RAM descriptors cover and no other descriptor does
/// (descriptors may come in any order). O(n log n).
pub fn ram_from_uefi(descriptors: &[UefiDescriptor]) -> Result<RangeSet, UefiMapError> {
    let mut ram = Vec::new();
    let mut other = Vec::new();
    for (index, &descriptor) in descriptors.iter().enumerate() {
        let bad = UefiMapError::Descriptor { index, descriptor };
        if !descriptor.phys_start.is_multiple_of(SZ_4K) {
            return Err(bad);
        }
        let bytes = descriptor.pages.checked_mul(SZ_4K).ok_or(bad)?;
        let range = PhysRange::from_base_size(descriptor.phys_start, bytes).map_err(|_| bad)?;
        if descriptor.is_ram() {
            ram.push(range);
        } else {
            other.push(range);
        }
    }
    Ok(RangeSet::from_ranges(ram).subtract(&RangeSet::from_ranges(other)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn types_map_to_ram_as_the_efi_stub_maps_them() {
        let ram_types = [1, 2, 3, 4, 7, 15];
        for kind in 0..20u32 {
            let d = UefiDescriptor::new(kind, 0x1000, 1, 0);
            assert_eq!(d.is_ram(), ram_types.contains(&kind), "type {kind}");
            assert!(!UefiDescriptor::new(kind, 0x1000, 1, EFI_MEMORY_SP).is_ram());
        }
    }

    #[test]
    fn the_map_is_read_with_the_firmwares_stride() {
        let mut map = vec![0u8; 3 * 56];
        for (i, (kind, start, pages)) in [
            (7u32, 0x10_0000u64, 0x100u64),
            (0, 0x20_0000, 1),
            (4, 0x30_0000, 2),
        ]
        .iter()
        .enumerate()
        {
            let d = &mut map[i * 56..];
            d[..4].copy_from_slice(&kind.to_le_bytes());
            d[8..16].copy_from_slice(&start.to_le_bytes());
            d[16..24].copy_from_slice(&0xdead_0000u64.to_le_bytes()); // virtual start: ignored
            d[24..32].copy_from_slice(&pages.to_le_bytes());
        }
        let ds = parse_uefi_memory_map(&map, 56).unwrap();
        assert_eq!(ds[2], UefiDescriptor::new(4, 0x30_0000, 2, 0));
        let ram = ram_from_uefi(&ds).unwrap();
        let r = |a, b| PhysRange::new(a, b).unwrap();
        assert_eq!(
            ram.as_slice(),
            [r(0x10_0000, 0x20_0000), r(0x30_0000, 0x30_2000)]
        );
        assert_eq!(
            parse_uefi_memory_map(&map, 36),
            Err(UefiMapError::DescriptorSize { size: 36 })
        );
        assert_eq!(
            parse_uefi_memory_map(&map[..50], 48),
            Err(UefiMapError::Length { len: 50, size: 48 })
        );
        let odd = UefiDescriptor::new(7, 0x1800, 1, 0);
        assert_eq!(
            ram_from_uefi(&[odd]),
            Err(UefiMapError::Descriptor {
                index: 0,
                descriptor: odd
            })
        );
    }
}
