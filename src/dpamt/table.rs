//! [`RangeTable`]: the per-2 MiB words of a [`super::DynamicPamt`] shared with a hotplug gate,
//! so that the gate can tell, without a lock, whether memory about to be removed holds pages of
//! a Dynamic PAMT page pair that is added now. The protocol is on the type.

use alloc::sync::Arc;
use core::fmt;

use super::index::{BeyondMaxPa, RangeIndex};
use super::sync::{AtomicBool, AtomicU32, Ordering};
use super::{HOSTED_MAX, HOSTED_ONE, HOSTED_SHIFT, LEAVING_MAX, LEAVING_ONE, LEAVING_SHIFT};
use crate::addr::{PhysRange, SZ_2M};

/// Hosted pair pages in a word.
#[inline]
pub(crate) fn hosted(w: u32) -> u32 {
    (w >> HOSTED_SHIFT) & HOSTED_MAX
}

/// Removals in flight in a word.
#[inline]
pub(crate) fn leaving(w: u32) -> u32 {
    (w >> LEAVING_SHIFT) & LEAVING_MAX
}

struct Inner {
    index: RangeIndex,
    words: Arc<[AtomicU32]>,
    /// Set once a manager counts its pair pages here.
    attached: AtomicBool,
}

/// The per-2 MiB words a hotplug gate shares with the Dynamic PAMT manager: get one from
/// `HotplugGate::range_table` (a gate built with `GateConfig::with_dynamic_pamt`) and build the
/// manager with [`super::DynamicPamt::for_plan_with_table`]. Cloning shares the table.
///
/// A pair's pages are known while it is added: the manager chose them for TDH.PHYMEM.PAMT.ADD
/// and TDH.PHYMEM.PAMT.REMOVE hands them back. So the manager counts, in the word of the
/// 2 MiB range each page lies in, the pair pages placed there (bits 23:14, *hosted*), before the
/// ADD and until after the REMOVE. A removal of memory after initialization counts itself in
/// the words of the 2 MiB ranges it touches (bits 29:24, *leaving*) and reads the hosted count
/// in the same atomic step. Both sides change one word with one read-modify-write and look at
/// the other's field in the value it replaced, so on every word one of them comes second and
/// sees the first: a removal never goes ahead while a pair page in its range is added, and no
/// pair page is placed in a range while a removal of it is in flight.
///
/// | side | step, per word | refused when the replaced value has |
/// |---|---|---|
/// | removal (`begin_leaving`) | a load, then `fetch_add(leaving + 1)`; wait-free | hosted > 0 (it then takes its marks back) |
/// | pair page placed (`DynamicPamt::get`, before PAMT.ADD) | CAS hosted + 1 | leaving > 0 |
/// | pair page back (after PAMT.REMOVE, or a failed ADD) | CAS hosted − 1 | — |
/// | removal ends (`end_leaving`) | `fetch_sub(leaving)` | — |
///
/// The table covers the memory a hotplug gate is built for (its CMRs, rounded out to 2 MiB):
/// every page the TDX module accepts for a pair (it takes only pages of initialized TDMRs,
/// which lie in the CMRs). The manager's own ranges are a part of it, their words the same words,
/// so the counts cost no memory beyond the manager's 4 bytes per 2 MiB; a page outside the table
/// is refused before the ADD ([`super::DynamicPamtError::PairPageUntracked`]).
///
/// A removal first only reads the words and stops at a range holding pages, so a removal that
/// is refused marks nothing and no ADD is refused because of it. Only when an ADD and a
/// removal of the same range truly race may both be refused (each sees the other's mark for
/// a moment); neither is ever admitted in error, and both errors say to retry.
///
/// Costs: the get/put fast path is unchanged (its CAS keeps the other fields as they are). An
/// ADD pays two CAS on the pair pages' words and a REMOVE two more, next to a SEAMCALL. A
/// removal pays a load and one `fetch_add` per 2 MiB range it touches and a binary search
/// over the table's spans: O(log spans + size / 2 MiB), never a walk of the whole table. The count is
/// per 2 MiB range: a removal of part of a range is refused when any page of that range holds
/// a pair page, even one outside the part removed (the refusal says how many pages).
#[derive(Clone)]
pub struct RangeTable(Arc<Inner>);

impl fmt::Debug for RangeTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RangeTable")
            .field("ranges", &self.0.index.ranges())
            .field("spans", &self.0.index.spans())
            .field("attached", &self.is_attached())
            .finish()
    }
}

/// Why a pair page could not be counted before TDH.PHYMEM.PAMT.ADD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HostRefused {
    /// Outside the table, or its range counts the most pair pages a word holds.
    Untracked,
    /// A removal of memory of its 2 MiB range is in flight.
    Leaving,
}

/// A 2 MiB range that holds pages of added pairs, found by [`RangeTable::begin_leaving`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HostedPages {
    /// The 2 MiB range.
    pub(crate) range: PhysRange,
    /// Pair pages counted in it.
    pub(crate) pages: u32,
}

impl RangeTable {
    /// A table over `memory` (any order; rounded out to 2 MiB and merged), every word 0.
    pub(crate) fn new(memory: impl IntoIterator<Item = PhysRange>) -> Result<Self, BeyondMaxPa> {
        let index = RangeIndex::new(memory)?;
        let words = (0..index.ranges()).map(|_| AtomicU32::new(0)).collect();
        Ok(RangeTable(Arc::new(Inner {
            index,
            words,
            attached: AtomicBool::new(false),
        })))
    }

    /// 2 MiB ranges covered (one word each).
    pub fn ranges(&self) -> usize {
        self.0.index.ranges()
    }

    /// Bytes of words: 4 per 2 MiB range.
    pub fn counter_bytes(&self) -> usize {
        self.0.words.len() * core::mem::size_of::<AtomicU32>()
    }

    /// Whether a Dynamic PAMT manager counts its pair pages here.
    pub fn is_attached(&self) -> bool {
        self.0.attached.load(Ordering::Acquire)
    }

    /// Pages of added Dynamic PAMT pairs counted in the 2 MiB ranges `range` touches. A
    /// snapshot: other CPUs may change it at once.
    pub fn pair_pages(&self, range: PhysRange) -> u64 {
        self.0
            .index
            .slots_in(range)
            .map(|(slot, _)| u64::from(hosted(self.0.words[slot].load(Ordering::Acquire))))
            .sum()
    }

    pub(crate) fn index(&self) -> &RangeIndex {
        &self.0.index
    }

    pub(crate) fn words(&self) -> &Arc<[AtomicU32]> {
        &self.0.words
    }

    pub(crate) fn attach(&self) {
        self.0.attached.store(true, Ordering::Release);
    }

    fn word_of(&self, pa: u64) -> Option<&AtomicU32> {
        self.0.words.get(self.0.index.slot(pa >> 12)?)
    }

    /// Counts pair page `pa` in its range's word, unless a removal of that range is in flight.
    pub(crate) fn host(&self, pa: u64) -> Result<(), HostRefused> {
        let word = self.word_of(pa).ok_or(HostRefused::Untracked)?;
        let mut w = word.load(Ordering::Acquire);
        loop {
            if leaving(w) > 0 {
                return Err(HostRefused::Leaving);
            }
            if hosted(w) == HOSTED_MAX {
                return Err(HostRefused::Untracked);
            }
            match word.compare_exchange_weak(w, w + HOSTED_ONE, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                Err(now) => w = now,
            }
        }
    }

    /// Takes pair page `pa` out of its range's count (after PAMT.REMOVE gave it back, or after
    /// an ADD that failed). A page the table never counted changes nothing.
    pub(crate) fn unhost(&self, pa: u64) {
        let Some(word) = self.word_of(pa) else {
            return;
        };
        let mut w = word.load(Ordering::Acquire);
        while hosted(w) > 0 {
            match word.compare_exchange_weak(w, w - HOSTED_ONE, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(now) => w = now,
            }
        }
    }

    /// Marks every 2 MiB range `range` touches as leaving, unless one of them holds pair
    /// pages: then takes the marks back and names the first such range. Wait-free: a pass of
    /// loads that refuses without marking anything when a range holds pages already (so a
    /// refused removal disturbs no ADD), then one `fetch_add` per range touched (and one more
    /// on the way back if a pair page arrived meanwhile: in that race both sides may be
    /// refused, neither is admitted in error). The caller admits at most [`LEAVING_MAX`]
    /// removals at once, so the field never overflows.
    pub(crate) fn begin_leaving(&self, range: PhysRange) -> Result<(), HostedPages> {
        let words = &self.0.words;
        let hosting = |base: u64, w: u32| {
            let pages = hosted(w);
            (pages > 0).then(|| HostedPages {
                range: PhysRange::new_unchecked(base, base + SZ_2M),
                pages,
            })
        };
        for (slot, base) in self.0.index.slots_in(range) {
            if let Some(h) = hosting(base, words[slot].load(Ordering::Acquire)) {
                return Err(h);
            }
        }
        for (marked, (slot, base)) in self.0.index.slots_in(range).enumerate() {
            let before = words[slot].fetch_add(LEAVING_ONE, Ordering::AcqRel);
            debug_assert!(leaving(before) < LEAVING_MAX);
            if let Some(h) = hosting(base, before) {
                for (s, _) in self.0.index.slots_in(range).take(marked + 1) {
                    words[s].fetch_sub(LEAVING_ONE, Ordering::Release);
                }
                return Err(h);
            }
        }
        Ok(())
    }

    /// Ends a removal [`RangeTable::begin_leaving`] admitted over `range`.
    pub(crate) fn end_leaving(&self, range: PhysRange) {
        for (slot, _) in self.0.index.slots_in(range) {
            self.0.words[slot].fetch_sub(LEAVING_ONE, Ordering::Release);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const M: u64 = 1 << 20;

    fn r(a: u64, b: u64) -> PhysRange {
        PhysRange::new(a, b).unwrap()
    }

    #[test]
    fn hosting_and_leaving_exclude_each_other_per_range() {
        let t = RangeTable::new([r(0, 8 * M)]).unwrap();
        t.host(0x1000).unwrap();
        t.host(2 * M + 0x5000).unwrap();
        assert_eq!(t.pair_pages(r(0, 8 * M)), 2);
        // [1M, 3M) touches ranges 0 and 1, both hosting: refused at the first, no mark left.
        assert_eq!(
            t.begin_leaving(r(M, 3 * M)),
            Err(HostedPages {
                range: r(0, 2 * M),
                pages: 1
            })
        );
        // [4M, 8M) hosts nothing: admitted, and then no page may be placed there.
        t.begin_leaving(r(4 * M, 8 * M)).unwrap();
        assert_eq!(t.host(6 * M), Err(HostRefused::Leaving));
        assert_eq!(
            t.host(2 * M),
            Ok(()),
            "ranges outside the removal are not affected"
        );
        t.end_leaving(r(4 * M, 8 * M));
        t.host(6 * M).unwrap();
        // Refused at the second range: the first range's mark is taken back too.
        t.unhost(0x1000);
        assert!(t.begin_leaving(r(M, 3 * M)).is_err());
        t.host(0x2000).unwrap();
        for w in t.words().iter() {
            assert_eq!(leaving(w.load(Ordering::Relaxed)), 0);
        }
        assert_eq!(t.host(8 * M), Err(HostRefused::Untracked));
        t.unhost(8 * M); // not counted: nothing happens
        t.unhost(3 * M); // its range counts one page (another one): it goes
        assert_eq!(t.pair_pages(r(2 * M, 4 * M)), 1);
    }

    #[test]
    fn fields_keep_their_bits() {
        use super::super::COUNT;
        let t = RangeTable::new([r(0, 2 * M)]).unwrap();
        t.words()[0].store(COUNT, Ordering::Relaxed);
        for _ in 0..HOSTED_MAX {
            t.host(0).unwrap();
        }
        assert_eq!(t.host(0), Err(HostRefused::Untracked));
        let w = t.words()[0].load(Ordering::Relaxed);
        assert_eq!((w & COUNT, hosted(w), leaving(w)), (COUNT, HOSTED_MAX, 0));
        t.words()[0].store(COUNT, Ordering::Relaxed);
        for _ in 0..LEAVING_MAX {
            t.begin_leaving(r(0, 0x1000)).unwrap();
        }
        let w = t.words()[0].load(Ordering::Relaxed);
        assert_eq!((w & COUNT, hosted(w), leaving(w)), (COUNT, 0, LEAVING_MAX));
        assert_eq!(w & (3 << 30), 0);
    }
}
