//! Firmware inputs, no text: what a kernel's firmware hands it, read with every length checked
//! — the BIOS E820 map ([`E820Entry`]), the UEFI memory map ([`UefiDescriptor`]), and the ACPI
//! SRAT ([`Srat`]) for NUMA nodes — and [`memory_map`], which puts them together into TDX
//! memory by the same rules as the kernel log.

mod e820;
mod map;
mod srat;
mod uefi;

pub use e820::{
    E820_ACPI, E820_NVS, E820_PMEM, E820_RESERVED, E820_UNUSABLE, E820_USABLE, E820Entry,
    E820Error, ram_from_e820,
};
pub use map::{FirmwareMapError, FirmwareMemory, memory_map};
pub use srat::{MemoryAffinity, Srat, SratError};
pub use uefi::{
    EFI_BOOT_SERVICES_CODE, EFI_BOOT_SERVICES_DATA, EFI_CONVENTIONAL_MEMORY, EFI_LOADER_CODE,
    EFI_LOADER_DATA, EFI_MEMORY_DESCRIPTOR_MIN, EFI_MEMORY_SP, EFI_UNACCEPTED_MEMORY,
    UefiDescriptor, UefiMapError, parse_uefi_memory_map, ram_from_uefi,
};
