//! The mock's global metadata table (the leaves that read it are in `sys_rd.rs`).
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
use crate::tdx::metadata::{self as md, FIELD_ID_NA, FieldId};
use crate::tdx::status::{Status, TDX_METADATA_FIELD_ID_INCORRECT};

/// Bits that identify a field: non-architectural (63), class (61:56), field code (23:0).
pub(crate) const KEY_MASK: u64 = 1 << 63 | 0x3F << 56 | 0xFF_FFFF;
/// Reserved bits: 31:24, 49:47, 55, 62.
const RESERVED_MASK: u64 = 0xFF << 24 | 0b111 << 47 | 1 << 55 | 1 << 62;
/// Last element in field (37:34) and last field in sequence (46:38): must be zero on input.
const SEQUENCE_MASK: u64 = 0x1FFF << 34;
/// Context (54:52): forced to SYS.
pub(crate) const CONTEXT_MASK: u64 = 0b111 << 52;

/// One readable field: its canonical id and value (already masked to its element size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Field {
    pub(crate) id: FieldId,
    pub(crate) value: u64,
}

/// CPUID leaves the placeholder TD configuration lists, `(leaf, subleaf)`.
pub(crate) const CPUID_CONFIG: [(u32, u32); 4] =
    [(0x1, u32::MAX), (0x7, 0), (0xD, 1), (0x8000_0008, u32::MAX)];

/// The global metadata table, sorted by field identity.
#[derive(Clone, Debug)]
pub(crate) struct Metadata {
    pub(crate) fields: Vec<Field>,
}

fn mask(value: u64, id: FieldId) -> u64 {
    match id.element_bytes() {
        8 => value,
        n => value & ((1u64 << (8 * n)) - 1),
    }
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

    pub(crate) fn next_id(&self, index: usize) -> u64 {
        self.fields
            .get(index + 1)
            .map_or(FIELD_ID_NA, |f| f.id.raw())
    }
}
