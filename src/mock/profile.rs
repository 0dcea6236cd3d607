//! [`ModuleProfile`]: one released TDX module as the mock plays it (documented there).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;

use crate::sysinfo::TdxLimits;
use crate::tdx::metadata::{FieldId, ModuleVersion, features0};

/// TDX_FEATURES0 of TDX module 1.5: bits 0–5, 7–11 and 16–19 (NO_RBP_MOD is bit 18).
pub const FEATURES0_TDX_1_5: u64 = 0b1111 << 16 | 0b1_1111 << 7 | 0b11_1111;

/// TDX_FEATURES0 of 2.0.04, 2.0.05 and 2.0.08 as published.
const FEATURES0_2_0_04: u64 = 0x12_AF1F_0FBF;
const FEATURES0_2_0_05: u64 = 0x22_6F3F_0FBF;
const FEATURES0_2_0_08: u64 = 0x32_A71F_0FBF;

/// Extension memory the `next` profile needs: 12 800 pages (50 MiB), the one public figure.
pub const NEXT_EXTENSION_PAGES: u32 = 12_800;

/// One released TDX module as the host sees it — version and build,
/// TDX_FEATURES0, the metadata fields it has, its limits, the leaves it implements — so the
/// mock behaves as that release, not as one idealised module.
///
/// # The releases
///
/// | profile | TDX_FEATURES0 | metadata | notes |
/// |---|---|---|---|
/// | `1.0.00` | — (no TDH.SYS.RD) | none: TDH.SYS.INFO only | TDH.SYS.RD and RDALL not implemented |
/// | `1.5.01` | 1.5's bits | all Linux reads but MAX_VCPUS_PER_TD | the public 1.5.01 source |
/// | `1.5.06`, `1.5.24`, `1.5.25` | 1.5's bits | all Linux reads | |
/// | `2.0.04` | `0x12AF1F0FBF` | + Dynamic PAMT fields | Dynamic PAMT (bit 36) |
/// | `2.0.05` | `0x226F3F0FBF` | all Linux reads | |
/// | `2.0.08` | `0x32A71F0FBF` | + Dynamic PAMT fields | Dynamic PAMT; build 882 |
/// | `next` (2.1.00) | 2.0.08's + bits 39, 47 | + extension fields | not a release: extensions, update compatibility, TDH.SYS.CONFIG v1, TDH.SYS.DISABLE |
///
/// Facts (tdx-2026.md §6, tdx-module-rules.md §7, linux-tdx-host.md §1.1): the 2.0
/// TDX_FEATURES0 values as published; only 2.0.04 and 2.0.08 advertise Dynamic PAMT; no
/// release sets bit 39 (extensions), 47 (update compatibility) or 6 (TDX Connect); every
/// shipped module reports 64 TDMRs, 16 reserved areas per TDMR and 16-byte PAMT entries; TDX
/// 1.0 answers TDH.SYS.RD with `TDX_SYS_NOT_READY` before the module is ready (Linux fails
/// there); 1.5.01 lacks MAX_VCPUS_PER_TD; 2.0.08 is build 882 of 2025-03-25; TDH.SYS.DISABLE
/// is in no released module. The 1.5 line reports bits 0–5, 7–11 and 16–19 (the public 1.5
/// source; the release list publishes no 1.5 value). Model choices, where the references are
/// silent: the 1.0 update number; builds and dates other than 2.0.08's (builds 481, 698 and
/// 784 appear in public 1.5 logs without update numbers and are assigned in date order);
/// handoff versions (1 for 1.5, 2 for 2.0, 3 for `next`, each taking over from its own line);
/// which releases have TDH.SYS.SHUTDOWN/UPDATE (all with TD-preserving update, bit 1);
/// everything about `next`, which stands for the module the 2026 kernels prepare for.
/// Releases through mid-2026 include 2.0.14, whose TDX_FEATURES0 the list does not give: it is
/// not modelled, so `2.0` names 2.0.08.
///
/// # Names
///
/// A profile is named by its release (`1.5.06`, leading zeros optional) or by its line (`1.5`:
/// the newest profile of that line), or `next`, optionally followed by modifiers that make a
/// variant — for tests and for update scenarios:
///
/// - `lacks=FIELD`: the module has no such metadata field (a name such as `MAX_TDMRS`, or a
///   hex id); reading it answers `TDX_METADATA_FIELD_ID_INCORRECT`;
/// - `max_tdmrs=N`, `max_reserved=N`, `pamt_entry_size=N` (all three levels): other limits;
/// - `ext_pages=N`: extension memory the module needs (on a profile with bit 39);
/// - `add_ons=0xBITS`: add-on features TDH.SYS.CONFIG v1 may enable (reported in
///   TDX_FEATURES0 too; `next,add_ons=0x40` is `next` with TDX Connect);
/// - `update=N`: another update number (same line).
///
/// ```
/// use tdmr::mock::ModuleProfile;
/// use tdmr::tdx::metadata::ModuleVersion;
/// let p: ModuleProfile = "1.5".parse()?;
/// assert_eq!(p.version(), ModuleVersion::new(1, 5, 25));
/// let q: ModuleProfile = "2.0.8".parse()?;
/// assert_eq!(q.features0(), 0x32A71F0FBF);
/// assert!(q.supports_dynamic_pamt());
/// let r: ModuleProfile = "2.0.08,lacks=MAX_RESERVED_PER_TDMR,max_tdmrs=8".parse()?;
/// assert_eq!(r.limits().max_tdmrs(), 8);
/// assert_eq!(r.to_string(), "2.0.08,lacks=MAX_RESERVED_PER_TDMR,max_tdmrs=8");
/// assert!("3.0".parse::<ModuleProfile>().is_err());
/// # Ok::<(), tdmr::mock::ProfileError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ModuleProfile {
    /// The release this profile was named by (its version before modifiers).
    release_version: ModuleVersion,
    version: ModuleVersion,
    build: u16,
    build_date: u32,
    features0: u64,
    limits: TdxLimits,
    sys_rd: bool,
    max_vcpus_field: bool,
    config_v1: bool,
    add_on_features: u64,
    extension_pages: u32,
    handoff_version: u16,
    min_handoff_version: u16,
    disable: bool,
    release: bool,
    lacks: Vec<FieldId>,
    /// The modifiers this profile was named with, in order, for its name.
    modifiers: String,
}

/// Why a profile name was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProfileError {
    /// No profile of that release or line.
    Unknown {
        /// The name given.
        name: String,
    },
    /// A modifier that is not `KEY=VALUE` with a known key and a valid value.
    BadModifier {
        /// The modifier given.
        modifier: String,
    },
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProfileError::Unknown { name } => write!(
                f,
                "no TDX module profile {name:?}: releases {}, lines 1.0, 1.5, 2.0, or next",
                release_names()
            ),
            ProfileError::BadModifier { modifier } => write!(
                f,
                "bad profile modifier {modifier:?}: lacks=FIELD, max_tdmrs=N, max_reserved=N, \
                 pamt_entry_size=N, ext_pages=N, add_ons=0xBITS or update=N"
            ),
        }
    }
}

impl core::error::Error for ProfileError {}

struct ReleaseNames;

fn release_names() -> ReleaseNames {
    ReleaseNames
}

impl fmt::Display for ReleaseNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in ModuleProfile::releases().iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl ModuleProfile {
    const fn base(version: ModuleVersion, build: u16, build_date: u32, features0: u64) -> Self {
        let limits = if features0 & features0::DYNAMIC_PAMT != 0 {
            match TdxLimits::DEFAULT.with_dynamic_pamt(1) {
                Ok(l) => l,
                Err(_) => TdxLimits::DEFAULT,
            }
        } else {
            TdxLimits::DEFAULT
        };
        let td_preserving = features0 & features0::TD_PRESERVING != 0;
        ModuleProfile {
            release_version: version,
            version,
            build,
            build_date,
            features0,
            limits,
            sys_rd: true,
            max_vcpus_field: true,
            config_v1: false,
            add_on_features: 0,
            extension_pages: 0,
            handoff_version: if td_preserving { version.major } else { 0 },
            min_handoff_version: if td_preserving { version.major } else { 0 },
            disable: false,
            release: true,
            lacks: Vec::new(),
            modifiers: String::new(),
        }
    }

    /// TDX module 1.0: no TDH.SYS.RD (TDH.SYS.INFO reports the limits and CMRs), no
    /// TDX_FEATURES0, no runtime update; the reserved-area quirk of
    /// [`crate::tdx::validate::ConfigEnv::with_module_version`].
    pub fn tdx_1_0() -> Self {
        let mut p = Self::base(ModuleVersion::new(1, 0, 0), 200, 2022_0301, 0);
        p.sys_rd = false;
        p.max_vcpus_field = false;
        p.handoff_version = 0;
        p.min_handoff_version = 0;
        p
    }

    /// TDX module 1.5 release `update` (1.5.01, 1.5.06, 1.5.24 and 1.5.25 are modelled;
    /// others get 1.5.25's build).
    pub fn tdx_1_5(update: u16) -> Self {
        let (build, date) = match update {
            0..=1 => (481, 2023_0323),
            2..=6 => (698, 2024_0129),
            7..=24 => (784, 2024_0725),
            _ => (812, 2025_0610),
        };
        let mut p = Self::base(
            ModuleVersion::new(1, 5, update),
            build,
            date,
            FEATURES0_TDX_1_5,
        );
        p.max_vcpus_field = update > 1;
        p
    }

    /// TDX module 2.0 release `update` (2.0.04, 2.0.05 and 2.0.08 are modelled; other updates
    /// take the features of the nearest modelled release below, 2.0.04 below 4).
    pub fn tdx_2_0(update: u16) -> Self {
        let (build, date, f0) = match update {
            0..=4 => (760, 2024_1018, FEATURES0_2_0_04),
            5..=7 => (800, 2024_1211, FEATURES0_2_0_05),
            _ => (882, 2025_0325, FEATURES0_2_0_08),
        };
        Self::base(ModuleVersion::new(2, 0, update), build, date, f0)
    }

    /// The `next` profile (version 2.1.00, not a release): 2.0.08 plus module extensions
    /// (bit 39, [`NEXT_EXTENSION_PAGES`] pages), update compatibility (bit 47),
    /// TDH.SYS.CONFIG and TDH.SYS.UPDATE version 1 (an add-on bitmap in R9; it accepts the
    /// add-on TDX Connect, bit 6, only on variants that set it) and TDH.SYS.DISABLE.
    pub fn next() -> Self {
        let f0 = FEATURES0_2_0_08 | features0::MODULE_EXTENSIONS | features0::UPDATE_COMPATIBILITY;
        let mut p = Self::base(ModuleVersion::new(2, 1, 0), 1000, 2026_0901, f0);
        p.config_v1 = true;
        p.add_on_features = features0::TDX_CONNECT;
        p.extension_pages = NEXT_EXTENSION_PAGES;
        p.handoff_version = 3;
        p.min_handoff_version = 2;
        p.disable = true;
        p.release = false;
        p
    }

    /// Every modelled release, oldest first (`next` last).
    pub fn releases() -> Vec<ModuleProfile> {
        let mut v = alloc::vec![Self::tdx_1_0()];
        v.extend([1, 6, 24, 25].map(Self::tdx_1_5));
        v.extend([4, 5, 8].map(Self::tdx_2_0));
        v.push(Self::next());
        v
    }

    /// The profile of `name` (see [Names](ModuleProfile#names)).
    pub fn named(name: &str) -> Result<Self, ProfileError> {
        let mut parts = name.split(',');
        let head = parts.next().unwrap_or("").trim();
        let unknown = || ProfileError::Unknown {
            name: String::from(head),
        };
        let mut p = if head == "next" {
            Self::next()
        } else {
            let nums: Vec<&str> = head.split('.').collect();
            let num = |s: &str| -> Result<u16, ProfileError> {
                if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(unknown());
                }
                s.parse().map_err(|_| unknown())
            };
            let (major, minor) = match nums.as_slice() {
                [a, b] | [a, b, _] => (num(a)?, num(b)?),
                _ => return Err(unknown()),
            };
            let update = match nums.get(2) {
                Some(u) => Some(num(u)?),
                None => None,
            };
            let line: Vec<ModuleProfile> = Self::releases()
                .into_iter()
                .filter(|p| {
                    let v = p.release_version;
                    p.release && (v.major, v.minor) == (major, minor)
                })
                .collect();
            match update {
                None => line.last().cloned().ok_or_else(unknown)?,
                Some(u) => line
                    .into_iter()
                    .find(|p| p.release_version.update == u)
                    .ok_or_else(unknown)?,
            }
        };
        for m in parts {
            p = p.modified(m.trim())?;
        }
        Ok(p)
    }

    fn modified(mut self, m: &str) -> Result<Self, ProfileError> {
        let bad = || ProfileError::BadModifier {
            modifier: String::from(m),
        };
        let (key, value) = m.split_once('=').ok_or_else(bad)?;
        let n = || value.parse::<u32>().map_err(|_| bad());
        let n16 = || u16::try_from(n()?).map_err(|_| bad());
        self = match key {
            "lacks" => self.without_field(FieldId::from_name(value).ok_or_else(bad)?),
            "max_tdmrs" => {
                let l = self.limits.with_max_tdmrs(n16()?).map_err(|_| bad())?;
                self.with_limits(l)
            }
            "max_reserved" => {
                let l = self.limits.with_max_reserved_per_tdmr(n16()?);
                self.with_limits(l)
            }
            "pamt_entry_size" => {
                let l = self
                    .limits
                    .with_pamt_entry_size(n16()?)
                    .map_err(|_| bad())?;
                self.with_limits(l)
            }
            "ext_pages" if self.features0 & features0::MODULE_EXTENSIONS != 0 => {
                self.with_extension_pages(n()?)
            }
            "add_ons" => {
                let hex = value.strip_prefix("0x").ok_or_else(bad)?;
                let bits = u64::from_str_radix(hex, 16).map_err(|_| bad())?;
                self.with_add_on_features(bits)
            }
            "update" => {
                let v = self.version;
                self.with_version(ModuleVersion::new(v.major, v.minor, n16()?))
            }
            _ => return Err(bad()),
        };
        self.modifiers.push(',');
        self.modifiers.push_str(m);
        Ok(self)
    }

    /// The module version.
    pub fn version(&self) -> ModuleVersion {
        self.version
    }

    /// The build number (TDSYSINFO_STRUCT `build_num`).
    pub fn build(&self) -> u16 {
        self.build
    }

    /// The build date as TDSYSINFO_STRUCT holds it (`20250325`).
    pub fn build_date(&self) -> u32 {
        self.build_date
    }

    /// TDX_FEATURES0 as the module reports it (0 on TDX 1.0, which has no such field).
    pub fn features0(&self) -> u64 {
        self.features0
    }

    /// MAX_TDMRS, MAX_RESERVED_PER_TDMR, PAMT entry sizes; Dynamic PAMT bitmap bits iff the
    /// module supports Dynamic PAMT.
    pub fn limits(&self) -> TdxLimits {
        self.limits
    }

    /// Whether TDX_FEATURES0 bit 36 (Dynamic PAMT) is set.
    pub fn supports_dynamic_pamt(&self) -> bool {
        self.features0 & features0::DYNAMIC_PAMT != 0
    }

    /// Whether the module implements TDH.SYS.RD and TDH.SYS.RDALL (all but TDX 1.0).
    pub fn implements_sys_rd(&self) -> bool {
        self.sys_rd
    }

    /// Whether the module has the module extensions (TDX_FEATURES0 bit 39): TDH.EXT.MEM.ADD,
    /// TDH.EXT.INIT and the extension metadata.
    pub fn has_extensions(&self) -> bool {
        self.features0 & features0::MODULE_EXTENSIONS != 0
    }

    /// 4 KiB pages the extensions need after TDH.SYS.CONFIG (0 without extensions).
    pub fn extension_pages(&self) -> u32 {
        if self.has_extensions() {
            self.extension_pages
        } else {
            0
        }
    }

    /// Whether TDH.SYS.CONFIG (and TDH.SYS.UPDATE) accept version 1 with an add-on bitmap in
    /// R9.
    pub fn accepts_config_v1(&self) -> bool {
        self.config_v1
    }

    /// The add-on features (TDX_FEATURES0 numbering) TDH.SYS.CONFIG v1 may enable: the
    /// module's add-on-capable bits it also reports in TDX_FEATURES0.
    pub fn add_on_features(&self) -> u64 {
        self.add_on_features & self.features0
    }

    /// Whether the module implements a TD-preserving runtime update (TDX_FEATURES0 bit 1):
    /// TDH.SYS.SHUTDOWN with a handoff version and TDH.SYS.UPDATE.
    pub fn supports_update(&self) -> bool {
        self.features0 & features0::TD_PRESERVING != 0
    }

    /// The handoff version the module writes at TDH.SYS.SHUTDOWN (MODULE_HANDOFF_VERSION).
    pub fn handoff_version(&self) -> u16 {
        self.handoff_version
    }

    /// The oldest handoff version it accepts: at TDH.SYS.SHUTDOWN (RCX), and from the module
    /// it takes over from at TDH.SYS.UPDATE.
    pub fn min_handoff_version(&self) -> u16 {
        self.min_handoff_version
    }

    /// Whether the module implements TDH.SYS.DISABLE.
    pub fn implements_disable(&self) -> bool {
        self.disable
    }

    /// Whether this is a public release (false for `next`).
    pub fn is_release(&self) -> bool {
        self.release
    }

    /// Metadata fields removed from the release ([`ModuleProfile::without_field`]).
    pub fn lacks(&self) -> &[FieldId] {
        &self.lacks
    }

    /// Whether MAX_VCPUS_PER_TD is in the release's table (not in 1.5.01).
    pub(crate) fn has_max_vcpus_field(&self) -> bool {
        self.max_vcpus_field
    }

    /// The same module without metadata field `field`.
    pub fn without_field(mut self, field: FieldId) -> Self {
        self.lacks.push(field);
        self
    }

    /// The same module with these limits; with Dynamic PAMT bits set it also supports Dynamic
    /// PAMT (TDX_FEATURES0 bit 36), without them it does not.
    pub fn with_limits(mut self, limits: TdxLimits) -> Self {
        self.limits = limits;
        if limits.dynamic_pamt() {
            self.features0 |= features0::DYNAMIC_PAMT;
        } else {
            self.features0 &= !features0::DYNAMIC_PAMT;
        }
        self
    }

    /// The same module reporting these TDX_FEATURES0 bits (Dynamic PAMT support follows
    /// [`ModuleProfile::with_limits`]).
    pub fn with_features0(mut self, bits: u64) -> Self {
        let dpamt = self.features0 & features0::DYNAMIC_PAMT;
        self.features0 = bits & !features0::DYNAMIC_PAMT | dpamt;
        self
    }

    /// The same module with another version number.
    pub fn with_version(mut self, version: ModuleVersion) -> Self {
        self.version = version;
        self
    }

    /// The same module needing `pages` pages of extension memory (only meaningful with
    /// TDX_FEATURES0 bit 39).
    pub fn with_extension_pages(mut self, pages: u32) -> Self {
        self.extension_pages = pages;
        self
    }

    /// The same module with this handoff version, accepting handoff versions from `min` on.
    pub fn with_handoff_versions(mut self, min: u16, version: u16) -> Self {
        self.min_handoff_version = min;
        self.handoff_version = version;
        self
    }

    /// The same module with add-on features `bits` (reported in TDX_FEATURES0 too) that
    /// TDH.SYS.CONFIG v1 may enable; implies CONFIG v1.
    pub fn with_add_on_features(mut self, bits: u64) -> Self {
        self.add_on_features = bits;
        self.features0 |= bits;
        self.config_v1 = true;
        self
    }
}

impl fmt::Display for ModuleProfile {
    /// The release (`1.5.06`), or `next`, then the modifiers it was named with.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.release {
            write!(f, "{}", self.release_version)?;
        } else {
            f.write_str("next")?;
        }
        f.write_str(&self.modifiers)
    }
}

impl FromStr for ModuleProfile {
    type Err = ProfileError;

    /// [`ModuleProfile::named`].
    fn from_str(s: &str) -> Result<Self, ProfileError> {
        Self::named(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn lines_name_their_newest_release_and_releases_themselves() {
        for p in ModuleProfile::releases() {
            let again: ModuleProfile = p.to_string().parse().unwrap();
            assert_eq!(again, p, "{p}");
        }
        assert_eq!(
            ModuleProfile::named("2.0").unwrap().version(),
            ModuleVersion::new(2, 0, 8)
        );
        assert_eq!(
            ModuleProfile::named("1.0").unwrap().version(),
            ModuleVersion::new(1, 0, 0)
        );
        assert_eq!(
            ModuleProfile::named("1.5.6").unwrap(),
            ModuleProfile::named("1.5.06").unwrap()
        );
        for bad in [
            "1.5.07",
            "2.1",
            "x",
            "1.5.x",
            "",
            "next,update",
            "1.5,ext_pages=3",
        ] {
            assert!(ModuleProfile::named(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_2_0_04_and_2_0_08_advertise_dynamic_pamt() {
        let with: Vec<String> = ModuleProfile::releases()
            .iter()
            .filter(|p| p.is_release() && p.supports_dynamic_pamt())
            .map(|p| p.to_string())
            .collect();
        assert_eq!(with, ["2.0.04", "2.0.08"]);
        for p in ModuleProfile::releases().iter().filter(|p| p.is_release()) {
            let f = p.features0();
            assert_eq!(f & (1 << 39 | 1 << 47 | 1 << 6), 0, "{p}");
            assert_eq!(p.supports_dynamic_pamt(), p.limits().dynamic_pamt(), "{p}");
        }
    }
}
