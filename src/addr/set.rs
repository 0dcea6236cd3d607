//! Sets of physical ranges: union, intersection, difference and gaps, each one sweep.
//!
//! A [`RangeSet`] is kept normalised (sorted, disjoint, never abutting, no empty range), so
//! every operation is a linear merge of two sorted lists and no caller re-implements one.

use alloc::vec::Vec;

use super::PhysRange;

/// A set of physical addresses, held as sorted, disjoint, non-abutting, non-empty ranges.
///
/// ```
/// use tdmr::addr::{PhysRange, RangeSet};
/// let r = |a, b| PhysRange::new(a, b).unwrap();
/// let ram = RangeSet::from_ranges([r(0x3000, 0x8000), r(0, 0x1000), r(0x1000, 0x2000)]);
/// assert_eq!(ram.as_slice(), [r(0, 0x2000), r(0x3000, 0x8000)]);
/// let pamt = RangeSet::from_ranges([r(0x6000, 0x7000)]);
/// assert_eq!(ram.subtract(&pamt).as_slice(), [r(0, 0x2000), r(0x3000, 0x6000), r(0x7000, 0x8000)]);
/// assert_eq!(ram.intersect(&pamt), pamt);
/// assert_eq!(ram.gaps(r(0, 0x9000)).collect::<Vec<_>>(), [r(0x2000, 0x3000), r(0x8000, 0x9000)]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RangeSet {
    ranges: Vec<PhysRange>,
}

/// Appends `r` (starting at or after the last range's start) to a normalised list, merging it
/// into the last range when they overlap or touch.
fn push_merging(out: &mut Vec<PhysRange>, r: PhysRange) {
    if r.is_empty() {
        return;
    }
    match out.last_mut() {
        Some(last) if r.start() <= last.end() => {
            *last = PhysRange::new_unchecked(last.start(), last.end().max(r.end()));
        }
        _ => out.push(r),
    }
}

impl RangeSet {
    /// The empty set.
    pub const fn new() -> Self {
        RangeSet { ranges: Vec::new() }
    }

    /// The union of `ranges` (any order; overlapping, touching and empty ranges allowed).
    /// O(n log n).
    pub fn from_ranges(ranges: impl IntoIterator<Item = PhysRange>) -> Self {
        let mut v: Vec<PhysRange> = ranges.into_iter().filter(|r| !r.is_empty()).collect();
        v.sort_unstable();
        let mut out = Vec::with_capacity(v.len());
        for r in v {
            push_merging(&mut out, r);
        }
        RangeSet { ranges: out }
    }

    /// The ranges, sorted, disjoint, never abutting.
    #[inline]
    pub fn as_slice(&self) -> &[PhysRange] {
        &self.ranges
    }

    /// The ranges as a vector.
    pub fn into_vec(self) -> Vec<PhysRange> {
        self.ranges
    }

    /// The ranges in address order.
    pub fn iter(&self) -> impl Iterator<Item = PhysRange> + '_ {
        self.ranges.iter().copied()
    }

    /// Number of ranges.
    #[inline]
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether the set holds no address.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Bytes in the set.
    pub fn total_bytes(&self) -> u64 {
        self.ranges.iter().map(PhysRange::size).sum()
    }

    /// Whether every byte of `range` is in the set. O(log n).
    pub fn contains_range(&self, range: PhysRange) -> bool {
        self.first_uncovered(range).is_none()
    }

    /// The first part of `range` outside the set, or `None` when the set holds all of it.
    /// O(log n).
    pub fn first_uncovered(&self, range: PhysRange) -> Option<PhysRange> {
        if range.is_empty() {
            return None;
        }
        let i = self.ranges.partition_point(|r| r.end() <= range.start());
        match self.ranges.get(i) {
            Some(r) if r.start() <= range.start() => (r.end() < range.end()).then(|| {
                let next = self.ranges.get(i + 1).map_or(range.end(), |n| n.start());
                PhysRange::new_unchecked(r.end(), next.min(range.end()))
            }),
            Some(r) => Some(PhysRange::new_unchecked(
                range.start(),
                r.start().min(range.end()),
            )),
            None => Some(range),
        }
    }

    /// Every address in either set. O(n + m).
    pub fn union(&self, other: &RangeSet) -> RangeSet {
        let mut out = Vec::with_capacity(self.len() + other.len());
        let (mut a, mut b) = (
            self.ranges.iter().peekable(),
            other.ranges.iter().peekable(),
        );
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x.start() <= y.start() => a.next(),
                (Some(_), Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => break,
            };
            if let Some(&r) = next {
                push_merging(&mut out, r);
            }
        }
        RangeSet { ranges: out }
    }

    /// Every address in both sets. O(n + m).
    pub fn intersect(&self, other: &RangeSet) -> RangeSet {
        let mut out = Vec::new();
        let (a, b) = (&self.ranges, &other.ranges);
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            if let Some(x) = a[i].intersect(b[j]) {
                push_merging(&mut out, x);
            }
            if a[i].end() <= b[j].end() {
                i += 1;
            } else {
                j += 1;
            }
        }
        RangeSet { ranges: out }
    }

    /// Every address in `self` but not in `other`. O(n + m).
    pub fn subtract(&self, other: &RangeSet) -> RangeSet {
        let mut out = Vec::with_capacity(self.len());
        let mut j = 0;
        for &r in &self.ranges {
            while j < other.len() && other.ranges[j].end() <= r.start() {
                j += 1;
            }
            for g in gaps(r, other.ranges[j..].iter().copied()) {
                push_merging(&mut out, g);
            }
        }
        RangeSet { ranges: out }
    }

    /// The parts of `within` outside the set, in order. O(log n + parts).
    pub fn gaps(&self, within: PhysRange) -> impl Iterator<Item = PhysRange> + '_ {
        let first = self.ranges.partition_point(|r| r.end() <= within.start());
        gaps(within, self.ranges[first..].iter().copied())
    }
}

impl FromIterator<PhysRange> for RangeSet {
    fn from_iter<I: IntoIterator<Item = PhysRange>>(iter: I) -> Self {
        RangeSet::from_ranges(iter)
    }
}

impl<'a> IntoIterator for &'a RangeSet {
    type Item = PhysRange;
    type IntoIter = core::iter::Copied<core::slice::Iter<'a, PhysRange>>;

    fn into_iter(self) -> Self::IntoIter {
        self.ranges.iter().copied()
    }
}

/// The parts of `range` that no range of `covered` holds, in order, without allocating.
/// `covered` must be sorted by start; its ranges may overlap, abut or extend beyond `range`
/// (abutting ones leave no gap between them).
///
/// ```
/// use tdmr::addr::{PhysRange, gaps};
/// let r = |a, b| PhysRange::new(a, b).unwrap();
/// let g: Vec<_> = gaps(r(0, 100), [r(10, 20), r(20, 30), r(40, 120)]).collect();
/// assert_eq!(g, [r(0, 10), r(30, 40)]);
/// ```
pub fn gaps(
    range: PhysRange,
    covered: impl IntoIterator<Item = PhysRange>,
) -> impl Iterator<Item = PhysRange> {
    let mut cursor = range.start();
    let end = range.end();
    let mut covered = covered.into_iter().fuse();
    let mut done = false;
    core::iter::from_fn(move || {
        while !done {
            match covered.next() {
                Some(c) if c.start() >= end || cursor >= end => {}
                Some(c) if c.end() <= cursor => continue,
                Some(c) => {
                    let gap = PhysRange::new_unchecked(cursor, c.start().max(cursor));
                    cursor = c.end().max(cursor);
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// Sets over pages 0..N as bitmasks, against which every operation is checked.
    const N: u64 = 12;

    fn set_of(mask: u32) -> RangeSet {
        RangeSet::from_ranges(
            (0..N)
                .filter(|p| mask >> p & 1 == 1)
                .map(|p| PhysRange::new_unchecked(p << 12, (p + 1) << 12)),
        )
    }

    fn mask_of(s: &RangeSet) -> u32 {
        let mut m = 0;
        for r in s.iter() {
            for p in r.start() >> 12..r.end() >> 12 {
                m |= 1 << p;
            }
        }
        m
    }

    fn normalised(s: &RangeSet) -> bool {
        s.as_slice().windows(2).all(|w| w[0].end() < w[1].start())
            && s.iter().all(|r| !r.is_empty())
    }

    #[test]
    fn every_operation_matches_bitmasks_on_small_sets() {
        // Every pair of subsets of 12 pages would be 2^24 pairs; a stride covers every shape.
        for a in (0u32..1 << N).step_by(7) {
            let sa = set_of(a);
            assert_eq!(mask_of(&sa), a);
            assert!(normalised(&sa));
            for b in (0u32..1 << N).step_by(61) {
                let sb = set_of(b);
                for (got, want) in [
                    (sa.union(&sb), a | b),
                    (sa.intersect(&sb), a & b),
                    (sa.subtract(&sb), a & !b),
                ] {
                    assert_eq!(mask_of(&got), want, "{a:#b} {b:#b}");
                    assert!(normalised(&got));
                }
            }
            for lo in 0..N {
                for hi in lo + 1..=N {
                    let within = PhysRange::new_unchecked(lo << 12, hi << 12);
                    let window = ((1u32 << hi) - 1) & !((1u32 << lo) - 1);
                    let g = RangeSet::from_ranges(sa.gaps(within));
                    assert_eq!(mask_of(&g), window & !a);
                    let first = (lo..hi).find(|p| a >> p & 1 == 0);
                    assert_eq!(sa.first_uncovered(within).map(|r| r.start() >> 12), first);
                    if let Some(u) = sa.first_uncovered(within) {
                        // The named part is uncovered and maximal within the window.
                        assert!((u.start() >> 12..u.end() >> 12).all(|p| a >> p & 1 == 0));
                        let after = u.end() >> 12;
                        assert!(after == hi || a >> after & 1 == 1);
                    }
                }
            }
        }
    }

    #[test]
    fn gaps_of_overlapping_sorted_input() {
        let r = |a, b| PhysRange::new(a, b).unwrap();
        let g: Vec<_> = gaps(r(50, 100), [r(0, 60), r(55, 58), r(70, 80)]).collect();
        assert_eq!(g, vec![r(60, 70), r(80, 100)]);
        let g: Vec<_> = gaps(r(0, 10), core::iter::empty()).collect();
        assert_eq!(g, vec![r(0, 10)]);
        assert_eq!(gaps(r(5, 5), [r(0, 1)]).count(), 0);
    }
}
