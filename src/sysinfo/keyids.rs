//! The private (TDX) KeyIDs: the range the BIOS partitioned for TDX in
//! `IA32_MKTME_KEYID_PARTITIONING`, the one shape every part of the crate takes them in.

use core::fmt;

/// The private KeyIDs `[first, first + count)`. The first becomes the TDX module's global
/// KeyID; the rest are for guests.
///
/// ```
/// use tdmr::sysinfo::PrivateKeyIds;
/// let k = PrivateKeyIds::new(32, 32)?;
/// assert_eq!((k.first(), k.last(), k.count()), (32, 63, 32));
/// assert!(k.contains(40) && !k.contains(31));
/// assert!(PrivateKeyIds::new(0, 4).is_err()); // KeyID 0 is the host's own
/// # Ok::<(), tdmr::sysinfo::KeyIdRangeError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PrivateKeyIds {
    first: u16,
    count: u16,
}

/// A KeyID range that cannot be the private KeyIDs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyIdRangeError {
    /// First KeyID given.
    pub first: u32,
    /// Count given.
    pub count: u32,
}

impl fmt::Display for KeyIdRangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (first, count) = (self.first, self.count);
        write!(
            f,
            "private KeyIDs from {first}, {count} of them: need at least one, none of them \
             KeyID 0, all below 65536"
        )
    }
}

impl core::error::Error for KeyIdRangeError {}

impl PrivateKeyIds {
    /// KeyIDs 32..=63: a Sapphire Rapids host's default partition (6 KeyID bits, 31 MKTME
    /// KeyIDs).
    pub const DEFAULT: PrivateKeyIds = PrivateKeyIds {
        first: 32,
        count: 32,
    };

    /// `count` private KeyIDs from `first`: at least one, from KeyID 1 up, below 2^16.
    pub const fn new(first: u32, count: u32) -> Result<Self, KeyIdRangeError> {
        let err = KeyIdRangeError { first, count };
        if first == 0 || count == 0 || first as u64 + count as u64 > 1 << 16 {
            return Err(err);
        }
        Ok(PrivateKeyIds {
            first: first as u16,
            count: count as u16,
        })
    }

    /// The first private KeyID (the TDX module's global KeyID).
    #[inline]
    pub const fn first(&self) -> u16 {
        self.first
    }

    /// How many.
    #[inline]
    pub const fn count(&self) -> u16 {
        self.count
    }

    /// The last private KeyID.
    #[inline]
    pub const fn last(&self) -> u16 {
        self.first + (self.count - 1)
    }

    /// Whether `keyid` is private.
    #[inline]
    pub const fn contains(&self, keyid: u64) -> bool {
        keyid >= self.first as u64 && keyid <= self.last() as u64
    }
}

impl TryFrom<core::ops::Range<u32>> for PrivateKeyIds {
    type Error = KeyIdRangeError;

    /// The KeyIDs `first..end`, as the kernel prints them (`BIOS enabled: private KeyID range
    /// [32, 64)`, [`crate::memmap::TdxLines::keyids`]).
    ///
    /// ```
    /// use tdmr::sysinfo::PrivateKeyIds;
    /// assert_eq!(PrivateKeyIds::try_from(32u32..64)?, PrivateKeyIds::new(32, 32)?);
    /// assert!(PrivateKeyIds::try_from(64u32..32).is_err());
    /// # Ok::<(), tdmr::sysinfo::KeyIdRangeError>(())
    /// ```
    fn try_from(r: core::ops::Range<u32>) -> Result<Self, KeyIdRangeError> {
        PrivateKeyIds::new(r.start, r.end.saturating_sub(r.start))
    }
}

impl fmt::Display for PrivateKeyIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}, {})",
            self.first,
            self.first as u32 + self.count as u32
        )
    }
}
