//! [`TdxLimits`]: the TDX module's memory-configuration limits.
//!
//! This is the only place the TDX module 1.5 values (64 TDMRs, 16 reserved areas per TDMR,
//! 16-byte PAMT entries) are written down; everything else asks a [`TdxLimits`].

use core::fmt;

use crate::addr::PageSize;

/// Limits and PAMT geometry the TDX module reports.
///
/// ```
/// use tdmr::sysinfo::TdxLimits;
/// let l = TdxLimits::default();
/// assert_eq!((l.max_tdmrs(), l.max_reserved_per_tdmr()), (64, 16));
/// let dpamt = TdxLimits::default().with_dynamic_pamt(1).unwrap();
/// assert_eq!(dpamt.dynamic_pamt_bits(), Some(1));
/// assert!(TdxLimits::new(0, 16, [16; 3]).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TdxLimits {
    max_tdmrs: u16,
    max_reserved_per_tdmr: u16,
    pamt_entry_size: [u16; 3],
    dynamic_pamt_bits: Option<u8>,
}

/// Why a set of limits was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitsError {
    /// MAX_TDMRS of zero.
    ZeroTdmrs,
    /// A PAMT entry size of zero (index: 0 = 4K, 1 = 2M, 2 = 1G).
    ZeroEntrySize {
        /// The PAMT level.
        level: PageSize,
    },
    /// Dynamic PAMT bitmap with zero bits per page.
    ZeroBitmapBits,
}

impl fmt::Display for LimitsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitsError::ZeroTdmrs => write!(f, "maximum TDMRs must be at least 1"),
            LimitsError::ZeroEntrySize { level } => {
                write!(
                    f,
                    "PAMT {} entry size must be at least 1 byte",
                    level.label()
                )
            }
            LimitsError::ZeroBitmapBits => {
                write!(f, "Dynamic PAMT bitmap must have at least 1 bit per page")
            }
        }
    }
}

impl core::error::Error for LimitsError {}

impl Default for TdxLimits {
    /// [`TdxLimits::DEFAULT`].
    fn default() -> Self {
        TdxLimits::DEFAULT
    }
}

impl TdxLimits {
    /// TDX module 1.5: 64 TDMRs, 16 reserved areas per TDMR, 16-byte entries, no Dynamic PAMT.
    pub const DEFAULT: TdxLimits = TdxLimits {
        max_tdmrs: 64,
        max_reserved_per_tdmr: 16,
        pamt_entry_size: [16; 3],
        dynamic_pamt_bits: None,
    };

    /// Limits from MAX_TDMRS, MAX_RESERVED_PER_TDMR and PAMT_{4K,2M,1G}_ENTRY_SIZE.
    /// Zero reserved areas is allowed (a TDMR then holds nothing but convertible memory).
    pub const fn new(
        max_tdmrs: u16,
        max_reserved_per_tdmr: u16,
        pamt_entry_size: [u16; 3],
    ) -> Result<Self, LimitsError> {
        if max_tdmrs == 0 {
            return Err(LimitsError::ZeroTdmrs);
        }
        let mut i = 0;
        while i < 3 {
            if pamt_entry_size[i] == 0 {
                return Err(LimitsError::ZeroEntrySize {
                    level: PageSize::ALL[i],
                });
            }
            i += 1;
        }
        Ok(TdxLimits {
            max_tdmrs,
            max_reserved_per_tdmr,
            pamt_entry_size,
            dynamic_pamt_bits: None,
        })
    }

    /// The same limits with Dynamic PAMT on: the 4K level becomes a bitmap of
    /// `bits_per_page` bits (PAMT_PAGE_BITMAP_ENTRY_BITS, 1 on current modules).
    pub const fn with_dynamic_pamt(mut self, bits_per_page: u8) -> Result<Self, LimitsError> {
        if bits_per_page == 0 {
            return Err(LimitsError::ZeroBitmapBits);
        }
        self.dynamic_pamt_bits = Some(bits_per_page);
        Ok(self)
    }

    /// The same limits with Dynamic PAMT off.
    pub const fn without_dynamic_pamt(mut self) -> Self {
        self.dynamic_pamt_bits = None;
        self
    }

    /// The same limits with another MAX_TDMRS.
    pub const fn with_max_tdmrs(self, max_tdmrs: u16) -> Result<Self, LimitsError> {
        match Self::new(max_tdmrs, self.max_reserved_per_tdmr, self.pamt_entry_size) {
            Ok(mut l) => {
                l.dynamic_pamt_bits = self.dynamic_pamt_bits;
                Ok(l)
            }
            Err(e) => Err(e),
        }
    }

    /// The same limits with another MAX_RESERVED_PER_TDMR.
    pub const fn with_max_reserved_per_tdmr(mut self, max: u16) -> Self {
        self.max_reserved_per_tdmr = max;
        self
    }

    /// The same limits with every PAMT entry size set to `size`.
    pub const fn with_pamt_entry_size(self, size: u16) -> Result<Self, LimitsError> {
        match Self::new(self.max_tdmrs, self.max_reserved_per_tdmr, [size; 3]) {
            Ok(mut l) => {
                l.dynamic_pamt_bits = self.dynamic_pamt_bits;
                Ok(l)
            }
            Err(e) => Err(e),
        }
    }

    /// MAX_TDMRS.
    #[inline]
    pub const fn max_tdmrs(&self) -> usize {
        self.max_tdmrs as usize
    }

    /// MAX_RESERVED_PER_TDMR.
    #[inline]
    pub const fn max_reserved_per_tdmr(&self) -> usize {
        self.max_reserved_per_tdmr as usize
    }

    /// PAMT entry size in bytes for one level.
    #[inline]
    pub const fn pamt_entry_size(&self, level: PageSize) -> u64 {
        self.pamt_entry_size[level.index()] as u64
    }

    /// Bits per 4 KiB page of the Dynamic PAMT bitmap, or `None` when Dynamic PAMT is off.
    #[inline]
    pub const fn dynamic_pamt_bits(&self) -> Option<u8> {
        self.dynamic_pamt_bits
    }

    /// Whether Dynamic PAMT is on.
    #[inline]
    pub const fn dynamic_pamt(&self) -> bool {
        self.dynamic_pamt_bits.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_keep_other_fields() {
        let l = TdxLimits::default()
            .with_dynamic_pamt(1)
            .unwrap()
            .with_max_tdmrs(3)
            .unwrap()
            .with_pamt_entry_size(32)
            .unwrap()
            .with_max_reserved_per_tdmr(4);
        assert_eq!(l.max_tdmrs(), 3);
        assert_eq!(l.max_reserved_per_tdmr(), 4);
        assert_eq!(l.pamt_entry_size(PageSize::Size2M), 32);
        assert!(l.dynamic_pamt());
        assert!(!l.without_dynamic_pamt().dynamic_pamt());
    }

    #[test]
    fn zero_values_are_refused() {
        assert_eq!(
            TdxLimits::default().with_max_tdmrs(0),
            Err(LimitsError::ZeroTdmrs)
        );
        assert_eq!(
            TdxLimits::new(1, 1, [16, 0, 16]),
            Err(LimitsError::ZeroEntrySize {
                level: PageSize::Size2M
            })
        );
        assert_eq!(
            TdxLimits::default().with_dynamic_pamt(0),
            Err(LimitsError::ZeroBitmapBits)
        );
    }
}
