//! Every way bring-up can fail, reached: each `InitErrorKind` and `MetadataError` variant and
//! each `Stage`, from a host or a module that misbehaves in exactly that way (scripted
//! wrappers around the mock module that rewrite one answer, hosts whose CPUs or memory fail).

use std::collections::BTreeSet;
use std::sync::Mutex;

use tdmr::addr::PhysRange;
use tdmr::init::{
    Bringup, Cpu, CpuId, CpuUnavailable, Cpus, HostMemoryError, InitError, InitErrorKind,
    MetadataError, Stage,
};
use tdmr::layout::{Planner, Strategy};
use tdmr::memmap::{MemoryMap, MemoryRegion, ParsedLog, parse_kernel_log};
use tdmr::mock::{FEATURES0_TDX_1_5, MockModule, Platform};
use tdmr::seamcall::Seamcall;
use tdmr::sysinfo::{LimitsError, PrivateKeyIds, TdxLimits};
use tdmr::tdx::abi::AbiError;
use tdmr::tdx::leaf::{self, Leaf};
use tdmr::tdx::metadata as md;
use tdmr::tdx::status::{Status, TDX_OPERAND_INVALID, TDX_SUCCESS, TDX_TDMR_ALREADY_INITIALIZED};
use tdmr::tdx::{Output, Regs};

/// 2 GiB + 8 GiB of TDMRs.
const LOG: &str =
    "virt/tdx: CMR: [0x100000, 0x7f000000)\nvirt/tdx: CMR: [0x100000000, 0x300000000)\n";
const GIB: u64 = 1 << 30;

fn input() -> ParsedLog {
    parse_kernel_log(LOG).unwrap()
}

fn platform() -> Platform {
    Platform::new(input().cmrs().listed())
        .unwrap()
        .with_topology(4, 2)
        .unwrap()
}

/// The mock with one answer rewritten by `f(leaf, inputs, output)`.
struct Rewrite<'a, F> {
    module: &'a MockModule,
    f: F,
}

impl<F: Fn(Leaf, &Regs, Output) -> Output> Seamcall for Rewrite<'_, F> {
    fn seamcall(&self, leaf: Leaf, regs: &Regs) -> Output {
        (self.f)(leaf, regs, self.module.seamcall(leaf, regs))
    }
}

fn bring_up_with<F>(m: &MockModule, f: F) -> InitError
where
    F: Fn(Leaf, &Regs, Output) -> Output + Sync,
{
    let liar = Rewrite { module: m, f };
    Bringup::new(&liar, m, m, m.platform().private_keyids())
        .run(input().memory())
        .unwrap_err()
}

/// TDH.SYS.RD of `field` answers `value` instead.
fn metadata_lie(field: u64, value: u64) -> InitError {
    let m = MockModule::new(platform());
    bring_up_with(&m, move |l, i, mut o| {
        if l == leaf::TDH_SYS_RD && i.rdx == field {
            o.regs.r8 = value;
        }
        o
    })
}

/// Every variant a test below reached, checked at the end.
static REACHED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn reached(e: &InitError, stage: Stage, name: &str) {
    assert_eq!(e.stage, stage, "{e}");
    // Every error says what it is and where.
    assert!(e.to_string().contains(&stage.to_string()), "{e}");
    let mut r = REACHED.lock().unwrap();
    r.insert(name.to_string());
    r.insert(format!("{stage:?}"));
}

#[test]
fn a_failed_seamcall_keeps_leaf_cpu_and_raw_status() {
    let m = MockModule::new(platform());
    let e = bring_up_with(&m, |l, _, o| {
        if l == leaf::TDH_SYS_KEY_CONFIG {
            Output::new(Status::new(TDX_OPERAND_INVALID), o.regs)
        } else {
            o
        }
    });
    let InitErrorKind::Seamcall(s) = &e.kind else {
        panic!("{e}")
    };
    assert_eq!(
        (s.leaf, s.status.raw(), s.cpu),
        (leaf::TDH_SYS_KEY_CONFIG, TDX_OPERAND_INVALID, Some(0))
    );
    reached(&e, Stage::KeyConfig, "Seamcall");
    let e = bring_up_with(&m, |l, _, o| {
        if l == leaf::TDH_SYS_INIT {
            Output::new(Status::new(TDX_OPERAND_INVALID), o.regs)
        } else {
            o
        }
    });
    assert!(matches!(e.kind, InitErrorKind::Seamcall(_)));
    reached(&e, Stage::SysInit, "Seamcall");
}

/// The mock's CPUs as some other host presents them.
struct Host<'a> {
    module: &'a MockModule,
    list: Vec<Cpu>,
    /// `run_on` refuses this CPU.
    refuse: Option<CpuId>,
    /// `run_on` reports success without running the closure on this CPU.
    skip: Option<CpuId>,
}

impl Cpus for Host<'_> {
    fn cpus(&self) -> Vec<Cpu> {
        self.list.clone()
    }
    fn run_on(&self, cpu: CpuId, f: &mut dyn FnMut()) -> Result<(), CpuUnavailable> {
        if Some(cpu) == self.refuse {
            return Err(CpuUnavailable { cpu });
        }
        if Some(cpu) == self.skip {
            return Ok(());
        }
        self.module.run_on(cpu, f)
    }
    fn flush_caches(&self) {
        self.module.flush_caches()
    }
}

fn host(m: &MockModule) -> Host<'_> {
    Host {
        module: m,
        list: m.cpus(),
        refuse: None,
        skip: None,
    }
}

fn run_on_host(m: &MockModule, h: &Host<'_>) -> InitError {
    Bringup::new(m, h, m, m.platform().private_keyids())
        .run(input().memory())
        .unwrap_err()
}

#[test]
fn hosts_without_usable_cpus() {
    let m = MockModule::new(platform());
    let e = run_on_host(
        &m,
        &Host {
            list: Vec::new(),
            ..host(&m)
        },
    );
    assert_eq!(e.kind, InitErrorKind::NoCpus);
    reached(&e, Stage::Inputs, "NoCpus");

    let mut list = m.cpus();
    list.push(list[2]);
    let e = run_on_host(&m, &Host { list, ..host(&m) });
    assert_eq!(e.kind, InitErrorKind::DuplicateCpu { cpu: 2 });
    reached(&e, Stage::Inputs, "DuplicateCpu");

    let m = MockModule::new(platform());
    let e = run_on_host(
        &m,
        &Host {
            refuse: Some(3),
            ..host(&m)
        },
    );
    assert_eq!(e.kind, InitErrorKind::Cpu(CpuUnavailable { cpu: 3 }));
    reached(&e, Stage::LpInit, "Cpu");
    // The other CPUs did their LP.INIT.
    assert!((0..3).all(|lp| m.lp_initialized(lp)) && !m.lp_initialized(3));

    let m = MockModule::new(platform());
    let e = run_on_host(
        &m,
        &Host {
            skip: Some(0),
            ..host(&m)
        },
    );
    assert_eq!(e.kind, InitErrorKind::Cpu(CpuUnavailable { cpu: 0 }));
    reached(&e, Stage::SysInit, "Cpu (closure not run)");

    // Every CPU reported in package 0, the module knows 2 packages.
    let m = MockModule::new(platform());
    let list = m
        .cpus()
        .into_iter()
        .map(|c| Cpu { package: 0, ..c })
        .collect();
    let e = run_on_host(&m, &Host { list, ..host(&m) });
    assert_eq!(
        e.kind,
        InitErrorKind::PackagesWithoutCpu {
            module: 2,
            online: 1
        }
    );
    reached(&e, Stage::Metadata, "PackagesWithoutCpu");
}

#[test]
fn too_few_keyids() {
    let m = MockModule::new(platform());
    let e = Bringup::new(&m, &m, &m, PrivateKeyIds::new(32, 1).unwrap())
        .run(input().memory())
        .unwrap_err();
    assert_eq!(e.kind, InitErrorKind::TooFewKeyIds { count: 1 });
    reached(&e, Stage::Inputs, "TooFewKeyIds");
}

#[test]
fn every_metadata_error() {
    let m = MockModule::new(platform().with_features0(FEATURES0_TDX_1_5 & !(1 << 18)));
    let e = Bringup::new(&m, &m, &m, m.platform().private_keyids())
        .run(input().memory())
        .unwrap_err();
    assert!(
        matches!(e.kind, InitErrorKind::Metadata(MetadataError::NoRbpModMissing { features0 }) if features0 & 1 << 18 == 0)
    );
    reached(&e, Stage::Metadata, "NoRbpModMissing");

    let m = MockModule::new(platform());
    let e = Bringup::new(&m, &m, &m, m.platform().private_keyids())
        .with_dynamic_pamt(true)
        .run(input().memory())
        .unwrap_err();
    assert!(matches!(
        e.kind,
        InitErrorKind::Metadata(MetadataError::DynamicPamtUnsupported { .. })
    ));
    reached(&e, Stage::Metadata, "DynamicPamtUnsupported");

    let e = metadata_lie(md::MAX_TDMRS.raw(), 0);
    assert_eq!(
        e.kind,
        InitErrorKind::Metadata(MetadataError::Limits(LimitsError::ZeroTdmrs))
    );
    reached(&e, Stage::Metadata, "Limits");

    let e = metadata_lie(md::NUM_CMRS.raw(), 33);
    assert_eq!(
        e.kind,
        InitErrorKind::Metadata(MetadataError::TooManyCmrSlots { num_cmrs: 33 })
    );
    reached(&e, Stage::Metadata, "TooManyCmrSlots");

    // CMR 1 moved below CMR 0: the list is no longer sorted.
    let e = metadata_lie(md::cmr_base(1).unwrap().raw(), 0);
    assert!(
        matches!(e.kind, InitErrorKind::Metadata(MetadataError::Cmrs(_))),
        "{e}"
    );
    reached(&e, Stage::Metadata, "Cmrs");

    let e = metadata_lie(md::MAJOR_VERSION.raw(), 0x1_0000);
    assert_eq!(
        e.kind,
        InitErrorKind::Metadata(MetadataError::ValueOutOfRange {
            field: md::MAJOR_VERSION.raw(),
            value: 0x1_0000
        })
    );
    reached(&e, Stage::Metadata, "ValueOutOfRange");
}

#[test]
fn memory_plan_abi_and_host_memory() {
    // TDX memory beyond the module's CMRs.
    let m = MockModule::new(platform());
    let beyond = MemoryMap::new(vec![MemoryRegion::new(4 * GIB, 16 * GIB, 0)]).unwrap();
    let e = Bringup::new(&m, &m, &m, m.platform().private_keyids())
        .run(&beyond)
        .unwrap_err();
    assert!(matches!(e.kind, InitErrorKind::Memory(_)));
    reached(&e, Stage::Plan, "Memory");

    // One TDMR allowed, two needed.
    let m =
        MockModule::new(platform().with_limits(TdxLimits::default().with_max_tdmrs(1).unwrap()));
    let e = Bringup::new(&m, &m, &m, m.platform().private_keyids())
        .with_planner(Planner::new().with_strategy(Strategy::Linux))
        .run(input().memory())
        .unwrap_err();
    assert!(matches!(e.kind, InitErrorKind::Plan(_)));
    reached(&e, Stage::Plan, "Plan");

    // A module allowing 20 reserved areas per TDMR, more than a TDMR_INFO holds, on a map
    // whose low TDMR needs 17 under Linux's strategy.
    let emr = parse_kernel_log(include_str!("fixtures/emr-4s-256g.log")).unwrap();
    let p = Platform::new(emr.cmrs().listed())
        .unwrap()
        .with_topology(4, 4)
        .unwrap()
        .with_limits(TdxLimits::default().with_max_reserved_per_tdmr(20));
    let m = MockModule::new(p);
    let e = Bringup::new(&m, &m, &m, m.platform().private_keyids())
        .with_planner(Planner::new().with_strategy(Strategy::Linux))
        .run(emr.memory())
        .unwrap_err();
    assert!(
        matches!(
            e.kind,
            InitErrorKind::Abi(AbiError::TooManyReservedAreas { .. })
        ),
        "{e}"
    );
    reached(&e, Stage::Config, "Abi");
    assert!(e.teardown.as_ref().is_some_and(|t| !t.reset_required));

    // No room for the TDMR_INFO buffers.
    let tiny = PhysRange::new(0x10_0000, 0x10_0200).unwrap();
    let m = MockModule::new(platform().with_host_buffers(tiny).unwrap());
    let e = Bringup::new(&m, &m, &m, m.platform().private_keyids())
        .run(input().memory())
        .unwrap_err();
    assert!(matches!(
        e.kind,
        InitErrorKind::HostMemory(HostMemoryError::NoBuffer { .. })
    ));
    reached(&e, Stage::Config, "HostMemory");

    // PAMT the host cannot give up.
    let m = MockModule::new(
        platform().with_pinned(PhysRange::new(2 * GIB - (64 << 20), 12 * GIB).unwrap()),
    );
    let e = Bringup::new(&m, &m, &m, m.platform().private_keyids())
        .run(input().memory())
        .unwrap_err();
    assert!(matches!(
        e.kind,
        InitErrorKind::HostMemory(HostMemoryError::PamtUnavailable { .. })
    ));
    reached(&e, Stage::PamtClaim, "HostMemory (PAMT)");
}

#[test]
fn tdmr_init_lies() {
    // RDX beyond the TDMR's end.
    let m = MockModule::new(platform());
    let e = bring_up_with(&m, |l, _, mut o| {
        if l == leaf::TDH_SYS_TDMR_INIT && o.status.is_success() {
            o.regs.rdx = o.regs.rdx.max(1 << 40);
        }
        o
    });
    assert!(
        matches!(e.kind, InitErrorKind::TdmrInitBadProgress { rdx, .. } if rdx == 1 << 40),
        "{e}"
    );
    reached(&e, Stage::TdmrInit, "TdmrInitBadProgress");
    assert!(e.teardown.as_ref().is_some_and(|t| t.reset_required));

    // RDX going back below the TDMR's base.
    let m = MockModule::new(platform());
    let e = bring_up_with(&m, |l, i, mut o| {
        if l == leaf::TDH_SYS_TDMR_INIT && i.rcx == 4 * GIB && o.status.is_success() {
            o.regs.rdx = 0;
        }
        o
    });
    assert!(
        matches!(e.kind, InitErrorKind::TdmrInitBadProgress { tdmr: 1, base, rdx: 0 } if base == 4 * GIB),
        "{e}"
    );

    // Success forever, never reaching the end: stalled after one call per 4 KiB page.
    let m = MockModule::new(platform());
    let e = bring_up_with(&m, |l, i, o| {
        if l == leaf::TDH_SYS_TDMR_INIT && i.rcx == 0 {
            let status = o.status.raw();
            if status == TDX_SUCCESS || status == TDX_TDMR_ALREADY_INITIALIZED {
                return Output::new(Status::SUCCESS, Regs { rdx: 0, ..o.regs });
            }
        }
        o
    });
    assert_eq!(
        e.kind,
        InitErrorKind::TdmrInitStalled {
            tdmr: 0,
            base: 0,
            calls: 2 * GIB / 4096 + 1
        }
    );
    reached(&e, Stage::TdmrInit, "TdmrInitStalled");
    // The other TDMR was initialized all the same.
    assert!(m.tdmrs()[1].is_done());
}

/// Runs after the others in this file (cargo runs tests of one file in one process; the name
/// sorts last): every variant was reached.
#[test]
fn zz_every_variant_was_reached() {
    for t in [
        a_failed_seamcall_keeps_leaf_cpu_and_raw_status,
        hosts_without_usable_cpus,
        too_few_keyids,
        every_metadata_error,
        memory_plan_abi_and_host_memory,
        tdmr_init_lies,
    ] {
        t();
    }
    let got = REACHED.lock().unwrap().clone();
    let want = [
        "Seamcall",
        "NoCpus",
        "DuplicateCpu",
        "Cpu",
        "TooFewKeyIds",
        "NoRbpModMissing",
        "DynamicPamtUnsupported",
        "Limits",
        "TooManyCmrSlots",
        "Cmrs",
        "ValueOutOfRange",
        "PackagesWithoutCpu",
        "Memory",
        "Plan",
        "Abi",
        "HostMemory",
        "TdmrInitBadProgress",
        "TdmrInitStalled",
    ];
    for w in want {
        assert!(got.contains(w), "{w} never reached: {got:?}");
    }
    // And every stage.
    for s in [
        Stage::Inputs,
        Stage::SysInit,
        Stage::LpInit,
        Stage::Metadata,
        Stage::Plan,
        Stage::PamtClaim,
        Stage::Config,
        Stage::KeyConfig,
        Stage::TdmrInit,
    ] {
        assert!(
            got.contains(&format!("{s:?}")),
            "stage {s:?} never reached: {got:?}"
        );
    }
}
