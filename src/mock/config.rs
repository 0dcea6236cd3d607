//! TDH.SYS.CONFIG: RCX = PA of the array of `TDMR_INFO` PAs, RDX = number of TDMRs, R8 = the
//! global private KeyID (bit 16: enable Dynamic PAMT, on modules that support it); version 1
//! (RAX bits 23:16, on modules that accept it) also takes R9 = the add-on features to enable,
//! in TDX_FEATURES0 numbering.
//!
//! The gating and operand checks are the mock's; every check of the TDMRs themselves is
//! [`crate::tdx::validate::sys_config_with`] with the running module's version quirks, fed
//! from simulated physical memory exactly as the module reads it (each `TDMR_INFO` PA checked,
//! then 512 bytes copied). R9 is checked after R8 — a bit outside the module's add-on features
//! gives `TDX_OPERAND_INVALID | R9` (the references give the operand, not the order: the
//! mock's choice follows the registers' order). During a runtime update (a new module loaded,
//! waiting for TDH.SYS.UPDATE) the layout is frozen: `TDX_SYS_CONFIG_NOT_PENDING`.

use alloc::vec::Vec;

use super::page_pairs::PamtPages;
use super::pamt_work::PamtImage;
use super::platform::Platform;
use super::state::{State, SysState, TdmrProgress, TdmrRecord};
use crate::addr::{PageSize, PhysRange, is_aligned};
use crate::tdx::abi::{TDMR_INFO_ALIGNMENT, TdmrInfo};
use crate::tdx::status::{
    Status, TDX_OPERAND_INVALID, TDX_SUCCESS, TDX_SYS_CONFIG_NOT_PENDING, operand,
};
use crate::tdx::validate;
use crate::tdx::{Output, Regs};

/// R8 bit 16: Dynamic PAMT.
pub(crate) const CONFIG_DYNAMIC_PAMT: u64 = 1 << 16;
/// Dynamic PAMT needs the KeyID bits to start at or below bit 48.
const MAX_DYNAMIC_PAMT_HKID_START_BIT: u32 = 48;

fn invalid(op: u32, regs: &Regs) -> Output {
    Output::new(Status::new(TDX_OPERAND_INVALID | op as u64), *regs)
}

pub(crate) fn sys_config(
    p: &Platform,
    st: &mut State,
    version: u8,
    regs: &Regs,
    work: bool,
) -> Output {
    if st.sys != SysState::SysinitDone || st.lps_initialized < p.lps || st.handoff.pending {
        return Output::new(Status::new(TDX_SYS_CONFIG_NOT_PENDING), *regs);
    }
    let module = st.module.profile.clone();
    let probe = p.config_env(&module, false);
    let array = regs.rcx;
    if !is_aligned(array, TDMR_INFO_ALIGNMENT as u64)
        || !probe.shared_hpa_ok(array, TDMR_INFO_ALIGNMENT as u64)
    {
        return invalid(operand::RCX, regs);
    }
    let count = regs.rdx;
    if count == 0 || count > module.limits().max_tdmrs() as u64 {
        return invalid(operand::RDX, regs);
    }
    let dpamt_ok = module.supports_dynamic_pamt();
    let reserved = if dpamt_ok { !0x1_FFFF } else { !0xFFFF };
    let keyid = regs.r8 & 0xFFFF;
    if regs.r8 & reserved != 0 || !p.private_keyids().contains(keyid) {
        return invalid(operand::R8, regs);
    }
    let dynamic_pamt = regs.r8 & CONFIG_DYNAMIC_PAMT != 0;
    if dynamic_pamt && crate::addr::MAX_PA_BITS - p.keyid_bits > MAX_DYNAMIC_PAMT_HKID_START_BIT {
        return invalid(operand::R8, regs);
    }
    let add_ons = if version >= 1 { regs.r9 } else { 0 };
    if add_ons & !module.add_on_features() != 0 {
        return invalid(operand::R9, regs);
    }
    // The KeyID is reserved and recorded as the global KeyID even if a TDMR is refused below.
    st.global_keyid = Some(keyid as u16);

    let env = p.config_env(&module, dynamic_pamt);
    let mem = &st.mem;
    let mut infos: Vec<TdmrInfo> = Vec::with_capacity(count as usize);
    let fetched = validate::sys_config_with(count as usize, &env, |i| {
        let rcx_invalid = Status::new(TDX_OPERAND_INVALID | operand::RCX as u64);
        let pa = mem
            .read_u64(array + 8 * i as u64)
            .map_err(|_| rcx_invalid)?;
        validate::tdmr_info_pa(pa, &env)?;
        let mut bytes = [0u8; TDMR_INFO_ALIGNMENT];
        mem.read(pa, &mut bytes).map_err(|_| rcx_invalid)?;
        let info = TdmrInfo::from_bytes(&bytes);
        infos.push(info);
        Ok(info)
    });
    if let Err(status) = fetched {
        // The state stays SYSINIT_DONE: the host may try again.
        return Output::new(status, *regs);
    }
    st.tdmrs = infos
        .iter()
        .map(|t| TdmrRecord {
            progress: TdmrProgress {
                base: t.base,
                size: t.size,
                next: t.base,
            },
            busy: None,
            // The validator accepted them: sorted, disjoint, inside the TDMR, nulls last.
            reserved: t
                .reserved
                .iter()
                .take_while(|r| r.size != 0)
                .map(|r| PhysRange::new_unchecked(t.base + r.offset, t.base + r.offset + r.size))
                .collect(),
            pamt_sizes: PageSize::ALL.map(|l| t.pamt(l).1),
        })
        .collect();
    st.images = if work {
        st.tdmrs
            .iter()
            .map(|t| {
                let p = &t.progress;
                PamtImage::new(
                    p.base,
                    p.size,
                    &t.reserved,
                    dynamic_pamt,
                    &mut st.resident_pamt,
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    st.pamt = PamtPages::default();
    st.dynamic_pamt = dynamic_pamt;
    st.add_ons = add_ons;
    st.pamt_4k_entry_size = module.limits().pamt_entry_size(PageSize::Size4K);
    st.sys = SysState::SysconfigDone;
    st.pkg_configured.iter_mut().for_each(|c| *c = false);
    st.pkgs_configured = 0;
    Output::new(Status::new(TDX_SUCCESS), *regs)
}
