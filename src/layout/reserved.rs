//! Reserved-area construction: holes of a TDMR under a hole basis, PAMT blocks, merging.

use super::HolePolicy;
use super::plan::{ReservedArea, ReservedAreas, ReservedKind};
use crate::addr::PhysRange;
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

/// The parts of `range` not covered by `covered` (sorted by start; may abut or extend beyond
/// `range`), in order. Abutting covered ranges leave no hole between them.
pub(crate) fn gaps(
    range: PhysRange,
    covered: impl Iterator<Item = PhysRange>,
) -> impl Iterator<Item = PhysRange> {
    let mut cursor = range.start();
    let end = range.end();
    let mut covered = covered.fuse();
    let mut done = false;
    core::iter::from_fn(move || {
        while !done {
            match covered.next() {
                Some(c) if c.start() >= end => {}
                Some(c) if c.end() <= cursor => continue,
                Some(c) => {
                    let gap = PhysRange::new_unchecked(cursor, c.start().max(cursor));
                    cursor = c.end();
                    if !gap.is_empty() {
                        return Some(gap);
                    }
                    continue;
                }
                None => {}
            }
            done = true;
            if cursor < end {
                return Some(PhysRange::new_unchecked(cursor, end));
            }
        }
        None
    })
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
    let holes = gaps(tdmr, basis_in(policy, memory, cmrs, tdmr)).map(|r| (r, ReservedKind::Hole));
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    fn r(a: u64, b: u64) -> PhysRange {
        PhysRange::new(a, b).unwrap()
    }

    #[test]
    fn gaps_cover_leading_inner_and_trailing_space() {
        let g: Vec<_> = gaps(r(0, 100), [r(10, 20), r(20, 30), r(40, 120)].into_iter()).collect();
        assert_eq!(g, vec![r(0, 10), r(30, 40)]);
        let g: Vec<_> = gaps(r(50, 100), [r(0, 60), r(70, 80)].into_iter()).collect();
        assert_eq!(g, vec![r(60, 70), r(80, 100)]);
        let g: Vec<_> = gaps(r(0, 10), core::iter::empty()).collect();
        assert_eq!(g, vec![r(0, 10)]);
    }
}
