//! Global metadata field identifiers (TDH.SYS.RD / TDH.SYS.RDALL) and the values they carry.
//!
//! A field id is 64 bits: 23:0 field code, 31:24 reserved, 33:32 element size (0: 1 byte,
//! 1: 2, 2: 4, 3: 8), 37:34 last element in field, 46:38 last field in sequence, 49:47
//! reserved, 50 inc_size, 51 write_mask_valid, 54:52 context (0 = SYS), 55 reserved, 61:56
//! class, 62 reserved, 63 non-architectural. The module finds a field by class and field code.

use core::fmt;

/// TDX module version numbers (MAJOR_VERSION, MINOR_VERSION, UPDATE_VERSION).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModuleVersion {
    /// MAJOR_VERSION.
    pub major: u16,
    /// MINOR_VERSION.
    pub minor: u16,
    /// UPDATE_VERSION.
    pub update: u16,
}

impl ModuleVersion {
    /// `major.minor.update`.
    pub const fn new(major: u16, minor: u16, update: u16) -> Self {
        ModuleVersion {
            major,
            minor,
            update,
        }
    }
}

impl fmt::Display for ModuleVersion {
    /// `1.5.06`: the update number with two digits, as Linux prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{:02}", self.major, self.minor, self.update)
    }
}

/// A module version that does not parse as `MAJOR.MINOR.UPDATE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleVersionError;

impl fmt::Display for ModuleVersionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected a module version MAJOR.MINOR.UPDATE (decimal, each below 65536)")
    }
}

impl core::error::Error for ModuleVersionError {}

impl core::str::FromStr for ModuleVersion {
    type Err = ModuleVersionError;

    /// `1.5.06`, `2.0.8` (leading zeros allowed).
    ///
    /// ```
    /// use tdmr::tdx::metadata::ModuleVersion;
    /// let v: ModuleVersion = "1.5.06".parse()?;
    /// assert_eq!(v, ModuleVersion::new(1, 5, 6));
    /// assert_eq!(v.to_string(), "1.5.06");
    /// assert!("1.5".parse::<ModuleVersion>().is_err());
    /// # Ok::<(), tdmr::tdx::metadata::ModuleVersionError>(())
    /// ```
    fn from_str(s: &str) -> Result<Self, ModuleVersionError> {
        let mut parts = s.split('.');
        let mut next = || -> Result<u16, ModuleVersionError> {
            let p = parts.next().ok_or(ModuleVersionError)?;
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ModuleVersionError);
            }
            p.parse().map_err(|_| ModuleVersionError)
        };
        let v = ModuleVersion::new(next()?, next()?, next()?);
        if parts.next().is_some() {
            return Err(ModuleVersionError);
        }
        Ok(v)
    }
}

/// A global metadata field id.
///
/// ```
/// use tdmr::tdx::metadata::{FieldId, MAX_TDMRS, cmr_base};
/// assert_eq!(MAX_TDMRS.class(), 0x11);
/// assert_eq!(MAX_TDMRS.element_bytes(), 2);
/// assert_eq!(cmr_base(3).unwrap().raw(), 0x9000000300000083);
/// assert!(cmr_base(32).is_none());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldId(u64);

/// `MD_FIELD_ID_NA`: no field (all ones); TDH.SYS.RD returns it as "no next field".
pub const FIELD_ID_NA: u64 = u64::MAX;

impl FieldId {
    /// Wraps a raw id.
    #[inline]
    pub const fn new(raw: u64) -> Self {
        FieldId(raw)
    }

    /// The raw 64-bit id.
    #[inline]
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Bits 23:0.
    #[inline]
    pub const fn field_code(self) -> u32 {
        (self.0 & 0xFF_FFFF) as u32
    }

    /// Bits 33:32 as a byte count (1, 2, 4, 8).
    #[inline]
    pub const fn element_bytes(self) -> u32 {
        1 << ((self.0 >> 32) & 3)
    }

    /// Bits 61:56.
    #[inline]
    pub const fn class(self) -> u8 {
        ((self.0 >> 56) & 0x3F) as u8
    }

    /// Bits 54:52.
    #[inline]
    pub const fn context(self) -> u8 {
        ((self.0 >> 52) & 7) as u8
    }

    /// The id with the element-size bits replaced by those of `bytes` (1, 2, 4 or 8).
    pub const fn with_element_bytes(self, bytes: u32) -> Self {
        let code = match bytes {
            1 => 0,
            2 => 1,
            4 => 2,
            _ => 3,
        };
        FieldId(self.0 & !(3 << 32) | code << 32)
    }
}

/// MINOR_VERSION (2 bytes).
pub const MINOR_VERSION: FieldId = FieldId(0x0800_0001_0000_0003);
/// MAJOR_VERSION (2 bytes).
pub const MAJOR_VERSION: FieldId = FieldId(0x0800_0001_0000_0004);
/// UPDATE_VERSION (2 bytes).
pub const UPDATE_VERSION: FieldId = FieldId(0x0800_0001_0000_0005);
/// NUM_PKGS (4 bytes): packages the module found at boot (MCHECK).
pub const NUM_PKGS: FieldId = FieldId(0x0000_0002_0000_0000);
/// SYS_ATTRIBUTES (4 bytes).
pub const SYS_ATTRIBUTES: FieldId = FieldId(0x0A00_0002_0000_0000);
/// NUM_TDX_FEATURES (1 byte).
pub const NUM_TDX_FEATURES: FieldId = FieldId(0x0A00_0000_0000_0001);
/// TDX_FEATURES0 (8 bytes): feature bitmap, see [`features0`].
pub const TDX_FEATURES0: FieldId = FieldId(0x0A00_0003_0000_0008);
/// NUM_CMRS (2 bytes): CMR slots (32 on TDX module 1.5, null slots included).
pub const NUM_CMRS: FieldId = FieldId(0x9000_0001_0000_0000);
/// MAX_TDMRS (2 bytes).
pub const MAX_TDMRS: FieldId = FieldId(0x9100_0001_0000_0008);
/// MAX_RESERVED_PER_TDMR (2 bytes).
pub const MAX_RESERVED_PER_TDMR: FieldId = FieldId(0x9100_0001_0000_0009);
/// PAMT_4K_ENTRY_SIZE (2 bytes).
pub const PAMT_4K_ENTRY_SIZE: FieldId = FieldId(0x9100_0001_0000_0010);
/// PAMT_2M_ENTRY_SIZE (2 bytes).
pub const PAMT_2M_ENTRY_SIZE: FieldId = FieldId(0x9100_0001_0000_0011);
/// PAMT_1G_ENTRY_SIZE (2 bytes).
pub const PAMT_1G_ENTRY_SIZE: FieldId = FieldId(0x9100_0001_0000_0012);
/// PAMT_PAGE_BITMAP_ENTRY_BITS (1 byte, Dynamic PAMT modules). Linux reads it as
/// `0x9100000100000013`; the element-size bits are ignored on read, so both ids work.
pub const PAMT_PAGE_BITMAP_ENTRY_BITS: FieldId = FieldId(0x9100_0000_0000_0013);
/// MIN_DYNAMIC_PAMT_NUM_HKID_BITS (1 byte, Dynamic PAMT modules).
pub const MIN_DYNAMIC_PAMT_NUM_HKID_BITS: FieldId = FieldId(0x9100_0000_0000_0014);
/// TDR_BASE_SIZE (2 bytes).
pub const TDR_BASE_SIZE: FieldId = FieldId(0x9800_0001_0000_0000);
/// TDCS_BASE_SIZE (2 bytes).
pub const TDCS_BASE_SIZE: FieldId = FieldId(0x9800_0001_0000_0100);
/// TDVPS_BASE_SIZE (2 bytes).
pub const TDVPS_BASE_SIZE: FieldId = FieldId(0x9800_0001_0000_0200);
/// ATTRIBUTES_FIXED0 (8 bytes).
pub const ATTRIBUTES_FIXED0: FieldId = FieldId(0x1900_0003_0000_0000);
/// ATTRIBUTES_FIXED1 (8 bytes).
pub const ATTRIBUTES_FIXED1: FieldId = FieldId(0x1900_0003_0000_0001);
/// XFAM_FIXED0 (8 bytes).
pub const XFAM_FIXED0: FieldId = FieldId(0x1900_0003_0000_0002);
/// XFAM_FIXED1 (8 bytes).
pub const XFAM_FIXED1: FieldId = FieldId(0x1900_0003_0000_0003);
/// NUM_CPUID_CONFIG (2 bytes).
pub const NUM_CPUID_CONFIG: FieldId = FieldId(0x9900_0001_0000_0004);
/// MAX_VCPUS_PER_TD (2 bytes).
pub const MAX_VCPUS_PER_TD: FieldId = FieldId(0x9900_0001_0000_0008);

/// The module's handoff version (2 bytes): TDH.SYS.SHUTDOWN's RCX before a runtime update.
pub const MODULE_HANDOFF_VERSION: FieldId = FieldId(0x8900_0001_0000_0000);
/// Whether the module extensions need memory (1 byte; readable only after TDH.SYS.CONFIG).
pub const EXT_REQUIRED: FieldId = FieldId(0x3100_0000_0000_0001);
/// 4 KiB pages the module extensions need (4 bytes; readable only after TDH.SYS.CONFIG).
pub const EXT_MEMORY_POOL_REQUIRED_PAGES: FieldId = FieldId(0x3100_0002_0000_0000);

/// The fields with a name of their own (arrays are named by their first element), for
/// messages and command lines: `(name, id)`.
pub const NAMED: [(&str, FieldId); 29] = [
    ("MINOR_VERSION", MINOR_VERSION),
    ("MAJOR_VERSION", MAJOR_VERSION),
    ("UPDATE_VERSION", UPDATE_VERSION),
    ("NUM_PKGS", NUM_PKGS),
    ("SYS_ATTRIBUTES", SYS_ATTRIBUTES),
    ("NUM_TDX_FEATURES", NUM_TDX_FEATURES),
    ("TDX_FEATURES0", TDX_FEATURES0),
    ("NUM_CMRS", NUM_CMRS),
    ("CMR_BASE", FieldId(0x9000_0003_0000_0080)),
    ("CMR_SIZE", FieldId(0x9000_0003_0000_0100)),
    ("MAX_TDMRS", MAX_TDMRS),
    ("MAX_RESERVED_PER_TDMR", MAX_RESERVED_PER_TDMR),
    ("PAMT_4K_ENTRY_SIZE", PAMT_4K_ENTRY_SIZE),
    ("PAMT_2M_ENTRY_SIZE", PAMT_2M_ENTRY_SIZE),
    ("PAMT_1G_ENTRY_SIZE", PAMT_1G_ENTRY_SIZE),
    ("PAMT_PAGE_BITMAP_ENTRY_BITS", PAMT_PAGE_BITMAP_ENTRY_BITS),
    (
        "MIN_DYNAMIC_PAMT_NUM_HKID_BITS",
        MIN_DYNAMIC_PAMT_NUM_HKID_BITS,
    ),
    ("TDR_BASE_SIZE", TDR_BASE_SIZE),
    ("TDCS_BASE_SIZE", TDCS_BASE_SIZE),
    ("TDVPS_BASE_SIZE", TDVPS_BASE_SIZE),
    ("ATTRIBUTES_FIXED0", ATTRIBUTES_FIXED0),
    ("ATTRIBUTES_FIXED1", ATTRIBUTES_FIXED1),
    ("XFAM_FIXED0", XFAM_FIXED0),
    ("XFAM_FIXED1", XFAM_FIXED1),
    ("NUM_CPUID_CONFIG", NUM_CPUID_CONFIG),
    ("MAX_VCPUS_PER_TD", MAX_VCPUS_PER_TD),
    ("MODULE_HANDOFF_VERSION", MODULE_HANDOFF_VERSION),
    ("EXT_REQUIRED", EXT_REQUIRED),
    (
        "EXT_MEMORY_POOL_REQUIRED_PAGES",
        EXT_MEMORY_POOL_REQUIRED_PAGES,
    ),
];

/// Bits the module looks a field up by: non-architectural (63), class (61:56), field code
/// (23:0). Element size and the sequence bits do not name a field.
const KEY_MASK: u64 = 1 << 63 | 0x3F << 56 | 0xFF_FFFF;

impl FieldId {
    /// The field's name (`MAX_TDMRS`; array elements by their array: `CMR_BASE`, `CMR_SIZE`,
    /// `CPUID_CONFIG_LEAVES`, `CPUID_CONFIG_VALUES`), or `None` for an id this crate does not
    /// know. Found by class and field code, as the module finds fields.
    ///
    /// ```
    /// use tdmr::tdx::metadata::{FieldId, MAX_TDMRS, cmr_size};
    /// assert_eq!(MAX_TDMRS.name(), Some("MAX_TDMRS"));
    /// assert_eq!(cmr_size(7).unwrap().name(), Some("CMR_SIZE"));
    /// assert_eq!(FieldId::new(0x9100_0000_0000_0008).name(), Some("MAX_TDMRS"));
    /// assert_eq!(FieldId::new(0x1234).name(), None);
    /// ```
    pub fn name(self) -> Option<&'static str> {
        let key = self.0 & KEY_MASK;
        let array = |first: FieldId, len: u64| {
            let f = first.0 & KEY_MASK;
            key >= f && key < f + len
        };
        if array(FieldId(0x9000_0003_0000_0080), u64::from(MAX_CMR_SLOTS)) {
            return Some("CMR_BASE");
        }
        if array(FieldId(0x9000_0003_0000_0100), u64::from(MAX_CMR_SLOTS)) {
            return Some("CMR_SIZE");
        }
        if array(FieldId(0x9900_0003_0000_0400), u64::from(MAX_CPUID_CONFIG)) {
            return Some("CPUID_CONFIG_LEAVES");
        }
        if array(
            FieldId(0x9900_0003_0000_0500),
            2 * u64::from(MAX_CPUID_CONFIG),
        ) {
            return Some("CPUID_CONFIG_VALUES");
        }
        NAMED
            .iter()
            .find(|(_, id)| id.0 & KEY_MASK == key)
            .map(|(n, _)| *n)
    }

    /// The field named `name` ([`FieldId::name`]; an array's name gives its first element),
    /// or a raw id in hex (`0x9100000100000008`).
    ///
    /// ```
    /// use tdmr::tdx::metadata::{FieldId, MAX_RESERVED_PER_TDMR};
    /// assert_eq!(FieldId::from_name("MAX_RESERVED_PER_TDMR"), Some(MAX_RESERVED_PER_TDMR));
    /// assert_eq!(FieldId::from_name("0x9100000100000009"), Some(MAX_RESERVED_PER_TDMR));
    /// assert_eq!(FieldId::from_name("NO_SUCH_FIELD"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<FieldId> {
        if let Some(hex) = name.strip_prefix("0x").or_else(|| name.strip_prefix("0X")) {
            return u64::from_str_radix(hex, 16).ok().map(FieldId);
        }
        let arrays = [
            ("CPUID_CONFIG_LEAVES", FieldId(0x9900_0003_0000_0400)),
            ("CPUID_CONFIG_VALUES", FieldId(0x9900_0003_0000_0500)),
        ];
        NAMED
            .iter()
            .chain(arrays.iter())
            .find(|(n, _)| *n == name)
            .map(|(_, id)| *id)
    }
}

impl fmt::Display for FieldId {
    /// `MAX_TDMRS (0x9100000100000008)`, or the raw id alone for an unknown field.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n} ({:#018x})", self.0),
            None => write!(f, "{:#018x}", self.0),
        }
    }
}

/// Most CMR slots (`MAX_CMR`).
pub const MAX_CMR_SLOTS: u32 = 32;
/// Most CPUID_CONFIG entries Linux reads.
pub const MAX_CPUID_CONFIG: u32 = 128;

/// CMR_BASE\[i\] (8 bytes), i < 32.
pub const fn cmr_base(i: u32) -> Option<FieldId> {
    if i < MAX_CMR_SLOTS {
        Some(FieldId(0x9000_0003_0000_0080 + i as u64))
    } else {
        None
    }
}

/// CMR_SIZE\[i\] (8 bytes), i < 32.
pub const fn cmr_size(i: u32) -> Option<FieldId> {
    if i < MAX_CMR_SLOTS {
        Some(FieldId(0x9000_0003_0000_0100 + i as u64))
    } else {
        None
    }
}

/// CPUID_CONFIG_LEAVES\[i\] (8 bytes), i < 128.
pub const fn cpuid_config_leaf(i: u32) -> Option<FieldId> {
    if i < MAX_CPUID_CONFIG {
        Some(FieldId(0x9900_0003_0000_0400 + i as u64))
    } else {
        None
    }
}

/// CPUID_CONFIG_VALUES\[i\]\[j\] (8 bytes), i < 128, j < 2.
pub const fn cpuid_config_value(i: u32, j: u32) -> Option<FieldId> {
    if i < MAX_CPUID_CONFIG && j < 2 {
        Some(FieldId(0x9900_0003_0000_0500 + 2 * i as u64 + j as u64))
    } else {
        None
    }
}

/// Bits of TDX_FEATURES0 the host cares about.
pub mod features0 {
    /// Bit 1: TD-preserving runtime update.
    pub const TD_PRESERVING: u64 = 1 << 1;
    /// Bit 6: TDX Connect (trusted device I/O).
    pub const TDX_CONNECT: u64 = 1 << 6;
    /// Bit 18: the module never modifies RBP. Linux refuses modules without it.
    pub const NO_RBP_MOD: u64 = 1 << 18;
    /// Bit 23: the host must flush a page's cache lines before handing it to the module.
    pub const CLFLUSH_BEFORE_ALLOC: u64 = 1 << 23;
    /// Bit 36: Dynamic PAMT.
    pub const DYNAMIC_PAMT: u64 = 1 << 36;
    /// Bit 39: module extensions (TDH.EXT.MEM.ADD, TDH.EXT.INIT after TDH.SYS.CONFIG v1).
    pub const MODULE_EXTENSIONS: u64 = 1 << 39;
    /// Bit 47: update compatibility (TDH.SYS.SHUTDOWN may refuse compat-sensitive work).
    pub const UPDATE_COMPATIBILITY: u64 = 1 << 47;
}
