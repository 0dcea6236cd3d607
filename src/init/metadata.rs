//! Reading what bring-up needs from the module's global metadata (TDH.SYS.RD).

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::error::{InitErrorKind, MetadataError};
use super::retry::Caller;
use crate::memmap::{Cmr, Cmrs};
use crate::seamcall::Seamcall;
use crate::sysinfo::TdxLimits;
use crate::tdx::metadata::{self as md, FieldId, ModuleVersion, features0};
use crate::tdx::{Regs, leaf};

/// What bring-up learnt from the module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Module version.
    pub version: ModuleVersion,
    /// TDX_FEATURES0.
    pub features0: u64,
    /// NUM_PKGS.
    pub packages: u32,
    /// MAX_TDMRS, MAX_RESERVED_PER_TDMR, PAMT entry sizes (and the Dynamic PAMT bitmap bits
    /// when Dynamic PAMT was asked for).
    pub limits: TdxLimits,
    /// The non-null CMRs.
    pub cmrs: Cmrs,
}

/// PAMT_PAGE_BITMAP_ENTRY_BITS as Linux reads it (2-byte size code; ignored by the module).
const BITMAP_BITS_AS_LINUX_READS: FieldId = FieldId::new(0x9100_0001_0000_0013);

fn read<S: Seamcall + ?Sized>(
    c: &mut Caller<'_, S>,
    id: FieldId,
    cpu: u32,
) -> Result<u64, InitErrorKind> {
    let out = c
        .call(
            leaf::TDH_SYS_RD,
            Regs {
                rdx: id.raw(),
                ..Regs::ZERO
            },
            Some(cpu),
        )
        .map_err(InitErrorKind::Seamcall)?;
    if !out.status.is_success() {
        return Err(InitErrorKind::Seamcall(Box::new(super::SeamcallError {
            leaf: leaf::TDH_SYS_RD,
            cpu: Some(cpu),
            inputs: Regs {
                rdx: id.raw(),
                ..Regs::ZERO
            },
            status: out.status,
            outputs: out.regs,
            attempts: c.last_attempts,
        })));
    }
    Ok(out.regs.r8)
}

fn narrow<T: TryFrom<u64>>(id: FieldId, value: u64) -> Result<T, InitErrorKind> {
    T::try_from(value).map_err(|_| {
        InitErrorKind::Metadata(MetadataError::ValueOutOfRange {
            field: id.raw(),
            value,
        })
    })
}

pub(crate) fn read_module_info<S: Seamcall + ?Sized>(
    c: &mut Caller<'_, S>,
    cpu: u32,
    dynamic_pamt: bool,
) -> Result<ModuleInfo, InitErrorKind> {
    let r16 = |c: &mut Caller<'_, S>, id| read(c, id, cpu).and_then(|v| narrow::<u16>(id, v));
    let version = ModuleVersion {
        major: r16(c, md::MAJOR_VERSION)?,
        minor: r16(c, md::MINOR_VERSION)?,
        update: r16(c, md::UPDATE_VERSION)?,
    };
    let features0 = read(c, md::TDX_FEATURES0, cpu)?;
    if features0 & features0::NO_RBP_MOD == 0 {
        return Err(InitErrorKind::Metadata(MetadataError::NoRbpModMissing {
            features0,
        }));
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
        .map_err(|e| InitErrorKind::Metadata(MetadataError::Limits(e)))?;
    if dynamic_pamt {
        if features0 & features0::DYNAMIC_PAMT == 0 {
            return Err(InitErrorKind::Metadata(
                MetadataError::DynamicPamtUnsupported { features0 },
            ));
        }
        let id = BITMAP_BITS_AS_LINUX_READS;
        let bits = narrow::<u8>(id, read(c, id, cpu)?)?;
        limits = limits
            .with_dynamic_pamt(bits)
            .map_err(|e| InitErrorKind::Metadata(MetadataError::Limits(e)))?;
    }
    let num_cmrs = read(c, md::NUM_CMRS, cpu)?;
    if num_cmrs > u64::from(md::MAX_CMR_SLOTS) {
        return Err(InitErrorKind::Metadata(MetadataError::TooManyCmrSlots {
            num_cmrs,
        }));
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
    let cmrs = Cmrs::new(cmrs).map_err(|e| InitErrorKind::Metadata(MetadataError::Cmrs(e)))?;
    Ok(ModuleInfo {
        version,
        features0,
        packages,
        limits,
        cmrs,
    })
}
