//! Where PAMT blocks live: the allocator interface and two deterministic models of the kernel's
//! allocator, bottom-up ([`BottomUpAllocator`], the order of Linux's `alloc_contig_pages`) and
//! top-down ([`TopDownAllocator`]).

use alloc::vec::Vec;

use crate::addr::{PhysRange, SZ_1G, SZ_4K, is_aligned};
use crate::memmap::{MemoryMap, NodeId};

/// Source of physically contiguous memory for PAMT blocks — the kernel's contiguous allocator
/// (`alloc_contig_pages` in Linux). Offline, [`BottomUpAllocator`] and [`TopDownAllocator`]
/// model it.
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

    /// The leftmost leaf at or after `from` holding at least `x`. O(log n).
    fn leftmost_at_least_from(&self, from: usize, x: u64) -> Option<usize> {
        self.leftmost_in(1, 0, self.leaves, from, x)
    }

    fn leftmost_in(&self, i: usize, lo: usize, hi: usize, from: usize, x: u64) -> Option<usize> {
        if hi <= from || self.max.get(i).is_none_or(|&m| m < x) {
            return None;
        }
        if hi - lo == 1 {
            return Some(lo);
        }
        let mid = (lo + hi) / 2;
        self.leftmost_in(2 * i, lo, mid, from, x)
            .or_else(|| self.leftmost_in(2 * i + 1, mid, hi, from, x))
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

/// Which model of the kernel's allocator places the PAMT blocks of [`crate::layout::Strategy::Linux`]
/// plans made offline.
///
/// Linux takes each TDMR's PAMT from `alloc_contig_pages()` at boot. Where it lands is part of
/// Linux's verdict: a PAMT becomes a reserved area of whichever TDMR it lands in. Neither model
/// knows what else the kernel reserved before (its image, the memory map's `struct page`
/// arrays, crash kernels): both are predictions, the same input always giving the same one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PamtModel {
    /// [`BottomUpAllocator`]: the order `alloc_contig_pages()` searches in — the preferred
    /// node's zones highest first, each from its start. The default.
    #[default]
    BottomUp,
    /// [`TopDownAllocator`]: from the top of the preferred node's highest region down.
    TopDown,
}

impl PamtModel {
    /// Both models, the default first.
    pub const ALL: [PamtModel; 2] = [PamtModel::BottomUp, PamtModel::TopDown];

    /// The name used in reports (`bottom-up`, `top-down`).
    pub fn name(self) -> &'static str {
        match self {
            PamtModel::BottomUp => "bottom-up",
            PamtModel::TopDown => "top-down",
        }
    }
}

/// Zones in the order the kernel's zonelist tries them for a `GFP_KERNEL` request on one node:
/// ZONE_NORMAL `[4 GiB, ∞)`, ZONE_DMA32 `[16 MiB, 4 GiB)`, ZONE_DMA `[0, 16 MiB)`.
const ZONES: [(u64, u64); 3] = [(4 * SZ_1G, u64::MAX), (16 << 20, 4 * SZ_1G), (0, 16 << 20)];

/// The kernel's `ALIGN(x, a)`: mask arithmetic, `(x + a - 1) & !(a - 1)`. For an `a` that is not
/// a power of two the result is not a multiple of `a` (but lies in `[x, x + a)`), and that is
/// the start `alloc_contig_pages()` steps from.
fn kernel_align(x: u64, a: u64) -> u64 {
    let mask = a - 1;
    x.saturating_add(mask) & !mask
}

/// Contiguous memory of one node inside one zone, with the PAMT blocks taken from it.
#[derive(Clone, Debug)]
struct Span {
    start: u64,
    end: u64,
    /// Blocks taken, sorted, disjoint.
    taken: Vec<(u64, u64)>,
}

impl Span {
    /// Free gaps in address order.
    fn gaps(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut cursor = self.start;
        self.taken
            .iter()
            .copied()
            .chain(core::iter::once((self.end, self.end)))
            .filter_map(move |(s, e)| {
                let gap = (cursor < s).then_some((cursor, s));
                cursor = e;
                gap
            })
    }

    fn largest_gap(&self) -> u64 {
        self.gaps().map(|(s, e)| e - s).max().unwrap_or(0)
    }
}

/// One node's part of one zone, as `alloc_contig_pages()` sees it.
#[derive(Clone, Debug)]
struct ZoneOfNode {
    /// `zone_start_pfn` (as an address): the node's first page clamped to the zone.
    start: u64,
    /// End of the zone's span on this node.
    end: u64,
    spans: Vec<Span>,
    /// Largest free gap per span.
    room: MaxTree,
}

/// Deterministic model of Linux's `alloc_contig_pages()` at boot, the call that gives each TDMR
/// its PAMT: the preferred node's zones, highest first (ZONE_NORMAL, ZONE_DMA32, ZONE_DMA); in
/// each, candidate blocks from the zone's start rounded with the kernel's `ALIGN` to the
/// request's page count, stepping by the request; the first candidate that is wholly free
/// memory of the node in that zone (abutting regions of one node are contiguous memory) wins.
/// Then the other nodes, as a zonelist without distance information orders them: higher ids
/// ascending, then lower ones. Allocations never overlap each other.
///
/// Like [`TopDownAllocator`] it is a placement model, not a [`PamtAllocator`]: it knows nothing
/// of what the kernel reserved at boot, so it predicts where Linux's PAMTs land on a freshly
/// booted machine. It is the Linux strategy's default ([`PamtModel::BottomUp`]).
///
/// ```
/// use tdmr::memmap::{MemoryMap, MemoryRegion};
/// use tdmr::pamt::BottomUpAllocator;
/// let g = 1u64 << 30;
/// let map = MemoryMap::new(vec![
///     MemoryRegion::new(0x10_0000, 2 * g - 0x10_0000, 0),
///     MemoryRegion::new(4 * g, 4 * g, 0),
/// ])
/// .unwrap();
/// let mut a = BottomUpAllocator::new(&map);
/// // Node 0's ZONE_NORMAL first, from its start.
/// assert_eq!(a.allocate(0x2000, 0).unwrap().start(), 4 * g);
/// assert_eq!(a.allocate(0x2000, 0).unwrap().start(), 4 * g + 0x2000);
/// ```
#[derive(Clone, Debug)]
pub struct BottomUpAllocator {
    /// Per node present in the map, sorted by id: its zones in the order tried.
    nodes: Vec<(NodeId, Vec<ZoneOfNode>)>,
}

impl BottomUpAllocator {
    /// An allocator over all of `memory`. O(regions).
    pub fn new(memory: &MemoryMap) -> Self {
        let mut by_node: Vec<(NodeId, u64, u64)> = memory
            .regions()
            .iter()
            .map(|r| (r.node, r.base, r.end()))
            .collect();
        by_node.sort_unstable();
        let mut nodes = Vec::new();
        for chunk in by_node.chunk_by(|a, b| a.0 == b.0) {
            let node = chunk[0].0;
            let first = chunk[0].1;
            let last = chunk[chunk.len() - 1].2;
            let mut zones = Vec::new();
            for (lo, hi) in ZONES {
                let mut spans: Vec<Span> = Vec::new();
                for &(_, s, e) in chunk {
                    let (s, e) = (s.max(lo), e.min(hi));
                    if s >= e {
                        continue;
                    }
                    match spans.last_mut() {
                        Some(sp) if sp.end == s => sp.end = e,
                        _ => spans.push(Span {
                            start: s,
                            end: e,
                            taken: Vec::new(),
                        }),
                    }
                }
                if spans.is_empty() {
                    continue;
                }
                let room = MaxTree::new(spans.iter().map(|sp| sp.end - sp.start));
                zones.push(ZoneOfNode {
                    start: first.clamp(lo, hi),
                    end: last.min(hi),
                    spans,
                    room,
                });
            }
            nodes.push((node, zones));
        }
        BottomUpAllocator { nodes }
    }

    /// `size` bytes (a multiple of 4 KiB) where `alloc_contig_pages()` would find them for
    /// `node` (see the type); `None` when no node has such a block free.
    pub fn allocate(&mut self, size: u64, node: NodeId) -> Option<PhysRange> {
        if size == 0 || !is_aligned(size, SZ_4K) {
            return None;
        }
        // Preferred node, then higher ids, then lower ones.
        let split = self.nodes.partition_point(|(n, _)| *n < node);
        let order = (split..self.nodes.len()).chain(0..split);
        for k in order {
            for zone in &mut self.nodes[k].1 {
                if let Some(block) = take_in_zone(zone, size) {
                    return Some(block);
                }
            }
        }
        None
    }
}

/// The first free candidate of `zone` for `size` bytes, taken.
fn take_in_zone(zone: &mut ZoneOfNode, size: u64) -> Option<PhysRange> {
    let pages = size / SZ_4K;
    let base = kernel_align(zone.start / SZ_4K, pages).checked_mul(SZ_4K)?;
    let mut from = 0;
    while let Some(i) = zone.room.leftmost_at_least_from(from, size) {
        from = i + 1;
        let span = &zone.spans[i];
        let hit = span.gaps().find_map(|(s, e)| {
            // The first candidate base + k * size at or after the gap's start.
            let c = if s <= base {
                base
            } else {
                base + (s - base).div_ceil(size) * size
            };
            (c.checked_add(size)? <= e.min(zone.end)).then_some(c)
        });
        if let Some(c) = hit {
            let span = &mut zone.spans[i];
            let at = span.taken.partition_point(|&(s, _)| s < c);
            span.taken.insert(at, (c, c + size));
            let room = span.largest_gap();
            zone.room.set(i, room);
            return Some(PhysRange::new_unchecked(c, c + size));
        }
    }
    None
}

impl BlockSource for BottomUpAllocator {
    fn allocate(&mut self, size: u64, node: NodeId) -> Option<PhysRange> {
        BottomUpAllocator::allocate(self, size, node)
    }
}

/// Where the planner gets PAMT blocks: the caller's [`PamtAllocator`] or a placement model
/// ([`BottomUpAllocator`], [`TopDownAllocator`]) whose blocks the host must still claim.
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

    const G: u64 = SZ_1G;

    fn map(v: &[(u64, u64, u32)]) -> MemoryMap {
        MemoryMap::new(
            v.iter()
                .map(|&(b, s, n)| MemoryRegion::new(b, s, n))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn kernel_align_is_mask_arithmetic() {
        assert_eq!(kernel_align(5, 4), 8);
        assert_eq!(kernel_align(8, 4), 8);
        // 2053 pages (an 8212 KiB PAMT): not a power of two.
        let x = (4 * G) >> 12;
        let a = kernel_align(x, 2053);
        assert!(a >= x && a < x + 2053);
        assert_eq!(a, (x + 2052) & !2052);
    }

    #[test]
    fn bottom_up_steps_from_the_zone_start_by_the_request() {
        // Node 1 starts 12 KiB past a multiple of the request (16 KiB): candidates 16 KiB apart
        // from the rounded start, each fully free in the node's memory.
        let start = 0x1_0000_0000 + 0x3000;
        let m = map(&[(start, 0x10_0000, 1), (start + 0x20_0000, 0x40_0000, 1)]);
        let mut a = BottomUpAllocator::new(&m);
        let first = a.allocate(0x4000, 1).unwrap();
        assert_eq!(first.start(), 0x1_0000_4000);
        assert_eq!(a.allocate(0x4000, 1).unwrap().start(), 0x1_0000_8000);
        // 1 MiB: candidates from 0x1_0010_0000 (the start rounded up) by 1 MiB; the first wholly
        // in memory lies in the second region.
        let big = a.allocate(0x10_0000, 1).unwrap();
        assert_eq!(big.start(), 0x1_0030_0000);
    }

    #[test]
    fn bottom_up_prefers_the_highest_zone_then_other_nodes() {
        let m = map(&[
            (0x10_0000, 2 * G - 0x10_0000, 0),
            (4 * G, 0x10_0000, 0),
            (8 * G, G, 1),
            (10 * G, G, 2),
        ]);
        let mut a = BottomUpAllocator::new(&m);
        // ZONE_NORMAL of node 0 has 1 MiB; a 2 MiB request goes to ZONE_DMA32, from 16 MiB.
        assert_eq!(a.allocate(0x20_0000, 0).unwrap().start(), 16 << 20);
        assert_eq!(a.allocate(0x10_0000, 0).unwrap().start(), 4 * G);
        // Node 2 full and no higher node: the lower ones from the lowest, node 0 (its
        // ZONE_NORMAL is full, ZONE_DMA32 has a 1 GiB-aligned candidate at 1 GiB).
        assert_eq!(a.allocate(G, 2).unwrap().start(), 10 * G);
        assert_eq!(a.allocate(G, 2).unwrap().start(), G);
        // Node 1 first: higher ids before lower ones.
        assert_eq!(a.allocate(G, 1).unwrap().start(), 8 * G);
        assert!(a.allocate(2 * G, 1).is_none());
        assert_eq!(a.allocate(0x800, 0), None);
    }

    #[test]
    fn bottom_up_treats_abutting_regions_of_a_node_as_contiguous() {
        let m = map(&[(4 * G, G, 3), (5 * G, G, 3), (6 * G, G, 4)]);
        let mut a = BottomUpAllocator::new(&m);
        let b = a.allocate(G + 0x1000, 3).unwrap();
        assert_eq!(b, PhysRange::new(4 * G, 5 * G + 0x1000).unwrap());
        // Never across a node boundary.
        assert!(a.allocate(G, 3).is_none_or(|x| x.start() >= 6 * G));
    }

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
