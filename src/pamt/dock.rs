//! PAMT placement by docking: carve each TDMR's PAMT block from TDX memory of its node, against
//! a reserved area that exists anyway, so that the block adds no reserved area.
//!
//! The caller (the planner) describes where memory meets reserved space: every piece of a memory
//! region inside a TDMR, and whether its low or high end touches a reserved area of that TDMR (a
//! *dock*). Blocks are stacked at the ends of pieces, largest first, on the roomiest piece of the
//! block's node: a stack that starts at a dock is contiguous with that reserved area, and every
//! block stacked on it joins the same area, so blocks of one node gather in one place at no cost.
//! A block that fits no dock or stack opens a new stack (one new reserved area) in a TDMR that
//! can still take one. Other nodes' memory is used only when the node's own has no room.
//! O(blocks × sites + sites log sites).

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
    /// Which ends already hold a stack: more blocks there join its reserved area.
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
    // Any node's pieces, roomiest first, for blocks whose own node has no room.
    let mut by_room = order.clone();
    by_room.sort_unstable_by(|&a, &b| {
        let (sa, sb) = (&sites[a], &sites[b]);
        sb.range
            .size()
            .cmp(&sa.range.size())
            .then(sb.range.start().cmp(&sa.range.start()))
    });

    // Four rounds, each over the blocks the previous ones could not place: on the block's own
    // node at no cost, then opening a new area there, then on other nodes likewise. Every block
    // gets its node's memory before any block borrows it.
    let mut out: Vec<Option<Placement>> = alloc::vec![None; blocks.len()];
    let mut pending = by_size;
    for round in 0..4 {
        let (remote, opens) = (round >= 2, round % 2 == 1);
        let mut left = Vec::new();
        for bi in pending {
            let block = blocks[bi];
            let candidates = if remote {
                &by_room[..]
            } else {
                node_slice(block.node)
            };
            let spare = opens.then_some(&mut *spare);
            match stack(sites, &mut free, candidates, block.size, spare) {
                Some((range, site, new_area)) => {
                    out[bi] = Some(Placement {
                        range,
                        host_tdmr: sites[site].tdmr,
                        local: sites[site].node == block.node,
                        new_area,
                    })
                }
                None => left.push(bi),
            }
        }
        pending = left;
    }
    if let Some(&bi) = pending.first() {
        return Err(NoRoom { block: blocks[bi] });
    }
    // Every entry was filled above or the function returned early.
    Ok(out.into_iter().flatten().collect())
}

/// Stacks `size` bytes on the roomiest candidate site. Without `spare`, only where it costs no
/// reserved area: on an existing stack, or against a dock. With `spare`, where a new stack opens
/// a new area, in a TDMR that can still take one. Returns the range, the site and whether a new
/// area was opened.
fn stack(
    sites: &[Site],
    free: &mut [Free],
    candidates: &[usize],
    size: u64,
    mut spare: Option<&mut [usize]>,
) -> Option<(PhysRange, usize, bool)> {
    for &i in candidates {
        let s = &sites[i];
        let f = &mut free[i];
        if f.hi - f.lo < size {
            continue;
        }
        let (high, low, new_area) = match spare.as_deref_mut() {
            None => (
                f.stacked_high || (s.dock_high && f.hi == s.range.end()),
                f.stacked_low || (s.dock_low && f.lo == s.range.start()),
                false,
            ),
            Some(spare) => {
                if spare[s.tdmr] == 0 || (f.stacked_high && f.stacked_low) {
                    continue;
                }
                spare[s.tdmr] -= 1;
                (!f.stacked_high, f.stacked_high, true)
            }
        };
        if high {
            f.hi -= size;
            f.stacked_high = true;
            return Some((PhysRange::new_unchecked(f.hi, f.hi + size), i, new_area));
        }
        if low {
            f.lo += size;
            f.stacked_low = true;
            return Some((PhysRange::new_unchecked(f.lo - size, f.lo), i, new_area));
        }
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
