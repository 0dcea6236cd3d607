//! Firmware tables to TDX memory: the RAM of an E820 or UEFI map and the SRAT's memory
//! affinity, put together by the same rules as the kernel log (the kernel's rules, in
//! `memmap/build.rs`), so a machine read from its tables and from its boot log gives the same
//! [`MemoryMap`].

use alloc::vec::Vec;
use core::fmt;

use super::Srat;
use crate::addr::{PhysRange, RangeSet};
use crate::memmap::build::{Affinity, BuildError, tdx_memory};
use crate::memmap::{MapWarning, MemoryMap, MemoryMapError, NodeId};

/// TDX memory read from firmware tables, and what the kernel would warn about on that machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirmwareMemory {
    memory: MemoryMap,
    warnings: Vec<MapWarning>,
}

impl FirmwareMemory {
    /// TDX memory: the RAM from 1 MiB up, whole pages, split at the SRAT's nodes.
    pub fn memory(&self) -> &MemoryMap {
        &self.memory
    }

    /// What changes how the kernel sees this memory (NUMA turned off, RAM without a node).
    pub fn warnings(&self) -> &[MapWarning] {
        &self.warnings
    }

    /// The memory map alone.
    pub fn into_memory(self) -> MemoryMap {
        self.memory
    }
}

/// Why firmware tables give no memory map; every variant names the offending value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FirmwareMapError {
    /// An enabled SRAT memory affinity structure overlaps one of another node (or of its own
    /// node with the other hot-pluggable flag).
    SratOverlap {
        /// Its index in [`Srat::memory`].
        index: usize,
        /// Its range.
        range: PhysRange,
        /// The node of the structure it overlaps.
        other_node: NodeId,
    },
    /// The result is not a valid memory map: no RAM from 1 MiB up, or an SRAT boundary inside
    /// a page.
    Memory(MemoryMapError),
}

impl fmt::Display for FirmwareMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FirmwareMapError::SratOverlap {
                index,
                range,
                other_node,
            } => write!(
                f,
                "SRAT memory affinity structure {index} ({range}) overlaps a range of node {other_node}"
            ),
            FirmwareMapError::Memory(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for FirmwareMapError {}

/// TDX memory from the machine's RAM (as [`ram_from_e820`](super::ram_from_e820) or
/// [`ram_from_uefi`](super::ram_from_uefi) return it, the first MiB included: the kernel counts
/// it when it checks NUMA coverage) and its SRAT (`None`: no NUMA, everything on node 0).
/// Disabled affinity structures are ignored. O((RAM + SRAT) log(RAM + SRAT)).
///
/// ```
/// use tdmr::memmap::firmware::{E820Entry, E820_USABLE, memory_map, ram_from_e820};
/// let ram = ram_from_e820(&[
///     E820Entry::new(0, 0x9f000, E820_USABLE),
///     E820Entry::new(0x10_0000, 0x7ff0_0000, E820_USABLE),
/// ])?;
/// let map = memory_map(&ram, None)?;
/// assert_eq!(map.memory().span().start(), 0x10_0000); // TDX memory starts at 1 MiB
/// assert!(map.warnings().is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn memory_map(ram: &RangeSet, srat: Option<&Srat>) -> Result<FirmwareMemory, FirmwareMapError> {
    let affinity = srat
        .map(|s| {
            s.memory()
                .iter()
                .enumerate()
                .filter_map(|(index, m)| {
                    let node = m.node.filter(|_| m.enabled)?;
                    Some(Affinity {
                        range: m.range,
                        node,
                        hotplug: m.hot_pluggable,
                        source: index,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let (memory, warnings) = tdx_memory(ram.iter(), affinity).map_err(|e| match e {
        BuildError::Overlap {
            source,
            range,
            other_node,
        } => FirmwareMapError::SratOverlap {
            index: source,
            range,
            other_node,
        },
        BuildError::Memory(e) => FirmwareMapError::Memory(e),
    })?;
    Ok(FirmwareMemory { memory, warnings })
}
