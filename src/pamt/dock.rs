//! PAMT placement by docking: carve each TDMR's PAMT block from TDX memory of its own node,
//! against a reserved area that exists anyway, so that the block adds no reserved area.
//!
//! The caller (the planner) describes where memory meets reserved space: pieces of contiguous
//! memory of one node inside one TDMR, and whether a piece's low or high end touches a reserved
//! area of that TDMR (a *dock*). Blocks are stacked at the ends of pieces, largest first, on
//! the roomiest piece: a stack that starts at a dock is contiguous with that reserved area, and
//! every block stacked on it joins the same area, so blocks of one node gather in one place at
//! no cost.
//!
//! Each block names the nodes it prefers, the node holding most of its TDMR's memory first.
//! Rounds go down that list, each node first at no cost (a dock or an existing stack) and then
//! opening a fresh stack (one new reserved area, in a TDMR that can still take one), so that a
//! block keeps to its own node whenever the limits allow, and every block gets its own node's
//! memory before any other block borrows it. After the preferred nodes come any node's pieces,
//! and, as the last resort, contiguous memory across node boundaries within one TDMR (the
//! module needs a PAMT contiguous and convertible, nothing more).
//! O(rounds × blocks × pieces + pieces log pieces).

use alloc::vec::Vec;

use smallvec::SmallVec;

use crate::addr::PhysRange;
use crate::memmap::NodeId;

/// A piece of contiguous memory of one node inside one TDMR.
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// Index of the TDMR the PAMT describes.
    pub tdmr: usize,
    /// Bytes (4 KiB multiple).
    pub size: u64,
    /// The nodes to try first, best first: those holding the TDMR's memory, most first.
    pub prefs: SmallVec<[NodeId; 4]>,
}

impl Block {
    /// The node the block is for (its first preference), if it has one.
    pub fn home(&self) -> Option<NodeId> {
        self.prefs.first().copied()
    }
}

/// Where a block went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The block's memory.
    pub range: PhysRange,
    /// Index of the TDMR whose memory holds it.
    pub host_tdmr: usize,
    /// Node of the memory holding it (the first node's, when it spans nodes).
    pub node: NodeId,
    /// Its rank among the block's preferred nodes (0: its own node), `None` for another node.
    pub rank: Option<usize>,
    /// Whether it spans memory of more than one node.
    pub spans: bool,
    /// Whether it costs a new reserved area (a fresh stack's first block).
    pub new_area: bool,
}

/// No memory could take a block.
#[derive(Clone, Debug, PartialEq, Eq)]
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

/// Which pieces a round may use.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Where {
    /// The block's preferred node of this rank.
    Rank(usize),
    /// Any node.
    Any,
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
    // Any node's pieces, roomiest first.
    let mut by_room = order.clone();
    by_room.sort_unstable_by(|&a, &b| {
        let (sa, sb) = (&sites[a], &sites[b]);
        sb.range
            .size()
            .cmp(&sa.range.size())
            .then(sb.range.start().cmp(&sa.range.start()))
    });

    // Largest blocks first; ties by TDMR index, so the result is deterministic.
    let mut pending: Vec<usize> = (0..blocks.len()).collect();
    pending.sort_unstable_by(|&a, &b| {
        blocks[b]
            .size
            .cmp(&blocks[a].size)
            .then(blocks[a].tdmr.cmp(&blocks[b].tdmr))
    });
    let ranks = blocks.iter().map(|b| b.prefs.len()).max().unwrap_or(0);
    let mut rounds: Vec<(Where, bool)> = Vec::with_capacity(2 * ranks + 2);
    for r in 0..ranks {
        rounds.push((Where::Rank(r), false));
        rounds.push((Where::Rank(r), true));
    }
    rounds.push((Where::Any, false));
    rounds.push((Where::Any, true));

    let mut out: Vec<Option<Placement>> = alloc::vec![None; blocks.len()];
    for (at, opens) in rounds {
        let mut left = Vec::new();
        for bi in pending {
            let block = &blocks[bi];
            let candidates = match at {
                Where::Rank(r) => match block.prefs.get(r) {
                    Some(&node) => node_slice(node),
                    None => {
                        left.push(bi);
                        continue;
                    }
                },
                Where::Any => &by_room[..],
            };
            let spare = opens.then_some(&mut *spare);
            match stack(sites, &mut free, candidates, block.size, spare) {
                Some((range, site, new_area)) => {
                    let node = sites[site].node;
                    out[bi] = Some(Placement {
                        range,
                        host_tdmr: sites[site].tdmr,
                        node,
                        rank: block.prefs.iter().position(|&n| n == node),
                        spans: false,
                        new_area,
                    })
                }
                None => left.push(bi),
            }
        }
        pending = left;
    }
    // The last resort: contiguous free memory across node boundaries inside one TDMR.
    for opens in [false, true] {
        let mut left = Vec::new();
        for bi in pending {
            let block = &blocks[bi];
            let spare = opens.then_some(&mut *spare);
            match span_nodes(sites, &mut free, block.size, spare) {
                Some((range, site, new_area)) => {
                    let node = sites[site].node;
                    out[bi] = Some(Placement {
                        range,
                        host_tdmr: sites[site].tdmr,
                        node,
                        rank: block.prefs.iter().position(|&n| n == node),
                        spans: true,
                        new_area,
                    });
                }
                None => left.push(bi),
            }
        }
        pending = left;
    }
    if let Some(&bi) = pending.first() {
        return Err(NoRoom {
            block: blocks[bi].clone(),
        });
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

/// Places `size` bytes in free memory that runs across abutting pieces of one TDMR (of any
/// nodes), at the top of the first such stretch with room: against a dock or the high end's
/// stack when one is there, otherwise opening a new area (with `spare`). The pieces it covers
/// are used up. Returns the range, the site holding its first byte and whether it opened an
/// area.
fn span_nodes(
    sites: &[Site],
    free: &mut [Free],
    size: u64,
    mut spare: Option<&mut [usize]>,
) -> Option<(PhysRange, usize, bool)> {
    let mut k = 0;
    while k < sites.len() {
        // A stretch: pieces k..end of one TDMR, each abutting the last, free space running
        // through (a piece's free part reaches its end, the next one's starts at its start).
        let mut end = k + 1;
        while end < sites.len()
            && sites[end].tdmr == sites[k].tdmr
            && sites[end].range.start() == sites[end - 1].range.end()
            && free[end - 1].hi == sites[end - 1].range.end()
            && free[end].lo == sites[end].range.start()
        {
            end += 1;
        }
        let (lo, hi) = (free[k].lo, free[end - 1].hi);
        let last = &sites[end - 1];
        let joins = free[end - 1].stacked_high || (last.dock_high && hi == last.range.end());
        if end - k > 1 && hi - lo >= size {
            let t = sites[k].tdmr;
            let new_area = !joins;
            let allowed = match spare.as_deref_mut() {
                None => joins,
                Some(spare) if new_area && spare[t] > 0 => {
                    spare[t] -= 1;
                    true
                }
                Some(_) => joins,
            };
            if allowed {
                let start = hi - size;
                for (i, f) in free.iter_mut().enumerate().take(end).skip(k) {
                    let r = sites[i].range;
                    if r.end() <= start {
                        continue;
                    }
                    if r.start() >= start {
                        f.lo = f.hi; // used up
                    } else {
                        f.hi = start;
                    }
                    f.stacked_high = true;
                }
                let first = (k..end)
                    .find(|&i| sites[i].range.end() > start)
                    .unwrap_or(k);
                return Some((PhysRange::new_unchecked(start, hi), first, new_area));
            }
        }
        k = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use smallvec::smallvec;

    fn r(a: u64, b: u64) -> PhysRange {
        PhysRange::new(a, b).unwrap()
    }

    fn site(tdmr: usize, range: PhysRange, node: NodeId, low: bool, high: bool) -> Site {
        Site {
            tdmr,
            range,
            node,
            dock_low: low,
            dock_high: high,
        }
    }

    #[test]
    fn blocks_of_a_node_stack_at_its_roomiest_dock() {
        let sites = [
            site(0, r(0x1000, 0x9000), 0, false, true),
            site(1, r(0x10000, 0x30000), 0, true, false),
            site(1, r(0x40000, 0x50000), 1, false, false),
        ];
        let blocks = [
            Block {
                tdmr: 0,
                size: 0x2000,
                prefs: smallvec![0],
            },
            Block {
                tdmr: 1,
                size: 0x3000,
                prefs: smallvec![0],
            },
            Block {
                tdmr: 2,
                size: 0x1000,
                prefs: smallvec![1],
            },
        ];
        let mut spare = vec![0, 1];
        let p = place(&sites, &blocks, &mut spare).unwrap();
        assert_eq!(p[1].range, r(0x10000, 0x13000));
        assert_eq!(p[0].range, r(0x13000, 0x15000));
        assert!(!p[0].new_area && !p[1].new_area && p[0].rank == Some(0));
        // Node 1 has no dock: a fresh area in TDMR 1, the only one with a spare area.
        assert_eq!(p[2].range, r(0x4f000, 0x50000));
        assert!(p[2].new_area && p[2].rank == Some(0));
        assert_eq!(spare, vec![0, 0]);
    }

    #[test]
    fn a_fresh_area_on_its_own_node_beats_a_free_dock_elsewhere() {
        // Node 1 has a dock; node 0 none but a TDMR with a spare area.
        let sites = [
            site(0, r(0x10000, 0x20000), 0, false, false),
            site(1, r(0x30000, 0x40000), 1, false, true),
        ];
        let blocks = [Block {
            tdmr: 0,
            size: 0x1000,
            prefs: smallvec![0],
        }];
        let p = place(&sites, &blocks, &mut [1, 0]).unwrap();
        assert_eq!(p[0].node, 0);
        assert!(p[0].new_area);
        // Without a spare area it goes to node 1's dock, as another node.
        let p = place(&sites, &blocks, &mut [0, 0]).unwrap();
        assert_eq!((p[0].node, p[0].rank, p[0].new_area), (1, None, false));
    }

    #[test]
    fn the_second_node_of_a_tdmr_comes_before_a_stranger() {
        let sites = [
            site(0, r(0x10000, 0x11000), 0, false, true),
            site(0, r(0x20000, 0x30000), 1, false, true),
            site(1, r(0x40000, 0x80000), 2, false, true),
        ];
        let blocks = [Block {
            tdmr: 0,
            size: 0x2000,
            prefs: smallvec![0, 1],
        }];
        let p = place(&sites, &blocks, &mut [0, 0]).unwrap();
        assert_eq!((p[0].node, p[0].rank), (1, Some(1)));
    }

    #[test]
    fn a_block_larger_than_any_one_node_piece_spans_nodes() {
        // Two abutting pieces of different nodes in one TDMR, 64 KiB each; a dock above.
        let sites = [
            site(0, r(0x10000, 0x20000), 0, false, false),
            site(0, r(0x20000, 0x30000), 1, false, true),
        ];
        let blocks = [Block {
            tdmr: 0,
            size: 0x18000,
            prefs: smallvec![0, 1],
        }];
        let p = place(&sites, &blocks, &mut [0]).unwrap();
        assert_eq!(p[0].range, r(0x18000, 0x30000));
        assert!(p[0].spans && !p[0].new_area);
        assert_eq!(p[0].node, 0);
    }

    #[test]
    fn no_room_names_the_block() {
        let sites = [site(0, r(0, 0x1000), 0, false, false)];
        let blocks = [Block {
            tdmr: 0,
            size: 0x1000,
            prefs: smallvec![0],
        }];
        assert_eq!(
            place(&sites, &blocks, &mut [0]),
            Err(NoRoom {
                block: blocks[0].clone()
            })
        );
    }
}
