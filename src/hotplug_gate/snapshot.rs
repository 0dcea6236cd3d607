//! The frozen TDX memory: what it is ([`frozen_tdx_memory`]) and the immutable, lock-free
//! snapshot the initialized path searches.
//!
//! The snapshot lives in atomics the gate allocates when it is built, because the crate has no
//! `unsafe` and `core` has no write-once cell that threads can share. It is written exactly once,
//! by the holder of the [`super::InitTicket`] while the state is initializing (no reader looks
//! at it then), with Relaxed stores followed by the Release that moves the state to initialized.
//! Readers load the state with Acquire first, so they see the finished snapshot; it is never
//! written again and never freed before the gate, so there is nothing to reclaim.

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::error::PublishError;
use super::sections::SectionBitmap;
use super::sync::{AtomicU64, AtomicUsize, Ordering};
use crate::addr::{PhysRange, RangeSet};
use crate::layout::Plan;
use crate::memmap::MemoryMap;

/// The memory a hotplug gate admits once `plan` is configured: every byte that lies in a
/// TDMR's non-reserved space, was TDX memory in `memory` at initialization, and is in no PAMT
/// block. Sorted, disjoint, never abutting (touching pieces are merged, so a range spanning
/// several memory regions or TDMRs is one piece). O((n + m) log (n + m)) for n non-reserved
/// segments and PAMT blocks and m memory regions.
///
/// ```
/// use tdmr::hotplug_gate::frozen_tdx_memory;
/// use tdmr::layout::{HolePolicy, Planner};
/// use tdmr::memmap::parse_kernel_log;
/// let log = "CMR: [0x100000, 0x77800000)\nCMR: [0x100000000, 0x407a000000)\n";
/// let input = parse_kernel_log(log).unwrap();
/// let plan = Planner::new().plan(input.memory(), input.cmrs()).unwrap();
/// let frozen = frozen_tdx_memory(&plan, input.memory());
/// // All TDX memory except the PAMT blocks, which the planner took from its top.
/// let pamt: u64 = plan.pamt_bytes();
/// let total: u64 = frozen.iter().map(|r| r.size()).sum();
/// assert_eq!(total, input.memory().total_bytes() - pamt);
/// ```
pub fn frozen_tdx_memory(plan: &Plan, memory: &MemoryMap) -> Vec<PhysRange> {
    let available = RangeSet::from_ranges(plan.tdmrs().iter().flat_map(|t| t.available()));
    let memory = RangeSet::from_ranges(memory.regions().iter().map(|r| r.range()));
    available
        .intersect(&memory)
        .subtract(&plan.pamt_ranges())
        .into_vec()
}

/// Window size below which [`first_uncovered`] scans instead of halving.
const LINEAR: usize = 16;

/// A range bound as stored: a plain `u64` (the CMRs) or a snapshot slot.
pub(crate) trait Bound {
    /// The value (snapshot slots: Relaxed, see [`Snapshot`]).
    fn value(&self) -> u64;
}

impl Bound for u64 {
    #[inline]
    fn value(&self) -> u64 {
        *self
    }
}

impl Bound for AtomicU64 {
    #[inline]
    fn value(&self) -> u64 {
        self.load(Ordering::Relaxed)
    }
}

/// The first part of `range` (non-empty) not covered by the pieces `[starts[i], ends[i])`
/// (sorted, disjoint, never abutting). O(log n), no allocation. The search has no
/// data-dependent branch (a fixed number of steps for a given length), so random queries cost
/// no mispredicted branches.
#[inline]
pub(crate) fn first_uncovered<B: Bound>(
    range: PhysRange,
    starts: &[B],
    ends: &[B],
) -> Option<PhysRange> {
    let at = |s: &[B], i: usize| s.get(i).map(Bound::value);
    // First piece ending above the range start (pieces ending at or below it form a prefix):
    // halve branch-free down to a window of at most LINEAR pieces that holds the answer, then
    // count the window's pieces ending at or below the start (independent loads instead of a
    // chain of dependent ones).
    let (mut base, mut size) = (0, starts.len().min(ends.len()));
    while size > LINEAR {
        let half = size / 2;
        let mid = base + half;
        base = if at(ends, mid).unwrap_or(0) <= range.start() {
            mid
        } else {
            base
        };
        size -= half;
    }
    let lo = base
        + ends.get(base..base + size).map_or(0, |window| {
            window
                .iter()
                .map(|e| usize::from(e.value() <= range.start()))
                .sum::<usize>()
        });
    let (Some(start), Some(end)) = (at(starts, lo), at(ends, lo)) else {
        return Some(range);
    };
    if start > range.start() {
        return Some(PhysRange::new_unchecked(
            range.start(),
            range.end().min(start),
        ));
    }
    if end >= range.end() {
        return None;
    }
    // Pieces never abut, so the byte at `end` is uncovered.
    let next = at(starts, lo + 1).unwrap_or(range.end());
    Some(PhysRange::new_unchecked(end, range.end().min(next)))
}

/// Fixed-capacity atomic storage of the frozen ranges.
pub(crate) struct Snapshot {
    starts: Box<[AtomicU64]>,
    ends: Box<[AtomicU64]>,
    len: AtomicUsize,
    sections: SectionBitmap,
}

impl Snapshot {
    pub(crate) fn with_capacity(capacity: usize, bitmap_words: usize) -> Self {
        Snapshot {
            starts: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            ends: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            len: AtomicUsize::new(0),
            sections: SectionBitmap::new(bitmap_words),
        }
    }

    pub(crate) fn bitmap_words(&self) -> usize {
        self.sections.words()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.starts.len()
    }

    /// Stores `ranges` (sorted, disjoint, never abutting). Only the initialization ticket's
    /// holder calls this, once, before the Release that moves the state to initialized. When
    /// they do not fit, stores nothing (the snapshot stays empty: nothing is admitted).
    pub(crate) fn write(&self, ranges: &[PhysRange]) -> Result<(), PublishError> {
        if ranges.len() > self.capacity() {
            self.len.store(0, Ordering::Relaxed);
            return Err(PublishError::SnapshotTooLarge {
                ranges: ranges.len(),
                capacity: self.capacity(),
            });
        }
        for ((s, e), r) in self.starts.iter().zip(self.ends.iter()).zip(ranges) {
            s.store(r.start(), Ordering::Relaxed);
            e.store(r.end(), Ordering::Relaxed);
        }
        self.len.store(ranges.len(), Ordering::Relaxed);
        self.sections.write(ranges);
        Ok(())
    }

    /// Piece `i`. Relaxed is enough: the caller loaded the initialized state with Acquire, which
    /// synchronizes with the Release that followed [`Snapshot::write`].
    #[inline]
    fn get(&self, i: usize) -> PhysRange {
        let (s, e) = match (self.starts.get(i), self.ends.get(i)) {
            (Some(s), Some(e)) => (s.load(Ordering::Relaxed), e.load(Ordering::Relaxed)),
            _ => (0, 0),
        };
        PhysRange::new_unchecked(s, e)
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed).min(self.capacity())
    }

    /// The first part of `range` (non-empty) the snapshot does not hold. Wait-free: a
    /// branch-free binary search for the last piece starting at or below the range's start
    /// (a fixed number of steps for a given length), then O(1).
    #[inline]
    pub(crate) fn first_uncovered(&self, range: PhysRange) -> Option<PhysRange> {
        if self.sections.covers(range) {
            return None;
        }
        let n = self.len();
        let (Some(starts), Some(ends)) = (self.starts.get(..n), self.ends.get(..n)) else {
            return Some(range);
        };
        let s = range.start();
        let (mut base, mut size) = (0usize, n);
        while size > 1 {
            let half = size / 2;
            let mid = base + half;
            base = if starts[mid].value() <= s { mid } else { base };
            size -= half;
        }
        // k = number of pieces starting at or below s.
        let k = match starts.first() {
            Some(_) => base + usize::from(starts[base].value() <= s),
            None => 0,
        };
        let next = starts.get(k).map_or(range.end(), Bound::value);
        match k.checked_sub(1).map(|i| ends[i].value()) {
            // Covered from s to `end`; pieces never abut, so `end` itself is uncovered.
            Some(end) if end > s => {
                (end < range.end()).then(|| PhysRange::new_unchecked(end, range.end().min(next)))
            }
            _ => Some(PhysRange::new_unchecked(s, range.end().min(next))),
        }
    }

    /// The stored ranges, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = PhysRange> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use alloc::vec;

    fn r(s: u64, e: u64) -> PhysRange {
        PhysRange::new(s, e).unwrap()
    }

    #[test]
    fn first_uncovered_names_the_gap() {
        let starts = [0x1000u64, 0x5000];
        let ends = [0x3000u64, 0x8000];
        let f = |q| first_uncovered(q, &starts, &ends);
        assert_eq!(f(r(0x1000, 0x3000)), None);
        assert_eq!(f(r(0x2000, 0x3000)), None);
        assert_eq!(f(r(0x0, 0x2000)), Some(r(0x0, 0x1000)));
        assert_eq!(f(r(0x2000, 0x6000)), Some(r(0x3000, 0x5000)));
        assert_eq!(f(r(0x2000, 0x4000)), Some(r(0x3000, 0x4000)));
        assert_eq!(f(r(0x3000, 0x4000)), Some(r(0x3000, 0x4000)));
        assert_eq!(f(r(0x7000, 0x9000)), Some(r(0x8000, 0x9000)));
        assert_eq!(f(r(0x9000, 0xa000)), Some(r(0x9000, 0xa000)));
        assert_eq!(first_uncovered::<u64>(r(1, 2), &[], &[]), Some(r(1, 2)));
    }

    #[test]
    fn first_uncovered_agrees_with_a_byte_walk_for_every_small_case() {
        // Pieces [10k + 2, 10k + 7) pages for k < len; every query inside [0, 10 len + 10).
        // Lengths up to one window, and past it (one and two halvings).
        for len in (0..=17u64).chain([33, 40]) {
            let pieces: Vec<PhysRange> = (0..len)
                .map(|k| r((10 * k + 2) << 12, (10 * k + 7) << 12))
                .collect();
            let covered = |p: u64| pieces.iter().any(|x| x.contains(p << 12));
            for a in 0..10 * len + 10 {
                for b in a + 1..=10 * len + 10 {
                    let starts: Vec<u64> = pieces.iter().map(|p| p.start()).collect();
                    let ends: Vec<u64> = pieces.iter().map(|p| p.end()).collect();
                    let got = first_uncovered(r(a << 12, b << 12), &starts, &ends);
                    let want = (a..b).find(|&p| !covered(p)).map(|s| {
                        let e = (s..b).find(|&p| covered(p)).unwrap_or(b);
                        r(s << 12, e << 12)
                    });
                    assert_eq!(got, want, "len {len}, [{a}, {b}) pages");
                }
            }
        }
    }

    #[test]
    fn snapshot_refuses_what_does_not_fit_and_then_holds_nothing() {
        let s = Snapshot::with_capacity(1, 1);
        assert_eq!(
            s.write(&[r(0, 0x1000), r(0x2000, 0x3000)]),
            Err(PublishError::SnapshotTooLarge {
                ranges: 2,
                capacity: 1
            })
        );
        assert_eq!(s.len(), 0);
        assert_eq!(s.first_uncovered(r(0, 0x1000)), Some(r(0, 0x1000)));
        let s = Snapshot::with_capacity(2, 1);
        s.write(&[r(0, 0x1000), r(0x2000, 0x3000)]).unwrap();
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![r(0, 0x1000), r(0x2000, 0x3000)]
        );
    }
}
