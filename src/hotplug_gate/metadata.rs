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

use super::sync::{AtomicU64, AtomicUsize, Ordering};
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

    /// A piece as the refusal set stores it, in two words: its 4 KiB-aligned bounds, with the
    /// holder in their low 12 bits (start: extension bit 0, level bits 2:1, TDMR bits 20:12 in
    /// bits 11:3; end: TDMR bits 11:0). `None` for a TDMR index of 2^21 or more.
    fn encode(self, piece: PhysRange) -> Option<(u64, u64)> {
        let (kind, tdmr) = match self {
            MetadataHolder::Pamt { tdmr, level } => ((level.index() as u64) << 1, tdmr as u64),
            MetadataHolder::Extension | MetadataHolder::DynamicPamtPages { .. } => (1, 0),
        };
        (tdmr < 1 << 21).then(|| {
            (
                piece.start() | kind | ((tdmr >> 12) << 3),
                piece.end() | (tdmr & 0xfff),
            )
        })
    }

    fn decode(lo: u64, hi: u64) -> (PhysRange, Self) {
        let piece = PhysRange::new_unchecked(lo & !0xfff, hi & !0xfff);
        if lo & 1 == 1 {
            return (piece, MetadataHolder::Extension);
        }
        let level = PageSize::ALL
            .into_iter()
            .find(|l| l.index() as u64 == (lo >> 1) & 0b11)
            .unwrap_or(PageSize::Size4K);
        let tdmr = (((lo >> 3) & 0x1ff) << 12) | (hi & 0xfff);
        (
            piece,
            MetadataHolder::Pamt {
                tdmr: tdmr as usize,
                level,
            },
        )
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

/// Fixed-capacity atomic storage of the refusal set: disjoint pieces sorted by address, each
/// with its holder, in two words ([`MetadataHolder::encode`]). Blocks are rounded out to
/// 4 KiB (removals are 4 KiB aligned, so no answer changes); blocks that overlap (only a
/// hand-made plan has such) are clipped where an earlier-starting block already reached,
/// which gives every query the same answer as the lowest-starting block it touches.
pub(crate) struct MetadataSet {
    /// Start | holder bits.
    lo: Box<[AtomicU64]>,
    /// End | holder bits.
    hi: Box<[AtomicU64]>,
    /// Pieces stored; above the capacity, the pieces the last write wanted (it stored none:
    /// the set is incomplete and every removal is refused).
    len: AtomicUsize,
}

/// Why the set cannot answer: it did not fit (publish reports it as
/// `PublishError::MetadataTooLarge`, removals as `RemoveError::MetadataUnknown`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Incomplete {
    pub(crate) blocks: usize,
    pub(crate) capacity: usize,
}

/// `entries` (sorted by start) as disjoint pieces: each rounded out to 4 KiB, clipped to
/// start where the blocks before it reached, dropped when nothing is left.
fn pieces(entries: &[(PhysRange, MetadataHolder)]) -> Vec<(PhysRange, MetadataHolder)> {
    let mut reach = 0;
    let mut out = Vec::with_capacity(entries.len());
    for &(r, h) in entries {
        let end = r.end().saturating_add(0xfff) & !0xfff;
        let piece = PhysRange::new_unchecked((r.start() & !0xfff).max(reach), end);
        reach = reach.max(end);
        if !piece.is_empty() {
            out.push((piece, h));
        }
    }
    out
}

impl MetadataSet {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let slots = || (0..capacity).map(|_| AtomicU64::new(0)).collect();
        MetadataSet {
            lo: slots(),
            hi: slots(),
            len: AtomicUsize::new(0),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.lo.len()
    }

    /// Stores `entries` (sorted by start). Only the initialization ticket's holder calls this,
    /// once, before the Release that moves the state to initialized. When they do not fit (or
    /// name a TDMR index the encoding cannot hold), stores nothing and marks the set
    /// incomplete (every removal is then refused).
    pub(crate) fn write(&self, entries: &[(PhysRange, MetadataHolder)]) -> Result<(), Incomplete> {
        let pieces = pieces(entries);
        let encoded: Option<Vec<(u64, u64)>> = pieces.iter().map(|&(r, h)| h.encode(r)).collect();
        let encoded = match encoded {
            Some(e) if e.len() <= self.capacity() => e,
            _ => {
                // Above the capacity: incomplete (an unencodable set counts as too large).
                let blocks = pieces.len().max(self.capacity() + 1);
                self.len.store(blocks, Ordering::Relaxed);
                return Err(Incomplete {
                    blocks,
                    capacity: self.capacity(),
                });
            }
        };
        for ((lo, hi), (l, h)) in self.lo.iter().zip(self.hi.iter()).zip(encoded) {
            lo.store(l, Ordering::Relaxed);
            hi.store(h, Ordering::Relaxed);
        }
        self.len.store(pieces.len(), Ordering::Relaxed);
        Ok(())
    }

    fn get(&self, i: usize) -> (PhysRange, MetadataHolder) {
        MetadataHolder::decode(
            self.lo[i].load(Ordering::Relaxed),
            self.hi[i].load(Ordering::Relaxed),
        )
    }

    /// The first piece `range` (non-empty, 4 KiB aligned) overlaps, as the overlapping bytes
    /// and the holder. Wait-free: a binary search of the ends, then O(1). Relaxed loads are
    /// enough: the caller loaded the initialized state with Acquire.
    #[inline]
    pub(crate) fn first_overlap(
        &self,
        range: PhysRange,
    ) -> Result<Option<(PhysRange, MetadataHolder)>, Incomplete> {
        let n = self.len.load(Ordering::Relaxed);
        if n > self.capacity() {
            return Err(Incomplete {
                blocks: n,
                capacity: self.capacity(),
            });
        }
        // Ends (the bits above 11) are sorted.
        let bound = |w: &AtomicU64| w.load(Ordering::Relaxed) & !0xfff;
        let i = self.hi[..n].partition_point(|h| bound(h) <= range.start());
        if i == n || bound(&self.lo[i]) >= range.end() {
            return Ok(None);
        }
        let (piece, holder) = self.get(i);
        Ok(piece.intersect(range).map(|o| (o, holder)))
    }

    /// The stored pieces, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (PhysRange, MetadataHolder)> + '_ {
        let n = self.len.load(Ordering::Relaxed);
        let n = if n > self.capacity() { 0 } else { n };
        (0..n).map(|i| self.get(i))
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
        let piece = r(0xfff_ffff_f000, 0xf_ffff_ffff_f000);
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
            MetadataHolder::Pamt {
                tdmr: (1 << 21) - 1,
                level: PageSize::Size2M,
            },
        ] {
            let (lo, hi) = h.encode(piece).unwrap();
            assert_eq!(MetadataHolder::decode(lo, hi), (piece, h));
        }
        let too_far = MetadataHolder::Pamt {
            tdmr: 1 << 21,
            level: PageSize::Size4K,
        };
        assert_eq!(too_far.encode(piece), None);
        let set = MetadataSet::with_capacity(4);
        assert_eq!(
            set.write(&[(piece, too_far)]),
            Err(Incomplete {
                blocks: 5,
                capacity: 4
            })
        );
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
            Err(Incomplete {
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
