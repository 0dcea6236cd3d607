//! The mock's global metadata: the field table, TDH.SYS.RD, TDH.SYS.RDALL and TDH.SYS.INFO.
//!
//! The table is the running module's ([`super::ModuleProfile`]): versions, TDX_FEATURES0, the
//! TDMR/PAMT limits, NUM_CMRS with the 32 CMR_BASE/CMR_SIZE slots (null slots included, as TDX
//! module 1.5 reports them), NUM_PKGS, the TD control-structure sizes and the TD configuration
//! fields (MAX_VCPUS_PER_TD from 1.5.06 on); PAMT_PAGE_BITMAP_ENTRY_BITS and
//! MIN_DYNAMIC_PAMT_NUM_HKID_BITS on modules with Dynamic PAMT; MODULE_HANDOFF_VERSION on
//! modules with a runtime update; EXT_REQUIRED and EXT_MEMORY_POOL_REQUIRED_PAGES on modules
//! with extensions — readable only once TDH.SYS.CONFIG has run (before, they answer
//! `TDX_METADATA_FIELD_NOT_READABLE`, the module's status for a field that exists but cannot be
//! read now: the references say "valid only after CONFIG" and no more). EXT_REQUIRED reads 1
//! until TDH.EXT.INIT completes, then 0. A field the module lacks answers
//! `TDX_METADATA_FIELD_ID_INCORRECT`. Values that the memory bring-up never interprets (TD
//! structure sizes, fixed attribute/XFAM bits, CPUID configuration) are plausible
//! placeholders, not a real module's.

use alloc::vec::Vec;

use super::platform::Platform;
use super::profile::ModuleProfile;
use super::state::{State, SysState};
use crate::addr::is_aligned;
use crate::tdx::metadata::{self as md, FIELD_ID_NA, FieldId};
use crate::tdx::status::{
    Status, TDX_METADATA_FIELD_ID_INCORRECT, TDX_METADATA_FIELD_NOT_READABLE,
    TDX_METADATA_FIRST_FIELD_ID_IN_CONTEXT, TDX_OPERAND_INVALID, TDX_SUCCESS,
    TDX_SYS_LP_INIT_NOT_DONE, operand,
};
use crate::tdx::{Output, Regs};

/// Bits that identify a field: non-architectural (63), class (61:56), field code (23:0).
const KEY_MASK: u64 = 1 << 63 | 0x3F << 56 | 0xFF_FFFF;
/// Reserved bits: 31:24, 49:47, 55, 62.
const RESERVED_MASK: u64 = 0xFF << 24 | 0b111 << 47 | 1 << 55 | 1 << 62;
/// Last element in field (37:34) and last field in sequence (46:38): must be zero on input.
const SEQUENCE_MASK: u64 = 0x1FFF << 34;
/// Context (54:52): forced to SYS.
const CONTEXT_MASK: u64 = 0b111 << 52;

/// One readable field: its canonical id and value (already masked to its element size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Field {
    pub(crate) id: FieldId,
    pub(crate) value: u64,
}

/// CPUID leaves the placeholder TD configuration lists, `(leaf, subleaf)`.
const CPUID_CONFIG: [(u32, u32); 4] =
    [(0x1, u32::MAX), (0x7, 0), (0xD, 1), (0x8000_0008, u32::MAX)];

/// The global metadata table, sorted by field identity.
#[derive(Clone, Debug)]
pub(crate) struct Metadata {
    fields: Vec<Field>,
}

fn mask(value: u64, id: FieldId) -> u64 {
    match id.element_bytes() {
        8 => value,
        n => value & ((1u64 << (8 * n)) - 1),
    }
}

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

impl Metadata {
    pub(crate) fn new(p: &Platform, m: &ModuleProfile) -> Self {
        let l = m.limits();
        let mut fields: Vec<Field> = Vec::new();
        let mut add = |id: FieldId, value: u64| {
            fields.push(Field {
                id,
                value: mask(value, id),
            })
        };
        let v = m.version();
        add(md::MINOR_VERSION, v.minor.into());
        add(md::MAJOR_VERSION, v.major.into());
        add(md::UPDATE_VERSION, v.update.into());
        add(md::NUM_PKGS, p.packages.into());
        add(md::SYS_ATTRIBUTES, 0);
        add(md::NUM_TDX_FEATURES, 1);
        add(md::TDX_FEATURES0, m.features0());
        add(md::NUM_CMRS, md::MAX_CMR_SLOTS.into());
        for i in 0..md::MAX_CMR_SLOTS {
            let (base, size) = p.cmrs.get(i as usize).map_or((0, 0), |c| (c.base, c.size));
            if let (Some(b), Some(s)) = (md::cmr_base(i), md::cmr_size(i)) {
                add(b, base);
                add(s, size);
            }
        }
        add(md::MAX_TDMRS, l.max_tdmrs() as u64);
        add(md::MAX_RESERVED_PER_TDMR, l.max_reserved_per_tdmr() as u64);
        add(
            md::PAMT_4K_ENTRY_SIZE,
            l.pamt_entry_size(crate::addr::PageSize::Size4K),
        );
        add(
            md::PAMT_2M_ENTRY_SIZE,
            l.pamt_entry_size(crate::addr::PageSize::Size2M),
        );
        add(
            md::PAMT_1G_ENTRY_SIZE,
            l.pamt_entry_size(crate::addr::PageSize::Size1G),
        );
        if let Some(bits) = l.dynamic_pamt_bits() {
            add(md::PAMT_PAGE_BITMAP_ENTRY_BITS, bits.into());
            add(
                md::MIN_DYNAMIC_PAMT_NUM_HKID_BITS,
                u64::from(crate::addr::MAX_PA_BITS.saturating_sub(48)),
            );
        }
        add(md::TDR_BASE_SIZE, 0x1000);
        add(md::TDCS_BASE_SIZE, 0x4000);
        add(md::TDVPS_BASE_SIZE, 0x6000);
        add(md::ATTRIBUTES_FIXED0, 0x0000_0000_F000_1FFF);
        add(md::ATTRIBUTES_FIXED1, 0);
        add(md::XFAM_FIXED0, 0x0006_DBE7);
        add(md::XFAM_FIXED1, 0x0000_0003);
        add(md::NUM_CPUID_CONFIG, CPUID_CONFIG.len() as u64);
        if m.has_max_vcpus_field() {
            add(md::MAX_VCPUS_PER_TD, 576);
        }
        if m.supports_update() {
            add(md::MODULE_HANDOFF_VERSION, m.handoff_version().into());
        }
        if m.has_extensions() {
            add(md::EXT_REQUIRED, u64::from(m.extension_pages() > 0));
            add(
                md::EXT_MEMORY_POOL_REQUIRED_PAGES,
                m.extension_pages().into(),
            );
        }
        for (i, (leaf, subleaf)) in CPUID_CONFIG.iter().enumerate() {
            let i = i as u32;
            if let (Some(k), Some(v0), Some(v1)) = (
                md::cpuid_config_leaf(i),
                md::cpuid_config_value(i, 0),
                md::cpuid_config_value(i, 1),
            ) {
                add(k, u64::from(*leaf) | u64::from(*subleaf) << 32);
                add(v0, 0);
                add(v1, 0);
            }
        }
        let key = |id: FieldId| id.raw() & KEY_MASK;
        fields.retain(|f| !m.lacks().iter().any(|&l| key(l) == key(f.id)));
        fields.sort_by_key(|f| key(f.id));
        Metadata { fields }
    }

    /// The index of the field `raw` names, or the status TDH.SYS.RD returns for it.
    pub(crate) fn lookup(&self, raw: u64) -> Result<usize, Status> {
        if raw & RESERVED_MASK != 0 || raw & SEQUENCE_MASK != 0 {
            return Err(Status::new(TDX_METADATA_FIELD_ID_INCORRECT));
        }
        let key = raw & KEY_MASK;
        self.fields
            .binary_search_by_key(&key, |f| f.id.raw() & KEY_MASK)
            .map_err(|_| Status::new(TDX_METADATA_FIELD_ID_INCORRECT))
    }

    fn next_id(&self, index: usize) -> u64 {
        self.fields
            .get(index + 1)
            .map_or(FIELD_ID_NA, |f| f.id.raw())
    }
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
