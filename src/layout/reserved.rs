//! Reserved-area construction: holes of a TDMR under a hole basis, PAMT blocks, merging.

use super::HolePolicy;
use super::reserved_areas::{ReservedArea, ReservedAreas, ReservedKind};
use crate::addr::{PhysRange, gaps};
use crate::memmap::{Cmrs, MemoryMap};

/// The sorted ranges whose complement is a hole under `policy`, restricted to those that may
/// intersect `range`.
pub(crate) fn basis_in<'a>(
    policy: HolePolicy,
    memory: &'a MemoryMap,
    cmrs: &'a Cmrs,
    range: PhysRange,
) -> impl Iterator<Item = PhysRange> + 'a {
    let (mem, cmr): (&[_], &[_]) = match policy {
        HolePolicy::Memory => (memory.regions_in(range), &[]),
        HolePolicy::Cmr => {
            let m = cmrs.merged();
            let lo = m.partition_point(|c| c.end() <= range.start());
            let hi = m.partition_point(|c| c.start() < range.end());
            (&[], &m[lo..hi.max(lo)])
        }
    };
    mem.iter().map(|r| r.range()).chain(cmr.iter().copied())
}

/// The holes of `range` under `policy`, in order: the parts outside its basis.
pub(crate) fn gaps_in<'a>(
    policy: HolePolicy,
    memory: &'a MemoryMap,
    cmrs: &'a Cmrs,
    range: PhysRange,
) -> impl Iterator<Item = PhysRange> + 'a {
    gaps(range, basis_in(policy, memory, cmrs, range))
}

/// The reserved areas of `tdmr` in the merged form: every must-reserve piece (the holes of the
/// hole basis, and the parts of `pamt_blocks` inside the TDMR) in as few areas as possible. Two
/// pieces share an area exactly when no TDX memory lies between them.
pub(crate) fn build_merged(
    tdmr: PhysRange,
    policy: HolePolicy,
    memory: &MemoryMap,
    cmrs: &Cmrs,
    pamt_blocks: &[PhysRange],
) -> ReservedAreas {
    let holes = gaps_in(policy, memory, cmrs, tdmr).map(|r| (r, ReservedKind::Hole));
    let lo = pamt_blocks.partition_point(|b| b.end() <= tdmr.start());
    let pamts = pamt_blocks[lo..]
        .iter()
        .take_while(|b| b.start() < tdmr.end())
        .filter_map(|b| b.intersect(tdmr))
        .map(|r| (r, ReservedKind::Pamt));
    let mut pieces: alloc::vec::Vec<(PhysRange, ReservedKind)> = holes.chain(pamts).collect();
    pieces.sort_unstable_by_key(|(r, _)| r.start());
    let mut out = ReservedAreas::new();
    let mut current: Option<(PhysRange, ReservedKind)> = None;
    for (r, kind) in pieces {
        current = match current {
            Some((c, ck))
                if r.start() <= c.end()
                    || memory
                        .regions_in(PhysRange::new_unchecked(c.end(), r.start()))
                        .is_empty() =>
            {
                Some((
                    PhysRange::new_unchecked(c.start(), c.end().max(r.end())),
                    ck.merge(kind),
                ))
            }
            Some(done) => {
                out.push(relative(tdmr, done));
                Some((r, kind))
            }
            None => Some((r, kind)),
        };
    }
    if let Some(done) = current {
        out.push(relative(tdmr, done));
    }
    out
}

pub(crate) fn relative(tdmr: PhysRange, (r, kind): (PhysRange, ReservedKind)) -> ReservedArea {
    ReservedArea {
        offset: r.start() - tdmr.start(),
        size: r.size(),
        kind,
    }
}
