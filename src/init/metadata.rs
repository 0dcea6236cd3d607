//! Reading what bring-up needs from the module: global metadata (TDH.SYS.RD), or on TDX 1.0,
//! which has no TDH.SYS.RD, the TDSYSINFO_STRUCT and CMR array TDH.SYS.INFO writes.
//!
//! Bring-up reads only what the module says it has: the version, TDX_FEATURES0, NUM_PKGS, the
//! TDMR limits, PAMT entry sizes and the CMRs always (every module since 1.5 has them);
//! PAMT_PAGE_BITMAP_ENTRY_BITS only when Dynamic PAMT is asked for and TDX_FEATURES0 bit 36
//! says the module has it; the extension fields only after TDH.SYS.CONFIG and only with bit 39
//! (see `extensions.rs`); the handoff version only for an update, only with bit 1. A field the
//! module lacks fails with [`MetadataError::FieldMissing`], naming it.
//!
//! The first read, MAJOR_VERSION, tells the two apart: TDX 1.0 answers `TDX_SYS_NOT_READY`
//! (its dispatcher does not let TDH.SYS.RD through before the module is ready, which is how
//! Linux fails there), and bring-up falls back to TDH.SYS.INFO: two host buffers (1024 bytes
//! 1024-aligned, 512 bytes 512-aligned), read back with [`HostMemory::read`]. TDSYSINFO has no
//! update number, TDX_FEATURES0 or package count: they read as 0, 0 and "the host's".

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::error::{InitErrorKind, MetadataError};
use super::host_memory::HostMemory;
use super::retry::Caller;
use crate::memmap::{Cmr, Cmrs};
use crate::seamcall::Seamcall;
use crate::sysinfo::TdxLimits;
use crate::tdx::metadata::{self as md, FieldId, ModuleVersion, features0};
use crate::tdx::status::{TDX_METADATA_FIELD_ID_INCORRECT, TDX_SYS_NOT_READY};
use crate::tdx::{Regs, leaf};

/// Where bring-up learnt what the module has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetadataSource {
    /// Global metadata, TDH.SYS.RD (TDX 1.5 and later).
    SysRd,
    /// TDSYSINFO_STRUCT and the CMR array, TDH.SYS.INFO (TDX 1.0).
    SysInfo,
}

/// What bring-up learnt from the module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Module version.
    pub version: ModuleVersion,
    /// TDX_FEATURES0 (0 on TDX 1.0, which has none).
    pub features0: u64,
    /// NUM_PKGS (on TDX 1.0: the host's packages).
    pub packages: u32,
    /// MAX_TDMRS, MAX_RESERVED_PER_TDMR, PAMT entry sizes (and the Dynamic PAMT bitmap bits
    /// when Dynamic PAMT was asked for).
    pub limits: TdxLimits,
    /// The non-null CMRs.
    pub cmrs: Cmrs,
    /// How it was read.
    pub source: MetadataSource,
}

/// PAMT_PAGE_BITMAP_ENTRY_BITS as Linux reads it (2-byte size code; ignored by the module).
const BITMAP_BITS_AS_LINUX_READS: FieldId = FieldId::new(0x9100_0001_0000_0013);

/// Why a read failed: the module lacks TDH.SYS.RD (TDX 1.0), or anything else.
pub(crate) enum ReadFailure {
    /// TDH.SYS.RD is not available: use TDH.SYS.INFO.
    NoSysRd,
    /// A failure to report.
    Failed(InitErrorKind),
}

impl From<InitErrorKind> for ReadFailure {
    fn from(k: InitErrorKind) -> Self {
        ReadFailure::Failed(k)
    }
}

/// Reads `id` with TDH.SYS.RD on `cpu`. A field the module lacks is
/// [`MetadataError::FieldMissing`]; any other failure keeps the SEAMCALL's registers.
pub(crate) fn read<S: Seamcall + ?Sized>(
    c: &mut Caller<'_, S>,
    id: FieldId,
    cpu: u32,
) -> Result<u64, InitErrorKind> {
    let inputs = Regs {
        rdx: id.raw(),
        ..Regs::ZERO
    };
    let failed = |status, outputs, attempts| {
        if crate::tdx::status::Status::code(status) == TDX_METADATA_FIELD_ID_INCORRECT {
            return InitErrorKind::Metadata(MetadataError::FieldMissing { field: id, status });
        }
        InitErrorKind::Seamcall(Box::new(super::SeamcallError {
            leaf: leaf::TDH_SYS_RD,
            cpu: Some(cpu),
            inputs,
            status,
            outputs,
            attempts,
        }))
    };
    match c.call(leaf::TDH_SYS_RD, inputs, Some(cpu)) {
        Ok(out) if out.status.is_success() => Ok(out.regs.r8),
        Ok(out) => Err(failed(out.status, out.regs, c.last_attempts)),
        Err(e) => Err(failed(e.status, e.outputs, e.attempts)),
    }
}

fn narrow<T: TryFrom<u64>>(id: FieldId, value: u64) -> Result<T, InitErrorKind> {
    T::try_from(value).map_err(|_| {
        InitErrorKind::Metadata(MetadataError::ValueOutOfRange {
            field: id.raw(),
            value,
        })
    })
}

fn metadata(e: MetadataError) -> InitErrorKind {
    InitErrorKind::Metadata(e)
}

/// Reads the module's description with TDH.SYS.RD; [`ReadFailure::NoSysRd`] when the first
/// read shows the module has none.
pub(crate) fn read_module_info<S: Seamcall + ?Sized>(
    c: &mut Caller<'_, S>,
    cpu: u32,
    dynamic_pamt: bool,
) -> Result<ModuleInfo, ReadFailure> {
    let major = match read(c, md::MAJOR_VERSION, cpu) {
        Ok(v) => narrow::<u16>(md::MAJOR_VERSION, v)?,
        Err(InitErrorKind::Seamcall(e)) if e.status.code() == TDX_SYS_NOT_READY => {
            return Err(ReadFailure::NoSysRd);
        }
        Err(k) => return Err(k.into()),
    };
    let r16 = |c: &mut Caller<'_, S>, id| read(c, id, cpu).and_then(|v| narrow::<u16>(id, v));
    let version = ModuleVersion {
        major,
        minor: r16(c, md::MINOR_VERSION)?,
        update: r16(c, md::UPDATE_VERSION)?,
    };
    let features0 = read(c, md::TDX_FEATURES0, cpu)?;
    if features0 & features0::NO_RBP_MOD == 0 {
        return Err(metadata(MetadataError::NoRbpModMissing { features0 }).into());
    }
    let packages = narrow::<u32>(md::NUM_PKGS, read(c, md::NUM_PKGS, cpu)?)?;
    let max_tdmrs = r16(c, md::MAX_TDMRS)?;
    let max_reserved = r16(c, md::MAX_RESERVED_PER_TDMR)?;
    let entry = [
        r16(c, md::PAMT_4K_ENTRY_SIZE)?,
        r16(c, md::PAMT_2M_ENTRY_SIZE)?,
        r16(c, md::PAMT_1G_ENTRY_SIZE)?,
    ];
    let mut limits = TdxLimits::new(max_tdmrs, max_reserved, entry)
        .map_err(|e| metadata(MetadataError::Limits(e)))?;
    if dynamic_pamt {
        if features0 & features0::DYNAMIC_PAMT == 0 {
            return Err(metadata(MetadataError::DynamicPamtUnsupported { features0 }).into());
        }
        let id = BITMAP_BITS_AS_LINUX_READS;
        let bits = narrow::<u8>(id, read(c, id, cpu)?)?;
        limits = limits
            .with_dynamic_pamt(bits)
            .map_err(|e| metadata(MetadataError::Limits(e)))?;
    }
    let num_cmrs = read(c, md::NUM_CMRS, cpu)?;
    if num_cmrs > u64::from(md::MAX_CMR_SLOTS) {
        return Err(metadata(MetadataError::TooManyCmrSlots { num_cmrs }).into());
    }
    let mut cmrs = Vec::new();
    for i in 0..num_cmrs as u32 {
        let (Some(b), Some(s)) = (md::cmr_base(i), md::cmr_size(i)) else {
            break;
        };
        let base = read(c, b, cpu)?;
        let size = read(c, s, cpu)?;
        // Null slots (TDX module 1.5 reports all 32) carry nothing.
        if size != 0 {
            cmrs.push(Cmr::new(base, size));
        }
    }
    let cmrs = Cmrs::new(cmrs).map_err(|e| metadata(MetadataError::Cmrs(e)))?;
    Ok(ModuleInfo {
        version,
        features0,
        packages,
        limits,
        cmrs,
        source: MetadataSource::SysRd,
    })
}

/// TDSYSINFO_STRUCT bytes and alignment.
const SYSINFO_BYTES: usize = 1024;
/// CMR_INFO array bytes and alignment (32 entries of base, size).
const CMR_INFO_BYTES: usize = 512;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Reads the module's description with TDH.SYS.INFO (TDX 1.0): the buffers placed in host
/// memory, read back, released whatever the outcome. `packages` stands in for NUM_PKGS.
pub(crate) fn read_sys_info<S: Seamcall + ?Sized, M: HostMemory + ?Sized>(
    c: &mut Caller<'_, S>,
    memory: &M,
    cpu: u32,
    dynamic_pamt: bool,
    packages: u32,
) -> Result<ModuleInfo, InitErrorKind> {
    if dynamic_pamt {
        return Err(metadata(MetadataError::DynamicPamtUnsupported {
            features0: 0,
        }));
    }
    let host = InitErrorKind::HostMemory;
    let info_pa = memory
        .place(&[0u8; SYSINFO_BYTES], SYSINFO_BYTES as u64)
        .map_err(host)?;
    let cmr_pa = match memory.place(&[0u8; CMR_INFO_BYTES], CMR_INFO_BYTES as u64) {
        Ok(pa) => pa,
        Err(e) => {
            memory.release(info_pa, SYSINFO_BYTES);
            return Err(host(e));
        }
    };
    let result = (|| {
        let inputs = Regs {
            rcx: info_pa,
            rdx: SYSINFO_BYTES as u64,
            r8: cmr_pa,
            r9: u64::from(md::MAX_CMR_SLOTS),
            ..Regs::ZERO
        };
        let out = c
            .call(leaf::TDH_SYS_INFO, inputs, Some(cpu))
            .map_err(InitErrorKind::Seamcall)?;
        let mut info = [0u8; SYSINFO_BYTES];
        let mut cmr = [0u8; CMR_INFO_BYTES];
        memory.read(info_pa, &mut info).map_err(host)?;
        memory.read(cmr_pa, &mut cmr).map_err(host)?;
        let version = ModuleVersion::new(u16_at(&info, 16), u16_at(&info, 14), 0);
        let entry = u16_at(&info, 36);
        let limits = TdxLimits::new(u16_at(&info, 32), u16_at(&info, 34), [entry; 3])
            .map_err(|e| metadata(MetadataError::Limits(e)))?;
        let slots = out.regs.r9.min(u64::from(md::MAX_CMR_SLOTS)) as usize;
        let cmrs: Vec<Cmr> = (0..slots)
            .map(|i| Cmr::new(u64_at(&cmr, 16 * i), u64_at(&cmr, 16 * i + 8)))
            .filter(|c| c.size != 0)
            .collect();
        let cmrs = Cmrs::new(cmrs).map_err(|e| metadata(MetadataError::Cmrs(e)))?;
        Ok(ModuleInfo {
            version,
            features0: 0,
            packages,
            limits,
            cmrs,
            source: MetadataSource::SysInfo,
        })
    })();
    memory.release(info_pa, SYSINFO_BYTES);
    memory.release(cmr_pa, CMR_INFO_BYTES);
    result
}
