//! Bring-up on every module profile: it reads only what the module has (TDH.SYS.INFO on TDX
//! 1.0), names any field a module lacks, plans what that version accepts, gates every feature on
//! its bit, runs TDH.SYS.CONFIG v1 with add-on features and the extensions' two-phase sizing,
//! and reports every stage's SEAMCALLs.

use std::sync::Mutex;

use tdmr::accounting::TdxMemoryUsage;
use tdmr::addr::PhysRange;
use tdmr::init::{
    Bringup, Cpus, HostMemory, HostMemoryError, InitErrorKind, MetadataError, MetadataSource, Stage,
};
use tdmr::layout::{HolePolicy, Planner};
use tdmr::memmap::{ParsedLog, parse_kernel_log};
use tdmr::mock::{CallLogMode, MockModule, ModuleProfile, Platform};
use tdmr::seamcall::Seamcall;
use tdmr::tdx::leaf::{self, Leaf};
use tdmr::tdx::metadata::{self as md, FieldId};
use tdmr::tdx::status::*;
use tdmr::tdx::validate::{self, ConfigEnv};
use tdmr::tdx::{Output, Regs};

fn fixtures() -> Vec<(String, ParsedLog)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let mut v: Vec<(String, ParsedLog)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        // The 12 TiB map costs 3 million TDMR.INIT calls per bring-up: covered elsewhere.
        .filter(|p| !p.ends_with("hp-16s-12t.log"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                parse_kernel_log(&text).unwrap(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn module(input: &ParsedLog, profile: &ModuleProfile, mode: CallLogMode) -> MockModule {
    let p = Platform::new(input.cmrs().listed())
        .unwrap()
        .with_topology(4, 2)
        .unwrap()
        .with_module(profile.clone());
    MockModule::with_log(p, mode)
}

/// The fields a call log shows TDH.SYS.RD was asked for.
fn fields_read(m: &MockModule) -> Vec<FieldId> {
    m.log()
        .calls()
        .iter()
        .filter(|c| c.leaf == leaf::TDH_SYS_RD)
        .map(|c| FieldId::new(c.inputs.rdx))
        .collect()
}

#[test]
fn every_profile_comes_up_on_every_fixture_with_a_plan_its_version_accepts() {
    let mut brought_up = 0;
    for (name, input) in fixtures() {
        for p in ModuleProfile::releases() {
            let m = module(&input, &p, CallLogMode::All);
            let keyids = m.platform().private_keyids();
            let done = match Bringup::new(&m, &m, &m, keyids).run(input.memory()) {
                Ok(d) => d,
                // Maps no layout fits fail at planning on every module alike.
                Err(e) if e.stage == Stage::Plan => continue,
                Err(e) => panic!("{name} on {p}: {e}"),
            };
            brought_up += 1;
            assert_eq!(done.info.version, p.version(), "{name} on {p}");
            // The plan passes the checks of exactly that version.
            let env = ConfigEnv::from_limits(done.plan.limits(), input.cmrs().listed())
                .with_module_version(p.version());
            validate::sys_config(&done.plan.tdmr_infos().unwrap(), &env)
                .unwrap_or_else(|s| panic!("{name} on {p}: {s}"));
            // Per-stage counts add up to the total.
            let mut sum = tdmr::seamcall::SeamcallCounts::new();
            for (_, c) in &done.seamcalls_by_stage {
                sum.merge(c);
            }
            assert_eq!(sum, done.seamcalls, "{name} on {p}");
            // TDX 1.0: one probing TDH.SYS.RD, then TDH.SYS.INFO.
            let rd = done.seamcalls_at(Stage::Metadata).get(leaf::TDH_SYS_RD);
            if p.implements_sys_rd() {
                assert_eq!(done.info.source, MetadataSource::SysRd);
                assert_eq!(done.seamcalls.get(leaf::TDH_SYS_INFO), 0);
            } else {
                assert_eq!(done.info.source, MetadataSource::SysInfo);
                assert_eq!((rd, done.seamcalls.get(leaf::TDH_SYS_INFO)), (1, 1));
            }
            // Only fields the module has were read: no read answered FIELD_ID_INCORRECT.
            for c in m.log().calls() {
                assert_ne!(
                    c.output.status.raw(),
                    TDX_METADATA_FIELD_ID_INCORRECT,
                    "{name} on {p}: {c}"
                );
            }
            let read = fields_read(&m);
            assert!(!read.contains(&md::MODULE_HANDOFF_VERSION));
            assert!(
                !read
                    .iter()
                    .any(|f| f.name() == Some("PAMT_PAGE_BITMAP_ENTRY_BITS"))
            );
            // Extensions on `next` only: 12 800 pages, beside the PAMT in the accounts.
            let ext = p.has_extensions();
            assert_eq!(read.contains(&md::EXT_REQUIRED), ext, "{name} on {p}");
            assert_eq!(done.extension_pages(), u64::from(p.extension_pages()));
            assert_eq!(m.extension_pages(), done.extension_pages());
            assert_eq!(m.extensions_initialized(), ext);
            let x = done.seamcalls_at(Stage::Extensions);
            if ext {
                assert_eq!(x.get(leaf::TDH_EXT_MEM_ADD), 12_800u64.div_ceil(64));
                assert_eq!(x.get(leaf::TDH_EXT_INIT), 12_800u64.div_ceil(4096));
            } else {
                assert_eq!(x.total(), 0);
            }
            let usage = TdxMemoryUsage::of_initialized(&done);
            assert_eq!(usage.total_bytes(), done.memory_budget());
            assert_eq!(
                done.memory_budget(),
                done.pamt_bytes() + 4096 * u64::from(p.extension_pages())
            );
        }
    }
    // 6 fixtures × 9 profiles, less what no layout fits.
    assert!(brought_up >= 40, "{brought_up}");
}

#[test]
fn tdx_1_0_gets_a_layout_it_accepts_where_1_5_s_would_be_refused() {
    let text = include_str!("fixtures/emr-4s-256g.log");
    let input = parse_kernel_log(text).unwrap();
    let p = ModuleProfile::named("1.0").unwrap();
    let planner = Planner::new().with_holes(HolePolicy::Memory);
    let m = module(&input, &p, CallLogMode::Counts);
    let done = Bringup::new(&m, &m, &m, m.platform().private_keyids())
        .with_planner(planner)
        .run(input.memory())
        .unwrap();
    // 1.5's plan for the same map: TDX 1.0 refuses it at TDH.SYS.CONFIG.
    let plan_1_5 = planner.plan(input.memory(), input.cmrs()).unwrap();
    assert_ne!(plan_1_5.tdmrs(), done.plan.tdmrs());
    let env = ConfigEnv::from_limits(plan_1_5.limits(), input.cmrs().listed())
        .with_module_version(p.version());
    let refused = validate::sys_config(&plan_1_5.tdmr_infos().unwrap(), &env).unwrap_err();
    assert_eq!(refused.code(), TDX_TDMR_OUTSIDE_CMRS);
    // And the mock refuses it the same way.
    let m = module(&input, &p, CallLogMode::Counts);
    let on = |lp: u32, l: Leaf, r: Regs| {
        let mut out = 0;
        m.run_on(lp, &mut || out = m.seamcall(l, &r).status.raw())
            .unwrap();
        out
    };
    assert_eq!(on(0, leaf::TDH_SYS_INIT, Regs::ZERO), TDX_SUCCESS);
    for lp in 0..4 {
        assert_eq!(on(lp, leaf::TDH_SYS_LP_INIT, Regs::ZERO), TDX_SUCCESS);
    }
    let infos = plan_1_5.tdmr_infos().unwrap();
    let pas: Vec<u64> = infos
        .iter()
        .map(|t| m.place(&t.to_bytes(), 512).unwrap())
        .collect();
    let array = tdmr::tdx::abi::TdmrInfoPaArray::new(&pas).unwrap();
    let regs = Regs {
        rcx: m.place(&array.to_bytes(), 512).unwrap(),
        rdx: infos.len() as u64,
        r8: 32,
        ..Regs::ZERO
    };
    assert_eq!(on(0, leaf::TDH_SYS_CONFIG, regs), refused.raw());
}

/// The fields bring-up reads on `2.0.08` (with Dynamic PAMT) and on `next` after CONFIG.
fn fields_the_driver_reads() -> Vec<(FieldId, &'static str, bool)> {
    let mut v: Vec<(FieldId, &str, bool)> = [
        md::MAJOR_VERSION,
        md::MINOR_VERSION,
        md::UPDATE_VERSION,
        md::TDX_FEATURES0,
        md::NUM_PKGS,
        md::MAX_TDMRS,
        md::MAX_RESERVED_PER_TDMR,
        md::PAMT_4K_ENTRY_SIZE,
        md::PAMT_2M_ENTRY_SIZE,
        md::PAMT_1G_ENTRY_SIZE,
        md::PAMT_PAGE_BITMAP_ENTRY_BITS,
        md::NUM_CMRS,
        md::cmr_base(0).unwrap(),
        md::cmr_size(0).unwrap(),
    ]
    .into_iter()
    .map(|f| (f, "2.0.08", true))
    .collect();
    v.push((md::EXT_REQUIRED, "next", false));
    v.push((md::EXT_MEMORY_POOL_REQUIRED_PAGES, "next", false));
    v
}

#[test]
fn a_module_lacking_a_field_the_driver_reads_fails_naming_the_field() {
    let input = parse_kernel_log(include_str!("fixtures/spr-512g.log")).unwrap();
    let mut checked = 0;
    for (field, base, dpamt) in fields_the_driver_reads() {
        let p = ModuleProfile::named(base).unwrap().without_field(field);
        let m = module(&input, &p, CallLogMode::Counts);
        let err = Bringup::new(&m, &m, &m, m.platform().private_keyids())
            .with_dynamic_pamt(dpamt)
            .run(input.memory())
            .unwrap_err();
        let stage = if base == "next" {
            Stage::Extensions
        } else {
            Stage::Metadata
        };
        assert_eq!(err.stage, stage, "{field}");
        match err.kind {
            InitErrorKind::Metadata(MetadataError::FieldMissing { field: f, status }) => {
                assert_eq!(f.raw() & 0xFF_FFFF, field.raw() & 0xFF_FFFF, "{field}");
                assert_eq!(status.raw(), 0xC000_0C00_0000_0000);
            }
            ref other => panic!("{field}: {other}"),
        }
        let msg = err.to_string();
        let name = field.name().unwrap();
        assert!(msg.contains(name), "{msg}");
        checked += 1;
    }
    assert_eq!(checked, 16);
    // A field the driver never reads may be missing: the module comes up.
    for lacks in [
        "MAX_VCPUS_PER_TD",
        "TDR_BASE_SIZE",
        "MODULE_HANDOFF_VERSION",
    ] {
        let p = ModuleProfile::named(&format!("2.0.08,lacks={lacks}")).unwrap();
        let m = module(&input, &p, CallLogMode::Counts);
        Bringup::new(&m, &m, &m, m.platform().private_keyids())
            .run(input.memory())
            .unwrap_or_else(|e| panic!("{lacks}: {e}"));
    }
}

#[test]
fn every_feature_is_gated_on_its_bit() {
    let input = parse_kernel_log(include_str!("fixtures/spr-512g.log")).unwrap();
    let bringup = |profile: &str, dpamt: bool, add_ons: u64| {
        let m = module(&input, &profile.parse().unwrap(), CallLogMode::All);
        let r = Bringup::new(&m, &m, &m, m.platform().private_keyids())
            .with_dynamic_pamt(dpamt)
            .with_add_on_features(add_ons)
            .run(input.memory());
        (m, r)
    };
    // Dynamic PAMT: on 2.0.04 and 2.0.08, not on 2.0.05; its bitmap field read only then.
    for (profile, ok) in [("2.0.04", true), ("2.0.05", false), ("2.0.08", true)] {
        let (m, r) = bringup(profile, true, 0);
        match r {
            Ok(done) => {
                assert!(ok && done.dynamic_pamt && m.dynamic_pamt(), "{profile}");
                assert!(fields_read(&m).contains(&FieldId::new(0x9100_0001_0000_0013)));
            }
            Err(e) => {
                assert!(!ok, "{profile}: {e}");
                assert!(matches!(
                    e.kind,
                    InitErrorKind::Metadata(MetadataError::DynamicPamtUnsupported { .. })
                ));
                assert_eq!(e.stage, Stage::Metadata);
            }
        }
    }
    // Add-on features: TDH.SYS.CONFIG v1 with R9 where the module has them.
    let (m, r) = bringup("next,add_ons=0x40", false, 0x40);
    let done = r.unwrap();
    assert_eq!(done.add_on_features, 0x40);
    assert_eq!(m.add_on_features(), 0x40);
    let config: Vec<_> = m
        .log()
        .calls()
        .into_iter()
        .filter(|c| c.leaf.number() == 45)
        .collect();
    assert_eq!(config.len(), 1);
    assert_eq!((config[0].leaf.version(), config[0].inputs.r9), (1, 0x40));
    // Without add-ons, version 0.
    let (m, r) = bringup("next", false, 0);
    r.unwrap();
    assert!(
        m.log()
            .calls()
            .iter()
            .any(|c| c.leaf == leaf::TDH_SYS_CONFIG && c.leaf.version() == 0)
    );
    // An add-on the module lacks is refused before anything is configured.
    let (m, r) = bringup("next", false, 0x40);
    let e = r.unwrap_err();
    assert_eq!(e.stage, Stage::Metadata);
    assert!(matches!(
        e.kind,
        InitErrorKind::Metadata(MetadataError::AddOnUnsupported {
            requested: 0x40,
            ..
        })
    ));
    assert_eq!(m.log().counts().get(leaf::TDH_SYS_CONFIG), 0);
}

/// A host memory that has no extension pages: the default of the trait.
struct NoExtensionMemory<'m>(&'m MockModule);

// SAFETY: forwards to the mock's host memory, whose promises hold; claims no extension pages.
unsafe impl HostMemory for NoExtensionMemory<'_> {
    fn place(&self, bytes: &[u8], align: u64) -> Result<u64, HostMemoryError> {
        self.0.place(bytes, align)
    }
    fn release(&self, pa: u64, len: usize) {
        self.0.release(pa, len)
    }
    fn claim_pamt(&self, range: PhysRange) -> Result<(), HostMemoryError> {
        self.0.claim_pamt(range)
    }
    fn unclaim_pamt(&self, range: PhysRange) {
        self.0.unclaim_pamt(range)
    }
}

/// Answers chosen calls of a leaf with a status instead of the module.
struct Fail<'m> {
    inner: &'m MockModule,
    leaf: Leaf,
    from: u64,
    times: u64,
    status: u64,
    seen: Mutex<u64>,
}

impl Seamcall for Fail<'_> {
    fn seamcall(&self, l: Leaf, regs: &Regs) -> Output {
        if l == self.leaf {
            let mut n = self.seen.lock().unwrap();
            *n += 1;
            if *n > self.from && *n <= self.from + self.times {
                return Output::new(Status::new(self.status), *regs);
            }
        }
        self.inner.seamcall(l, regs)
    }
}

#[test]
fn extension_faults_recover_or_stop_with_the_stage_and_raw_status() {
    let input = parse_kernel_log(include_str!("fixtures/spr-512g.log")).unwrap();
    let next = ModuleProfile::named("next").unwrap();
    let run = |l: Leaf, from: u64, times: u64, status: u64| {
        let m = module(&input, &next, CallLogMode::Counts);
        let f = Fail {
            inner: &m,
            leaf: l,
            from,
            times,
            status,
            seen: Mutex::new(0),
        };
        let r = Bringup::new(&f, &m, &m, m.platform().private_keyids()).run(input.memory());
        (r, m.extension_pages(), m.extensions_initialized())
    };
    // Busy: retried.
    let (r, pages, init) = run(leaf::TDH_EXT_MEM_ADD, 3, 5, TDX_SYS_BUSY);
    let done = r.unwrap();
    assert!(init && pages == 12_800);
    assert_eq!(
        done.seamcalls_at(Stage::Extensions)
            .get(leaf::TDH_EXT_MEM_ADD),
        200 + 5
    );
    // Refused: stop at the extensions with the raw status; the memory stays the module's.
    let (r, pages, init) = run(leaf::TDH_EXT_MEM_ADD, 10, 1, TDX_PAGE_NOT_FREE | 1);
    let e = r.unwrap_err();
    assert_eq!(e.stage, Stage::Extensions);
    match &e.kind {
        InitErrorKind::Seamcall(s) => {
            assert_eq!(s.status.raw(), TDX_PAGE_NOT_FREE | 1);
            assert_eq!(s.leaf, leaf::TDH_EXT_MEM_ADD);
        }
        other => panic!("{other}"),
    }
    let t = e.teardown.unwrap();
    let held: u64 = t.extension_memory.iter().map(|r| r.size() / 4096).sum();
    assert_eq!(held, 12_800);
    assert!(t.reset_required);
    assert!(!init && pages > 0 && pages < 12_800);
    // EXT.INIT interrupted for ever: bounded, reported.
    let (r, _, _) = run(
        leaf::TDH_EXT_INIT,
        0,
        u64::MAX / 2,
        TDX_INTERRUPTED_RESUMABLE,
    );
    let e = r.unwrap_err();
    assert!(matches!(
        e.kind,
        InitErrorKind::ResumeStalled {
            leaf: leaf::TDH_EXT_INIT,
            calls: 12_801
        }
    ));
    // A host without extension memory.
    let m = module(&input, &next, CallLogMode::Counts);
    let host = NoExtensionMemory(&m);
    let e = Bringup::new(&m, &m, &host, m.platform().private_keyids())
        .run(input.memory())
        .unwrap_err();
    assert_eq!(e.stage, Stage::Extensions);
    assert_eq!(
        e.kind,
        InitErrorKind::HostMemory(HostMemoryError::NoExtensionMemory { pages: 12_800 })
    );
    // TDX 1.0 through a host that cannot read its buffers back: stops at the metadata.
    let m = module(
        &input,
        &ModuleProfile::named("1.0").unwrap(),
        CallLogMode::Counts,
    );
    let host = NoExtensionMemory(&m);
    let e = Bringup::new(&m, &m, &host, m.platform().private_keyids())
        .run(input.memory())
        .unwrap_err();
    assert_eq!(e.stage, Stage::Metadata);
    assert!(matches!(
        e.kind,
        InitErrorKind::HostMemory(HostMemoryError::Unreadable { len: 1024, .. })
    ));
}
