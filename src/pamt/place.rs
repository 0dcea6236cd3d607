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
    /// `[base, top)` still free per region, and its node, in address order.
    free: Vec<(u64, u64, NodeId)>,
    /// Free bytes of every region, for "highest region with room" in O(log n).
    all: MaxTree,
    /// Per node: its region indices in address order and a tree over their free bytes.
    nodes: Vec<(NodeId, Vec<usize>, MaxTree)>,
}

/// A segment tree over free sizes answering "rightmost leaf with at least `x`" in O(log n).
#[derive(Clone, Debug)]
struct MaxTree {
    leaves: usize,
    max: Vec<u64>,
}

impl MaxTree {
    fn new(values: impl ExactSizeIterator<Item = u64>) -> Self {
        let leaves = values.len().next_power_of_two().max(1);
        let mut max = alloc::vec![0u64; 2 * leaves];
        for (i, v) in values.enumerate() {
            max[leaves + i] = v;
        }
        for i in (1..leaves).rev() {
            max[i] = max[2 * i].max(max[2 * i + 1]);
        }
        MaxTree { leaves, max }
    }

    fn set(&mut self, leaf: usize, value: u64) {
        let mut i = self.leaves + leaf;
        self.max[i] = value;
        while i > 1 {
            i /= 2;
            self.max[i] = self.max[2 * i].max(self.max[2 * i + 1]);
        }
    }

    fn rightmost_at_least(&self, x: u64) -> Option<usize> {
        if self.max.get(1).is_none_or(|&m| m < x) {
            return None;
        }
        let mut i = 1;
        while i < self.leaves {
            i = if self.max[2 * i + 1] >= x {
                2 * i + 1
            } else {
                2 * i
            };
        }
        Some(i - self.leaves)
    }
}

impl TopDownAllocator {
    /// An allocator over all of `memory`.
    pub fn new(memory: &MemoryMap) -> Self {
        let free: Vec<(u64, u64, NodeId)> = memory
            .regions()
            .iter()
            .map(|r| (r.base, r.end(), r.node))
            .collect();
        let mut by_node: Vec<(NodeId, usize)> = memory
            .regions()
            .iter()
            .enumerate()
            .map(|(i, r)| (r.node, i))
            .collect();
        by_node.sort_unstable();
        let mut nodes: Vec<(NodeId, Vec<usize>, MaxTree)> = Vec::new();
        for chunk in by_node.chunk_by(|a, b| a.0 == b.0) {
            let idx: Vec<usize> = chunk.iter().map(|&(_, i)| i).collect();
            let tree = MaxTree::new(idx.iter().map(|&i| free[i].1 - free[i].0));
            nodes.push((chunk[0].0, idx, tree));
        }
        let all = MaxTree::new(free.iter().map(|(b, t, _)| t - b));
        TopDownAllocator { free, all, nodes }
    }

    fn take_at(&mut self, region: usize, size: u64) -> PhysRange {
        let slot = &mut self.free[region];
        slot.1 -= size;
        let range = PhysRange::new_unchecked(slot.1, slot.1 + size);
        let left = slot.1 - slot.0;
        self.all.set(region, left);
        let node = slot.2;
        if let Ok(k) = self.nodes.binary_search_by_key(&node, |(n, _, _)| *n)
            && let Ok(pos) = self.nodes[k].1.binary_search(&region)
        {
            self.nodes[k].2.set(pos, left);
        }
        range
    }
}

impl PamtAllocator for TopDownAllocator {
    fn allocate(&mut self, size: u64, node: NodeId) -> Option<PhysRange> {
        if size == 0 || !is_aligned(size, SZ_4K) {
            return None;
        }
        let local = self
            .nodes
            .binary_search_by_key(&node, |(n, _, _)| *n)
            .ok()
            .and_then(|k| {
                let (_, idx, tree) = &self.nodes[k];
                tree.rightmost_at_least(size).map(|pos| idx[pos])
            });
        let region = local.or_else(|| self.all.rightmost_at_least(size))?;
        Some(self.take_at(region, size))
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
