//! Physical addresses, half-open physical ranges, page sizes and checked alignment.
//!
//! Nothing here knows about TDX beyond the architectural 52-bit physical address width.
//! [`RangeSet`] is the one implementation of range arithmetic (union, intersection,
//! difference, gaps) every other module uses.

mod bytes;
mod set;

pub use bytes::Bytes;
pub use set::{RangeSet, gaps};

use core::fmt;

/// 4 KiB.
pub const SZ_4K: u64 = 1 << 12;
/// 2 MiB.
pub const SZ_2M: u64 = 1 << 21;
/// 1 GiB.
pub const SZ_1G: u64 = 1 << 30;
/// 1 MiB.
pub const SZ_1M: u64 = 1 << 20;
/// Width of a physical address in bits (MAXPHYADDR the TDX module requires).
pub const MAX_PA_BITS: u32 = 52;
/// First physical address beyond the 52-bit physical address space.
pub const MAX_PA: u64 = 1 << MAX_PA_BITS;

/// Rounds `x` down to a multiple of `align` (a power of two).
///
/// ```
/// assert_eq!(tdmr::addr::align_down(0x4000_1234, tdmr::addr::SZ_1G), 0x4000_0000);
/// ```
#[inline]
pub const fn align_down(x: u64, align: u64) -> u64 {
    x & !(align - 1)
}

/// Rounds `x` up to a multiple of `align` (a power of two); `None` on overflow.
///
/// ```
/// assert_eq!(tdmr::addr::align_up(1, tdmr::addr::SZ_4K), Some(4096));
/// assert_eq!(tdmr::addr::align_up(u64::MAX, tdmr::addr::SZ_4K), None);
/// ```
#[inline]
pub const fn align_up(x: u64, align: u64) -> Option<u64> {
    match x.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// Whether `x` is a multiple of `align` (a power of two).
#[inline]
pub const fn is_aligned(x: u64, align: u64) -> bool {
    x & (align - 1) == 0
}

/// A page size the TDX module tracks in the PAMT: the three PAMT levels.
///
/// The discriminant is the module's page-type code (`PT_4KB = 0`, `PT_2MB = 1`, `PT_1GB = 2`),
/// which is what TDX status codes carry in their level byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PageSize {
    /// 4 KiB pages (PAMT_4K).
    Size4K = 0,
    /// 2 MiB pages (PAMT_2M).
    Size2M = 1,
    /// 1 GiB pages (PAMT_1G).
    Size1G = 2,
}

impl PageSize {
    /// All three levels, smallest first (the order PAMT blocks are laid out in).
    pub const ALL: [PageSize; 3] = [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G];

    /// Bytes in one page of this size.
    #[inline]
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => SZ_4K,
            PageSize::Size2M => SZ_2M,
            PageSize::Size1G => SZ_1G,
        }
    }

    /// The module's page-type code (0, 1, 2), also the index into per-level arrays.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Short label used in reports: `4k`, `2m`, `1g`.
    pub const fn label(self) -> &'static str {
        match self {
            PageSize::Size4K => "4k",
            PageSize::Size2M => "2m",
            PageSize::Size1G => "1g",
        }
    }
}

/// A physical address below 2^52.
///
/// ```
/// use tdmr::addr::PhysAddr;
/// let pa = PhysAddr::try_new(0x1000).unwrap();
/// assert_eq!(pa.as_u64(), 0x1000);
/// assert!(PhysAddr::try_new(1 << 52).is_err());
/// assert_eq!(format!("{pa}"), "0x1000");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhysAddr(u64);

impl PhysAddr {
    /// The address, or an error naming it when it is not below 2^52.
    pub const fn try_new(pa: u64) -> Result<Self, AddrError> {
        if pa < MAX_PA {
            Ok(PhysAddr(pa))
        } else {
            Err(AddrError::BeyondMaxPa { value: pa })
        }
    }

    /// The raw value.
    #[inline]
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Whether the address is a multiple of `align` (a power of two).
    #[inline]
    pub const fn is_aligned(self, align: u64) -> bool {
        is_aligned(self.0, align)
    }
}

impl fmt::Display for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// Why an address or range was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrError {
    /// The value is not below 2^52.
    BeyondMaxPa {
        /// The offending value.
        value: u64,
    },
    /// `base + size` does not fit in 64 bits.
    EndOverflow {
        /// Range base.
        base: u64,
        /// Range size.
        size: u64,
    },
    /// The end lies before the start.
    Inverted {
        /// Range start.
        start: u64,
        /// Range end.
        end: u64,
    },
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AddrError::BeyondMaxPa { value } => {
                write!(
                    f,
                    "address {value:#x} is beyond the 52-bit physical address space"
                )
            }
            AddrError::EndOverflow { base, size } => {
                write!(f, "range base {base:#x} + size {size:#x} overflows 64 bits")
            }
            AddrError::Inverted { start, end } => {
                write!(f, "range end {end:#x} lies before its start {start:#x}")
            }
        }
    }
}

impl core::error::Error for AddrError {}

/// A half-open physical range `[start, end)`. May be empty (`start == end`).
///
/// ```
/// use tdmr::addr::PhysRange;
/// let r = PhysRange::new(0x1000, 0x3000).unwrap();
/// assert_eq!(r.size(), 0x2000);
/// assert!(r.contains_range(PhysRange::new(0x2000, 0x3000).unwrap()));
/// assert_eq!(format!("{r}"), "[0x1000, 0x3000)");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhysRange {
    start: u64,
    end: u64,
}

impl PhysRange {
    /// The empty range at 0.
    pub const EMPTY: PhysRange = PhysRange { start: 0, end: 0 };

    /// `[start, end)`, refusing `end < start`.
    pub const fn new(start: u64, end: u64) -> Result<Self, AddrError> {
        if end < start {
            Err(AddrError::Inverted { start, end })
        } else {
            Ok(PhysRange { start, end })
        }
    }

    /// `[base, base + size)`, refusing 64-bit overflow.
    pub const fn from_base_size(base: u64, size: u64) -> Result<Self, AddrError> {
        match base.checked_add(size) {
            Some(end) => Ok(PhysRange { start: base, end }),
            None => Err(AddrError::EndOverflow { base, size }),
        }
    }

    /// Builds a range the caller has just checked (`start <= end`). Out-of-order inputs give
    /// the empty range at `start` rather than a panic.
    #[inline]
    pub(crate) const fn new_unchecked(start: u64, end: u64) -> Self {
        if end < start {
            PhysRange { start, end: start }
        } else {
            PhysRange { start, end }
        }
    }

    /// First byte.
    #[inline]
    pub const fn start(&self) -> u64 {
        self.start
    }

    /// One past the last byte.
    #[inline]
    pub const fn end(&self) -> u64 {
        self.end
    }

    /// Bytes in the range.
    #[inline]
    pub const fn size(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the range holds no byte.
    #[inline]
    pub const fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Whether `pa` lies in the range.
    #[inline]
    pub const fn contains(&self, pa: u64) -> bool {
        self.start <= pa && pa < self.end
    }

    /// Whether `other` lies entirely in the range (an empty `other` always does).
    #[inline]
    pub const fn contains_range(&self, other: PhysRange) -> bool {
        other.is_empty() || (self.start <= other.start && other.end <= self.end)
    }

    /// Whether the two ranges share at least one byte.
    #[inline]
    pub const fn overlaps(&self, other: PhysRange) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// The common part, or `None` when they share no byte.
    #[inline]
    pub fn intersect(&self, other: PhysRange) -> Option<PhysRange> {
        let start = self.start.max(other.start);
        let end = self.end.min(other.end);
        (start < end).then_some(PhysRange { start, end })
    }
}

impl fmt::Display for PhysRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x})", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_helpers() {
        assert_eq!(align_down(SZ_1G + 5, SZ_1G), SZ_1G);
        assert_eq!(align_up(SZ_1G + 5, SZ_1G), Some(2 * SZ_1G));
        assert_eq!(align_up(SZ_1G, SZ_1G), Some(SZ_1G));
        assert!(is_aligned(0, SZ_4K));
        assert!(!is_aligned(0x800, SZ_4K));
    }

    #[test]
    fn ranges_refuse_bad_bounds() {
        assert_eq!(
            PhysRange::new(5, 4),
            Err(AddrError::Inverted { start: 5, end: 4 })
        );
        assert_eq!(
            PhysRange::from_base_size(u64::MAX, 2),
            Err(AddrError::EndOverflow {
                base: u64::MAX,
                size: 2
            })
        );
    }

    #[test]
    fn overlap_is_half_open() {
        let a = PhysRange::new(0, 10).unwrap();
        let b = PhysRange::new(10, 20).unwrap();
        assert!(!a.overlaps(b));
        assert_eq!(a.intersect(b), None);
        let c = PhysRange::new(5, 15).unwrap();
        assert_eq!(a.intersect(c), Some(PhysRange::new(5, 10).unwrap()));
    }

    #[test]
    fn page_sizes_carry_module_codes() {
        assert_eq!(PageSize::Size4K as u8, 0);
        assert_eq!(PageSize::Size2M as u8, 1);
        assert_eq!(PageSize::Size1G as u8, 2);
        assert_eq!(PageSize::Size2M.bytes(), SZ_2M);
    }
}
