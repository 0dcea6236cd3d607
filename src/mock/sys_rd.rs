//! TDH.SYS.RD, TDH.SYS.RDALL and TDH.SYS.INFO over the running module's metadata table
//! (`metadata.rs`), with the extension fields following the extensions' state.

use super::metadata::{CONTEXT_MASK, CPUID_CONFIG, KEY_MASK, Metadata};
use super::platform::Platform;
use super::state::{State, SysState};
use crate::addr::is_aligned;
use crate::tdx::metadata::{self as md, FIELD_ID_NA, FieldId};
use crate::tdx::status::{
    Status, TDX_METADATA_FIELD_NOT_READABLE, TDX_METADATA_FIRST_FIELD_ID_IN_CONTEXT,
    TDX_OPERAND_INVALID, TDX_SUCCESS, TDX_SYS_LP_INIT_NOT_DONE, operand,
};
use crate::tdx::{Output, Regs};

/// Whether `id` is one of the extension fields, readable only after TDH.SYS.CONFIG.
fn is_extension_field(id: FieldId) -> bool {
    let key = id.raw() & KEY_MASK;
    key == md::EXT_REQUIRED.raw() & KEY_MASK
        || key == md::EXT_MEMORY_POOL_REQUIRED_PAGES.raw() & KEY_MASK
}

/// The value of field `i` now: extension fields follow the extensions' state.
fn current(md: &Metadata, st: &State, i: usize) -> Result<u64, Status> {
    let f = md.fields[i];
    if !is_extension_field(f.id) {
        return Ok(f.value);
    }
    if !matches!(st.sys, SysState::SysconfigDone | SysState::SysReady) {
        return Err(Status::new(TDX_METADATA_FIELD_NOT_READABLE));
    }
    if f.id.raw() & KEY_MASK == md::EXT_REQUIRED.raw() & KEY_MASK {
        return Ok(u64::from(f.value != 0 && !st.ext.initialized));
    }
    Ok(f.value)
}

/// Whether `raw` is the null field id (all ones, context bits aside).
fn is_null_id(raw: u64) -> bool {
    raw | CONTEXT_MASK == u64::MAX
}

fn fail(status: u64, mut regs: Regs) -> Output {
    regs.rdx = FIELD_ID_NA;
    regs.r8 = 0;
    Output::new(Status::new(status), regs)
}

/// TDH.SYS.RD: RDX = field id in; RDX = next field id, R8 = value out.
pub(crate) fn sys_rd(st: &State, lp: u32, regs: &Regs) -> Output {
    let md = &st.module.metadata;
    if !st.lp_is_init(lp) {
        return fail(TDX_SYS_LP_INIT_NOT_DONE, *regs);
    }
    let mut out = *regs;
    if is_null_id(regs.rdx) {
        out.rdx = md.fields.first().map_or(FIELD_ID_NA, |f| f.id.raw());
        out.r8 = 0;
        return Output::new(Status::new(TDX_METADATA_FIRST_FIELD_ID_IN_CONTEXT), out);
    }
    match md
        .lookup(regs.rdx)
        .and_then(|i| Ok((i, current(md, st, i)?)))
    {
        Ok((i, value)) => {
            out.r8 = value;
            out.rdx = md.next_id(i);
            Output::new(Status::new(TDX_SUCCESS), out)
        }
        Err(s) => fail(s.raw(), *regs),
    }
}

/// Bytes of the list TDH.SYS.RDALL writes: one page.
const RDALL_PAGE: usize = 4096;
/// Header: list size (u16), number of sequences (u16), reserved (u32).
const RDALL_HEADER: usize = 8;
/// One sequence: the field id, then its value as 8 bytes.
const RDALL_ENTRY: usize = 16;

/// TDH.SYS.RDALL: RDX = 4 KiB-aligned PA of the output page, R8 = first field id (the null id
/// starts at the first field); R8 = next field id out (the null id when every field was
/// written).
///
/// The page holds an 8-byte header (list bytes as `u16`, sequence count as `u16`, 4 reserved
/// bytes) followed by one 16-byte sequence per field: its id, then its value zero-extended to
/// 8 bytes. (The mock writes one field per sequence; a real module may pack consecutive fields
/// into one sequence.) Fields not readable now (the extension fields before TDH.SYS.CONFIG)
/// are left out.
pub(crate) fn sys_rdall(p: &Platform, st: &mut State, lp: u32, regs: &Regs) -> Output {
    if !st.lp_is_init(lp) {
        return fail(TDX_SYS_LP_INIT_NOT_DONE, *regs);
    }
    let md = &st.module.metadata;
    let page_ok = p
        .config_env(&st.module.profile, false)
        .shared_hpa_ok(regs.rdx, RDALL_PAGE as u64);
    if !is_aligned(regs.rdx, RDALL_PAGE as u64) || !page_ok {
        return Output::new(
            Status::new(TDX_OPERAND_INVALID | operand::RDX as u64),
            *regs,
        );
    }
    let start = if is_null_id(regs.r8) {
        0
    } else {
        match md.lookup(regs.r8) {
            Ok(i) => i,
            Err(s) => return Output::new(s, *regs),
        }
    };
    let per_page = (RDALL_PAGE - RDALL_HEADER) / RDALL_ENTRY;
    let end = (start + per_page).min(md.fields.len());
    let mut page = [0u8; RDALL_PAGE];
    let mut count = 0;
    for i in start..end {
        let Ok(value) = current(md, st, i) else {
            continue;
        };
        let at = RDALL_HEADER + count * RDALL_ENTRY;
        page[at..at + 8].copy_from_slice(&md.fields[i].id.raw().to_le_bytes());
        page[at + 8..at + 16].copy_from_slice(&value.to_le_bytes());
        count += 1;
    }
    let used = RDALL_HEADER + count * RDALL_ENTRY;
    page[0..2].copy_from_slice(&(used as u16).to_le_bytes());
    page[2..4].copy_from_slice(&(count as u16).to_le_bytes());
    let next = if end < md.fields.len() {
        md.fields[end].id.raw()
    } else {
        FIELD_ID_NA
    };
    if st.mem.write(regs.rdx, &page).is_err() {
        return Output::new(
            Status::new(TDX_OPERAND_INVALID | operand::RDX as u64),
            *regs,
        );
    }
    let mut out = *regs;
    out.r8 = next;
    Output::new(Status::new(TDX_SUCCESS), out)
}

/// TDSYSINFO_STRUCT bytes.
const SYSINFO_BYTES: usize = 1024;
/// CMR_INFO array bytes (32 entries of base, size).
const CMR_INFO_BYTES: usize = 512;

fn put16(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 2].copy_from_slice(&(v as u16).to_le_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 4].copy_from_slice(&(v as u32).to_le_bytes());
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn value(md: &Metadata, id: FieldId) -> u64 {
    md.lookup(id.raw()).map_or(0, |i| md.fields[i].value)
}

/// TDH.SYS.INFO: RCX = TDSYSINFO_STRUCT PA (1024-aligned), RDX = its size (≥ 1024), R8 =
/// CMR_INFO array PA (512-aligned), R9 = its entries (≥ 32); RDX = 1024, R9 = 32 out.
pub(crate) fn sys_info(p: &Platform, st: &mut State, lp: u32, regs: &Regs) -> Output {
    let invalid = |op: u32| Output::new(Status::new(TDX_OPERAND_INVALID | u64::from(op)), *regs);
    if !st.lp_is_init(lp) {
        return Output::new(Status::new(TDX_SYS_LP_INIT_NOT_DONE), *regs);
    }
    let m = st.module.profile.clone();
    let md = st.module.metadata.clone();
    let md = &md;
    let env = p.config_env(&m, false);
    if !is_aligned(regs.rcx, SYSINFO_BYTES as u64)
        || !env.shared_hpa_ok(regs.rcx, SYSINFO_BYTES as u64)
    {
        return invalid(operand::RCX);
    }
    if regs.rdx < SYSINFO_BYTES as u64 {
        return invalid(operand::RDX);
    }
    if st.mem.zero(regs.rcx, SYSINFO_BYTES).is_err() {
        return invalid(operand::RCX);
    }
    if !is_aligned(regs.r8, CMR_INFO_BYTES as u64)
        || !env.shared_hpa_ok(regs.r8, CMR_INFO_BYTES as u64)
    {
        return invalid(operand::R8);
    }
    if regs.r9 < u64::from(md::MAX_CMR_SLOTS) {
        return invalid(operand::R9);
    }
    let mut info = [0u8; SYSINFO_BYTES];
    put32(&mut info, 4, 0x8086);
    put32(&mut info, 8, m.build_date().into());
    put16(&mut info, 12, m.build().into());
    put16(&mut info, 14, m.version().minor.into());
    put16(&mut info, 16, m.version().major.into());
    info[18] = u8::from(m.implements_sys_rd());
    put16(&mut info, 32, m.limits().max_tdmrs() as u64);
    put16(&mut info, 34, m.limits().max_reserved_per_tdmr() as u64);
    put16(
        &mut info,
        36,
        m.limits().pamt_entry_size(crate::addr::PageSize::Size4K),
    );
    put16(&mut info, 48, value(md, md::TDCS_BASE_SIZE));
    put16(&mut info, 52, value(md, md::TDVPS_BASE_SIZE));
    put64(&mut info, 64, value(md, md::ATTRIBUTES_FIXED0));
    put64(&mut info, 72, value(md, md::ATTRIBUTES_FIXED1));
    put64(&mut info, 80, value(md, md::XFAM_FIXED0));
    put64(&mut info, 88, value(md, md::XFAM_FIXED1));
    put32(&mut info, 128, CPUID_CONFIG.len() as u64);
    for (i, (leaf, subleaf)) in CPUID_CONFIG.iter().enumerate() {
        put32(&mut info, 132 + 24 * i, (*leaf).into());
        put32(&mut info, 136 + 24 * i, (*subleaf).into());
    }
    let mut cmrs = [0u8; CMR_INFO_BYTES];
    for (i, c) in p.cmrs.iter().enumerate() {
        put64(&mut cmrs, 16 * i, c.base);
        put64(&mut cmrs, 16 * i + 8, c.size);
    }
    if st.mem.write(regs.rcx, &info).is_err() {
        return invalid(operand::RCX);
    }
    if st.mem.write(regs.r8, &cmrs).is_err() {
        return invalid(operand::R8);
    }
    let mut out = *regs;
    out.rdx = SYSINFO_BYTES as u64;
    out.r9 = md::MAX_CMR_SLOTS.into();
    Output::new(Status::new(TDX_SUCCESS), out)
}
