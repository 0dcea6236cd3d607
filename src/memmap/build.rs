//! From RAM and NUMA affinity to TDX memory, by the kernel's rules: the one place those rules
//! live, shared by every front end (kernel-log text in [`parse_kernel_log`](super::parse_kernel_log),
//! firmware tables in [`firmware::memory_map`](super::firmware::memory_map)), so the same
//! machine gives the same [`MemoryMap`] whichever way it is read.
//!
//! The rules, as x86 Linux applies them before TDX sees its memory (memblock):
//!
//! 1. RAM ranges are merged where they touch or overlap, then trimmed to whole 4 KiB pages
//!    (memblock merges what the kernel adds, then trims: two touching partial-page ranges make
//!    whole pages across their boundary).
//! 2. TDX memory starts at 1 MiB: the first MiB is never handed to the TDX module.
//! 3. Affinity ranges are sorted (empty ones ignored); neighbours of one node and one hotplug flag merge; overlaps
//!    across nodes, or across flags of one node, are refused.
//! 4. When more than 1 MiB of RAM (counted over all RAM, the first MiB included) lies in no
//!    affinity range, NUMA is off: all memory on node 0, hotplug flags dropped
//!    ([`MapWarning::NumaOff`]). Up to 1 MiB stays NUMA; those pages go to node 0 as regions
//!    of their own ([`MapWarning::RamWithoutNode`]).
//! 5. RAM is split at affinity boundaries, one region per piece. RAM in a range marked
//!    hot-pluggable stays a region of its own even where it abuts plain RAM of its node:
//!    memblock never merges regions whose flags differ.

use alloc::vec::Vec;
use core::fmt;

use super::{MemoryMap, MemoryMapError, MemoryRegion, NodeId};
use crate::addr::{Bytes, PhysRange, RangeSet, SZ_1M, SZ_4K, align_down, align_up};

/// Uncovered RAM above which x86 Linux turns NUMA off (its coverage check allows 1 MiB).
const NUMA_COVERAGE_SLACK: u64 = SZ_1M;

/// Something about the machine's memory that changes how the kernel sees it, and so the plan;
/// not an error: the kernel boots with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MapWarning {
    /// More than 1 MiB of RAM lies in no SRAT node. x86 Linux then discards the SRAT and runs
    /// with NUMA off, all memory on node 0; the memory map says the same.
    NumaOff {
        /// RAM in no SRAT node, in bytes (whole pages, the first MiB included as the kernel
        /// counts it).
        uncovered: u64,
        /// The first such range.
        first: PhysRange,
    },
    /// Up to 1 MiB of TDX memory lies in no SRAT node: Linux keeps NUMA on and these pages
    /// belong to no node; the memory map puts them on node 0.
    RamWithoutNode {
        /// TDX memory in no SRAT node, in bytes.
        uncovered: u64,
        /// The first such range.
        first: PhysRange,
    },
}

impl fmt::Display for MapWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MapWarning::NumaOff { uncovered, first } => write!(
                f,
                "{} of RAM in no SRAT node (the first: {first}): Linux turns NUMA off, so all memory is planned on node 0",
                Bytes(uncovered)
            ),
            MapWarning::RamWithoutNode { uncovered, first } => write!(
                f,
                "{} of RAM in no SRAT node (the first: {first}): Linux keeps NUMA on and gives it no node; planned on node 0",
                Bytes(uncovered)
            ),
        }
    }
}

/// One NUMA affinity range as a front end read it; `source` says where (a log line, a table
/// index) so an error can point back at it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Affinity {
    pub(crate) range: PhysRange,
    pub(crate) node: NodeId,
    pub(crate) hotplug: bool,
    pub(crate) source: usize,
}

/// Why the rules refuse an input; the front end turns it into its own error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BuildError {
    /// The affinity range from `source` overlaps one of `other_node` (or of its node with the
    /// other hotplug flag).
    Overlap {
        source: usize,
        range: PhysRange,
        other_node: NodeId,
    },
    /// The regions do not make a valid memory map (no memory left, or an affinity boundary
    /// inside a page).
    Memory(MemoryMapError),
}

/// TDX memory and what the kernel would warn about, from raw RAM ranges (any order, overlaps
/// and partial pages allowed) and the affinity ranges (empty: no NUMA information, node 0).
/// O((RAM + affinity) log(RAM + affinity)).
pub(crate) fn tdx_memory(
    ram: impl IntoIterator<Item = PhysRange>,
    affinity: Vec<Affinity>,
) -> Result<(MemoryMap, Vec<MapWarning>), BuildError> {
    // Rule 1: merged, then whole pages only (memblock merges what is added, then trims).
    let whole_pages: Vec<PhysRange> = RangeSet::from_ranges(ram)
        .iter()
        .filter_map(|r| {
            let s = align_up(r.start(), SZ_4K)?;
            let e = align_down(r.end(), SZ_4K);
            (s < e).then(|| PhysRange::new_unchecked(s, e))
        })
        .collect();
    // Rule 2.
    let ram: Vec<PhysRange> = whole_pages
        .iter()
        .filter_map(|r| {
            let s = r.start().max(SZ_1M);
            (s < r.end()).then(|| PhysRange::new_unchecked(s, r.end()))
        })
        .collect();

    let nodes = merge(affinity)?;
    let mut warnings = Vec::new();
    let on_node_0 = |ram: &[PhysRange]| {
        ram.iter()
            .map(|r| MemoryRegion::new(r.start(), r.size(), 0))
            .collect()
    };
    let regions = if nodes.is_empty() {
        on_node_0(&ram)
    } else {
        // Rule 4: the kernel counts uncovered RAM over all of memblock, the first MiB included.
        let (lost, first) = uncovered(&whole_pages, &nodes);
        match first {
            Some(first) if lost > NUMA_COVERAGE_SLACK => {
                warnings.push(MapWarning::NumaOff {
                    uncovered: lost,
                    first,
                });
                on_node_0(&ram)
            }
            _ => {
                if let (lost, Some(first)) = uncovered(&ram, &nodes) {
                    warnings.push(MapWarning::RamWithoutNode {
                        uncovered: lost,
                        first,
                    });
                }
                split_by_node(&ram, &nodes)
            }
        }
    };
    let memory = MemoryMap::new(regions).map_err(BuildError::Memory)?;
    Ok((memory, warnings))
}

/// Rule 3: affinity sorted; neighbours of one node and one hotplug flag merged (as memblock
/// merges regions of equal node and flags); overlaps across nodes or flags refused.
fn merge(mut affinity: Vec<Affinity>) -> Result<Vec<Affinity>, BuildError> {
    // An empty range says nothing about any byte.
    affinity.retain(|e| !e.range.is_empty());
    affinity.sort_unstable_by_key(|e| (e.range.start(), e.range.end(), e.source));
    let mut out: Vec<Affinity> = Vec::with_capacity(affinity.len());
    for e in affinity {
        match out.last_mut() {
            Some(last)
                if e.range.start() < last.range.end()
                    && (last.node != e.node || last.hotplug != e.hotplug) =>
            {
                return Err(BuildError::Overlap {
                    source: e.source,
                    range: e.range,
                    other_node: last.node,
                });
            }
            Some(last)
                if e.range.start() <= last.range.end()
                    && last.node == e.node
                    && last.hotplug == e.hotplug =>
            {
                last.range = PhysRange::new_unchecked(
                    last.range.start(),
                    last.range.end().max(e.range.end()),
                );
            }
            _ => out.push(e),
        }
    }
    Ok(out)
}

/// The RAM no affinity range covers: bytes and the first range. O(RAM + affinity).
fn uncovered(ram: &[PhysRange], nodes: &[Affinity]) -> (u64, Option<PhysRange>) {
    let covered = RangeSet::from_ranges(nodes.iter().map(|e| e.range));
    let left = RangeSet::from_ranges(ram.iter().copied()).subtract(&covered);
    (left.total_bytes(), left.iter().next())
}

/// Rule 5: each RAM range split at the affinity ranges, one region per piece, with the range's
/// node. Pieces outside every range go to node 0 (only ever up to 1 MiB: more turns NUMA off),
/// as regions of their own: memblock keeps them apart from node 0's (they carry no node there).
fn split_by_node(ram: &[PhysRange], nodes: &[Affinity]) -> Vec<MemoryRegion> {
    let mut regions = Vec::with_capacity(ram.len() + nodes.len());
    for r in ram {
        let mut cursor = r.start();
        let first = nodes.partition_point(|e| e.range.end() <= r.start());
        for e in &nodes[first..] {
            if e.range.start() >= r.end() {
                break;
            }
            if e.range.start() > cursor {
                regions.push(MemoryRegion::new(cursor, e.range.start() - cursor, 0));
                cursor = e.range.start();
            }
            let end = e.range.end().min(r.end());
            // A boundary inside a page makes an unaligned region, refused by MemoryMap::new.
            regions.push(MemoryRegion::new(cursor, end - cursor, e.node));
            cursor = end;
        }
        if cursor < r.end() {
            regions.push(MemoryRegion::new(cursor, r.end() - cursor, 0));
        }
    }
    regions
}
