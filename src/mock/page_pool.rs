//! [`PagePool`]: Dynamic PAMT page pairs handed out from a stretch of simulated memory, the
//! mock host's stand-in for a kernel's page allocator.

use alloc::vec::Vec;

use crate::addr::{PhysRange, SZ_4K};
use crate::dpamt::{PairSource, PamtPagePair, ReturnedPair};

/// Pairs of 4 KiB pages from `[base, base + 2 × pairs × 4 KiB)`, lowest first; returned pairs
/// are handed out again (last returned first). The pages are addresses of the mock's simulated
/// memory, so nothing of the real host is at stake.
///
/// ```
/// use tdmr::dpamt::{PairCache, PairSource};
/// use tdmr::mock::PagePool;
/// let mut pool = PagePool::new(0x4000_0000, 2)?;
/// let mut cache = PairCache::new(8);
/// assert_eq!(cache.top_up(&mut pool), 2);
/// assert!(pool.take_pair().is_none());
/// # Ok::<(), tdmr::addr::AddrError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PagePool {
    next: u64,
    end: u64,
    returned: Vec<PamtPagePair>,
}

impl PagePool {
    /// A pool of `pairs` pairs from `base` (rounded up to 4 KiB).
    pub fn new(base: u64, pairs: u64) -> Result<Self, crate::addr::AddrError> {
        let base = base.next_multiple_of(SZ_4K);
        let range = PhysRange::from_base_size(base, pairs.saturating_mul(2 * SZ_4K))?;
        crate::addr::PhysAddr::try_new(range.end().saturating_sub(1))?;
        Ok(PagePool {
            next: range.start(),
            end: range.end(),
            returned: Vec::new(),
        })
    }

    /// Pairs still to hand out.
    pub fn available(&self) -> u64 {
        (self.end - self.next) / (2 * SZ_4K) + self.returned.len() as u64
    }
}

// SAFETY: the pages are simulated memory that only this pool hands out: each fresh pair once
// (the bump pointer only moves up), a returned pair again only after the manager gave it back.
#[allow(unsafe_code)]
unsafe impl PairSource for PagePool {
    fn take_pair(&mut self) -> Option<PamtPagePair> {
        if let Some(p) = self.returned.pop() {
            return Some(p);
        }
        if self.end - self.next < 2 * SZ_4K {
            return None;
        }
        let pair = PamtPagePair::new(self.next, self.next + SZ_4K).ok()?;
        self.next += 2 * SZ_4K;
        Some(pair)
    }

    fn return_pair(&mut self, pair: ReturnedPair) -> Result<(), ReturnedPair> {
        self.returned.push(pair.pair());
        Ok(())
    }
}
