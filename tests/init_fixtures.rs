//! The bring-up driver against the mock module on every fixture, with expectations taken from
//! what Linux printed on those machines (PAMT totals) and from the TDX module's rules (4 MiB of
//! TDMR per TDH.SYS.TDMR.INIT call, one TDH.SYS.KEY.CONFIG per package, ...).

use tdmr::init::{Bringup, InitErrorKind, Initialized, Stage};
use tdmr::layout::{HolePolicy, PlanError, Planner, Strategy};
use tdmr::memmap::parse_kernel_log;
use tdmr::mock::{CallLogMode, LogEntry, MockModule, Platform, SysState};
use tdmr::sysinfo::PrivateKeyIds;
use tdmr::tdx::leaf;

const GIB: u64 = 1 << 30;

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn keyids(p: &Platform) -> PrivateKeyIds {
    p.private_keyids()
}

/// Brings up a fresh mock (`lps` LPs in `packages` packages) for a fixture.
fn bring_up(
    name: &str,
    lps: u32,
    packages: u32,
    holes: Option<HolePolicy>,
) -> (MockModule, Result<Initialized, tdmr::init::InitError>) {
    bring_up_logged(name, lps, packages, holes, CallLogMode::Counts)
}

fn bring_up_logged(
    name: &str,
    lps: u32,
    packages: u32,
    holes: Option<HolePolicy>,
    log: CallLogMode,
) -> (MockModule, Result<Initialized, tdmr::init::InitError>) {
    let input = parse_kernel_log(&fixture(name)).unwrap();
    let platform = Platform::new(input.cmrs().listed())
        .unwrap()
        .with_topology(lps, packages)
        .unwrap();
    let k = keyids(&platform);
    let module = MockModule::with_log(platform, log);
    // These bring-ups reproduce what Linux did on the machines, so they plan as Linux does;
    // `optimal_strategy_brings_up_every_fixture` covers the default strategy.
    let mut planner = Planner::new().with_strategy(Strategy::Linux);
    if let Some(h) = holes {
        planner = planner.with_holes(h);
    }
    let r = Bringup::new(&module, &module, &module, k)
        .with_planner(planner)
        .run(input.memory());
    (module, r)
}

/// Checks a successful bring-up against the module's rules and Linux's published numbers.
fn check_initialized(
    name: &str,
    lps: u32,
    packages: u32,
    pamt_kb: u64,
    covered_gib: u64,
    tdmrs: usize,
) {
    let (module, r) = bring_up(name, lps, packages, None);
    let done = r.unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(done.pamt_bytes() / 1024, pamt_kb, "{name}: PAMT KB");
    assert_eq!(done.plan.tdmrs().len(), tdmrs, "{name}: TDMRs");
    assert_eq!(
        done.plan.covered_bytes(),
        covered_gib * GIB,
        "{name}: covered"
    );

    // SEAMCALLs: one SYS.INIT, one LP.INIT per LP, one CONFIG, one KEY.CONFIG per package,
    // 256 TDMR.INIT per GiB (4 MiB each).
    let c = &done.seamcalls;
    assert_eq!(c.get(leaf::TDH_SYS_INIT), 1);
    assert_eq!(c.get(leaf::TDH_SYS_LP_INIT), u64::from(lps));
    assert_eq!(c.get(leaf::TDH_SYS_CONFIG), 1);
    assert_eq!(c.get(leaf::TDH_SYS_KEY_CONFIG), u64::from(packages));
    assert_eq!(c.get(leaf::TDH_SYS_TDMR_INIT), covered_gib * 256);
    // The driver's counts are what the module saw.
    assert_eq!(*module.log().counts(), *c);

    // The module ends ready, with every LP, package and TDMR done.
    assert_eq!(module.state(), SysState::SysReady);
    assert!((0..lps).all(|lp| module.lp_initialized(lp)));
    assert_eq!(
        module.packages_configured(),
        (0..packages).collect::<Vec<_>>()
    );
    assert_eq!(module.global_keyid(), Some(32));
    let progress = module.tdmrs();
    assert_eq!(progress.len(), tdmrs);
    for (p, t) in progress.iter().zip(done.plan.tdmrs()) {
        assert_eq!((p.base, p.size), (t.base(), t.size()));
        assert!(p.is_done(), "{name}: TDMR at {:#x} not initialized", p.base);
    }
}

#[test]
fn spr_1t_matches_linux() {
    // dmesg: "4202516 KB allocated for PAMT"; TDMRs 2 + 254 + 3 * 256 GiB.
    check_initialized("spr-1t.log", 8, 2, 4_202_516, 1024, 5);
}

#[test]
fn host_2t_matches_linux() {
    // dmesg: "8396820 KB allocated for PAMT"; 2 + 1022 + 1022 GiB.
    check_initialized("host-2t.log", 4, 2, 8_396_820, 2046, 3);
}

#[test]
fn spr_tdx10_island_above_1t() {
    // Linux's algorithm on these CMRs: [0,2G) [4G,0x7000000000) [0x8000000000,0xf000000000)
    // [0x10000000000,0x10080000000) = 896 GiB, 3677208 KB.
    check_initialized("spr-tdx10.log", 2, 1, 3_677_208, 896, 4);
}

#[test]
fn icx_2s_256g() {
    check_initialized("icx-2s-256g.log", 4, 2, 1_050_632, 256, 2);
}

#[test]
fn emr_4s_fails_like_linux_then_boots_with_cmr_holes() {
    // Linux mainline: "TDMR [0x0, 0x80000000): reserved areas exhausted." before any CONFIG.
    let (module, r) = bring_up("emr-4s-256g.log", 8, 4, None);
    let e = r.unwrap_err();
    assert_eq!(e.stage, Stage::Plan);
    assert!(matches!(
        e.kind,
        InitErrorKind::Plan(PlanError::ReservedAreasExhausted { tdmr, limit: 16 })
            if tdmr.start() == 0 && tdmr.end() == 0x8000_0000
    ));
    assert_eq!(e.teardown, None);
    assert_eq!(e.seamcalls.get(leaf::TDH_SYS_CONFIG), 0);
    assert_eq!(module.state(), SysState::SysinitDone);

    // Distribution kernels with CMR-based holes boot it: "1050644 KB allocated for PAMT".
    let (module, r) = bring_up("emr-4s-256g.log", 8, 4, Some(HolePolicy::Cmr));
    let done = r.unwrap();
    assert_eq!(done.pamt_bytes() / 1024, 1_050_644);
    assert_eq!(done.seamcalls.get(leaf::TDH_SYS_KEY_CONFIG), 4);
    assert_eq!(module.state(), SysState::SysReady);
}

#[test]
fn order_of_steps_and_cpus() {
    let (module, r) = bring_up_logged("icx-2s-256g.log", 6, 3, None, CallLogMode::All);
    let done = r.unwrap();
    let entries = module.log().entries();
    let calls = module.log().calls();
    // SYS.INIT first, then LP.INIT on every LP in order, each on its own LP.
    assert_eq!(calls[0].leaf, leaf::TDH_SYS_INIT);
    for lp in 0..6 {
        let c = &calls[1 + lp as usize];
        assert_eq!((c.leaf, c.lp), (leaf::TDH_SYS_LP_INIT, lp));
    }
    // CONFIG, then a cache flush, then KEY.CONFIG on one LP of each package, then TDMR.INIT.
    let config = entries
        .iter()
        .position(|e| matches!(e, LogEntry::Call(c) if c.leaf == leaf::TDH_SYS_CONFIG))
        .unwrap();
    assert_eq!(entries[config + 1], LogEntry::CacheFlush);
    let keys: Vec<u32> = calls
        .iter()
        .filter(|c| c.leaf == leaf::TDH_SYS_KEY_CONFIG)
        .map(|c| module.platform().package_of(c.lp).unwrap())
        .collect();
    assert_eq!(keys, [0, 1, 2]);
    let first_key = entries
        .iter()
        .position(|e| matches!(e, LogEntry::Call(c) if c.leaf == leaf::TDH_SYS_KEY_CONFIG))
        .unwrap();
    assert!(first_key > config + 1);
    // TDMR.INIT on each TDMR in turn (no `parallel` here, or interleaved with it): the k-th
    // call on a TDMR returns RDX = base + (k + 1) * 4 MiB rounded down to 1 GiB.
    for t in done.plan.tdmrs() {
        let rdx: Vec<u64> = calls
            .iter()
            .filter(|c| c.leaf == leaf::TDH_SYS_TDMR_INIT && c.inputs.rcx == t.base())
            .map(|c| {
                assert!(c.output.status.is_success());
                c.output.regs.rdx
            })
            .collect();
        assert_eq!(rdx.len() as u64, t.size() / (4 << 20));
        for (k, r) in rdx.iter().enumerate() {
            let next = t.base() + (k as u64 + 1) * (4 << 20);
            assert_eq!(*r, next & !(GIB - 1), "call {k} on {:#x}", t.base());
        }
        assert_eq!(*rdx.last().unwrap(), t.end());
    }
    // CONFIG's inputs: R8 = global KeyID, RDX = TDMR count, RCX = a 512-aligned PA array.
    let cfg = calls
        .iter()
        .find(|c| c.leaf == leaf::TDH_SYS_CONFIG)
        .unwrap();
    assert_eq!((cfg.inputs.r8, cfg.inputs.rdx), (32, 2));
    assert_eq!(cfg.inputs.rcx % 512, 0);
}

#[test]
fn same_input_same_output() {
    let (_, a) = bring_up("spr-tdx10.log", 2, 2, None);
    let (_, b) = bring_up("spr-tdx10.log", 2, 2, None);
    assert_eq!(a.unwrap(), b.unwrap());
}

#[test]
fn optimal_strategy_brings_up_every_fixture() {
    for name in [
        "spr-1t.log",
        "host-2t.log",
        "spr-tdx10.log",
        "icx-2s-256g.log",
        "emr-4s-256g.log",
    ] {
        let input = parse_kernel_log(&fixture(name)).unwrap();
        let platform = Platform::new(input.cmrs().listed())
            .unwrap()
            .with_topology(4, 2)
            .unwrap();
        let k = keyids(&platform);
        let module = MockModule::new(platform);
        let done = Bringup::new(&module, &module, &module, k)
            .with_planner(Planner::new().with_strategy(Strategy::Optimal))
            .run(input.memory())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(done.plan.strategy(), Strategy::Optimal);
        assert_eq!(
            done.seamcalls.get(leaf::TDH_SYS_TDMR_INIT),
            done.plan.covered_bytes() / (4 << 20),
            "{name}"
        );
        assert_eq!(module.state(), SysState::SysReady, "{name}");
        assert!(module.tdmrs().iter().all(|t| t.is_done()), "{name}");
    }
}
