//! Where PAMT blocks live: the allocator interface and the deterministic top-down allocator.

use alloc::vec::Vec;

use crate::addr::{PhysRange, SZ_4K, is_aligned};
use crate::memmap::{MemoryMap, NodeId};

/// Source of physically contiguous memory for PAMT blocks — the kernel's contiguous allocator
/// (`alloc_contig_pages` in Linux), or [`TopDownAllocator`] for planning offline.
///
/// The planner checks what comes back (size, 4 KiB alignment, inside TDX memory, no overlap with
/// another PAMT) and fails with a typed error naming the block otherwise.
pub trait PamtAllocator {
    /// `size` bytes (a multiple of 4 KiB), 4 KiB aligned, preferably on `node`; `None` when
    /// the memory is not available.
    fn allocate(&mut self, size: u64, node: NodeId) -> Option<PhysRange>;
}

/// Deterministic stand-in for the kernel's page allocator: takes each block from the top of the
/// highest region of the requested node that still has room, falling back to the highest region
/// of any node. Allocations never overlap each other.
///
/// ```
/// use tdmr::memmap::{MemoryMap, MemoryRegion};
/// use tdmr::pamt::{PamtAllocator, TopDownAllocator};
/// let map = MemoryMap::new(vec![
///     MemoryRegion::new(0x10_0000, 0x10_0000, 0),
///     MemoryRegion::new(0x100_0000, 0x10_0000, 1),
/// ])
/// .unwrap();
/// let mut a = TopDownAllocator::new(&map);
/// assert_eq!(a.allocate(0x1000, 0).unwrap().start(), 0x1f_f000);
/// assert_eq!(a.allocate(0x1000, 1).unwrap().start(), 0x10f_f000);
/// ```
#[derive(Clone, Debug)]
pub struct TopDownAllocator {
    /// `[base, top)` still free per region, in address order.
    free: Vec<(u64, u64, NodeId)>,
}

impl TopDownAllocator {
    /// An allocator over all of `memory`.
    pub fn new(memory: &MemoryMap) -> Self {
        TopDownAllocator {
            free: memory
                .regions()
                .iter()
                .map(|r| (r.base, r.end(), r.node))
                .collect(),
        }
    }

    fn take(&mut self, size: u64, node: Option<NodeId>) -> Option<PhysRange> {
        let slot =
            self.free.iter_mut().rev().find(|(base, top, n)| {
                node.is_none_or(|want| *n == want) && *top - *base >= size
            })?;
        slot.1 -= size;
        Some(PhysRange::new_unchecked(slot.1, slot.1 + size))
    }
}

impl PamtAllocator for TopDownAllocator {
    fn allocate(&mut self, size: u64, node: NodeId) -> Option<PhysRange> {
        if size == 0 || !is_aligned(size, SZ_4K) {
            return None;
        }
        self.take(size, Some(node))
            .or_else(|| self.take(size, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memmap::MemoryRegion;
    use alloc::vec;

    #[test]
    fn falls_back_to_other_nodes_and_never_overlaps() {
        let map = MemoryMap::new(vec![
            MemoryRegion::new(0, 0x3000, 0),
            MemoryRegion::new(0x10000, 0x1000, 1),
        ])
        .unwrap();
        let mut a = TopDownAllocator::new(&map);
        let x = a.allocate(0x2000, 1).unwrap();
        assert_eq!(x, PhysRange::new(0x1000, 0x3000).unwrap());
        let y = a.allocate(0x1000, 1).unwrap();
        assert_eq!(y, PhysRange::new(0x10000, 0x11000).unwrap());
        let z = a.allocate(0x1000, 1).unwrap();
        assert_eq!(z, PhysRange::new(0, 0x1000).unwrap());
        assert_eq!(a.allocate(0x1000, 0), None);
        assert_eq!(a.allocate(0x800, 0), None);
    }
}
