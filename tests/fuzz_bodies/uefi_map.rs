//! Fuzz body of the UEFI memory-map reader and the firmware memory map built from it: any bytes
//! are refused with a typed error naming a real descriptor, or give RAM that only RAM
//! descriptors cover and a memory map inside it. The first input byte picks the descriptor
//! stride (40 to 64 bytes, or a bad one) and whether the map is cut to whole descriptors, so
//! that most inputs reach the descriptor walk.

use tdmr::addr::RangeSet;
use tdmr::memmap::firmware::{UefiMapError, memory_map, parse_uefi_memory_map, ram_from_uefi};

/// Runs one input. Panics on any inconsistency.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let size = match mode & 7 {
        7 => usize::from(mode >> 3), // anything, mostly refused
        k => 40 + 8 * usize::from(k % 4),
    };
    let bytes = if mode & 8 == 0 && size >= 40 {
        &rest[..rest.len() - rest.len() % size]
    } else {
        rest
    };
    let descriptors = match parse_uefi_memory_map(bytes, size) {
        Ok(d) => d,
        Err(e) => {
            match e {
                UefiMapError::DescriptorSize { size: s } => {
                    assert_eq!(s, size);
                    assert!(s < 40 || s % 8 != 0);
                }
                UefiMapError::Length { len, size: s } => {
                    assert_eq!((len, s), (bytes.len(), size));
                    assert_ne!(len % s, 0);
                }
                UefiMapError::Descriptor { .. } => panic!("parsing checks no descriptor"),
            }
            return;
        }
    };
    assert_eq!(descriptors.len(), bytes.len() / size);
    let ram = match ram_from_uefi(&descriptors) {
        Ok(r) => r,
        Err(UefiMapError::Descriptor { index, descriptor }) => {
            assert_eq!(descriptors[index], descriptor);
            let fits = descriptor
                .pages
                .checked_mul(4096)
                .and_then(|b| descriptor.phys_start.checked_add(b))
                .is_some();
            assert!(descriptor.phys_start % 4096 != 0 || !fits, "{descriptor:?}");
            // Every descriptor before it was fine.
            assert!(ram_from_uefi(&descriptors[..index]).is_ok());
            return;
        }
        Err(e) => panic!("{e}"),
    };
    // RAM lies inside RAM descriptors and outside every other one.
    let range_of = |d: &tdmr::memmap::firmware::UefiDescriptor| {
        tdmr::addr::PhysRange::from_base_size(d.phys_start, d.pages * 4096).unwrap()
    };
    let usable = RangeSet::from_ranges(descriptors.iter().filter(|d| d.is_ram()).map(range_of));
    let other = RangeSet::from_ranges(descriptors.iter().filter(|d| !d.is_ram()).map(range_of));
    assert_eq!(ram, usable.subtract(&other));
    match memory_map(&ram, None) {
        Ok(m) => {
            assert!(m.warnings().is_empty(), "no SRAT, no NUMA warning");
            let from_1m = ram.intersect(&RangeSet::from_ranges([tdmr::addr::PhysRange::new(
                1 << 20,
                u64::MAX,
            )
            .unwrap()]));
            let regions = RangeSet::from_ranges(m.memory().regions().iter().map(|r| r.range()));
            assert_eq!(regions, from_1m, "all RAM from 1 MiB up, nothing else");
            assert!(m.memory().regions().iter().all(|r| r.node == 0));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}
