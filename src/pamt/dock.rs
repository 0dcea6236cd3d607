//! PAMT placement by docking: carve each TDMR's PAMT block from TDX memory of its node, against
//! a reserved area that exists anyway, so that the block adds no reserved area.
//!
//! The caller (the planner) describes where memory meets reserved space: every piece of a memory
//! region inside a TDMR, and whether its low or high end touches a reserved area of that TDMR (a
//! *dock*). Blocks of one node are stacked together at the roomiest dock of that node: a stack
//! that starts at a reserved area is contiguous with it, so the whole stack merges into that one
//! area. A block that fits no dock is stacked *fresh* at the top of a piece in a TDMR with a spare
//! reserved area (one new area per node and TDMR). Other nodes' memory is used only when the
//! node's own has no room. O(blocks × used sites + sites log sites).

use alloc::vec::Vec;

use crate::addr::PhysRange;
use crate::memmap::NodeId;

/// A piece of one memory region inside one TDMR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Site {
    /// Index of the TDMR holding the piece.
    pub tdmr: usize,
    /// The piece.
    pub range: PhysRange,
    /// Node of the memory.
    pub node: NodeId,
    /// The piece's low end touches a reserved area of the same TDMR.
    pub dock_low: bool,
    /// The piece's high end touches a reserved area of the same TDMR.
    pub dock_high: bool,
}

/// One TDMR's PAMT block to place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// Index of the TDMR the PAMT describes.
    pub tdmr: usize,
    /// Bytes (4 KiB multiple).
    pub size: u64,
    /// Node the block should live on.
    pub node: NodeId,
}

/// Where a block went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The block's memory.
    pub range: PhysRange,
    /// Index of the TDMR whose memory holds it.
    pub host_tdmr: usize,
    /// Whether it is on its own node.
    pub local: bool,
    /// Whether it costs a new reserved area (a fresh stack's first block).
    pub new_area: bool,
}

/// No memory could take a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoRoom {
    /// The block that could not be placed.
    pub block: Block,
}

#[derive(Clone, Copy, Debug)]
struct Free {
    lo: u64,
    hi: u64,
    /// Which ends already hold a stack (and so are no longer free to start a fresh one).
    stacked_low: bool,
    stacked_high: bool,
}

/// Places every block; `spare[t]` is the number of reserved areas TDMR `t` can still take.
pub fn place(
    sites: &[Site],
    blocks: &[Block],
    spare: &mut [usize],
) -> Result<Vec<Placement>, NoRoom> {
    let mut free: Vec<Free> = sites
        .iter()
        .map(|s| Free {
            lo: s.range.start(),
            hi: s.range.end(),
            stacked_low: false,
            stacked_high: false,
        })
        .collect();
    // Sites by node, roomiest first (ties: higher address first), for docks and fresh stacks.
    let mut order: Vec<usize> = (0..sites.len()).collect();
    order.sort_unstable_by(|&a, &b| {
        let (sa, sb) = (&sites[a], &sites[b]);
        sa.node
            .cmp(&sb.node)
            .then(sb.range.size().cmp(&sa.range.size()))
            .then(sb.range.start().cmp(&sa.range.start()))
    });
    let node_slice = |node: NodeId| {
        let lo = order.partition_point(|&i| sites[i].node < node);
        let hi = order.partition_point(|&i| sites[i].node <= node);
        &order[lo..hi]
    };

    // Largest blocks first; ties by TDMR index, so the result is deterministic.
    let mut by_size: Vec<usize> = (0..blocks.len()).collect();
    by_size.sort_unstable_by(|&a, &b| {
        blocks[b]
            .size
            .cmp(&blocks[a].size)
            .then(blocks[a].tdmr.cmp(&blocks[b].tdmr))
    });
    // Fresh stacks opened so far: (site, node) -> the stack continues downward from `hi`.
    let mut fresh_open: Vec<(usize, NodeId)> = Vec::new();

    let mut out: Vec<Option<Placement>> = alloc::vec![None; blocks.len()];
    for &bi in &by_size {
        let block = blocks[bi];
        let local = node_slice(block.node);
        let placed = dock(sites, &mut free, local, block.size)
            .map(|(range, site)| (range, site, false))
            .or_else(|| fresh(sites, &mut free, local, true, block, spare, &mut fresh_open))
            .or_else(|| {
                dock(sites, &mut free, &order, block.size).map(|(range, site)| (range, site, false))
            })
            .or_else(|| {
                fresh(
                    sites,
                    &mut free,
                    &order,
                    false,
                    block,
                    spare,
                    &mut fresh_open,
                )
            });
        let Some((range, site, new_area)) = placed else {
            return Err(NoRoom { block });
        };
        out[bi] = Some(Placement {
            range,
            host_tdmr: sites[site].tdmr,
            local: sites[site].node == block.node,
            new_area,
        });
    }
    // Every entry was filled above or the function returned early.
    Ok(out.into_iter().flatten().collect())
}

/// Stacks `size` bytes at the roomiest dock among `candidates`; returns the range and site.
fn dock(
    sites: &[Site],
    free: &mut [Free],
    candidates: &[usize],
    size: u64,
) -> Option<(PhysRange, usize)> {
    for &i in candidates {
        let s = &sites[i];
        let f = &mut free[i];
        if f.hi - f.lo < size {
            continue;
        }
        // A dock end is usable while nothing but a dock stack sits there.
        if s.dock_high && (f.hi == s.range.end() || f.stacked_high) {
            f.hi -= size;
            f.stacked_high = true;
            return Some((PhysRange::new_unchecked(f.hi, f.hi + size), i));
        }
        if s.dock_low && (f.lo == s.range.start() || f.stacked_low) {
            f.lo += size;
            f.stacked_low = true;
            return Some((PhysRange::new_unchecked(f.lo - size, f.lo), i));
        }
    }
    None
}

/// Stacks the block on an open fresh stack of its node, or opens one (a new reserved area) in a
/// TDMR with a spare area; returns the range, the site and whether a new area was opened.
fn fresh(
    sites: &[Site],
    free: &mut [Free],
    candidates: &[usize],
    local_only: bool,
    block: Block,
    spare: &mut [usize],
    open: &mut Vec<(usize, NodeId)>,
) -> Option<(PhysRange, usize, bool)> {
    for &(i, node) in open.iter() {
        if node == block.node && (!local_only || sites[i].node == block.node) {
            let f = &mut free[i];
            if f.hi - f.lo >= block.size {
                f.hi -= block.size;
                return Some((PhysRange::new_unchecked(f.hi, f.hi + block.size), i, false));
            }
        }
    }
    for &i in candidates {
        let s = &sites[i];
        let f = &mut free[i];
        if f.stacked_high || f.hi - f.lo < block.size || spare[s.tdmr] == 0 {
            continue;
        }
        spare[s.tdmr] -= 1;
        f.hi -= block.size;
        f.stacked_high = true;
        open.push((i, block.node));
        return Some((PhysRange::new_unchecked(f.hi, f.hi + block.size), i, true));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn r(a: u64, b: u64) -> PhysRange {
        PhysRange::new(a, b).unwrap()
    }

    #[test]
    fn blocks_of_a_node_stack_at_its_roomiest_dock() {
        let sites = [
            Site {
                tdmr: 0,
                range: r(0x1000, 0x9000),
                node: 0,
                dock_low: false,
                dock_high: true,
            },
            Site {
                tdmr: 1,
                range: r(0x10000, 0x30000),
                node: 0,
                dock_low: true,
                dock_high: false,
            },
            Site {
                tdmr: 1,
                range: r(0x40000, 0x50000),
                node: 1,
                dock_low: false,
                dock_high: false,
            },
        ];
        let blocks = [
            Block {
                tdmr: 0,
                size: 0x2000,
                node: 0,
            },
            Block {
                tdmr: 1,
                size: 0x3000,
                node: 0,
            },
            Block {
                tdmr: 2,
                size: 0x1000,
                node: 1,
            },
        ];
        let mut spare = vec![0, 1];
        let p = place(&sites, &blocks, &mut spare).unwrap();
        assert_eq!(p[1].range, r(0x10000, 0x13000));
        assert_eq!(p[0].range, r(0x13000, 0x15000));
        assert!(!p[0].new_area && !p[1].new_area && p[0].local);
        // Node 1 has no dock: a fresh area in TDMR 1, the only one with a spare area.
        assert_eq!(p[2].range, r(0x4f000, 0x50000));
        assert!(p[2].new_area);
        assert_eq!(spare, vec![0, 0]);
    }

    #[test]
    fn no_room_names_the_block() {
        let sites = [Site {
            tdmr: 0,
            range: r(0, 0x1000),
            node: 0,
            dock_low: false,
            dock_high: false,
        }];
        let blocks = [Block {
            tdmr: 0,
            size: 0x1000,
            node: 0,
        }];
        assert_eq!(
            place(&sites, &blocks, &mut [0]),
            Err(NoRoom { block: blocks[0] })
        );
    }
}
