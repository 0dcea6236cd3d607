//! The 1 GiB windows that hold TDX memory, summarised while a [`MemoryMap`] is built.
//!
//! TDMRs are made of whole 1 GiB windows, so planners think in windows. Each region contributes
//! at most three entries: its first window, the stretch of whole windows it covers, and its last
//! window; regions that fall inside the current window only add to it. The summary is
//! O(regions) in size, never proportional to the address space, and lets planning run in time
//! proportional to windows rather than regions.
//!
//! [`MemoryMap`]: super::MemoryMap

use alloc::vec::Vec;

use super::{MemoryRegion, NodeId};
use crate::addr::SZ_1G;

/// One window, or a stretch of consecutive windows wholly covered by one region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WindowEntry {
    /// First window number: the entry starts at `index * 1 GiB`.
    pub index: u64,
    /// Last window number (equal to `index` for a single window).
    pub last: u64,
    /// Node of the first region in the entry, and its bytes here.
    pub node: NodeId,
    pub bytes: u64,
    /// The entry also holds memory of other nodes (listed in [`Windows::other_nodes`]).
    pub mixed: bool,
}

/// The window summary of a memory map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Windows {
    pub entries: Vec<WindowEntry>,
    /// Bytes of nodes other than an entry's first: (entry index, node, bytes), by entry.
    pub other_nodes: Vec<(usize, NodeId, u64)>,
    /// End of the last entry.
    last_end: u64,
}

impl Windows {
    fn add(&mut self, index: u64, last: u64, node: NodeId, bytes: u64) {
        match self.entries.last_mut() {
            Some(w) if w.index == index && w.last == last => {
                if w.node == node {
                    w.bytes += bytes;
                } else {
                    w.mixed = true;
                    let at = self.entries.len() - 1;
                    match self.other_nodes.last_mut() {
                        Some(o) if o.0 == at && o.1 == node => o.2 += bytes,
                        _ => self.other_nodes.push((at, node, bytes)),
                    }
                }
            }
            _ => self.entries.push(WindowEntry {
                index,
                last,
                node,
                bytes,
                mixed: false,
            }),
        }
    }

    /// Adds the next region (regions come sorted and disjoint).
    pub(crate) fn push(&mut self, r: &MemoryRegion) {
        let end = r.end();
        // Most regions of a fragmented map fall inside the current window.
        if end <= self.last_end
            && let Some(w) = self.entries.last_mut()
            && w.node == r.node
        {
            w.bytes += r.size;
            return;
        }
        let first = r.base / SZ_1G;
        let last = (end - 1) / SZ_1G;
        self.last_end = (last + 1) * SZ_1G;
        self.add(first, first, r.node, end.min((first + 1) * SZ_1G) - r.base);
        if last > first + 1 {
            self.add(first + 1, last - 1, r.node, (last - first - 1) * SZ_1G);
        }
        if last > first {
            self.add(last, last, r.node, end - last * SZ_1G);
        }
    }
}
