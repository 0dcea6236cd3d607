//! TDX status codes: the 64-bit value a SEAMCALL leaves in RAX, its fields and names.
//!
//! Layout: bits 31:0 operand id or four info bytes, 39:32 details L1, 47:40 class, 60 host
//! recoverability hint, 61 fatal, 62 non-recoverable, 63 error. Codes of class `0xFF` never come
//! from the module: they are the host's own for a SEAMCALL that failed as an instruction.

use core::fmt;

/// Bits 63:32: what Linux compares (`TDX_STATUS_MASK`).
pub const STATUS_MASK: u64 = 0xFFFF_FFFF_0000_0000;

/// `TDX_SUCCESS`.
pub const TDX_SUCCESS: u64 = 0;
/// `TDX_INTERRUPTED_RESUMABLE`.
pub const TDX_INTERRUPTED_RESUMABLE: u64 = 0x8000_0003_0000_0000;
/// `TDX_OPERAND_INVALID` (+ operand id).
pub const TDX_OPERAND_INVALID: u64 = 0xC000_0100_0000_0000;
/// `TDX_OPERAND_ADDR_RANGE_ERROR` (+ operand id).
pub const TDX_OPERAND_ADDR_RANGE_ERROR: u64 = 0xC000_0101_0000_0000;
/// `TDX_OPERAND_BUSY` (+ operand id); recoverable.
pub const TDX_OPERAND_BUSY: u64 = 0x8000_0200_0000_0000;
/// `TDX_SYS_BUSY`: global lock contention; recoverable.
pub const TDX_SYS_BUSY: u64 = 0x8000_0202_0000_0000;
/// `TDX_RND_NO_ENTROPY`: RDRAND/RDSEED ran dry; recoverable.
pub const TDX_RND_NO_ENTROPY: u64 = 0x8000_0203_0000_0000;
/// `TDX_PAGE_NOT_FREE`.
pub const TDX_PAGE_NOT_FREE: u64 = 0xC000_0303_0000_0000;
/// `TDX_HPA_RANGE_NOT_FREE` (Dynamic PAMT).
pub const TDX_HPA_RANGE_NOT_FREE: u64 = 0xC000_0304_0000_0000;
/// `TDX_NO_PAMT_PAGE_PAIR` (Dynamic PAMT).
pub const TDX_NO_PAMT_PAGE_PAIR: u64 = 0xC000_0305_0000_0000;
/// `TDX_PAMT_PAGE_NOT_EMPTY` (Dynamic PAMT).
pub const TDX_PAMT_PAGE_NOT_EMPTY: u64 = 0xC000_0306_0000_0000;
/// `TDX_INTERRUPTED_PAMT` (Dynamic PAMT).
pub const TDX_INTERRUPTED_PAMT: u64 = 0x8000_0307_0000_0000;
/// `TDX_MISSING_PAMT_PAGE_PAIR` (Dynamic PAMT).
pub const TDX_MISSING_PAMT_PAGE_PAIR: u64 = 0x8000_0308_0000_0000;
/// `TDX_SYS_INIT_NOT_PENDING`.
pub const TDX_SYS_INIT_NOT_PENDING: u64 = 0xC000_0500_0000_0000;
/// `TDX_SYS_LP_INIT_NOT_DONE`.
pub const TDX_SYS_LP_INIT_NOT_DONE: u64 = 0xC000_0502_0000_0000;
/// `TDX_SYS_LP_INIT_DONE`.
pub const TDX_SYS_LP_INIT_DONE: u64 = 0xC000_0503_0000_0000;
/// `TDX_SYS_NOT_READY`.
pub const TDX_SYS_NOT_READY: u64 = 0xC000_0505_0000_0000;
/// `TDX_SYS_SHUTDOWN`.
pub const TDX_SYS_SHUTDOWN: u64 = 0xC000_0506_0000_0000;
/// `TDX_SYS_KEY_CONFIG_NOT_PENDING`.
pub const TDX_SYS_KEY_CONFIG_NOT_PENDING: u64 = 0xC000_0507_0000_0000;
/// `TDX_SYS_STATE_INCORRECT`.
pub const TDX_SYS_STATE_INCORRECT: u64 = 0xC000_0508_0000_0000;
/// `TDX_SYS_LP_INIT_NOT_PENDING`.
pub const TDX_SYS_LP_INIT_NOT_PENDING: u64 = 0xC000_050B_0000_0000;
/// `TDX_SYS_CONFIG_NOT_PENDING`.
pub const TDX_SYS_CONFIG_NOT_PENDING: u64 = 0xC000_050C_0000_0000;
/// `TDX_INCOMPATIBLE_SEAM_CAPABILITIES`.
pub const TDX_INCOMPATIBLE_SEAM_CAPABILITIES: u64 = 0xC000_050D_0000_0000;
/// `TDX_UPDATE_COMPAT_SENSITIVE`: TDH.SYS.SHUTDOWN asked to avoid compatibility-sensitive work
/// (RCX bit 16, on modules with TDX_FEATURES0 bit 47) while such work is in progress: busy,
/// try the update later. The references name the code but not its value; this value (class
/// 0x05, system state; no non-recoverable bit, since the module keeps running) is this crate's
/// model choice, used by the mock and recognised by the driver.
pub const TDX_UPDATE_COMPAT_SENSITIVE: u64 = 0x8000_0512_0000_0000;
/// `TDX_KEY_GENERATION_FAILED`: PCONFIG entropy error; retry allowed.
pub const TDX_KEY_GENERATION_FAILED: u64 = 0x8000_0800_0000_0000;
/// `TDX_KEY_CONFIGURED`: the package is already configured (no error bit).
pub const TDX_KEY_CONFIGURED: u64 = 0x0000_0815_0000_0000;
/// `TDX_SMRR_OVERLAPS_CMR`.
pub const TDX_SMRR_OVERLAPS_CMR: u64 = 0xC000_0912_0000_0000;
/// `TDX_INVALID_TDMR`.
pub const TDX_INVALID_TDMR: u64 = 0xC000_0A00_0000_0000;
/// `TDX_NON_ORDERED_TDMR`.
pub const TDX_NON_ORDERED_TDMR: u64 = 0xC000_0A01_0000_0000;
/// `TDX_TDMR_OUTSIDE_CMRS`.
pub const TDX_TDMR_OUTSIDE_CMRS: u64 = 0xC000_0A02_0000_0000;
/// `TDX_TDMR_ALREADY_INITIALIZED` (no error bit).
pub const TDX_TDMR_ALREADY_INITIALIZED: u64 = 0x0000_0A03_0000_0000;
/// `TDX_INVALID_PAMT`.
pub const TDX_INVALID_PAMT: u64 = 0xC000_0A10_0000_0000;
/// `TDX_PAMT_OUTSIDE_CMRS`.
pub const TDX_PAMT_OUTSIDE_CMRS: u64 = 0xC000_0A11_0000_0000;
/// `TDX_PAMT_OVERLAP`.
pub const TDX_PAMT_OVERLAP: u64 = 0xC000_0A12_0000_0000;
/// `TDX_INVALID_RESERVED_IN_TDMR`.
pub const TDX_INVALID_RESERVED_IN_TDMR: u64 = 0xC000_0A20_0000_0000;
/// `TDX_NON_ORDERED_RESERVED_IN_TDMR`.
pub const TDX_NON_ORDERED_RESERVED_IN_TDMR: u64 = 0xC000_0A21_0000_0000;
/// `TDX_CMR_LIST_INVALID`.
pub const TDX_CMR_LIST_INVALID: u64 = 0xC000_0A22_0000_0000;
/// `TDX_METADATA_FIELD_ID_INCORRECT`.
pub const TDX_METADATA_FIELD_ID_INCORRECT: u64 = 0xC000_0C00_0000_0000;
/// `TDX_METADATA_FIELD_NOT_READABLE`.
pub const TDX_METADATA_FIELD_NOT_READABLE: u64 = 0xC000_0C02_0000_0000;
/// `TDX_METADATA_FIRST_FIELD_ID_IN_CONTEXT` (no error bit).
pub const TDX_METADATA_FIRST_FIELD_ID_IN_CONTEXT: u64 = 0x0000_0C0B_0000_0000;
/// `TDX_METADATA_FIELD_SKIP` (no error bit).
pub const TDX_METADATA_FIELD_SKIP: u64 = 0x0000_0C0C_0000_0000;

/// `TDX_SW_ERROR`: class 0xFF, never produced by the module.
pub const TDX_SW_ERROR: u64 = 0x8000_FF00_0000_0000;
/// The SEAMCALL instruction failed with VMfailInvalid (CF=1): no module loaded, or disabled.
pub const TDX_SEAMCALL_VMFAILINVALID: u64 = 0x8000_FF00_FFFF_0000;
/// The SEAMCALL instruction raised #GP (trap 13).
pub const TDX_SEAMCALL_GP: u64 = 0x8000_FF00_0000_000D;
/// The SEAMCALL instruction raised #UD (trap 6).
pub const TDX_SEAMCALL_UD: u64 = 0x8000_FF00_0000_0006;

/// Operand ids carried in bits 31:0 of operand errors.
pub mod operand {
    /// RAX.
    pub const RAX: u32 = 0;
    /// RCX.
    pub const RCX: u32 = 1;
    /// RDX.
    pub const RDX: u32 = 2;
    /// RBX.
    pub const RBX: u32 = 3;
    /// RBP.
    pub const RBP: u32 = 5;
    /// RSI.
    pub const RSI: u32 = 6;
    /// RDI.
    pub const RDI: u32 = 7;
    /// R8.
    pub const R8: u32 = 8;
    /// R9.
    pub const R9: u32 = 9;
    /// R10.
    pub const R10: u32 = 10;
    /// R11.
    pub const R11: u32 = 11;
    /// TDMR_INFO_PA.
    pub const TDMR_INFO_PA: u32 = 96;
    /// The global SYS state.
    pub const SYS: u32 = 184;
    /// A TDMR.
    pub const TDMR: u32 = 185;
    /// The KeyID ownership table.
    pub const KOT: u32 = 186;
    /// The key encryption table.
    pub const KET: u32 = 187;
    /// The cache write-back state.
    pub const WBCACHE: u32 = 188;

    /// The operand's name, for messages.
    pub const fn name(id: u32) -> Option<&'static str> {
        Some(match id {
            RAX => "RAX",
            RCX => "RCX",
            RDX => "RDX",
            RBX => "RBX",
            RBP => "RBP",
            RSI => "RSI",
            RDI => "RDI",
            R8 => "R8",
            R9 => "R9",
            R10 => "R10",
            R11 => "R11",
            12 => "R12",
            13 => "R13",
            14 => "R14",
            15 => "R15",
            TDMR_INFO_PA => "TDMR_INFO_PA",
            SYS => "SYS",
            TDMR => "TDMR",
            KOT => "KOT",
            KET => "KET",
            WBCACHE => "WBCACHE",
            _ => return None,
        })
    }
}

/// Every named code, by its upper 32 bits.
const NAMES: &[(u64, &str)] = &[
    (TDX_SUCCESS, "TDX_SUCCESS"),
    (TDX_INTERRUPTED_RESUMABLE, "TDX_INTERRUPTED_RESUMABLE"),
    (TDX_OPERAND_INVALID, "TDX_OPERAND_INVALID"),
    (TDX_OPERAND_ADDR_RANGE_ERROR, "TDX_OPERAND_ADDR_RANGE_ERROR"),
    (TDX_OPERAND_BUSY, "TDX_OPERAND_BUSY"),
    (TDX_SYS_BUSY, "TDX_SYS_BUSY"),
    (TDX_RND_NO_ENTROPY, "TDX_RND_NO_ENTROPY"),
    (TDX_PAGE_NOT_FREE, "TDX_PAGE_NOT_FREE"),
    (TDX_HPA_RANGE_NOT_FREE, "TDX_HPA_RANGE_NOT_FREE"),
    (TDX_NO_PAMT_PAGE_PAIR, "TDX_NO_PAMT_PAGE_PAIR"),
    (TDX_PAMT_PAGE_NOT_EMPTY, "TDX_PAMT_PAGE_NOT_EMPTY"),
    (TDX_INTERRUPTED_PAMT, "TDX_INTERRUPTED_PAMT"),
    (TDX_MISSING_PAMT_PAGE_PAIR, "TDX_MISSING_PAMT_PAGE_PAIR"),
    (TDX_SYS_INIT_NOT_PENDING, "TDX_SYS_INIT_NOT_PENDING"),
    (TDX_SYS_LP_INIT_NOT_DONE, "TDX_SYS_LP_INIT_NOT_DONE"),
    (TDX_SYS_LP_INIT_DONE, "TDX_SYS_LP_INIT_DONE"),
    (TDX_SYS_NOT_READY, "TDX_SYS_NOT_READY"),
    (TDX_SYS_SHUTDOWN, "TDX_SYS_SHUTDOWN"),
    (
        TDX_SYS_KEY_CONFIG_NOT_PENDING,
        "TDX_SYS_KEY_CONFIG_NOT_PENDING",
    ),
    (TDX_SYS_STATE_INCORRECT, "TDX_SYS_STATE_INCORRECT"),
    (TDX_SYS_LP_INIT_NOT_PENDING, "TDX_SYS_LP_INIT_NOT_PENDING"),
    (TDX_SYS_CONFIG_NOT_PENDING, "TDX_SYS_CONFIG_NOT_PENDING"),
    (
        TDX_INCOMPATIBLE_SEAM_CAPABILITIES,
        "TDX_INCOMPATIBLE_SEAM_CAPABILITIES",
    ),
    (TDX_UPDATE_COMPAT_SENSITIVE, "TDX_UPDATE_COMPAT_SENSITIVE"),
    (TDX_KEY_GENERATION_FAILED, "TDX_KEY_GENERATION_FAILED"),
    (TDX_KEY_CONFIGURED, "TDX_KEY_CONFIGURED"),
    (TDX_SMRR_OVERLAPS_CMR, "TDX_SMRR_OVERLAPS_CMR"),
    (TDX_INVALID_TDMR, "TDX_INVALID_TDMR"),
    (TDX_NON_ORDERED_TDMR, "TDX_NON_ORDERED_TDMR"),
    (TDX_TDMR_OUTSIDE_CMRS, "TDX_TDMR_OUTSIDE_CMRS"),
    (TDX_TDMR_ALREADY_INITIALIZED, "TDX_TDMR_ALREADY_INITIALIZED"),
    (TDX_INVALID_PAMT, "TDX_INVALID_PAMT"),
    (TDX_PAMT_OUTSIDE_CMRS, "TDX_PAMT_OUTSIDE_CMRS"),
    (TDX_PAMT_OVERLAP, "TDX_PAMT_OVERLAP"),
    (TDX_INVALID_RESERVED_IN_TDMR, "TDX_INVALID_RESERVED_IN_TDMR"),
    (
        TDX_NON_ORDERED_RESERVED_IN_TDMR,
        "TDX_NON_ORDERED_RESERVED_IN_TDMR",
    ),
    (TDX_CMR_LIST_INVALID, "TDX_CMR_LIST_INVALID"),
    (
        TDX_METADATA_FIELD_ID_INCORRECT,
        "TDX_METADATA_FIELD_ID_INCORRECT",
    ),
    (
        TDX_METADATA_FIELD_NOT_READABLE,
        "TDX_METADATA_FIELD_NOT_READABLE",
    ),
    (
        TDX_METADATA_FIRST_FIELD_ID_IN_CONTEXT,
        "TDX_METADATA_FIRST_FIELD_ID_IN_CONTEXT",
    ),
    (TDX_METADATA_FIELD_SKIP, "TDX_METADATA_FIELD_SKIP"),
];

/// Which of the class-0x0A (TDMR configuration) codes carry TDMR/level/other-TDMR info bytes
/// rather than an operand id.
const TDMR_INFO_CODES: &[u64] = &[
    TDX_INVALID_TDMR,
    TDX_NON_ORDERED_TDMR,
    TDX_TDMR_OUTSIDE_CMRS,
    TDX_INVALID_PAMT,
    TDX_PAMT_OUTSIDE_CMRS,
    TDX_PAMT_OVERLAP,
    TDX_INVALID_RESERVED_IN_TDMR,
    TDX_NON_ORDERED_RESERVED_IN_TDMR,
];

/// A raw 64-bit TDX status with its fields decoded on demand.
///
/// ```
/// use tdmr::tdx::status::{Status, TDX_PAMT_OVERLAP};
/// let s = Status::new(0xC0000A1200010103);
/// assert_eq!(s.code(), TDX_PAMT_OVERLAP);
/// assert_eq!(s.info_bytes(), [3, 1, 1, 0]);
/// assert!(s.is_error() && !s.is_recoverable());
/// assert_eq!(s.to_string(), "TDX_PAMT_OVERLAP (0xc0000a1200010103: TDMR 3, PAMT 2m, other TDMR 1)");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(u64);

impl Status {
    /// `TDX_SUCCESS`.
    pub const SUCCESS: Status = Status(TDX_SUCCESS);

    /// Wraps a raw RAX value.
    #[inline]
    pub const fn new(raw: u64) -> Self {
        Status(raw)
    }

    /// The raw 64-bit value.
    #[inline]
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The code without its operand / info bits (bits 63:32).
    #[inline]
    pub const fn code(self) -> u64 {
        self.0 & STATUS_MASK
    }

    /// Bits 31:0: operand id or info bytes.
    #[inline]
    pub const fn details_l2(self) -> u32 {
        self.0 as u32
    }

    /// Bits 39:32.
    #[inline]
    pub const fn details_l1(self) -> u8 {
        (self.0 >> 32) as u8
    }

    /// Bits 47:40.
    #[inline]
    pub const fn class(self) -> u8 {
        (self.0 >> 40) as u8
    }

    /// Bit 63.
    #[inline]
    pub const fn is_error(self) -> bool {
        self.0 >> 63 != 0
    }

    /// Bit 62.
    #[inline]
    pub const fn is_non_recoverable(self) -> bool {
        (self.0 >> 62) & 1 != 0
    }

    /// Bit 61.
    #[inline]
    pub const fn is_fatal(self) -> bool {
        (self.0 >> 61) & 1 != 0
    }

    /// Bit 60.
    #[inline]
    pub const fn host_recoverability_hint(self) -> bool {
        (self.0 >> 60) & 1 != 0
    }

    /// Whether this is `TDX_SUCCESS` exactly.
    #[inline]
    pub const fn is_success(self) -> bool {
        self.0 == TDX_SUCCESS
    }

    /// An error the host may retry as is (error bit set, non-recoverable and fatal bits clear,
    /// and not a host-side instruction failure).
    #[inline]
    pub const fn is_recoverable(self) -> bool {
        self.is_error() && !self.is_non_recoverable() && !self.is_fatal() && !self.is_host_side()
    }

    /// Whether the code is the host's own (class 0xFF): VMfailInvalid, #GP, #UD.
    #[inline]
    pub const fn is_host_side(self) -> bool {
        self.0 & TDX_SW_ERROR == TDX_SW_ERROR
    }

    /// The operand id of operand errors (bits 31:0).
    #[inline]
    pub const fn operand(self) -> u32 {
        self.details_l2()
    }

    /// The four info bytes of TDMR-configuration errors: `[tdmr, level or slot, other tdmr, 0]`.
    #[inline]
    pub const fn info_bytes(self) -> [u8; 4] {
        (self.0 as u32).to_le_bytes()
    }

    /// The code's name (`TDX_PAMT_OVERLAP`), or `None` for an unknown code.
    pub fn name(self) -> Option<&'static str> {
        match self.0 {
            TDX_SEAMCALL_VMFAILINVALID => return Some("TDX_SEAMCALL_VMFAILINVALID"),
            TDX_SEAMCALL_GP => return Some("TDX_SEAMCALL_GP"),
            TDX_SEAMCALL_UD => return Some("TDX_SEAMCALL_UD"),
            _ => {}
        }
        NAMES
            .iter()
            .find(|(c, _)| *c == self.code())
            .map(|(_, n)| *n)
    }

    /// Whether this code carries TDMR info bytes (class 0x0A configuration errors).
    pub fn has_tdmr_info(self) -> bool {
        TDMR_INFO_CODES.contains(&self.code())
    }
}

impl From<u64> for Status {
    fn from(raw: u64) -> Self {
        Status(raw)
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Status({:#018x}", self.0)?;
        if let Some(n) = self.name() {
            write!(f, " {n}")?;
        }
        write!(f, ")")
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let raw = self.0;
        match self.name() {
            Some(n) => write!(f, "{n} ({raw:#018x}")?,
            None => write!(f, "unknown TDX status ({raw:#018x}")?,
        }
        if self.is_host_side() || self.0 & 0xFFFF_FFFF == 0 {
            return write!(f, ")");
        }
        if self.has_tdmr_info() {
            let [tdmr, b1, other, _] = self.info_bytes();
            write!(f, ": TDMR {tdmr}")?;
            match self.code() {
                TDX_INVALID_PAMT | TDX_PAMT_OUTSIDE_CMRS => {
                    write!(f, ", PAMT {}", level_label(b1))?;
                }
                TDX_PAMT_OVERLAP => {
                    write!(f, ", PAMT {}, other TDMR {other}", level_label(b1))?;
                }
                TDX_INVALID_RESERVED_IN_TDMR | TDX_NON_ORDERED_RESERVED_IN_TDMR => {
                    write!(f, ", reserved area {b1}")?;
                }
                _ => {}
            }
            write!(f, ")")
        } else {
            let op = self.operand();
            match operand::name(op) {
                Some(n) => write!(f, ": operand {n})"),
                None => write!(f, ": operand {op})"),
            }
        }
    }
}

fn level_label(b: u8) -> &'static str {
    match b {
        0 => "4k",
        1 => "2m",
        2 => "1g",
        _ => "?",
    }
}

impl core::error::Error for Status {}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn decodes_fields() {
        let s = Status::new(TDX_OPERAND_BUSY | operand::KET as u64);
        assert_eq!(s.raw(), 0x8000_0200_0000_00BB);
        assert!(s.is_recoverable());
        assert_eq!(s.class(), 2);
        assert_eq!(s.details_l1(), 0);
        assert_eq!(
            s.to_string(),
            "TDX_OPERAND_BUSY (0x80000200000000bb: operand KET)"
        );
        assert!(!Status::new(TDX_KEY_CONFIGURED).is_error());
        assert!(Status::new(TDX_SYS_CONFIG_NOT_PENDING).is_non_recoverable());
    }

    #[test]
    fn host_side_codes_are_named_and_not_recoverable() {
        for (raw, name) in [
            (TDX_SEAMCALL_VMFAILINVALID, "TDX_SEAMCALL_VMFAILINVALID"),
            (TDX_SEAMCALL_GP, "TDX_SEAMCALL_GP"),
            (TDX_SEAMCALL_UD, "TDX_SEAMCALL_UD"),
        ] {
            let s = Status::new(raw);
            assert_eq!(s.name(), Some(name));
            assert!(s.is_host_side());
            assert!(!s.is_recoverable());
        }
    }

    #[test]
    fn every_code_has_a_distinct_name() {
        for (i, (a, na)) in NAMES.iter().enumerate() {
            assert_eq!(Status::new(*a).name(), Some(*na));
            for (b, _) in &NAMES[i + 1..] {
                assert_ne!(a, b, "{na}");
            }
        }
    }

    #[test]
    fn reserved_slot_is_shown() {
        let s = Status::new(TDX_INVALID_RESERVED_IN_TDMR | 0x0502);
        assert_eq!(
            s.to_string(),
            "TDX_INVALID_RESERVED_IN_TDMR (0xc0000a2000000502: TDMR 2, reserved area 5)"
        );
    }
}
