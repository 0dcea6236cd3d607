//! The mock's module profiles: each release's TDX_FEATURES0 as published, the metadata fields it
//! has (a read of any other answers `TDX_METADATA_FIELD_ID_INCORRECT`), its limits, the leaves
//! and leaf versions it accepts; TDX 1.0 without TDH.SYS.RD; names by release and by line.

use tdmr::init::Cpus;
use tdmr::memmap::Cmr;
use tdmr::mock::{MockModule, ModuleProfile, Platform, SysState};
use tdmr::seamcall::Seamcall;
use tdmr::tdx::leaf::{self, Leaf};
use tdmr::tdx::metadata::{self as md, FIELD_ID_NA, FieldId, ModuleVersion, features0};
use tdmr::tdx::status::*;
use tdmr::tdx::{Output, Regs};

const G: u64 = 1 << 30;

fn cmrs() -> [Cmr; 2] {
    [Cmr::new(0x10_0000, 0x7ff0_0000), Cmr::new(4 * G, 4 * G)]
}

fn module(profile: ModuleProfile) -> MockModule {
    MockModule::new(
        Platform::new(&cmrs())
            .unwrap()
            .with_topology(2, 1)
            .unwrap()
            .with_module(profile),
    )
}

fn on(m: &MockModule, lp: u32, l: Leaf, regs: Regs) -> Output {
    let mut out = None;
    m.run_on(lp, &mut || out = Some(m.seamcall(l, &regs)))
        .unwrap();
    out.unwrap()
}

fn raw(m: &MockModule, lp: u32, l: Leaf, regs: Regs) -> u64 {
    on(m, lp, l, regs).status.raw()
}

fn rd(m: &MockModule, id: FieldId) -> Output {
    on(
        m,
        0,
        leaf::TDH_SYS_RD,
        Regs {
            rdx: id.raw(),
            ..Regs::ZERO
        },
    )
}

fn lp_initialized(profile: ModuleProfile) -> MockModule {
    let m = module(profile);
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_INIT, Regs::ZERO), TDX_SUCCESS);
    for lp in 0..2 {
        assert_eq!(raw(&m, lp, leaf::TDH_SYS_LP_INIT, Regs::ZERO), TDX_SUCCESS);
    }
    m
}

/// Every field id the crate names, and one element of each array.
fn all_fields() -> Vec<FieldId> {
    let mut v: Vec<FieldId> = md::NAMED.iter().map(|(_, id)| *id).collect();
    v.extend([
        md::cmr_base(31).unwrap(),
        md::cmr_size(0).unwrap(),
        md::cpuid_config_leaf(0).unwrap(),
        md::cpuid_config_value(0, 1).unwrap(),
    ]);
    v
}

#[test]
fn releases_report_features0_as_published() {
    let f = |name: &str| ModuleProfile::named(name).unwrap().features0();
    assert_eq!(f("2.0.04"), 0x12AF1F0FBF);
    assert_eq!(f("2.0.05"), 0x226F3F0FBF);
    assert_eq!(f("2.0.08"), 0x32A71F0FBF);
    for u in ["01", "06", "24", "25"] {
        assert_eq!(f(&format!("1.5.{u}")), tdmr::mock::FEATURES0_TDX_1_5);
    }
    assert_eq!(f("1.0"), 0);
    // Only 2.0.04 and 2.0.08 have Dynamic PAMT; no release has extensions, update
    // compatibility or TDX Connect; `next` has the first two.
    let mut checked = 0;
    for p in ModuleProfile::releases() {
        let bits = p.features0();
        let dpamt = ["2.0.04", "2.0.08", "next"].contains(&p.to_string().as_str());
        assert_eq!(bits & features0::DYNAMIC_PAMT != 0, dpamt, "{p}");
        let next = !p.is_release();
        assert_eq!(bits & features0::MODULE_EXTENSIONS != 0, next, "{p}");
        assert_eq!(bits & features0::UPDATE_COMPATIBILITY != 0, next, "{p}");
        assert_eq!(bits & features0::TDX_CONNECT, 0, "{p}");
        // Every shipped module: 64 TDMRs, 16 reserved areas, 16-byte entries.
        let l = p.limits();
        assert_eq!((l.max_tdmrs(), l.max_reserved_per_tdmr()), (64, 16), "{p}");
        checked += 1;
    }
    assert_eq!(checked, 9);
    // Read through TDH.SYS.RD, the value is the same.
    for p in ModuleProfile::releases()
        .into_iter()
        .filter(|p| p.implements_sys_rd())
    {
        let m = lp_initialized(p.clone());
        assert_eq!(rd(&m, md::TDX_FEATURES0).regs.r8, p.features0(), "{p}");
        let v = p.version();
        let read = |id| rd(&m, id).regs.r8 as u16;
        assert_eq!(
            ModuleVersion::new(
                read(md::MAJOR_VERSION),
                read(md::MINOR_VERSION),
                read(md::UPDATE_VERSION)
            ),
            v
        );
    }
}

#[test]
fn names_pick_the_release_or_the_newest_of_the_line() {
    let v = |n: &str| ModuleProfile::named(n).unwrap().version();
    assert_eq!(v("1.5"), ModuleVersion::new(1, 5, 25));
    assert_eq!(v("1.5.06"), ModuleVersion::new(1, 5, 6));
    assert_eq!(v("1.5.6"), ModuleVersion::new(1, 5, 6));
    assert_eq!(v("2.0"), ModuleVersion::new(2, 0, 8));
    assert_eq!(v("1.0"), ModuleVersion::new(1, 0, 0));
    assert_eq!(v("next"), ModuleVersion::new(2, 1, 0));
    assert_eq!(v("next,update=3"), ModuleVersion::new(2, 1, 3));
    assert_eq!(ModuleProfile::named("2.0.08").unwrap().build(), 882);
    assert_eq!(
        ModuleProfile::named("2.0.08").unwrap().build_date(),
        0x0134_fed5
    );
    // The newest of each line is newer than every other of the line.
    for p in ModuleProfile::releases().iter().filter(|p| p.is_release()) {
        let line = format!("{}.{}", p.version().major, p.version().minor);
        assert!(v(&line) >= p.version(), "{line} vs {p}");
    }
    for bad in [
        "1.5.02",
        "1.6",
        "2",
        "",
        "next,lacks=NOPE",
        "1.5,max_tdmrs=0",
    ] {
        assert!(ModuleProfile::named(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_field_a_release_lacks_answers_field_id_incorrect() {
    // Per release: the fields it has and those it lacks, over every field the crate names.
    let mut lacking = 0;
    let mut present = 0;
    for p in ModuleProfile::releases()
        .into_iter()
        .filter(|p| p.implements_sys_rd())
    {
        let m = lp_initialized(p.clone());
        let dpamt = p.supports_dynamic_pamt();
        let ext = p.has_extensions();
        for id in all_fields() {
            let has = match id.name() {
                Some("MAX_VCPUS_PER_TD") => p.version() != ModuleVersion::new(1, 5, 1),
                Some("PAMT_PAGE_BITMAP_ENTRY_BITS" | "MIN_DYNAMIC_PAMT_NUM_HKID_BITS") => dpamt,
                Some("EXT_REQUIRED" | "EXT_MEMORY_POOL_REQUIRED_PAGES") => ext,
                Some("MODULE_HANDOFF_VERSION") => p.supports_update(),
                _ => true,
            };
            let out = rd(&m, id);
            if has {
                // The extension fields exist but are readable only after CONFIG.
                let expect = if ext && id.name().is_some_and(|n| n.starts_with("EXT_")) {
                    TDX_METADATA_FIELD_NOT_READABLE
                } else {
                    TDX_SUCCESS
                };
                assert_eq!(out.status.raw(), expect, "{p}: {id}");
                present += 1;
            } else {
                assert_eq!(out.status.raw(), 0xC000_0C00_0000_0000, "{p}: {id}");
                assert_eq!((out.regs.rdx, out.regs.r8), (FIELD_ID_NA, 0), "{p}: {id}");
                lacking += 1;
            }
        }
    }
    // 1.5.01 lacks MAX_VCPUS; 1.5.x and 2.0.05 lack the DPAMT and extension fields; ...
    assert!(lacking >= 20 && present >= 200, "{lacking} {present}");
}

#[test]
fn a_lacked_field_is_gone_from_rd_and_rdall() {
    for id in all_fields() {
        let p = ModuleProfile::named("2.0.08").unwrap().without_field(id);
        let m = lp_initialized(p);
        assert_eq!(
            rd(&m, id).status.raw(),
            TDX_METADATA_FIELD_ID_INCORRECT,
            "{id}"
        );
        // RDALL over the whole table never lists it.
        let mut next = FIELD_ID_NA;
        let mut seen = 0;
        loop {
            let out = on(
                &m,
                0,
                leaf::TDH_SYS_RDALL,
                Regs {
                    rdx: 0x30_0000,
                    r8: next,
                    ..Regs::ZERO
                },
            );
            assert_eq!(out.status.raw(), TDX_SUCCESS);
            let mut page = vec![0u8; 4096];
            m.read_phys(0x30_0000, &mut page).unwrap();
            let count = u16::from_le_bytes([page[2], page[3]]) as usize;
            for k in 0..count {
                let at = 8 + 16 * k;
                let got = u64::from_le_bytes(page[at..at + 8].try_into().unwrap());
                // Fields are named by class and field code.
                let key = |raw: u64| raw & (1 << 63 | 0x3F << 56 | 0xFF_FFFF);
                assert_ne!(key(got), key(id.raw()), "{id}");
                seen += 1;
            }
            next = out.regs.r8;
            if next == FIELD_ID_NA {
                break;
            }
        }
        assert!(seen > 90, "{id}: {seen}");
    }
}

#[test]
fn tdx_1_0_has_no_sys_rd_but_sys_info() {
    let m = lp_initialized(ModuleProfile::named("1.0").unwrap());
    // Before the module is ready the dispatcher does not let TDH.SYS.RD through (Linux's
    // failure on TDX 1.0: `SEAMCALL (0x22) failed: 0xc000050500000000`).
    for l in [leaf::TDH_SYS_RD, leaf::TDH_SYS_RDALL] {
        assert_eq!(
            raw(
                &m,
                0,
                l,
                Regs {
                    rdx: md::MAX_TDMRS.raw(),
                    ..Regs::ZERO
                }
            ),
            0xC000_0505_0000_0000
        );
    }
    let regs = Regs {
        rcx: 0x30_0000,
        rdx: 1024,
        r8: 0x30_1000,
        r9: 32,
        ..Regs::ZERO
    };
    let out = on(&m, 0, leaf::TDH_SYS_INFO, regs);
    assert_eq!((out.status.raw(), out.regs.r9), (TDX_SUCCESS, 32));
    let mut b = [0u8; 40];
    m.read_phys(0x30_0000, &mut b).unwrap();
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    assert_eq!((u16_at(16), u16_at(14)), (1, 0)); // major, minor
    assert_eq!(b[18], 0, "sys_rd: TDH.SYS.RD not available");
    assert_eq!((u16_at(32), u16_at(34), u16_at(36)), (64, 16, 16));
    // TDX 1.5 says it has TDH.SYS.RD.
    let m = lp_initialized(ModuleProfile::named("1.5").unwrap());
    assert_eq!(
        on(&m, 0, leaf::TDH_SYS_INFO, regs).status.raw(),
        TDX_SUCCESS
    );
    m.read_phys(0x30_0000, &mut b).unwrap();
    assert_eq!(b[18], 1);
    assert_eq!(u16::from_le_bytes([b[12], b[13]]), 812);
}

#[test]
fn leaves_and_versions_follow_the_profile() {
    let before_ready = |name: &str, l: Leaf| {
        let m = lp_initialized(ModuleProfile::named(name).unwrap());
        raw(&m, 0, l, Regs::ZERO)
    };
    // TDH.SYS.CONFIG v1 exists on `next` only: elsewhere the version is refused (RAX).
    for name in ["1.5", "2.0.04", "2.0.08"] {
        assert_eq!(
            before_ready(name, leaf::TDH_SYS_CONFIG.with_version(1)),
            TDX_OPERAND_INVALID,
            "{name}"
        );
    }
    // On `next`, v1 passes the dispatcher and fails CONFIG's own checks (RDX = 0 TDMRs).
    assert_eq!(
        before_ready("next", leaf::TDH_SYS_CONFIG.with_version(1)),
        TDX_OPERAND_INVALID | 2
    );
    assert_eq!(
        before_ready("next", leaf::TDH_SYS_CONFIG.with_version(2)),
        TDX_OPERAND_INVALID
    );
    // TDH.SYS.DISABLE: unknown on every release (before ready: not ready), done on `next` in
    // any state.
    for p in ModuleProfile::releases() {
        let m = lp_initialized(p.clone());
        let r = raw(&m, 0, leaf::TDH_SYS_DISABLE, Regs::ZERO);
        if p.is_release() {
            assert_eq!(r, TDX_SYS_NOT_READY, "{p}");
        } else {
            assert_eq!(r, TDX_SUCCESS, "{p}");
            assert_eq!(m.state(), SysState::Disabled);
        }
    }
    // TDH.EXT.* are unknown where bit 39 is clear, and not ready before SYS_READY anyway.
    assert_eq!(
        before_ready("2.0.08", leaf::TDH_EXT_INIT),
        TDX_SYS_NOT_READY
    );
    assert_eq!(before_ready("next", leaf::TDH_EXT_INIT), TDX_SYS_NOT_READY);
}

#[test]
fn extension_fields_are_readable_only_after_config() {
    let m = lp_initialized(ModuleProfile::named("next").unwrap());
    for id in [md::EXT_REQUIRED, md::EXT_MEMORY_POOL_REQUIRED_PAGES] {
        assert_eq!(rd(&m, id).status.raw(), 0xC000_0C02_0000_0000, "{id}");
    }
    let p = ModuleProfile::named("next,ext_pages=7").unwrap();
    assert_eq!(p.extension_pages(), 7);
    assert!(ModuleProfile::named("2.0.08,ext_pages=7").is_err());
}
