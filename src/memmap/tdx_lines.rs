//! What the kernel printed about TDX itself, beside the memory: the private KeyID range the
//! BIOS enabled, the module's identity (in each form kernels print it), how initialization
//! ended, Dynamic PAMT, module-extension memory and the PAMT total.
//!
//! Plain numbers, as the kernel printed them: this floor sits below the module's types
//! (`tdx::metadata::ModuleVersion`) and beside `sysinfo::PrivateKeyIds`, so those are built
//! from these by the caller — `ModuleVersion::new(m.major, m.minor, u)` for an
//! [`update`](ModuleIdentity::update) `u`, and `PrivateKeyIds::new(r.start, r.end - r.start)`
//! for a [`keyids`](TdxLines::keyids) range `r`, which never fails: the parser refuses a range
//! `PrivateKeyIds` would refuse.

use core::fmt;
use core::ops::Range;

/// Which of the kernel's module-identity lines the identity came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModuleLineForm {
    /// `Module version: 1.5.24` (mainline 7.1 on; `TDX module version: …` in its patches).
    Version,
    /// `TDX module: attributes 0x0, vendor_id 0x8086, major_version 1, minor_version 5,
    /// build_date 20240129, build_num 698` (distribution 6.8 kernels): no update number.
    Attributes,
    /// `TDX module 2.0.08.00, build number 882, build date 0134fed5` (distribution 6.14
    /// kernels): the build date printed in hexadecimal digits that read as the decimal date.
    Build,
}

/// The TDX module's identity as a kernel printed it. Which fields are known depends on the
/// [`form`](ModuleIdentity::form) of the line.
///
/// ```
/// use tdmr::memmap::{ModuleLineForm, parse_kernel_log};
/// let log = "\
/// virt/tdx: TDX module: attributes 0x0, vendor_id 0x8086, major_version 1, minor_version 5, build_date 20240129, build_num 698
/// virt/tdx: CMR: [0x100000, 0x77800000)
/// ";
/// let m = parse_kernel_log(log)?.tdx_lines().module().copied().unwrap();
/// assert_eq!((m.major, m.minor, m.update, m.build_num), (1, 5, None, Some(698)));
/// assert_eq!(m.form, ModuleLineForm::Attributes);
/// assert_eq!(m.to_string(), "1.5 build 698 (20240129)");
/// # Ok::<(), tdmr::memmap::ParseError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ModuleIdentity {
    /// MAJOR_VERSION.
    pub major: u16,
    /// MINOR_VERSION.
    pub minor: u16,
    /// UPDATE_VERSION (not in the [`Attributes`](ModuleLineForm::Attributes) form).
    pub update: Option<u16>,
    /// INTERNAL_VERSION, the fourth number of the [`Build`](ModuleLineForm::Build) form.
    pub internal: Option<u16>,
    /// BUILD_NUM (not in the [`Version`](ModuleLineForm::Version) form).
    pub build_num: Option<u16>,
    /// BUILD_DATE as `YYYYMMDD` (not in the [`Version`](ModuleLineForm::Version) form).
    pub build_date: Option<u32>,
    /// The module's attributes (bit 31: a debug module), in the
    /// [`Attributes`](ModuleLineForm::Attributes) form only.
    pub attributes: Option<u32>,
    /// The vendor id (`0x8086`), in the [`Attributes`](ModuleLineForm::Attributes) form only.
    pub vendor_id: Option<u32>,
    /// The line it came from.
    pub form: ModuleLineForm,
}

impl fmt::Display for ModuleIdentity {
    /// `1.5.24`, `1.5 build 698 (20240129)`, `2.0.08.00 build 882 (20250325)`: the update
    /// number with two digits, as Linux prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if let Some(u) = self.update {
            write!(f, ".{u:02}")?;
        }
        if let Some(i) = self.internal {
            write!(f, ".{i:02}")?;
        }
        if let Some(b) = self.build_num {
            write!(f, " build {b}")?;
        }
        if let Some(d) = self.build_date {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

/// How the kernel said TDX module initialization ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InitOutcome {
    /// `module initialized` (≤ 7.0) or `TDX-Module initialized` (7.1 on).
    Initialized,
    /// `module initialization failed (N)` / `TDX-Module initialization failed (N)`.
    Failed {
        /// The kernel's error number as printed (`-28` is `-ENOSPC`: no layout).
        code: i32,
    },
}

impl fmt::Display for InitOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            InitOutcome::Initialized => f.write_str("module initialized"),
            InitOutcome::Failed { code } => write!(f, "module initialization failed ({code})"),
        }
    }
}

/// What a kernel log says about TDX beyond memory and CMRs; every fact `None` (or `false`)
/// when its line is absent. From [`ParsedLog::tdx_lines`](super::ParsedLog::tdx_lines).
///
/// ```
/// use tdmr::memmap::{InitOutcome, parse_kernel_log};
/// let log = "\
/// [    2.605559] virt/tdx: BIOS enabled: private KeyID range [32, 64)
/// [   10.456524] virt/tdx: CMR: [0x100000, 0x77800000)
/// [   11.746184] virt/tdx: 29184 KB allocated for PAMT
/// [   11.746190] virt/tdx: module initialized
/// ";
/// let tdx = *parse_kernel_log(log)?.tdx_lines();
/// assert_eq!(tdx.keyids(), Some(32..64));
/// assert_eq!(tdx.pamt_kb(), Some(29184));
/// assert_eq!(tdx.init(), Some(InitOutcome::Initialized));
/// assert!(tdx.module().is_none() && !tdx.dynamic_pamt());
/// # Ok::<(), tdmr::memmap::ParseError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TdxLines {
    pub(super) module: Option<ModuleIdentity>,
    pub(super) keyids: Option<(u32, u32)>,
    pub(super) init: Option<InitOutcome>,
    pub(super) dynamic_pamt: bool,
    pub(super) extension_kb: Option<u64>,
    pub(super) pamt_kb: Option<u64>,
}

impl TdxLines {
    /// The module's identity.
    pub fn module(&self) -> Option<&ModuleIdentity> {
        self.module.as_ref()
    }

    /// `BIOS enabled: private KeyID range [a, b)`: the private KeyIDs `a..b`, with
    /// `1 <= a < b <= 65536`.
    pub fn keyids(&self) -> Option<Range<u32>> {
        self.keyids.map(|(a, b)| a..b)
    }

    /// How module initialization ended.
    pub fn init(&self) -> Option<InitOutcome> {
        self.init
    }

    /// `Enable Dynamic PAMT`: the kernel turned Dynamic PAMT on (so the module has it).
    pub fn dynamic_pamt(&self) -> bool {
        self.dynamic_pamt
    }

    /// `N KB consumed for TDX module extensions`.
    pub fn extension_kb(&self) -> Option<u64> {
        self.extension_kb
    }

    /// `N KB allocated for PAMT` (also the 2023 form `N KBs allocated for PAMT.`): the
    /// kernel's own PAMT total, to set beside a prediction of it.
    pub fn pamt_kb(&self) -> Option<u64> {
        self.pamt_kb
    }

    /// Whether the log held none of these lines.
    pub fn is_empty(&self) -> bool {
        *self == TdxLines::default()
    }
}
