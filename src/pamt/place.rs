//! Where PAMT blocks live: the allocator interface and the deterministic top-down allocator.

use alloc::vec::Vec;

use crate::addr::{PhysRange, SZ_4K, is_aligned};
use crate::memmap::{MemoryMap, NodeId};

/// Source of physically contiguous memory for PAMT blocks — the kernel's contiguous allocator
/// (`alloc_contig_pages` in Linux), or [`TopDownAllocator`] for planning offline.
///
/// The planner checks what comes back (size, 4 KiB alignment, inside TDX memory, no overlap with
/// another PAMT) and fails with a typed error naming the block otherwise. What it cannot check
/// is who else uses the memory: the TDX module writes every byte of every PAMT block (with the
/// global private KeyID) from TDH.SYS.TDMR.INIT on.
///
/// # Safety
///
/// Every block `allocate` returns must be physical memory that the implementer has taken out
/// of every other use — out of the kernel's page allocator, not mapped for or reachable by
/// anything else of the host's, not shared with devices — and that stays so until the caller
/// is done with it: for the life of the TDX module once TDH.SYS.CONFIG accepted a
/// configuration holding it, or until an [`crate::init::InitError`]'s
/// [`crate::init::Teardown`] hands it back (after the cache flush and reset it asks for). Two
/// returned blocks never overlap. Like [`core::alloc::GlobalAlloc`], the promise is about the
/// memory, so a wrong answer is undefined behaviour, not an error.
///
/// ```
/// use tdmr::addr::PhysRange;
/// use tdmr::memmap::NodeId;
/// use tdmr::pamt::PamtAllocator;
///
/// /// Hands out a region the kernel reserved at boot, bottom up.
/// struct Carveout { next: u64, end: u64 }
/// // SAFETY: [next, end) was reserved at boot for PAMTs and nothing else uses it; blocks are
/// // handed out once each, so they never overlap.
/// unsafe impl PamtAllocator for Carveout {
///     fn allocate(&mut self, size: u64, _node: NodeId) -> Option<PhysRange> {
///         let block = PhysRange::from_base_size(self.next, size).ok()?;
///         (block.end() <= self.end).then(|| { self.next = block.end(); block })
///     }
/// }
/// ```
#[allow(unsafe_code)] // the declaration of the contract; implementations are unsafe
pub unsafe trait PamtAllocator {
    /// `size` bytes (a multiple of 4 KiB), 4 KiB aligned, preferably on `node`; `None` when
    /// the memory is not available.
    fn allocate(&mut self, size: u64, node: NodeId) -> Option<PhysRange>;
}

/// Deterministic stand-in for the kernel's page allocator: takes each block from the top of the
/// highest region of the requested node that still has room, falling back to the highest region
/// of any node. Allocations never overlap each other.
///
/// It hands out TDX memory of the map it was built over without taking it from anyone, so it
/// is a placement model, not a [`PamtAllocator`]: plans made with it say their PAMT is carved
/// from TDX memory ([`crate::layout::PamtOrigin::Carved`]), and [`crate::init::Bringup`]
/// claims those blocks from the host ([`crate::init::HostMemory::claim_pamt`]) before
/// TDH.SYS.CONFIG.
///
/// ```
/// use tdmr::memmap::{MemoryMap, MemoryRegion};
/// use tdmr::pamt::TopDownAllocator;
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

/// Where the planner gets PAMT blocks: the caller's [`PamtAllocator`] or a placement model
/// ([`TopDownAllocator`]) whose blocks the host must still claim.
pub(crate) trait BlockSource {
    fn allocate(&mut self, size: u64, node: NodeId) -> Option<PhysRange>;
}

/// The caller's allocator as a [`BlockSource`].
pub(crate) struct FromAllocator<'a>(pub(crate) &'a mut dyn PamtAllocator);

impl BlockSource for FromAllocator<'_> {
    fn allocate(&mut self, size: u64, node: NodeId) -> Option<PhysRange> {
        self.0.allocate(size, node)
    }
}

impl BlockSource for TopDownAllocator {
    fn allocate(&mut self, size: u64, node: NodeId) -> Option<PhysRange> {
        TopDownAllocator::allocate(self, size, node)
    }
}

impl TopDownAllocator {
    /// `size` bytes (a multiple of 4 KiB) from the top of the highest region of `node` with
    /// room, else of any node; `None` when no region has room.
    pub fn allocate(&mut self, size: u64, node: NodeId) -> Option<PhysRange> {
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
