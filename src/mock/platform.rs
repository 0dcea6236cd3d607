//! The machine the mock module runs on: what MCHECK and the MSRs would tell a real module.

use alloc::vec::Vec;
use core::fmt;

use super::profile::ModuleProfile;
use crate::addr::{MAX_PA, MAX_PA_BITS, PhysRange, RangeSet, SZ_1G, SZ_1M};
use crate::memmap::{Cmr, MAX_CMRS};
use crate::sysinfo::{PrivateKeyIds, TdxLimits};
use crate::tdx::metadata::ModuleVersion;
use crate::tdx::validate::ConfigEnv;

/// Why a platform description was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformError {
    /// More CMRs than the module's 32 slots.
    TooManyCmrs {
        /// How many were given.
        count: usize,
    },
    /// No logical processor, no package, or more packages than LPs.
    BadTopology {
        /// LPs asked for.
        lps: u32,
        /// Packages asked for.
        packages: u32,
    },
    /// The KeyID partition does not fit the KeyID bits, or leaves no TDX KeyID.
    BadKeyIds {
        /// MKTME KeyIDs.
        mktme: u32,
        /// TDX (private) KeyIDs.
        tdx: u32,
        /// KeyID bits.
        bits: u32,
    },
    /// The host buffer window is empty or not below 2^52.
    BadHostBuffers {
        /// The window.
        window: PhysRange,
    },
}

impl fmt::Display for PlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PlatformError::TooManyCmrs { count } => write!(
                f,
                "{count} CMRs given; the TDX module holds at most {MAX_CMRS}"
            ),
            PlatformError::BadTopology { lps, packages } => write!(
                f,
                "{lps} logical processors in {packages} packages: need at least one LP per package"
            ),
            PlatformError::BadKeyIds { mktme, tdx, bits } => write!(
                f,
                "{mktme} MKTME + {tdx} TDX KeyIDs do not fit {bits} KeyID bits with at least one TDX KeyID"
            ),
            PlatformError::BadHostBuffers { window } => {
                write!(f, "host buffer window {window} is empty or beyond 2^52")
            }
        }
    }
}

impl core::error::Error for PlatformError {}

/// 1 MiB from 1 GiB above the highest CMR, kept below 2^46 (the HKID bits with 6 KeyID bits).
fn default_host_buffers(cmrs: &[Cmr]) -> PhysRange {
    let top = cmrs
        .iter()
        .map(|c| c.base.saturating_add(c.size))
        .max()
        .unwrap_or(0);
    let start = (top.saturating_add(2 * SZ_1G - 1) & !(SZ_1G - 1)).min((1 << 46) - SZ_1G);
    PhysRange::new_unchecked(start, start + SZ_1M)
}

/// The simulated machine: logical processors and packages, CMRs, KeyIDs, the TDX module it
/// boots with ([`ModuleProfile`]: version, features, limits, metadata), and where the mock
/// places host buffers.
///
/// Defaults: 1 LP in 1 package; KeyIDs as on a Sapphire Rapids host (6 KeyID bits, 31 MKTME
/// KeyIDs, TDX KeyIDs 32..=63); TDX module 1.5.25 (the newest 1.5 profile); no SEAM range; host
/// buffers in 1 MiB starting 1 GiB above the highest CMR (below 2^46, where 6 KeyID bits
/// start: host buffers need not be convertible, and outside the CMRs no PAMT the planner carves
/// can meet them).
///
/// ```
/// use tdmr::memmap::Cmr;
/// use tdmr::mock::Platform;
/// let p = Platform::new(&[Cmr::new(0x10_0000, 0x7f70_0000)]).unwrap()
///     .with_topology(8, 2).unwrap();
/// assert_eq!(p.package_of(5), Some(1));
/// assert_eq!((p.private_keyids().first(), p.private_keyids().last()), (32, 63));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub(crate) lps: u32,
    pub(crate) packages: u32,
    pub(crate) cmrs: Vec<Cmr>,
    pub(crate) mktme_keyids: u32,
    pub(crate) tdx_keyids: u32,
    pub(crate) keyid_bits: u32,
    pub(crate) seamrr: Option<PhysRange>,
    pub(crate) module: ModuleProfile,
    pub(crate) host_buffers: PhysRange,
    /// Host memory the simulated kernel cannot give up (PAMT claims on it are refused).
    pub(crate) pinned: RangeSet,
}

impl Platform {
    /// A platform with these CMR slots (up to 32, taken as given: TDH.SYS.INIT checks them
    /// and fails with `TDX_CMR_LIST_INVALID` if they break the module's rules).
    pub fn new(cmrs: &[Cmr]) -> Result<Self, PlatformError> {
        if cmrs.len() > MAX_CMRS {
            return Err(PlatformError::TooManyCmrs { count: cmrs.len() });
        }
        Ok(Platform {
            lps: 1,
            packages: 1,
            cmrs: cmrs.to_vec(),
            mktme_keyids: 31,
            tdx_keyids: 32,
            keyid_bits: 6,
            seamrr: None,
            module: ModuleProfile::tdx_1_5(25),
            host_buffers: default_host_buffers(cmrs),
            pinned: RangeSet::new(),
        })
    }

    /// `lps` logical processors in `packages` packages, numbered so that each package holds a
    /// contiguous block of LPs (LP `i` is in package `i * packages / lps`).
    pub fn with_topology(mut self, lps: u32, packages: u32) -> Result<Self, PlatformError> {
        if lps == 0 || packages == 0 || packages > lps {
            return Err(PlatformError::BadTopology { lps, packages });
        }
        self.lps = lps;
        self.packages = packages;
        Ok(self)
    }

    /// The KeyID partition (MSR `IA32_MKTME_KEYID_PARTITIONING`) and the KeyID bits
    /// (`IA32_TME_ACTIVATE.MK_TME_KEYID_BITS`): private KeyIDs are `mktme + 1 ..= mktme + tdx`.
    pub fn with_keyids(mut self, mktme: u32, tdx: u32, bits: u32) -> Result<Self, PlatformError> {
        let fits = bits <= 16 && u64::from(mktme) + u64::from(tdx) < 1 << bits;
        if tdx == 0 || !fits {
            return Err(PlatformError::BadKeyIds { mktme, tdx, bits });
        }
        self.mktme_keyids = mktme;
        self.tdx_keyids = tdx;
        self.keyid_bits = bits;
        Ok(self)
    }

    /// The SEAM range (SEAMRR), which no host buffer may overlap.
    pub fn with_seamrr(mut self, range: PhysRange) -> Self {
        self.seamrr = Some(range);
        self
    }

    /// The TDX module the machine boots with.
    pub fn with_module(mut self, module: ModuleProfile) -> Self {
        self.module = module;
        self
    }

    /// The module's limits (MAX_TDMRS, MAX_RESERVED_PER_TDMR, PAMT entry sizes); with Dynamic
    /// PAMT bits set, the module also supports Dynamic PAMT (TDX_FEATURES0 bit 36)
    /// ([`ModuleProfile::with_limits`]).
    pub fn with_limits(mut self, limits: TdxLimits) -> Self {
        self.module = self.module.with_limits(limits);
        self
    }

    /// TDX_FEATURES0 as reported (Dynamic PAMT support follows [`Platform::with_limits`]).
    pub fn with_features0(mut self, bits: u64) -> Self {
        self.module = self.module.with_features0(bits);
        self
    }

    /// The module version.
    pub fn with_version(mut self, version: ModuleVersion) -> Self {
        self.module = self.module.with_version(version);
        self
    }

    /// Where the mock's [`crate::init::HostMemory`] places buffers.
    pub fn with_host_buffers(mut self, window: PhysRange) -> Result<Self, PlatformError> {
        if window.is_empty() || window.end() > MAX_PA {
            return Err(PlatformError::BadHostBuffers { window });
        }
        self.host_buffers = window;
        Ok(self)
    }

    /// Host memory the simulated kernel cannot take out of its page allocator (pinned pages,
    /// memory of another use): [`crate::init::HostMemory::claim_pamt`] of a range touching it
    /// fails, as it would on a host where the planner carved a PAMT from busy memory.
    pub fn with_pinned(mut self, range: PhysRange) -> Self {
        self.pinned = self.pinned.union(&RangeSet::from_ranges([range]));
        self
    }

    /// Logical processors.
    pub fn lps(&self) -> u32 {
        self.lps
    }

    /// Packages.
    pub fn packages(&self) -> u32 {
        self.packages
    }

    /// The package of `lp`, or `None` if there is no such LP.
    pub fn package_of(&self, lp: u32) -> Option<u32> {
        (lp < self.lps)
            .then(|| (u64::from(lp) * u64::from(self.packages) / u64::from(self.lps)) as u32)
    }

    /// The CMR slots as given.
    pub fn cmrs(&self) -> &[Cmr] {
        &self.cmrs
    }

    /// The private (TDX) KeyIDs: `mktme + 1 ..= mktme + tdx`.
    pub fn private_keyids(&self) -> PrivateKeyIds {
        // `with_keyids` keeps mktme + tdx below 2^16 with tdx >= 1.
        PrivateKeyIds::new(self.mktme_keyids + 1, self.tdx_keyids).unwrap_or(PrivateKeyIds::DEFAULT)
    }

    /// Where the mock's host memory places buffers.
    pub fn host_buffers(&self) -> PhysRange {
        self.host_buffers
    }

    /// The SEAM range, if one was given.
    pub fn seamrr(&self) -> Option<PhysRange> {
        self.seamrr
    }

    /// KeyID bits K: physical address bits `[52 - K, 51]` select the KeyID.
    pub fn keyid_bits(&self) -> u32 {
        self.keyid_bits
    }

    /// The TDX module the machine boots with (a runtime update replaces it: see
    /// [`super::MockModule::module`]).
    pub fn module(&self) -> &ModuleProfile {
        &self.module
    }

    /// The boot module's limits.
    pub fn limits(&self) -> TdxLimits {
        self.module.limits()
    }

    /// The boot module's TDX_FEATURES0.
    pub fn features0(&self) -> u64 {
        self.module.features0()
    }

    /// Whether the boot module supports Dynamic PAMT.
    pub fn supports_dynamic_pamt(&self) -> bool {
        self.module.supports_dynamic_pamt()
    }

    /// The boot module's version.
    pub fn version(&self) -> ModuleVersion {
        self.module.version()
    }

    /// The KeyID bits of a physical address.
    pub(crate) fn hkid(&self, pa: u64) -> u64 {
        if self.keyid_bits == 0 {
            return 0;
        }
        (pa >> (MAX_PA_BITS - self.keyid_bits)) & ((1 << self.keyid_bits) - 1)
    }

    /// Below 2^52 with no KeyID bits set.
    pub(crate) fn valid_pa(&self, pa: u64) -> bool {
        pa < MAX_PA && self.hkid(pa) == 0
    }

    /// The environment `module` checks a configuration in on this machine: its limits and
    /// version quirks, this machine's CMRs, KeyIDs and SEAM range.
    pub(crate) fn config_env(&self, module: &ModuleProfile, dynamic_pamt: bool) -> ConfigEnv<'_> {
        let l = module.limits();
        let limits = match (dynamic_pamt, l.dynamic_pamt_bits()) {
            (true, Some(_)) => l,
            // Dynamic PAMT asked for on a module without the bitmap geometry: one bit per page.
            (true, None) => l.with_dynamic_pamt(1).unwrap_or(l),
            (false, _) => l.without_dynamic_pamt(),
        };
        let env = ConfigEnv::from_limits(&limits, &self.cmrs)
            .with_keyids(self.keyid_bits, self.private_keyids())
            .with_module_version(module.version());
        match self.seamrr {
            Some(r) => env.with_seamrr(r),
            None => env,
        }
    }
}
