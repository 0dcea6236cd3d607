//! The referee: every check TDH.SYS.CONFIG makes on a TDMR configuration, in the module's order,
//! returning the module's exact 64-bit status; plus the host's own coverage policy.
//!
//! Written from the TDX module's rules, not from the planner: it shares nothing with the
//! planners but [`crate::addr`] and the limits type, so a planner bug cannot hide behind a
//! shared helper.
//!
//! ```
//! use tdmr::memmap::Cmr;
//! use tdmr::sysinfo::TdxLimits;
//! use tdmr::tdx::abi::TdmrInfo;
//! use tdmr::tdx::status::TDX_INVALID_TDMR;
//! use tdmr::tdx::validate::{ConfigEnv, sys_config};
//!
//! let cmrs = [Cmr::new(1 << 30, 4 << 30)];
//! let env = ConfigEnv::from_limits(&TdxLimits::default(), &cmrs);
//! let mut t = TdmrInfo::ZERO;
//! t.base = (1 << 30) + 4096; // not 1 GiB aligned
//! t.size = 1 << 30;
//! assert_eq!(sys_config(&[t], &env).unwrap_err().raw(), TDX_INVALID_TDMR);
//! ```

use alloc::vec::Vec;
use core::fmt;

use super::abi::{TDMR_INFO_ALIGNMENT, TDMR_INFO_RESERVED_SLOTS, TdmrInfo};
use super::metadata::ModuleVersion;
use super::status::{
    Status, TDX_INVALID_PAMT, TDX_INVALID_RESERVED_IN_TDMR, TDX_INVALID_TDMR,
    TDX_NON_ORDERED_RESERVED_IN_TDMR, TDX_NON_ORDERED_TDMR, TDX_OPERAND_INVALID,
    TDX_PAMT_OUTSIDE_CMRS, TDX_PAMT_OVERLAP, TDX_TDMR_OUTSIDE_CMRS, operand,
};
use crate::addr::{MAX_PA, MAX_PA_BITS, PageSize, PhysRange, RangeSet, SZ_1G, SZ_4K, is_aligned};
use crate::memmap::Cmr;
use crate::sysinfo::{PrivateKeyIds, TdxLimits};

/// What the module knows when it checks a configuration: its CMRs, its limits (MAX_TDMRS,
/// PAMT entry sizes, whether Dynamic PAMT is on), the KeyID bits and private KeyIDs, the
/// SEAM range and its own version. Built from the same [`TdxLimits`] a plan is made against,
/// so the two cannot disagree.
///
/// # Module versions
///
/// Without [`ConfigEnv::with_module_version`] the checks are TDX module 1.5's (and 2.0's,
/// which did not change them). With a version, its quirks apply:
///
/// - **TDX 1.0** (`1.0.x`) lacks 1.5's `available_end > available_start` guard in the check
///   that every non-reserved part of a TDMR lies in CMRs (step 14). With all 16 reserved slots
///   used and the last one ending at the TDMR's end, 1.0 puts the empty tail `[end, end)`
///   through its in-CMR test, which fails unless some chain of abutting CMRs holds the point
///   `end` (`start <= end <= chain end`), and returns `TDX_TDMR_OUTSIDE_CMRS | i`; 1.5
///   accepts. (The references state the quirk; that the empty range goes through the same
///   in-CMR test as any other segment is this model's reading of "checks the empty tail
///   against the CMRs".)
///
/// ```
/// use tdmr::memmap::Cmr;
/// use tdmr::sysinfo::TdxLimits;
/// use tdmr::tdx::abi::{TdmrInfo, TdmrReservedEntry};
/// use tdmr::tdx::metadata::ModuleVersion;
/// use tdmr::tdx::validate::{ConfigEnv, sys_config};
///
/// const G: u64 = 1 << 30;
/// let cmrs = [Cmr::new(0, G / 2), Cmr::new(4 * G, 4 * G)];
/// // One 1 GiB TDMR: 16 reserved areas, the last one running to the TDMR's end.
/// let mut t = TdmrInfo::ZERO;
/// (t.base, t.size) = (0, G);
/// for j in 0..15u64 {
///     t.reserved[j as usize] = TdmrReservedEntry { offset: 0x10_0000 * (j + 1), size: 0x1000 };
/// }
/// t.reserved[15] = TdmrReservedEntry { offset: G / 2, size: G / 2 };
/// // Its PAMT, outside the TDMR in the second CMR.
/// (t.pamt_1g_base, t.pamt_1g_size) = (4 * G, 0x1000);
/// (t.pamt_2m_base, t.pamt_2m_size) = (4 * G + 0x1000, 0x2000);
/// (t.pamt_4k_base, t.pamt_4k_size) = (4 * G + 0x3000, 0x40_0000);
/// let env = ConfigEnv::from_limits(&TdxLimits::default(), &cmrs);
/// assert!(sys_config(&[t], &env).is_ok());
/// let tdx_1_0 = env.with_module_version(ModuleVersion::new(1, 0, 0));
/// assert_eq!(sys_config(&[t], &tdx_1_0).unwrap_err().raw(), 0xC0000A0200000000);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ConfigEnv<'a> {
    cmrs: &'a [Cmr],
    max_tdmrs: usize,
    pamt_entry_size: [u64; 3],
    dynamic_pamt: bool,
    keyid_bits: u32,
    seamrr: Option<PhysRange>,
    private_keyid_min: u64,
    module_version: Option<ModuleVersion>,
}

impl<'a> ConfigEnv<'a> {
    /// The module's view with `limits` around these CMR slots: MAX_TDMRS and the PAMT entry
    /// sizes from `limits`, Dynamic PAMT (TDH.SYS.CONFIG R8 bit 16) iff `limits` has it on;
    /// no KeyID bits and no SEAM range until [`ConfigEnv::with_keyids`] and
    /// [`ConfigEnv::with_seamrr`] say otherwise.
    ///
    /// Pass the limits the plan was made against ([`crate::layout::Plan::limits`]).
    pub fn from_limits(limits: &TdxLimits, cmrs: &'a [Cmr]) -> Self {
        ConfigEnv {
            cmrs,
            max_tdmrs: limits.max_tdmrs(),
            pamt_entry_size: PageSize::ALL.map(|l| limits.pamt_entry_size(l)),
            dynamic_pamt: limits.dynamic_pamt(),
            keyid_bits: 0,
            seamrr: None,
            private_keyid_min: 1,
            module_version: None,
        }
    }

    /// Checks as TDX module `version` does (see [Module versions](ConfigEnv#module-versions)).
    pub fn with_module_version(mut self, version: ModuleVersion) -> Self {
        self.module_version = Some(version);
        self
    }

    /// The module version whose quirks apply, if one was given.
    pub fn module_version(&self) -> Option<ModuleVersion> {
        self.module_version
    }

    /// TDX 1.0 checks the empty tail of a TDMR whose 16 reserved slots are all used.
    fn checks_empty_tail(&self) -> bool {
        self.module_version
            .is_some_and(|v| v.major == 1 && v.minor == 0)
    }

    /// With `bits` KeyID bits (physical address bits `[52 - bits, 51]` carry the HKID and must
    /// be zero in a configuration) and these private KeyIDs (a host buffer whose HKID is
    /// private is refused).
    pub fn with_keyids(mut self, bits: u32, private: PrivateKeyIds) -> Self {
        self.keyid_bits = bits.min(MAX_PA_BITS);
        self.private_keyid_min = u64::from(private.first());
        self
    }

    /// With the SEAM range (SEAMRR), which no host buffer may overlap.
    pub fn with_seamrr(mut self, seamrr: PhysRange) -> Self {
        self.seamrr = Some(seamrr);
        self
    }

    /// The CMR slots.
    pub fn cmrs(&self) -> &'a [Cmr] {
        self.cmrs
    }

    /// MAX_TDMRS.
    pub fn max_tdmrs(&self) -> usize {
        self.max_tdmrs
    }

    /// Whether Dynamic PAMT is on.
    pub fn dynamic_pamt(&self) -> bool {
        self.dynamic_pamt
    }

    fn hkid(&self, pa: u64) -> u64 {
        if self.keyid_bits == 0 {
            return 0;
        }
        let start = MAX_PA_BITS - self.keyid_bits.min(MAX_PA_BITS);
        (pa >> start) & ((1u64 << self.keyid_bits.min(MAX_PA_BITS)) - 1)
    }

    /// The HKID bits of a physical address: `[52 - K, 51]`.
    fn hkid_mask(&self) -> u64 {
        let k = self.keyid_bits.min(MAX_PA_BITS);
        if k == 0 {
            return 0;
        }
        ((1u64 << k) - 1) << (MAX_PA_BITS - k)
    }

    /// Below 2^52 with no KeyID bits set.
    fn valid_pa(&self, pa: u64) -> bool {
        pa < MAX_PA && self.hkid(pa) == 0
    }

    /// The module's shared-HPA check for a host buffer `[pa, pa + size)`: below 2^52, an HKID
    /// below the first private KeyID (KeyID 0 or an MKTME KeyID), and — with the HKID bits
    /// cleared, so that an alias under a shared KeyID counts too — no byte in the SEAM range.
    /// The 2^52 and HKID tests use the raw address.
    pub fn shared_hpa_ok(&self, pa: u64, size: u64) -> bool {
        if pa >= MAX_PA || self.hkid(pa) >= self.private_keyid_min {
            return false;
        }
        if let Some(seam) = self.seamrr {
            let start = pa & !self.hkid_mask();
            let end = start.saturating_add(size);
            if start < seam.end() && seam.start() < end {
                return false;
            }
        }
        true
    }

    /// The module's in-CMR test: `[start, end)` inside one chain of abutting CMRs.
    fn in_cmr(&self, start: u64, end: u64) -> bool {
        let mut chain: Option<(u64, u64)> = None;
        for c in self.cmrs.iter().filter(|c| c.size != 0) {
            let c_end = c.base.wrapping_add(c.size);
            chain = match chain {
                Some((s, e)) if c.base == e => Some((s, c_end)),
                _ => Some((c.base, c_end)),
            };
            if let Some((s, e)) = chain
                && s <= start
                && end <= e
            {
                return true;
            }
        }
        false
    }
}

fn tdmr_status(code: u64, tdmr: usize, b1: u64, b2: u64) -> Status {
    Status::new(code | (tdmr as u64 & 0xFF) | (b1 & 0xFF) << 8 | (b2 & 0xFF) << 16)
}

const PAMT_CHECK_ORDER: [PageSize; 3] = [PageSize::Size1G, PageSize::Size2M, PageSize::Size4K];
const PAMT_OVERLAP_ORDER: [PageSize; 3] = [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G];

fn pamt_range(t: &TdmrInfo, level: PageSize) -> (u64, u64) {
    let (b, s) = t.pamt(level);
    (b, b.wrapping_add(s))
}

fn overlap(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// Non-reserved segments of a TDMR. Exact for a TDMR that passed the per-TDMR checks;
/// saturating (never panicking) for one that did not, as [`covers_memory`] may be handed one.
fn available(t: &TdmrInfo) -> impl Iterator<Item = (u64, u64)> + '_ {
    let end = t.base.saturating_add(t.size);
    let mut cursor = t.base;
    let mut slots = t.reserved.iter().take_while(|r| r.size != 0);
    let mut done = false;
    core::iter::from_fn(move || {
        while !done {
            match slots.next() {
                Some(r) => {
                    let s = t.base.saturating_add(r.offset);
                    let seg = (cursor, s);
                    cursor = s.saturating_add(r.size);
                    if seg.0 < seg.1 {
                        return Some(seg);
                    }
                }
                None => {
                    done = true;
                    if cursor < end {
                        return Some((cursor, end));
                    }
                }
            }
        }
        None
    })
}

fn check_tdmr(
    env: &ConfigEnv<'_>,
    i: usize,
    t: &TdmrInfo,
    prev: Option<&TdmrInfo>,
) -> Result<(), Status> {
    let invalid = || tdmr_status(TDX_INVALID_TDMR, i, 0, 0);
    let Some(end) = t.base.checked_add(t.size) else {
        return Err(invalid());
    };
    if let Some(p) = prev
        && (t.base < p.base || t.base < p.base + p.size)
    {
        return Err(tdmr_status(TDX_NON_ORDERED_TDMR, i, 0, 0));
    }
    if !is_aligned(t.base, SZ_1G) || !is_aligned(t.size, SZ_1G) || t.size == 0 {
        return Err(invalid());
    }
    if !env.valid_pa(t.base) || !env.valid_pa(end - 1) {
        return Err(invalid());
    }

    let mut prev_rsvd: Option<(u64, u64)> = None;
    for j in 0..TDMR_INFO_RESERVED_SLOTS {
        let r = t.reserved[j];
        let rsvd = |code| tdmr_status(code, i, j as u64, 0);
        if r.size == 0 {
            if j + 1 < TDMR_INFO_RESERVED_SLOTS && t.reserved[j + 1].size != 0 {
                return Err(rsvd(TDX_NON_ORDERED_RESERVED_IN_TDMR));
            }
            continue;
        }
        if r.offset.checked_add(r.size).is_none() {
            return Err(rsvd(TDX_INVALID_RESERVED_IN_TDMR));
        }
        if let Some((po, ps)) = prev_rsvd
            && (r.offset < po || r.offset < po + ps)
        {
            return Err(rsvd(TDX_NON_ORDERED_RESERVED_IN_TDMR));
        }
        if !is_aligned(r.offset, SZ_4K) || !is_aligned(r.size, SZ_4K) {
            return Err(rsvd(TDX_INVALID_RESERVED_IN_TDMR));
        }
        match t
            .base
            .checked_add(r.offset)
            .and_then(|s| s.checked_add(r.size))
        {
            Some(abs_end) if abs_end <= end => {}
            _ => return Err(rsvd(TDX_INVALID_RESERVED_IN_TDMR)),
        }
        prev_rsvd = Some((r.offset, r.size));
    }

    for level in PAMT_CHECK_ORDER {
        let (base, size) = t.pamt(level);
        let bad = || tdmr_status(TDX_INVALID_PAMT, i, level as u64, 0);
        let Some(p_end) = base.checked_add(size) else {
            return Err(bad());
        };
        if !is_aligned(base, SZ_4K) || !is_aligned(size, SZ_4K) {
            return Err(bad());
        }
        if !env.valid_pa(base) || !env.valid_pa(p_end.wrapping_sub(1)) {
            return Err(bad());
        }
        let pages = t.size / level.bytes();
        let min = if env.dynamic_pamt && level == PageSize::Size4K {
            pages / 8
        } else {
            pages.saturating_mul(env.pamt_entry_size[level.index()])
        };
        if size < min {
            return Err(bad());
        }
    }
    Ok(())
}

fn check_cross(env: &ConfigEnv<'_>, i: usize, tdmrs: &[TdmrInfo]) -> Result<(), Status> {
    let t = &tdmrs[i];
    // 11: PAMT vs PAMT, earlier TDMRs first, then within this TDMR.
    for (j, o) in tdmrs[..i].iter().enumerate() {
        for level in PAMT_OVERLAP_ORDER {
            let mine = pamt_range(t, level);
            if PAMT_OVERLAP_ORDER
                .iter()
                .any(|&l| overlap(mine, pamt_range(o, l)))
            {
                return Err(tdmr_status(TDX_PAMT_OVERLAP, i, level as u64, j as u64));
            }
        }
    }
    let [p4k, p2m, p1g] = PAMT_OVERLAP_ORDER.map(|l| pamt_range(t, l));
    if overlap(p4k, p2m) || overlap(p4k, p1g) {
        return Err(tdmr_status(TDX_PAMT_OVERLAP, i, 0, i as u64));
    }
    if overlap(p2m, p1g) {
        return Err(tdmr_status(TDX_PAMT_OVERLAP, i, 1, i as u64));
    }

    // 12: PAMTs vs non-reserved space, both directions.
    for (j, o) in tdmrs[..=i].iter().enumerate() {
        for level in PAMT_OVERLAP_ORDER {
            let mine = pamt_range(t, level);
            if available(o).any(|seg| overlap(mine, seg)) {
                return Err(tdmr_status(TDX_PAMT_OVERLAP, i, level as u64, j as u64));
            }
        }
        if j < i {
            for level in PAMT_OVERLAP_ORDER {
                let theirs = pamt_range(o, level);
                if available(t).any(|seg| overlap(theirs, seg)) {
                    return Err(tdmr_status(TDX_PAMT_OVERLAP, j, level as u64, i as u64));
                }
            }
        }
    }

    // 13: PAMTs inside CMRs.
    for level in PAMT_CHECK_ORDER {
        let (s, e) = pamt_range(t, level);
        if !env.in_cmr(s, e) {
            return Err(tdmr_status(TDX_PAMT_OUTSIDE_CMRS, i, level as u64, 0));
        }
    }

    // 14: every non-reserved segment inside CMRs.
    if available(t).any(|(s, e)| !env.in_cmr(s, e)) {
        return Err(tdmr_status(TDX_TDMR_OUTSIDE_CMRS, i, 0, 0));
    }
    // TDX 1.0: no `available_end > available_start` guard after the last of 16 used slots.
    if env.checks_empty_tail() && t.reserved.iter().all(|r| r.size != 0) {
        let last = t.reserved[TDMR_INFO_RESERVED_SLOTS - 1];
        let end = t.base + t.size;
        // The per-TDMR checks passed: the area lies inside the TDMR.
        if t.base + last.offset + last.size == end && !env.in_cmr(end, end) {
            return Err(tdmr_status(TDX_TDMR_OUTSIDE_CMRS, i, 0, 0));
        }
    }
    Ok(())
}

/// TDH.SYS.CONFIG's checks on `count` TDMRs, with each `TDMR_INFO` fetched by `fetch(i)` as the
/// module fetches it (a fetcher that checks the `TDMR_INFO` physical address returns its own
/// status, e.g. `TDX_OPERAND_INVALID | RCX`). Stops at the first failure, like the module.
pub fn sys_config_with<F>(count: usize, env: &ConfigEnv<'_>, mut fetch: F) -> Result<(), Status>
where
    F: FnMut(usize) -> Result<TdmrInfo, Status>,
{
    if count == 0 || count > env.max_tdmrs {
        return Err(Status::new(TDX_OPERAND_INVALID | operand::RDX as u64));
    }
    let mut tdmrs: Vec<TdmrInfo> = Vec::with_capacity(count);
    for i in 0..count {
        let t = fetch(i)?;
        check_tdmr(env, i, &t, tdmrs.last())?;
        tdmrs.push(t);
        check_cross(env, i, &tdmrs)?;
    }
    Ok(())
}

/// TDH.SYS.CONFIG's checks on an in-memory `TDMR_INFO` array (RDX = its length).
pub fn sys_config(tdmrs: &[TdmrInfo], env: &ConfigEnv<'_>) -> Result<(), Status> {
    sys_config_with(tdmrs.len(), env, |i| Ok(tdmrs[i]))
}

/// The module's check of one `TDMR_INFO` physical address (step 7.1): 512-byte aligned and a
/// valid shared host address, else `TDX_OPERAND_INVALID | RCX`.
pub fn tdmr_info_pa(pa: u64, env: &ConfigEnv<'_>) -> Result<(), Status> {
    if !is_aligned(pa, TDMR_INFO_ALIGNMENT as u64)
        || !env.shared_hpa_ok(pa, TDMR_INFO_ALIGNMENT as u64)
    {
        return Err(Status::new(TDX_OPERAND_INVALID | operand::RCX as u64));
    }
    Ok(())
}

/// A byte of TDX memory the configuration does not make usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UncoveredMemory {
    /// The first such range.
    pub range: PhysRange,
}

impl fmt::Display for UncoveredMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TDX memory {} is neither in the non-reserved part of a TDMR nor a PAMT",
            self.range
        )
    }
}

impl core::error::Error for UncoveredMemory {}

/// The host policy: every byte of `memory` (sorted ranges) that is neither a PAMT nor in
/// `excluded` lies in the non-reserved part of some TDMR. Run after [`sys_config`] accepted
/// `tdmrs`.
pub fn covers_memory(
    tdmrs: &[TdmrInfo],
    memory: impl IntoIterator<Item = PhysRange>,
    excluded: &[PhysRange],
) -> Result<(), UncoveredMemory> {
    // Everything that makes a byte acceptable.
    let mut ok: Vec<PhysRange> = Vec::new();
    for t in tdmrs {
        ok.extend(available(t).map(|(s, e)| PhysRange::new_unchecked(s, e)));
        for level in PageSize::ALL {
            let (s, e) = pamt_range(t, level);
            ok.push(PhysRange::new_unchecked(s, e));
        }
    }
    ok.extend_from_slice(excluded);
    let ok = RangeSet::from_ranges(ok);
    for m in memory {
        if let Some(range) = ok.first_uncovered(m) {
            return Err(UncoveredMemory { range });
        }
    }
    Ok(())
}
