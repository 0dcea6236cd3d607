//! The memory the TDX module owns for good once it is initialized, which a removal must never
//! take away: what it is ([`tdx_metadata`], [`MetadataHolder`]) and the immutable, lock-free
//! refusal set removals search.
//!
//! Static PAMT blocks (every level of every TDMR) and module-extension pages are fixed when the
//! plan is published, so the set is written then, once, like the frozen-memory snapshot:
//! Relaxed stores into atomics allocated with the gate, before the Release that moves the
//! state to initialized. Dynamic PAMT page pairs come and go; the gate reads them from the
//! Dynamic PAMT manager's range table instead ([`crate::dpamt::RangeTable`]).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use super::error::PublishError;
use super::sync::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use crate::addr::{PageSize, PhysRange};
use crate::layout::Plan;

/// What owns memory a removal was refused for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MetadataHolder {
    /// A static PAMT block: the module's metadata for a TDMR, for the module's lifetime.
    Pamt {
        /// The TDMR's index in the plan.
        tdmr: usize,
        /// The PAMT level (with Dynamic PAMT the 4K level is the PAMT page bitmap).
        level: PageSize,
    },
    /// Pages of Dynamic PAMT page pairs added now (TDH.PHYMEM.PAMT.ADD), counted per 2 MiB
    /// range: they stay the module's until TDH.PHYMEM.PAMT.REMOVE gives them back.
    DynamicPamtPages {
        /// The 2 MiB range the pages lie in.
        range: PhysRange,
        /// Pair pages counted in it.
        pages: u32,
    },
    /// Memory given to the TDX module for its extensions (TDH.EXT.MEM.ADD), never
    /// reclaimable.
    Extension,
}

impl MetadataHolder {
    /// Whether the module keeps the memory until it is shut down (static PAMT, extensions),
    /// rather than until it gives the pages back (Dynamic PAMT pairs).
    pub fn is_for_good(&self) -> bool {
        !matches!(self, MetadataHolder::DynamicPamtPages { .. })
    }

    /// Encoding in one `u64` of the refusal set: kind in bits 63:62, TDMR in 33:2, level 1:0.
    fn encode(self) -> u64 {
        match self {
            MetadataHolder::Pamt { tdmr, level } => ((tdmr as u64) << 2) | level.index() as u64,
            MetadataHolder::Extension | MetadataHolder::DynamicPamtPages { .. } => 1 << 62,
        }
    }

    fn decode(code: u64) -> Self {
        if code >> 62 == 1 {
            return MetadataHolder::Extension;
        }
        let level = PageSize::ALL
            .into_iter()
            .find(|l| l.index() as u64 == code & 0b11)
            .unwrap_or(PageSize::Size4K);
        MetadataHolder::Pamt {
            tdmr: ((code >> 2) & u64::from(u32::MAX)) as usize,
            level,
        }
    }
}

impl fmt::Display for MetadataHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MetadataHolder::Pamt { tdmr, level } => {
                let name = match level {
                    PageSize::Size4K => "PAMT_4K",
                    PageSize::Size2M => "PAMT_2M",
                    PageSize::Size1G => "PAMT_1G",
                };
                write!(f, "the {name} block of TDMR {tdmr}")
            }
            MetadataHolder::DynamicPamtPages { range, pages } => write!(
                f,
                "in 2 MiB range {range}, which holds {pages} pages of added Dynamic PAMT pairs"
            ),
            MetadataHolder::Extension => write!(f, "TDX module extension memory"),
        }
    }
}

/// The memory `plan` hands the TDX module for good: every non-empty static PAMT block, with
/// its TDMR and level, sorted by address. A hotplug gate refuses, after initialization, to let
/// any of it be removed. (Module-extension pages join the set when the module uses them.)
///
/// ```
/// use tdmr::addr::PageSize;
/// use tdmr::hotplug_gate::{MetadataHolder, tdx_metadata};
/// use tdmr::layout::Planner;
/// use tdmr::memmap::parse_kernel_log;
/// let log = "CMR: [0x100000, 0x77800000)\nCMR: [0x100000000, 0x407a000000)\n";
/// let input = parse_kernel_log(log).unwrap();
/// let plan = Planner::new().plan(input.memory(), input.cmrs()).unwrap();
/// let owned = tdx_metadata(&plan);
/// assert_eq!(owned.iter().map(|(r, _)| r.size()).sum::<u64>(), plan.pamt_bytes());
/// let (block, holder) = owned[0];
/// assert!(matches!(holder, MetadataHolder::Pamt { .. }));
/// ```
pub fn tdx_metadata(plan: &Plan) -> Vec<(PhysRange, MetadataHolder)> {
    refusal_set(plan, &[])
}

/// [`tdx_metadata`] plus module-extension pages (the hook for extensions: publish passes none
/// yet), sorted by start.
pub(crate) fn refusal_set(
    plan: &Plan,
    extensions: &[PhysRange],
) -> Vec<(PhysRange, MetadataHolder)> {
    let mut v: Vec<(PhysRange, MetadataHolder)> = plan
        .tdmrs()
        .iter()
        .enumerate()
        .flat_map(|(tdmr, t)| {
            PageSize::ALL
                .into_iter()
                .map(move |level| (t.pamt(level), MetadataHolder::Pamt { tdmr, level }))
        })
        .chain(extensions.iter().map(|&r| (r, MetadataHolder::Extension)))
        .filter(|(r, _)| !r.is_empty())
        .collect();
    v.sort_unstable_by_key(|(r, _)| (r.start(), r.end()));
    v
}

/// Fixed-capacity atomic storage of the refusal set, sorted by start. `reach[i]` is the
/// highest end among entries `0..=i`, so entries may overlap (a hand-made plan) and the search
/// still finds the lowest-starting entry a range touches.
pub(crate) struct MetadataSet {
    starts: Box<[AtomicU64]>,
    ends: Box<[AtomicU64]>,
    reach: Box<[AtomicU64]>,
    holders: Box<[AtomicU64]>,
    len: AtomicUsize,
    /// Entries the last write wanted (more than the capacity: the set is incomplete).
    wanted: AtomicUsize,
    complete: AtomicBool,
}

/// Why the set cannot answer: it did not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Incomplete {
    pub(crate) blocks: usize,
    pub(crate) capacity: usize,
}

impl MetadataSet {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let slots = || (0..capacity).map(|_| AtomicU64::new(0)).collect();
        MetadataSet {
            starts: slots(),
            ends: slots(),
            reach: slots(),
            holders: slots(),
            len: AtomicUsize::new(0),
            wanted: AtomicUsize::new(0),
            complete: AtomicBool::new(true),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.starts.len()
    }

    /// Stores `entries` (sorted by start). Only the initialization ticket's holder calls this,
    /// once, before the Release that moves the state to initialized. When they do not fit,
    /// stores nothing and marks the set incomplete (every removal is then refused).
    pub(crate) fn write(
        &self,
        entries: &[(PhysRange, MetadataHolder)],
    ) -> Result<(), PublishError> {
        self.wanted.store(entries.len(), Ordering::Relaxed);
        if entries.len() > self.capacity() {
            self.len.store(0, Ordering::Relaxed);
            self.complete.store(false, Ordering::Relaxed);
            return Err(PublishError::MetadataTooLarge {
                blocks: entries.len(),
                capacity: self.capacity(),
            });
        }
        let mut reach = 0;
        for (i, (r, h)) in entries.iter().enumerate() {
            reach = reach.max(r.end());
            self.starts[i].store(r.start(), Ordering::Relaxed);
            self.ends[i].store(r.end(), Ordering::Relaxed);
            self.reach[i].store(reach, Ordering::Relaxed);
            self.holders[i].store(h.encode(), Ordering::Relaxed);
        }
        self.len.store(entries.len(), Ordering::Relaxed);
        self.complete.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed).min(self.capacity())
    }

    fn get(&self, i: usize) -> (PhysRange, MetadataHolder) {
        let s = self.starts[i].load(Ordering::Relaxed);
        let e = self.ends[i].load(Ordering::Relaxed);
        let h = MetadataHolder::decode(self.holders[i].load(Ordering::Relaxed));
        (PhysRange::new_unchecked(s, e), h)
    }

    /// The lowest-starting entry `range` (non-empty) overlaps, as the overlapping bytes and
    /// the holder. Wait-free: a binary search of the reach, then O(1). Relaxed loads are
    /// enough: the caller loaded the initialized state with Acquire.
    #[inline]
    pub(crate) fn first_overlap(
        &self,
        range: PhysRange,
    ) -> Result<Option<(PhysRange, MetadataHolder)>, Incomplete> {
        if !self.complete.load(Ordering::Relaxed) {
            return Err(Incomplete {
                blocks: self.wanted.load(Ordering::Relaxed),
                capacity: self.capacity(),
            });
        }
        let n = self.len();
        let reach = &self.reach[..n];
        let i = reach.partition_point(|r| r.load(Ordering::Relaxed) <= range.start());
        if i == n || self.starts[i].load(Ordering::Relaxed) >= range.end() {
            return Ok(None);
        }
        let (block, holder) = self.get(i);
        Ok(block.intersect(range).map(|o| (o, holder)))
    }

    /// The stored entries, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (PhysRange, MetadataHolder)> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn r(s: u64, e: u64) -> PhysRange {
        PhysRange::new(s, e).unwrap()
    }

    fn pamt(tdmr: usize) -> MetadataHolder {
        MetadataHolder::Pamt {
            tdmr,
            level: PageSize::Size2M,
        }
    }

    #[test]
    fn holders_round_trip() {
        for h in [
            MetadataHolder::Extension,
            MetadataHolder::Pamt {
                tdmr: 63,
                level: PageSize::Size1G,
            },
            MetadataHolder::Pamt {
                tdmr: 0,
                level: PageSize::Size4K,
            },
        ] {
            assert_eq!(MetadataHolder::decode(h.encode()), h);
        }
    }

    #[test]
    fn first_overlap_agrees_with_a_scan_even_for_overlapping_entries() {
        // Pages: [2, 4), [3, 10) overlapping it, [5, 6) inside that, [12, 13).
        let entries: Vec<(PhysRange, MetadataHolder)> = [(2, 4), (3, 10), (5, 6), (12, 13)]
            .iter()
            .enumerate()
            .map(|(i, &(a, b))| (r(a << 12, b << 12), pamt(i)))
            .collect();
        let set = MetadataSet::with_capacity(4);
        set.write(&entries).unwrap();
        let mut checked = 0;
        for a in 0..15u64 {
            for b in a + 1..16 {
                let q = r(a << 12, b << 12);
                let want = entries
                    .iter()
                    .find(|(e, _)| e.overlaps(q))
                    .map(|(e, h)| (e.intersect(q).unwrap(), *h));
                assert_eq!(set.first_overlap(q), Ok(want), "[{a}, {b}) pages");
                checked += 1;
            }
        }
        assert_eq!(checked, 120);
    }

    #[test]
    fn an_overfull_set_refuses_to_answer() {
        let set = MetadataSet::with_capacity(1);
        let entries = [(r(0, 0x1000), pamt(0)), (r(0x2000, 0x3000), pamt(1))];
        assert_eq!(
            set.write(&entries),
            Err(PublishError::MetadataTooLarge {
                blocks: 2,
                capacity: 1
            })
        );
        assert_eq!(
            set.first_overlap(r(0x8000, 0x9000)),
            Err(Incomplete {
                blocks: 2,
                capacity: 1
            })
        );
    }
}
