//! PAMT page pairs: the two 4 KiB pages that hold a 2 MiB range's PAMT_4K entries with
//! Dynamic PAMT, where the manager gets them ([`PairSource`]), and a pre-filled cache for
//! callers that cannot allocate ([`PairCache`]).

use alloc::vec::Vec;
use core::fmt;

use crate::addr::{MAX_PA, SZ_4K, is_aligned};

/// Two distinct 4 KiB pages for TDH.PHYMEM.PAMT.ADD: page 0 holds the PAMT_4K entries of the
/// range's first 256 pages (RDX), page 1 those of the last 256 (R8). They need not be
/// contiguous. The module zeroes them, marks them in its PAMT page bitmap and hands them back
/// with TDH.PHYMEM.PAMT.REMOVE.
///
/// ```
/// use tdmr::dpamt::{PamtPagePair, PamtPagePairError};
/// let p = PamtPagePair::new(0x1_0000_0000, 0x2_0000_5000)?;
/// assert_eq!((p.page0(), p.page1()), (0x1_0000_0000, 0x2_0000_5000));
/// assert_eq!(
///     PamtPagePair::new(0x1000, 0x1000),
///     Err(PamtPagePairError::SamePage { pa: 0x1000 })
/// );
/// # Ok::<(), PamtPagePairError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PamtPagePair {
    page0: u64,
    page1: u64,
}

/// Why two addresses cannot be a [`PamtPagePair`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PamtPagePairError {
    /// An address not 4 KiB aligned.
    Misaligned {
        /// The address.
        pa: u64,
    },
    /// An address at or beyond 2^52.
    BeyondMaxPa {
        /// The address.
        pa: u64,
    },
    /// Both pages are the same page.
    SamePage {
        /// The page.
        pa: u64,
    },
}

impl fmt::Display for PamtPagePairError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PamtPagePairError::Misaligned { pa } => {
                write!(f, "PAMT page {pa:#x} is not 4 KiB aligned")
            }
            PamtPagePairError::BeyondMaxPa { pa } => {
                write!(f, "PAMT page {pa:#x} lies beyond 2^52")
            }
            PamtPagePairError::SamePage { pa } => {
                write!(f, "PAMT page pair uses page {pa:#x} twice")
            }
        }
    }
}

impl core::error::Error for PamtPagePairError {}

impl PamtPagePair {
    /// A pair of two distinct 4 KiB-aligned pages below 2^52. (Whether they are free TDX
    /// memory is the module's check: TDH.PHYMEM.PAMT.ADD refuses them otherwise.)
    pub const fn new(page0: u64, page1: u64) -> Result<Self, PamtPagePairError> {
        let mut i = 0;
        while i < 2 {
            let pa = if i == 0 { page0 } else { page1 };
            if !is_aligned(pa, SZ_4K) {
                return Err(PamtPagePairError::Misaligned { pa });
            }
            if pa >= MAX_PA {
                return Err(PamtPagePairError::BeyondMaxPa { pa });
            }
            i += 1;
        }
        if page0 == page1 {
            return Err(PamtPagePairError::SamePage { pa: page0 });
        }
        Ok(PamtPagePair { page0, page1 })
    }

    /// Page 0 (RDX of TDH.PHYMEM.PAMT.ADD).
    #[inline]
    pub const fn page0(&self) -> u64 {
        self.page0
    }

    /// Page 1 (R8 of TDH.PHYMEM.PAMT.ADD).
    #[inline]
    pub const fn page1(&self) -> u64 {
        self.page1
    }
}

impl fmt::Display for PamtPagePair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PAMT pages {:#x}, {:#x}", self.page0, self.page1)
    }
}

/// A page pair coming back from [`super::DynamicPamt`]: the pages TDH.PHYMEM.PAMT.REMOVE
/// released, or the pair of an ADD that failed. Only this crate makes one, and it is neither
/// `Copy` nor `Clone`: holding it means owning the two pages again, once.
///
/// A [`PairSource`] receives it in [`PairSource::return_pair`]; a caller receives it when the
/// source refuses it ([`super::Put::Removed`], [`super::DynamicPamtError::Seamcall`]) and must
/// then free the pages itself.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ReturnedPair(PamtPagePair);

impl ReturnedPair {
    /// Wraps a pair the module gave back or a source gave out (crate-internal).
    pub(crate) fn new(pair: PamtPagePair) -> Self {
        ReturnedPair(pair)
    }

    /// The two pages.
    #[inline]
    pub fn pair(&self) -> PamtPagePair {
        self.0
    }
}

impl fmt::Display for ReturnedPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where [`super::DynamicPamt`] gets page pairs for TDH.PHYMEM.PAMT.ADD, and where it puts the
/// ones TDH.PHYMEM.PAMT.REMOVE (or a failed ADD) gives back.
///
/// A kernel implements it over its page allocator (two order-0 pages); a fault path that must
/// not allocate passes a [`PairCache`] filled beforehand. The manager calls `take_pair` while it
/// owns the range's transition, so a slow source holds up other CPUs on that range only.
///
/// # Safety
///
/// TDH.PHYMEM.PAMT.ADD makes the module zero both pages and use them as PAMT with the global
/// private KeyID. So every pair `take_pair` returns must be two pages of TDX memory that the
/// implementer has taken out of every other use — out of the kernel's page allocator, not
/// mapped for or written by anything else, not shared with devices — and that stay so until
/// they come back through [`PairSource::return_pair`] or, when a [`ReturnedPair`] ends up with
/// the manager's caller, until that caller frees them. A pair is not handed out again while it
/// is out.
///
/// ```
/// use tdmr::dpamt::{PairSource, PamtPagePair, ReturnedPair};
///
/// /// Pages handed out from a region reserved at boot for Dynamic PAMT.
/// struct Bump { next: u64, end: u64, freed: Vec<PamtPagePair> }
/// // SAFETY: [next, end) was reserved for Dynamic PAMT pages and nothing else uses it; each
/// // pair is handed out once, and returned pairs are reused only after they came back.
/// unsafe impl PairSource for Bump {
///     fn take_pair(&mut self) -> Option<PamtPagePair> {
///         if let Some(p) = self.freed.pop() {
///             return Some(p);
///         }
///         (self.next + 0x2000 <= self.end).then(|| {
///             self.next += 0x2000;
///             PamtPagePair::new(self.next - 0x2000, self.next - 0x1000).ok()
///         })?
///     }
///     fn return_pair(&mut self, pair: ReturnedPair) -> Result<(), ReturnedPair> {
///         self.freed.push(pair.pair());
///         Ok(())
///     }
/// }
/// ```
#[allow(unsafe_code)] // the declaration of the contract; implementations are unsafe
pub unsafe trait PairSource {
    /// A pair, or `None` when there is none to be had.
    fn take_pair(&mut self) -> Option<PamtPagePair>;

    /// Takes `pair` back; `Err(pair)` if it cannot (a full cache): the caller of
    /// [`super::DynamicPamt`] then receives it.
    fn return_pair(&mut self, pair: ReturnedPair) -> Result<(), ReturnedPair>;
}

// SAFETY: forwards to `P`, whose implementation makes the promise.
#[allow(unsafe_code)]
unsafe impl<P: PairSource + ?Sized> PairSource for &mut P {
    #[inline]
    fn take_pair(&mut self) -> Option<PamtPagePair> {
        (**self).take_pair()
    }

    #[inline]
    fn return_pair(&mut self, pair: ReturnedPair) -> Result<(), ReturnedPair> {
        (**self).return_pair(pair)
    }
}

/// A fixed-capacity stack of page pairs, filled where allocating is allowed and drawn from
/// where it is not (the KVM "MMU memory cache" pattern Linux uses for Dynamic PAMT). Storage is
/// allocated once, by [`PairCache::new`]; taking and returning pairs never allocates.
///
/// It only ever holds pairs a [`PairSource`] gave out ([`PairCache::top_up`]) or the manager
/// gave back, which is what lets it be a source itself.
///
/// ```
/// use tdmr::dpamt::{PairCache, PairSource, PamtPagePair, ReturnedPair};
///
/// # struct Bump(u64);
/// # // SAFETY: doc example; the pages are never touched.
/// # unsafe impl PairSource for Bump {
/// #     fn take_pair(&mut self) -> Option<PamtPagePair> {
/// #         self.0 += 0x2000;
/// #         PamtPagePair::new(self.0 - 0x2000, self.0 - 0x1000).ok()
/// #     }
/// #     fn return_pair(&mut self, _: ReturnedPair) -> Result<(), ReturnedPair> { Ok(()) }
/// # }
/// let mut source = Bump(0x10_0000);
/// let mut cache = PairCache::new(4);
/// assert_eq!(cache.top_up(&mut source), 4);
/// let p = cache.take_pair().unwrap();
/// assert_eq!(cache.len(), 3);
/// assert_eq!(cache.drain_into(&mut source), 3);
/// assert!(cache.is_empty());
/// # let _ = p;
/// ```
#[derive(Debug, PartialEq, Eq)]
pub struct PairCache {
    pairs: Vec<PamtPagePair>,
    capacity: usize,
}

impl PairCache {
    /// An empty cache for up to `capacity` pairs (allocated now).
    pub fn new(capacity: usize) -> Self {
        PairCache {
            pairs: Vec::with_capacity(capacity),
            capacity,
        }
    }

    /// Pairs held.
    #[inline]
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether it holds none.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The most it holds.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Takes pairs from `from` until full or `from` runs dry; how many it took.
    pub fn top_up<P: PairSource + ?Sized>(&mut self, from: &mut P) -> usize {
        let mut taken = 0;
        while self.pairs.len() < self.capacity {
            match from.take_pair() {
                Some(p) => {
                    self.pairs.push(p);
                    taken += 1;
                }
                None => break,
            }
        }
        taken
    }

    /// Returns every pair to `to`; the pairs `to` refused stay here. How many went.
    pub fn drain_into<P: PairSource + ?Sized>(&mut self, to: &mut P) -> usize {
        let mut kept = Vec::new();
        let mut gone = 0;
        while let Some(p) = self.pairs.pop() {
            match to.return_pair(ReturnedPair::new(p)) {
                Ok(()) => gone += 1,
                Err(p) => kept.push(p.pair()),
            }
        }
        self.pairs.extend(kept);
        gone
    }
}

// SAFETY: the cache holds only pairs another `PairSource` handed out (`top_up`) or the manager
// gave back (`return_pair` takes a `ReturnedPair`, which only this crate makes, from pairs a
// source handed out); each is held once and handed out once.
#[allow(unsafe_code)]
unsafe impl PairSource for PairCache {
    #[inline]
    fn take_pair(&mut self) -> Option<PamtPagePair> {
        self.pairs.pop()
    }

    #[inline]
    fn return_pair(&mut self, pair: ReturnedPair) -> Result<(), ReturnedPair> {
        if self.pairs.len() < self.capacity {
            self.pairs.push(pair.0);
            Ok(())
        } else {
            Err(pair)
        }
    }
}
