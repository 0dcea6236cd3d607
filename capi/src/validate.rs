//! TDH.SYS.CONFIG's checks on a `TDMR_INFO` array in caller memory, with the module's exact
//! 64-bit status.

use alloc::vec::Vec;

use tdmr::addr::PhysRange;
use tdmr::memmap::Cmr;
use tdmr::sysinfo::{PrivateKeyIds, TdxLimits};
use tdmr::tdx::abi::TdmrInfo;
use tdmr::tdx::status::Status;
use tdmr::tdx::validate::{ConfigEnv, sys_config};

use crate::error::{
    ArgProblem, Detail, Fail, TDMR_ERR_INVALID_ARGUMENT, TDMR_ERR_MISALIGNED, tdmr_code, tdmr_error,
};
use crate::ffi::{self, Out, OutArray};
use crate::memory::tdmr_cmr;
use crate::plan::{TDMR_INFO_ALIGNMENT, tdmr_limits, tdmr_tdmr_info};

/// Bits 63:32 of a TDX status: the code without its operand or info bytes.
pub const TDMR_TDX_STATUS_MASK: u64 = 0xFFFF_FFFF_0000_0000;
/// `TDX_SUCCESS`.
pub const TDMR_TDX_SUCCESS: u64 = 0;
/// `TDX_OPERAND_INVALID` (bits 31:0 name the operand: 1 RCX, 2 RDX).
pub const TDMR_TDX_OPERAND_INVALID: u64 = 0xC000_0100_0000_0000;
/// `TDX_INVALID_TDMR` (info bytes: TDMR index).
pub const TDMR_TDX_INVALID_TDMR: u64 = 0xC000_0A00_0000_0000;
/// `TDX_NON_ORDERED_TDMR`.
pub const TDMR_TDX_NON_ORDERED_TDMR: u64 = 0xC000_0A01_0000_0000;
/// `TDX_TDMR_OUTSIDE_CMRS`.
pub const TDMR_TDX_TDMR_OUTSIDE_CMRS: u64 = 0xC000_0A02_0000_0000;
/// `TDX_INVALID_PAMT` (info bytes: TDMR index, PAMT level).
pub const TDMR_TDX_INVALID_PAMT: u64 = 0xC000_0A10_0000_0000;
/// `TDX_PAMT_OUTSIDE_CMRS`.
pub const TDMR_TDX_PAMT_OUTSIDE_CMRS: u64 = 0xC000_0A11_0000_0000;
/// `TDX_PAMT_OVERLAP` (info bytes: TDMR index, PAMT level, other TDMR).
pub const TDMR_TDX_PAMT_OVERLAP: u64 = 0xC000_0A12_0000_0000;
/// `TDX_INVALID_RESERVED_IN_TDMR` (info bytes: TDMR index, slot).
pub const TDMR_TDX_INVALID_RESERVED_IN_TDMR: u64 = 0xC000_0A20_0000_0000;
/// `TDX_NON_ORDERED_RESERVED_IN_TDMR`.
pub const TDMR_TDX_NON_ORDERED_RESERVED_IN_TDMR: u64 = 0xC000_0A21_0000_0000;

// The header's copies are the library's values.
const _: () = {
    use tdmr::tdx::status as s;
    assert!(TDMR_TDX_STATUS_MASK == s::STATUS_MASK);
    assert!(TDMR_TDX_SUCCESS == s::TDX_SUCCESS);
    assert!(TDMR_TDX_OPERAND_INVALID == s::TDX_OPERAND_INVALID);
    assert!(TDMR_TDX_INVALID_TDMR == s::TDX_INVALID_TDMR);
    assert!(TDMR_TDX_NON_ORDERED_TDMR == s::TDX_NON_ORDERED_TDMR);
    assert!(TDMR_TDX_TDMR_OUTSIDE_CMRS == s::TDX_TDMR_OUTSIDE_CMRS);
    assert!(TDMR_TDX_INVALID_PAMT == s::TDX_INVALID_PAMT);
    assert!(TDMR_TDX_PAMT_OUTSIDE_CMRS == s::TDX_PAMT_OUTSIDE_CMRS);
    assert!(TDMR_TDX_PAMT_OVERLAP == s::TDX_PAMT_OVERLAP);
    assert!(TDMR_TDX_INVALID_RESERVED_IN_TDMR == s::TDX_INVALID_RESERVED_IN_TDMR);
    assert!(TDMR_TDX_NON_ORDERED_RESERVED_IN_TDMR == s::TDX_NON_ORDERED_RESERVED_IN_TDMR);
};

/// What the module knows when it checks a configuration, beyond the CMRs. Fill with
/// `tdmr_validate_options_default`, then change fields.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct tdmr_validate_options {
    /// The limits the plan was made against (MAX_TDMRS, PAMT entry sizes, Dynamic PAMT).
    pub limits: tdmr_limits,
    /// KeyID bits (physical address bits `[52 - keyid_bits, 51]` carry the HKID and must be
    /// zero in a configuration); 0 (default): none, and the private KeyIDs are ignored.
    pub keyid_bits: u32,
    /// First private KeyID (TDX module: the first KeyID TDX owns).
    pub private_keyid_first: u32,
    /// Number of private KeyIDs.
    pub private_keyid_count: u32,
    /// The SEAM range (SEAMRR), which no host buffer may overlap; size 0 (default): none.
    pub seamrr_base: u64,
    /// Bytes of the SEAM range.
    pub seamrr_size: u64,
}

fn default_options() -> tdmr_validate_options {
    tdmr_validate_options {
        limits: TdxLimits::DEFAULT.into(),
        keyid_bits: 0,
        private_keyid_first: 0,
        private_keyid_count: 0,
        seamrr_base: 0,
        seamrr_size: 0,
    }
}

/// Writes the default validation options to `*out`: `tdmr_limits_default`'s limits, no KeyID
/// bits, no SEAM range.
///
/// # Safety
///
/// `out` points at a writable `tdmr_validate_options`; `err` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_validate_options_default(
    out: *mut tdmr_validate_options,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promise, forwarded.
        unsafe { Out::new(out, "out") }?.write(default_options());
        Ok(())
    })
}

/// Runs TDH.SYS.CONFIG's checks, in the module's order, on the `count` `TDMR_INFO`s at
/// `infos` (512-byte aligned, as the module requires) against `cmr_count` CMRs, and writes
/// the module's raw 64-bit status to `*status`: 0 (`TDX_SUCCESS`) when it would accept them.
/// `options` NULL means `tdmr_validate_options_default`.
///
/// Returns `TDMR_OK` (status 0) or `TDMR_ERR_CONFIG_REJECTED` with the status the module would
/// return (`TDX_INVALID_TDMR`, `TDX_PAMT_OVERLAP`, ... with its operand and info bytes; also
/// in `err->tdx_status`, and decoded in `err->message`). Zero TDMRs is the module's
/// `TDX_OPERAND_INVALID` on RDX, like more than MAX_TDMRS. Other codes are argument errors,
/// and leave `*status` unwritten.
///
/// # Safety
///
/// `infos` points at `count` readable `tdmr_tdmr_info`s (or is NULL with 0), `cmrs` at
/// `cmr_count` `tdmr_cmr`s (or NULL with 0), `options` is NULL or readable, `status` points at
/// a writable `uint64_t`, `err` is NULL or writable. Nothing writes the arrays during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_validate(
    infos: *const tdmr_tdmr_info,
    count: usize,
    cmrs: *const tdmr_cmr,
    cmr_count: usize,
    options: *const tdmr_validate_options,
    status: *mut u64,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promises, forwarded to each check.
        let status = unsafe { Out::new(status, "status") }?;
        if count > 0 && !infos.is_null() && !(infos as usize).is_multiple_of(TDMR_INFO_ALIGNMENT) {
            return Err(Fail::arg(
                TDMR_ERR_MISALIGNED,
                "infos",
                ArgProblem::Misaligned {
                    addr: infos as usize,
                    align: TDMR_INFO_ALIGNMENT,
                },
            ));
        }
        // SAFETY: as above.
        let infos = unsafe { ffi::input(infos, count, "infos") }?;
        // SAFETY: as above.
        let cmrs = unsafe { ffi::input(cmrs, cmr_count, "cmrs") }?;
        // SAFETY: as above.
        let o = unsafe { ffi::input_opt(options, "options") }?.unwrap_or_else(default_options);
        let limits = o.limits.to_limits("options.limits.dynamic_pamt_bits")?;
        let cmrs: Vec<Cmr> = cmrs.iter().map(|c| Cmr::new(c.base, c.size)).collect();
        let mut env = ConfigEnv::from_limits(&limits, &cmrs);
        if o.keyid_bits != 0 {
            let private = PrivateKeyIds::new(o.private_keyid_first, o.private_keyid_count)?;
            env = env.with_keyids(o.keyid_bits, private);
        }
        if o.seamrr_size != 0 {
            let seamrr = PhysRange::from_base_size(o.seamrr_base, o.seamrr_size).map_err(|e| {
                Fail::new(
                    TDMR_ERR_INVALID_ARGUMENT,
                    Detail::Range("options.seamrr", e),
                )
            })?;
            env = env.with_seamrr(seamrr);
        }
        let infos: Vec<TdmrInfo> = infos.iter().map(TdmrInfo::from).collect();
        match sys_config(&infos, &env) {
            Ok(()) => {
                status.write(Status::SUCCESS.raw());
                Ok(())
            }
            Err(s) => {
                status.write(s.raw());
                Err(s.into())
            }
        }
    })
}

/// Writes a TDX module status decoded (`"TDX_PAMT_OVERLAP (0xc0000a1200010103: TDMR 3, PAMT
/// 2m, other TDMR 1)"`) into `buf` as a NUL-terminated string. Sizes asked first: `*needed`
/// is the bytes needed, NUL included, on `TDMR_OK` and `TDMR_ERR_BUFFER_TOO_SMALL` (then
/// nothing is written); with `buf` NULL and `len` 0 only `*needed` is written.
///
/// # Safety
///
/// `buf` points at `len` writable bytes (or is NULL with 0); `needed` at a writable `size_t`;
/// `err` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tdmr_status_describe(
    status: u64,
    buf: *mut core::ffi::c_char,
    len: usize,
    needed: *mut usize,
    err: *mut tdmr_error,
) -> tdmr_code {
    ffi::entry(err, || {
        // SAFETY: the caller's promises, forwarded.
        let dst = unsafe { OutArray::new(buf.cast::<u8>(), len, 1, needed, "buf", "needed") }?;
        let mut text = alloc::string::String::new();
        // Writing to a String fails only if a Display impl does; keep what it wrote.
        let _ = core::fmt::write(&mut text, format_args!("{}", Status::new(status)));
        text.push('\0');
        dst.write(text.as_bytes())
    })
}
