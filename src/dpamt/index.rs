//! Where a 2 MiB range's counter lives: a sorted table of spans of TDX memory, each with the
//! offset of its first counter, searched by binary search. Memory: one entry per span (merged
//! TDX memory ranges, rounded out to 2 MiB) plus one counter per 2 MiB of TDX memory; nothing
//! for the holes between spans, however large the address space.

use alloc::vec::Vec;

use crate::addr::{MAX_PA, PhysRange, SZ_2M};

/// A run of consecutive 2 MiB ranges, by 2 MiB index (`pa >> 21`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    /// First 2 MiB index.
    first: u64,
    /// One past the last 2 MiB index.
    end: u64,
    /// Counter index of `first`.
    offset: usize,
}

/// The table. Built once; read-only afterwards, so lookups need no synchronisation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RangeIndex {
    spans: Vec<Span>,
    ranges: usize,
}

/// A range beyond 2^52 (the only input the index refuses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BeyondMaxPa(pub(crate) PhysRange);

/// Memory (rounded out to 2 MiB) that a table's index does not cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OutsideTable(pub(crate) PhysRange);

const SHIFT_2M: u32 = SZ_2M.trailing_zeros();

impl RangeIndex {
    /// The index over `memory` (any order; overlapping or abutting ranges merge, each rounded
    /// out to 2 MiB). O(n log n) in the number of ranges.
    pub(crate) fn new(memory: impl IntoIterator<Item = PhysRange>) -> Result<Self, BeyondMaxPa> {
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for r in memory {
            if r.is_empty() {
                continue;
            }
            if r.end() > MAX_PA {
                return Err(BeyondMaxPa(r));
            }
            runs.push((r.start() >> SHIFT_2M, r.end().div_ceil(SZ_2M)));
        }
        runs.sort_unstable();
        let mut spans: Vec<Span> = Vec::with_capacity(runs.len());
        let mut ranges = 0usize;
        for (first, end) in runs {
            match spans.last_mut() {
                Some(last) if first <= last.end => {
                    if end > last.end {
                        ranges += (end - last.end) as usize;
                        last.end = end;
                    }
                }
                _ => {
                    spans.push(Span {
                        first,
                        end,
                        offset: ranges,
                    });
                    ranges += (end - first) as usize;
                }
            }
        }
        Ok(RangeIndex { spans, ranges })
    }

    /// Counters needed: 2 MiB ranges covered.
    pub(crate) fn ranges(&self) -> usize {
        self.ranges
    }

    /// Spans in the table.
    pub(crate) fn spans(&self) -> usize {
        self.spans.len()
    }

    /// The counter index of the 2 MiB range holding page frame `pfn`, if it is covered.
    /// O(log spans).
    #[inline]
    pub(crate) fn slot(&self, pfn: u64) -> Option<usize> {
        let index = pfn >> (SHIFT_2M - 12);
        let i = self.spans.partition_point(|s| s.end <= index);
        let s = self.spans.get(i)?;
        (s.first <= index).then(|| s.offset + (index - s.first) as usize)
    }

    /// The index over `memory` (as [`RangeIndex::new`]) whose counters are those `table`
    /// gives the same 2 MiB ranges: each span's offset points into `table`'s counters. Fails
    /// on the first span of `memory` that `table` does not cover whole.
    pub(crate) fn within(
        memory: impl IntoIterator<Item = PhysRange>,
        table: &RangeIndex,
    ) -> Result<Self, OutsideTable> {
        let mut own = RangeIndex::new(memory).map_err(|BeyondMaxPa(r)| OutsideTable(r))?;
        for span in &mut own.spans {
            let i = table.spans.partition_point(|s| s.end <= span.first);
            match table.spans.get(i) {
                Some(t) if t.first <= span.first && span.end <= t.end => {
                    span.offset = t.offset + (span.first - t.first) as usize;
                }
                _ => {
                    return Err(OutsideTable(PhysRange::new_unchecked(
                        span.first << SHIFT_2M,
                        span.end << SHIFT_2M,
                    )));
                }
            }
        }
        Ok(own)
    }

    /// The counters of the 2 MiB ranges `range` touches, in address order, each with its
    /// range's base; ranges not covered are skipped. O(log spans + ranges touched).
    pub(crate) fn slots_in(&self, range: PhysRange) -> impl Iterator<Item = (usize, u64)> + '_ {
        let first = range.start() >> SHIFT_2M;
        let end = if range.is_empty() {
            first
        } else {
            range.end().div_ceil(SZ_2M)
        };
        let from = self.spans.partition_point(|s| s.end <= first);
        self.spans[from.min(self.spans.len())..]
            .iter()
            .take_while(move |s| s.first < end)
            .flat_map(move |s| {
                let (lo, hi) = (s.first.max(first), s.end.min(end));
                (lo..hi).map(move |i| (s.offset + (i - s.first) as usize, i << SHIFT_2M))
            })
    }

    /// The base address of the 2 MiB range of counter `slot` (inverse of [`Self::slot`]).
    #[cfg(test)]
    pub(crate) fn range_base(&self, slot: usize) -> Option<u64> {
        let i = self
            .spans
            .partition_point(|s| s.offset <= slot)
            .checked_sub(1)?;
        let s = self.spans[i];
        let index = s.first + (slot - s.offset) as u64;
        (index < s.end).then_some(index << SHIFT_2M)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> PhysRange {
        PhysRange::new(start, end).unwrap()
    }

    #[test]
    fn spans_round_out_and_merge() {
        let m = 1 << 20;
        // [1M, 3M) covers ranges 0 and 1; [3M, 4M) abuts at 2 MiB granularity (range 1);
        // [1G, 1G + 2M) is range 512, far away.
        let idx =
            RangeIndex::new([r(1 << 30, (1 << 30) + 2 * m), r(m, 3 * m), r(3 * m, 4 * m)]).unwrap();
        assert_eq!((idx.ranges(), idx.spans()), (3, 2));
        assert_eq!(idx.slot(0), Some(0)); // page 0 is in range 0, whose memory starts at 1 MiB
        assert_eq!(idx.slot((3 * m) >> 12), Some(1));
        assert_eq!(idx.slot((4 * m) >> 12), None);
        assert_eq!(idx.slot((1 << 30) >> 12), Some(2));
        assert_eq!(idx.slot(((1 << 30) + 2 * m) >> 12), None);
        for slot in 0..3 {
            let base = idx.range_base(slot).unwrap();
            assert_eq!(idx.slot(base >> 12), Some(slot));
        }
        assert_eq!(idx.range_base(3), None);
    }

    #[test]
    fn a_sub_index_shares_the_tables_counters() {
        let m = 1 << 20;
        let table = RangeIndex::new([r(0, 8 * m), r(1 << 30, (1 << 30) + 8 * m)]).unwrap();
        let own = RangeIndex::within(
            [r((1 << 30) + 2 * m, (1 << 30) + 3 * m), r(m, 3 * m)],
            &table,
        )
        .unwrap();
        assert_eq!((own.ranges(), own.spans()), (3, 2));
        for pfn in [m >> 12, (2 * m) >> 12, ((1 << 30) + 2 * m) >> 12] {
            assert_eq!(own.slot(pfn), table.slot(pfn));
        }
        assert_eq!(own.slot((4 * m) >> 12), None);
        assert_eq!(
            RangeIndex::within([r(6 * m, 10 * m)], &table),
            Err(OutsideTable(r(6 * m, 10 * m)))
        );
    }

    #[test]
    fn slots_in_walks_only_the_ranges_touched() {
        let m = 1 << 20;
        let idx = RangeIndex::new([r(0, 4 * m), r(1 << 30, (1 << 30) + 4 * m)]).unwrap();
        let got: Vec<_> = idx.slots_in(r(3 * m, (1 << 30) + 0x1000)).collect();
        assert_eq!(got, [(1, 2 * m), (2, 1 << 30)]);
        assert_eq!(idx.slots_in(r(8 * m, 16 * m)).count(), 0);
        assert_eq!(idx.slots_in(r(0, 1 << 40)).count(), 4);
        assert_eq!(idx.slots_in(r(m, m)).count(), 0);
    }

    #[test]
    fn memory_beyond_2_52_is_refused() {
        let bad = r(MAX_PA - 4096, MAX_PA + 4096);
        assert_eq!(RangeIndex::new([bad]), Err(BeyondMaxPa(bad)));
    }

    #[test]
    fn cost_follows_memory_not_address_space() {
        // 4 MiB at the bottom and 4 MiB just below 2^52: 4 counters, 2 spans.
        let idx = RangeIndex::new([r(0, 4 << 20), r(MAX_PA - (4 << 20), MAX_PA)]).unwrap();
        assert_eq!((idx.ranges(), idx.spans()), (4, 2));
        assert_eq!(idx.slot((MAX_PA - 4096) >> 12), Some(3));
    }
}
