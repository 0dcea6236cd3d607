//! Binary layouts TDH.SYS.CONFIG reads: `TDMR_INFO` and the array of their physical addresses.
//!
//! `TDMR_INFO` is a 64-byte header (TDMR base and size, then base and size of the 1G, 2M and 4K
//! PAMTs) followed by 16 reserved-area entries of 16 bytes (offset from the TDMR base, size; size
//! 0 is a null entry and every entry after it must be null too). Each `TDMR_INFO` and the PA
//! array must be 512-byte aligned. All integers are little-endian.

use alloc::vec::Vec;
use core::fmt;
use core::mem::{align_of, offset_of, size_of};

use crate::addr::PageSize;

/// Reserved-area slots in one `TDMR_INFO` (the module always reads 16).
pub const TDMR_INFO_RESERVED_SLOTS: usize = 16;
/// Alignment of each `TDMR_INFO` and of the PA array.
pub const TDMR_INFO_ALIGNMENT: usize = 512;
/// Bytes of a `TDMR_INFO` the module reads (header + 16 entries).
pub const TDMR_INFO_READ_BYTES: usize = 64 + 16 * TDMR_INFO_RESERVED_SLOTS;

/// One reserved-area entry of a `TDMR_INFO`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TdmrReservedEntry {
    /// Offset from the TDMR base.
    pub offset: u64,
    /// Bytes; 0 marks a null entry.
    pub size: u64,
}

/// `TDMR_INFO` as the TDX module reads it: 512 bytes, 512-byte aligned.
///
/// ```
/// use tdmr::tdx::abi::TdmrInfo;
/// let mut t = TdmrInfo::ZERO;
/// t.base = 1 << 30;
/// t.size = 1 << 30;
/// let bytes = t.to_bytes();
/// assert_eq!(&bytes[0..8], &(1u64 << 30).to_le_bytes());
/// assert_eq!(TdmrInfo::from_bytes(&bytes), t);
/// ```
#[repr(C, align(512))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TdmrInfo {
    /// TDMR base (1 GiB aligned).
    pub base: u64,
    /// TDMR size (multiple of 1 GiB).
    pub size: u64,
    /// PAMT_1G base.
    pub pamt_1g_base: u64,
    /// PAMT_1G size.
    pub pamt_1g_size: u64,
    /// PAMT_2M base.
    pub pamt_2m_base: u64,
    /// PAMT_2M size.
    pub pamt_2m_size: u64,
    /// PAMT_4K base (the page bitmap with Dynamic PAMT).
    pub pamt_4k_base: u64,
    /// PAMT_4K size.
    pub pamt_4k_size: u64,
    /// Reserved areas, sorted by offset, nulls last.
    pub reserved: [TdmrReservedEntry; TDMR_INFO_RESERVED_SLOTS],
    padding: [u8; TDMR_INFO_ALIGNMENT - TDMR_INFO_READ_BYTES],
}

const _: () = {
    assert!(size_of::<TdmrReservedEntry>() == 16);
    assert!(size_of::<TdmrInfo>() == 512);
    assert!(align_of::<TdmrInfo>() == 512);
    assert!(offset_of!(TdmrInfo, base) == 0);
    assert!(offset_of!(TdmrInfo, size) == 8);
    assert!(offset_of!(TdmrInfo, pamt_1g_base) == 16);
    assert!(offset_of!(TdmrInfo, pamt_1g_size) == 24);
    assert!(offset_of!(TdmrInfo, pamt_2m_base) == 32);
    assert!(offset_of!(TdmrInfo, pamt_2m_size) == 40);
    assert!(offset_of!(TdmrInfo, pamt_4k_base) == 48);
    assert!(offset_of!(TdmrInfo, pamt_4k_size) == 56);
    assert!(offset_of!(TdmrInfo, reserved) == 64);
};

/// Why a plan or buffer does not fit the ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbiError {
    /// A TDMR has more reserved areas than a `TDMR_INFO` holds.
    TooManyReservedAreas {
        /// Index of the TDMR.
        tdmr: usize,
        /// Its reserved areas.
        count: usize,
    },
    /// A `TDMR_INFO` physical address is not 512-byte aligned.
    MisalignedTdmrInfo {
        /// Index in the array.
        index: usize,
        /// The address.
        pa: u64,
    },
    /// A `TDMR_INFO` has a non-null reserved entry after a null one.
    ReservedAfterNull {
        /// Index of the TDMR.
        tdmr: usize,
        /// The slot.
        slot: usize,
    },
}

impl fmt::Display for AbiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AbiError::TooManyReservedAreas { tdmr, count } => write!(
                f,
                "TDMR {tdmr} has {count} reserved areas; TDMR_INFO holds {TDMR_INFO_RESERVED_SLOTS}"
            ),
            AbiError::MisalignedTdmrInfo { index, pa } => {
                write!(f, "TDMR_INFO {index} at {pa:#x} is not 512-byte aligned")
            }
            AbiError::ReservedAfterNull { tdmr, slot } => write!(
                f,
                "TDMR_INFO {tdmr}: reserved slot {slot} follows a null entry"
            ),
        }
    }
}

impl core::error::Error for AbiError {}

impl TdmrInfo {
    /// All zeroes.
    pub const ZERO: TdmrInfo = TdmrInfo {
        base: 0,
        size: 0,
        pamt_1g_base: 0,
        pamt_1g_size: 0,
        pamt_2m_base: 0,
        pamt_2m_size: 0,
        pamt_4k_base: 0,
        pamt_4k_size: 0,
        reserved: [TdmrReservedEntry { offset: 0, size: 0 }; TDMR_INFO_RESERVED_SLOTS],
        padding: [0; TDMR_INFO_ALIGNMENT - TDMR_INFO_READ_BYTES],
    };

    /// `(base, size)` of one PAMT level.
    pub fn pamt(&self, level: PageSize) -> (u64, u64) {
        match level {
            PageSize::Size4K => (self.pamt_4k_base, self.pamt_4k_size),
            PageSize::Size2M => (self.pamt_2m_base, self.pamt_2m_size),
            PageSize::Size1G => (self.pamt_1g_base, self.pamt_1g_size),
        }
    }

    /// Sets `(base, size)` of one PAMT level.
    pub fn set_pamt(&mut self, level: PageSize, base: u64, size: u64) {
        let (b, s) = match level {
            PageSize::Size4K => (&mut self.pamt_4k_base, &mut self.pamt_4k_size),
            PageSize::Size2M => (&mut self.pamt_2m_base, &mut self.pamt_2m_size),
            PageSize::Size1G => (&mut self.pamt_1g_base, &mut self.pamt_1g_size),
        };
        *b = base;
        *s = size;
    }

    /// The 512 bytes as the module reads them (little-endian, padding zero).
    pub fn to_bytes(&self) -> [u8; TDMR_INFO_ALIGNMENT] {
        let mut out = [0u8; TDMR_INFO_ALIGNMENT];
        let header = [
            self.base,
            self.size,
            self.pamt_1g_base,
            self.pamt_1g_size,
            self.pamt_2m_base,
            self.pamt_2m_size,
            self.pamt_4k_base,
            self.pamt_4k_size,
        ];
        let words = header
            .iter()
            .copied()
            .chain(self.reserved.iter().flat_map(|e| [e.offset, e.size]));
        for (chunk, w) in out.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Reads the 320 bytes the module reads; anything beyond is ignored.
    pub fn from_bytes(bytes: &[u8; TDMR_INFO_ALIGNMENT]) -> Self {
        let mut words = [0u64; TDMR_INFO_READ_BYTES / 8];
        for (w, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *w = u64::from_le_bytes(b);
        }
        let mut info = TdmrInfo::ZERO;
        info.base = words[0];
        info.size = words[1];
        info.pamt_1g_base = words[2];
        info.pamt_1g_size = words[3];
        info.pamt_2m_base = words[4];
        info.pamt_2m_size = words[5];
        info.pamt_4k_base = words[6];
        info.pamt_4k_size = words[7];
        for (j, e) in info.reserved.iter_mut().enumerate() {
            e.offset = words[8 + 2 * j];
            e.size = words[9 + 2 * j];
        }
        info
    }
}

/// 64 physical addresses, 512-byte aligned: the unit the PA array is built from.
#[repr(C, align(512))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PaBlock([u64; 64]);

const _: () = assert!(size_of::<PaBlock>() == 512 && align_of::<PaBlock>() == 512);

/// The array of `TDMR_INFO` physical addresses passed in RCX to TDH.SYS.CONFIG: 512-byte
/// aligned, `max(roundup_pow_of_two(8 * n), 512)` bytes, zero after the last address.
///
/// ```
/// use tdmr::tdx::abi::TdmrInfoPaArray;
/// let a = TdmrInfoPaArray::new(&[0x1000, 0x1200]).unwrap();
/// assert_eq!(a.as_slice(), &[0x1000, 0x1200]);
/// assert_eq!(a.byte_len(), 512);
/// assert_eq!(a.as_ptr() as usize % 512, 0);
/// assert!(TdmrInfoPaArray::new(&[0x1100]).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdmrInfoPaArray {
    /// The aligned buffer handed to the module.
    blocks: Vec<PaBlock>,
    /// The same addresses as a plain slice.
    pas: Vec<u64>,
}

impl TdmrInfoPaArray {
    /// The array for these `TDMR_INFO` addresses (each must be 512-byte aligned).
    pub fn new(pas: &[u64]) -> Result<Self, AbiError> {
        if let Some((index, &pa)) = pas
            .iter()
            .enumerate()
            .find(|(_, pa)| *pa % TDMR_INFO_ALIGNMENT as u64 != 0)
        {
            return Err(AbiError::MisalignedTdmrInfo { index, pa });
        }
        let bytes = (pas.len() * 8).next_power_of_two().max(TDMR_INFO_ALIGNMENT);
        let mut blocks = alloc::vec![PaBlock([0; 64]); bytes / TDMR_INFO_ALIGNMENT];
        for (i, &pa) in pas.iter().enumerate() {
            blocks[i / 64].0[i % 64] = pa;
        }
        Ok(TdmrInfoPaArray {
            blocks,
            pas: pas.to_vec(),
        })
    }

    /// The addresses.
    pub fn as_slice(&self) -> &[u64] {
        &self.pas
    }

    /// Number of addresses.
    pub fn len(&self) -> usize {
        self.pas.len()
    }

    /// Whether the array is empty.
    pub fn is_empty(&self) -> bool {
        self.pas.is_empty()
    }

    /// Bytes of the buffer (what a kernel would allocate).
    pub fn byte_len(&self) -> usize {
        self.blocks.len() * TDMR_INFO_ALIGNMENT
    }

    /// The buffer's address, for handing its physical address to the module.
    pub fn as_ptr(&self) -> *const u64 {
        self.blocks.as_ptr().cast()
    }

    /// The buffer's bytes (little-endian addresses, zero padded).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.blocks
            .iter()
            .flat_map(|b| b.0.iter().flat_map(|w| w.to_le_bytes()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_entries_serialise_in_place() {
        let mut t = TdmrInfo::ZERO;
        t.reserved[3] = TdmrReservedEntry {
            offset: 0x1000,
            size: 0x2000,
        };
        t.pamt_2m_size = 7;
        let b = t.to_bytes();
        assert_eq!(&b[40..48], &7u64.to_le_bytes());
        assert_eq!(&b[64 + 48..64 + 56], &0x1000u64.to_le_bytes());
        assert_eq!(&b[64 + 56..64 + 64], &0x2000u64.to_le_bytes());
        assert!(b[320..].iter().all(|&x| x == 0));
        assert_eq!(TdmrInfo::from_bytes(&b), t);
    }

    #[test]
    fn pa_array_sizes_round_to_powers_of_two() {
        let pas: Vec<u64> = (0..65).map(|i| i * 512).collect();
        let a = TdmrInfoPaArray::new(&pas).unwrap();
        assert_eq!(a.byte_len(), 1024);
        assert_eq!(a.as_slice(), &pas[..]);
        assert_eq!(&a.to_bytes()[512..520], &(64u64 * 512).to_le_bytes());
        assert_eq!(a.to_bytes().len(), 1024);
        assert_eq!(
            TdmrInfoPaArray::new(&[0, 0x300]),
            Err(AbiError::MisalignedTdmrInfo {
                index: 1,
                pa: 0x300
            })
        );
    }
}
