//! Which NUMA node holds what: the nodes of a TDMR's memory by bytes, the node of a PAMT block,
//! and why a PAMT is not on the TDMR's majority node.

use smallvec::SmallVec;

use super::plan::{OffNodeReason, PamtNodes};
use crate::addr::PhysRange;
use crate::memmap::{MemoryMap, NodeId};

/// Bytes of TDX memory per node inside `range`, most first (ties: the lower id first).
/// O(regions in the range).
pub(crate) fn node_bytes(memory: &MemoryMap, range: PhysRange) -> SmallVec<[(NodeId, u64); 4]> {
    let mut per_node: SmallVec<[(NodeId, u64); 4]> = SmallVec::new();
    for r in memory.regions_in(range) {
        let bytes = r.range().intersect(range).map_or(0, |x| x.size());
        match per_node.iter_mut().find(|(n, _)| *n == r.node) {
            Some(e) => e.1 += bytes,
            None => per_node.push((r.node, bytes)),
        }
    }
    sort_by_bytes(&mut per_node);
    per_node
}

/// Sorts `(node, bytes)` pairs most bytes first, the lower id first on a tie.
pub(crate) fn sort_by_bytes(v: &mut [(NodeId, u64)]) {
    v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
}

/// The node holding most of `block` and whether the block lies on more than one node. Memory
/// outside TDX memory counts for no node; a block wholly outside says node `fallback`.
pub(crate) fn block_node(memory: &MemoryMap, block: PhysRange, fallback: NodeId) -> (NodeId, bool) {
    let nodes = node_bytes(memory, block);
    (nodes.first().map_or(fallback, |e| e.0), nodes.len() > 1)
}

/// Where the PAMT of `tdmr` lies, for a block an allocator returned when asked for `asked`.
/// `rule` is why `asked` was asked (Linux: the lowest node of the TDMR) when it is not the
/// majority node.
pub(crate) fn from_allocator(
    memory: &MemoryMap,
    tdmr: PhysRange,
    block: PhysRange,
    asked: NodeId,
    rule: OffNodeReason,
) -> PamtNodes {
    let majority = node_bytes(memory, tdmr).first().map_or(asked, |e| e.0);
    let (pamt, spans) = block_node(memory, block, asked);
    let reason = if spans {
        Some(OffNodeReason::SpansNodes)
    } else if pamt == majority {
        None
    } else if pamt != asked {
        Some(OffNodeReason::AllocatorFallback)
    } else {
        Some(rule)
    };
    PamtNodes {
        pamt,
        majority,
        reason,
    }
}
