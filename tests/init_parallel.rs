//! TDX bring-up on many CPUs at once: the mock tracks which LP issues each call, refuses a
//! second call from an LP that has one in flight and answers TDX_OPERAND_BUSY for a TDMR another
//! LP holds; bring-up over `LpThreads` (one OS thread per LP) spreads TDH.SYS.TDMR.INIT and
//! never trips either. TDMRs shaped for N CPUs validate, cover the memory, keep PAMTs on their
//! node and shorten the longest per-CPU share; work mode writes every PAMT entry.

use proptest::prelude::*;
use tdmr::init::{Bringup, Cpus};
use tdmr::layout::{Planner, Strategy};
use tdmr::memmap::{Cmrs, MemoryMap, MemoryRegion, parse_kernel_log};
use tdmr::mock::{LpThreads, MockModule, Platform};
use tdmr::readiness::{InitEstimate, Readiness};
use tdmr::seamcall::Seamcall;
use tdmr::sysinfo::TdxLimits;
use tdmr::tdx::status::{TDX_OPERAND_BUSY, TDX_SEAMCALL_UD, operand};
use tdmr::tdx::validate::{self, ConfigEnv};
use tdmr::tdx::{Regs, leaf};

const GIB: u64 = 1 << 30;

fn fixture(name: &str) -> tdmr::memmap::ParsedLog {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    parse_kernel_log(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn bring_up_on_lp_threads_spreads_tdmr_init_and_no_lp_runs_two_calls() {
    let input = fixture("spr-1t.log");
    for (lps, packages) in [(4u32, 2u32), (8, 2), (3, 1)] {
        let p = Platform::new(input.cmrs().listed())
            .unwrap()
            .with_topology(lps, packages)
            .unwrap();
        let module = MockModule::new(p);
        let cpus = LpThreads::new(&module);
        let done = Bringup::new(&module, &cpus, &module, module.platform().private_keyids())
            .with_planner(Planner::new().with_init_cpus(lps))
            .run(input.memory())
            .unwrap();
        assert_eq!(module.lp_conflicts(), 0);
        let per_lp = module.calls_per_lp();
        assert_eq!(per_lp.len(), lps as usize);
        // Every LP did its LP.INIT, once; TDMR.INIT went to min(LPs, TDMRs) of them.
        assert!(per_lp.iter().all(|c| c.get(leaf::TDH_SYS_LP_INIT) == 1));
        let tdmr_init: Vec<u64> = per_lp
            .iter()
            .map(|c| c.get(leaf::TDH_SYS_TDMR_INIT))
            .collect();
        assert_eq!(
            tdmr_init.iter().sum::<u64>(),
            done.seamcalls.get(leaf::TDH_SYS_TDMR_INIT)
        );
        assert_eq!(
            tdmr_init.iter().sum::<u64>(),
            done.plan.covered_bytes() / (4 << 20)
        );
        let busy = tdmr_init.iter().filter(|&&n| n > 0).count();
        assert_eq!(
            busy,
            (lps as usize).min(done.plan.tdmrs().len()),
            "{tdmr_init:?}"
        );
        assert!(module.tdmrs().iter().all(|t| t.is_done()));
    }
}

#[test]
fn a_call_from_an_lp_with_one_in_flight_is_refused_and_a_held_tdmr_is_busy() {
    let input = fixture("spr-1t.log");
    let p = Platform::new(input.cmrs().listed())
        .unwrap()
        .with_topology(4, 2)
        .unwrap();
    let module = MockModule::new(p);
    // Bring it up with the plain (serial) CPUs, then play a host that misbehaves.
    let done = Bringup::new(
        &module,
        &module,
        &module,
        module.platform().private_keyids(),
    )
    .run(input.memory())
    .unwrap();
    assert_eq!(module.lp_conflicts(), 0);
    let bases: Vec<u64> = done.plan.tdmrs().iter().map(|t| t.base()).collect();
    // A finished module would answer ALREADY_INITIALIZED; hold TDMR 1 on LP 1 anyway? It is
    // done, so the hold fails with that status.
    assert!(module.tdmr_init_in_flight(1, bases[1]).is_err());

    // A fresh module stopped before TDMR.INIT: configure, then hold.
    let module = MockModule::new(
        Platform::new(input.cmrs().listed())
            .unwrap()
            .with_topology(4, 2)
            .unwrap(),
    );
    struct NoTdmrInit<'a>(&'a MockModule);
    impl Seamcall for NoTdmrInit<'_> {
        fn seamcall(&self, l: leaf::Leaf, r: &Regs) -> tdmr::tdx::Output {
            if l == leaf::TDH_SYS_TDMR_INIT {
                return tdmr::tdx::Output::new(
                    tdmr::tdx::status::Status::new(tdmr::tdx::status::TDX_OPERAND_INVALID),
                    *r,
                );
            }
            self.0.seamcall(l, r)
        }
    }
    let _ = Bringup::new(
        &NoTdmrInit(&module),
        &module,
        &module,
        module.platform().private_keyids(),
    )
    .run(input.memory());
    let base = module.tdmrs()[1].base;
    let other = module.tdmrs()[0].base;
    let held = module.tdmr_init_in_flight(1, base).unwrap();
    let call = |lp: u32, rcx: u64| {
        let mut out = None;
        module
            .run_on(lp, &mut || {
                out = Some(module.seamcall(leaf::TDH_SYS_TDMR_INIT, &Regs { rcx, ..Regs::ZERO }))
            })
            .unwrap();
        out.unwrap()
    };
    // LP 1 is inside a call: anything else from it is refused and counted.
    assert_eq!(call(1, other).status.raw(), TDX_SEAMCALL_UD);
    assert_eq!(module.lp_conflicts(), 1);
    // Another LP on the held TDMR: busy, as the module's per-TDMR mutex says.
    assert_eq!(
        call(2, base).status.raw(),
        TDX_OPERAND_BUSY | operand::RCX as u64
    );
    // Another LP on another TDMR proceeds.
    assert!(call(2, other).status.is_success());
    // The LP cannot be held twice either.
    assert_eq!(
        module.tdmr_init_in_flight(1, other).unwrap_err().raw(),
        TDX_SEAMCALL_UD
    );
    drop(held);
    assert!(call(1, base).status.is_success());
    assert_eq!(module.lp_conflicts(), 1);
    // Refused calls are not counted as served.
    assert_eq!(module.calls_per_lp()[1].get(leaf::TDH_SYS_TDMR_INIT), 1);
}

#[test]
fn work_mode_writes_every_pamt_entry_and_marks_reserved_pages() {
    // Two TDMRs with holes (reserved areas) below 4 GiB and a PAMT carved from TDX memory.
    let log = "BIOS-e820: [mem 0x0000000000100000-0x000000003fffffff] usable\n\
               BIOS-e820: [mem 0x0000000040200000-0x000000007fffffff] usable\n\
               BIOS-e820: [mem 0x0000000100000000-0x000000017fffffff] usable\n";
    let input = parse_kernel_log(log).unwrap();
    for (dynamic_pamt, resident) in [(false, false), (true, false), (false, true), (true, true)] {
        let mut limits = TdxLimits::default();
        if dynamic_pamt {
            limits = limits.with_dynamic_pamt(1).unwrap();
        }
        let p = Platform::new(input.cmrs().listed())
            .unwrap()
            .with_topology(2, 1)
            .unwrap()
            .with_limits(limits);
        let module = if resident {
            MockModule::new(p).with_resident_pamt_memory()
        } else {
            MockModule::new(p).with_tdmr_init_work(true)
        };
        // Resident memory: a PAMT_4K block (16 bytes per 4 KiB page) for each GiB a CMR
        // touches — here GiBs 0, 1, 4 and 5.
        let block = 16 * GIB / 4096;
        assert_eq!(
            module.resident_pamt_bytes(),
            if resident { 4 * block } else { 0 }
        );
        let cpus = LpThreads::new(&module);
        let done = Bringup::new(&module, &cpus, &module, module.platform().private_keyids())
            .with_planner(
                Planner::new()
                    .with_strategy(Strategy::Linux)
                    .with_init_cpus(2),
            )
            .with_dynamic_pamt(dynamic_pamt)
            .run(input.memory())
            .unwrap();
        let covered = done.plan.covered_bytes();
        // TDH.SYS.CONFIG handed every block inside a TDMR to its image (none with Dynamic
        // PAMT, whose PAMT_4K is a bitmap).
        let in_tdmrs = done
            .plan
            .tdmrs()
            .iter()
            .flat_map(|t| t.base() / GIB..t.end() / GIB)
            .filter(|g| [0, 1, 4, 5].contains(g))
            .count() as u64;
        let expect_left = match (resident, dynamic_pamt) {
            (false, _) => 0,
            (true, true) => 4 * block,
            (true, false) => (4 - in_tdmrs) * block,
        };
        assert_eq!(
            module.resident_pamt_bytes(),
            expect_left,
            "{dynamic_pamt} {resident}"
        );
        let (e4k, e2m, e1g) = module.pamt_entries_written();
        assert_eq!(
            (e4k, e2m, e1g),
            (covered / 4096, covered / (2 << 20), covered / GIB)
        );
        // Every page: reserved exactly where the plan reserves it.
        let mut checked = 0u64;
        for t in done.plan.tdmrs() {
            let reserved: Vec<_> = (0..t.reserved().len())
                .map(|i| t.reserved_range(i).unwrap())
                .collect();
            for pa in (t.base()..t.end()).step_by(4096) {
                let rsvd = reserved.iter().any(|r| r.contains(pa));
                if dynamic_pamt {
                    assert_eq!(module.pamt_bitmap_bit(pa), Some(rsvd), "{pa:#x}");
                } else {
                    assert_eq!(
                        module.pamt_entry(pa),
                        Some((u64::from(rsvd), 1 << 63)),
                        "{pa:#x}"
                    );
                }
                checked += 1;
            }
        }
        assert_eq!(checked, covered / 4096);
        assert_eq!(module.lp_conflicts(), 0);
    }
}

#[test]
fn twelve_tib_on_64_cpus_takes_a_thirtieth_of_linux_and_about_the_same_pamt() {
    let input = fixture("hp-16s-12t.log");
    let (memory, cmrs) = (input.memory(), input.cmrs());
    let one = Planner::new().plan(memory, cmrs).unwrap();
    let split = Planner::new()
        .with_init_cpus(64)
        .plan(memory, cmrs)
        .unwrap();
    let linux = Planner::new()
        .with_strategy(Strategy::Linux)
        .plan(memory, cmrs)
        .unwrap();
    let infos = split.tdmr_infos().unwrap();
    validate::sys_config(
        &infos,
        &ConfigEnv::from_limits(split.limits(), cmrs.listed()),
    )
    .unwrap();
    validate::covers_memory(
        &infos,
        memory.regions().iter().map(|r| r.range()),
        split.excluded(),
    )
    .unwrap();
    assert!(split.pamt_bytes() - one.pamt_bytes() <= 64 * 4096);
    let e = InitEstimate::new(&split, Some(&linux), Some(&one), 64);
    assert!(e.tdmr_ms * 30 <= e.linux_serial_ms, "{e:?}");
    assert_eq!(
        e.split.unwrap().extra_pamt_bytes,
        split.pamt_bytes() - one.pamt_bytes()
    );
    // The readiness assessment says the same.
    let r = Readiness::assess(&Planner::new().with_init_cpus(64), memory, cmrs);
    assert_eq!(r.init_estimate, Some(e));
    // One CPU: today's layout.
    assert_eq!(
        Planner::new().with_init_cpus(1).plan(memory, cmrs).unwrap(),
        one
    );
}

/// Random maps (1–8 regions on up to 3 nodes, gaps and holes), random CPU counts and limits:
/// the shaped plan validates, covers the memory, keeps every PAMT block in TDX memory of its
/// TDMR's node, never lengthens the longest share, costs at most a page per extra TDMR, and
/// stays within the limits.
fn map_strategy() -> impl proptest::strategy::Strategy<Value = Vec<(u64, u64, u32)>> {
    proptest::collection::vec((0u64..4, 1u64..(64 * 256), 0u32..3), 1..8)
}

/// Checks one case; `None` when the strategy has no plan for the map, else whether the shape
/// split anything.
fn check(
    regions: Vec<(u64, u64, u32)>,
    cpus: u32,
    max_tdmrs: u16,
    linux: bool,
    dpamt: bool,
) -> Option<bool> {
    let mut at = 0x10_0000u64;
    let mut v = Vec::new();
    for (gap_gib, pages_4m, node) in regions {
        at += gap_gib * GIB + 0x20_0000;
        let size = pages_4m * (4 << 20) - 0x10_0000;
        v.push(MemoryRegion::new(at, size, node));
        at += size;
    }
    let memory = MemoryMap::new(v).unwrap();
    let cmrs = Cmrs::covering(&memory);
    let mut limits = TdxLimits::default().with_max_tdmrs(max_tdmrs).unwrap();
    if dpamt {
        limits = limits.with_dynamic_pamt(1).unwrap();
    }
    let strategy = if linux {
        Strategy::Linux
    } else {
        Strategy::Optimal
    };
    let base = Planner::new().with_strategy(strategy).with_limits(limits);
    let one = base.plan(&memory, &cmrs).ok()?;
    let split = base.with_init_cpus(cpus).plan(&memory, &cmrs).unwrap();
    let infos = split.tdmr_infos().unwrap();
    validate::sys_config(
        &infos,
        &ConfigEnv::from_limits(split.limits(), cmrs.listed()),
    )
    .unwrap();
    validate::covers_memory(
        &infos,
        memory.regions().iter().map(|r| r.range()),
        split.excluded(),
    )
    .unwrap();
    assert!(split.tdmrs().len() <= max_tdmrs as usize);
    assert!(
        split.init_work(cpus).longest_share_calls() <= one.init_work(cpus).longest_share_calls()
    );
    assert_eq!(split.covered_bytes(), one.covered_bytes());
    let extra = split.tdmrs().len() - one.tdmrs().len();
    assert!(split.pamt_bytes() <= one.pamt_bytes() + extra as u64 * 4096);
    if extra == 0 {
        assert_eq!(split, one);
    } else {
        assert!(
            split.init_work(cpus).longest_share_calls() < one.init_work(cpus).longest_share_calls()
        );
    }
    // PAMTs stay where the one-CPU plan had them: on the nodes of the original TDMR's PAMT.
    for t in split.tdmrs() {
        let o = one
            .tdmrs()
            .iter()
            .find(|o| o.range().intersect(t.range()) == Some(t.range()))
            .unwrap();
        let nodes_of = |x: &tdmr::layout::Tdmr| -> Vec<u32> {
            tdmr::addr::PageSize::ALL
                .into_iter()
                .flat_map(|l| memory.regions_in(x.pamt(l)).iter().map(|r| r.node))
                .collect()
        };
        let home = nodes_of(o);
        assert_eq!(t.node(), o.node());
        for n in nodes_of(t) {
            assert!(
                n == o.node() || home.contains(&n),
                "PAMT of {:?} on node {n}",
                t.range()
            );
        }
        for level in tdmr::addr::PageSize::ALL {
            assert!(memory.contains_range(t.pamt(level)));
        }
    }
    Some(extra > 0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn shaped_plans_are_valid_local_and_never_slower(
        regions in map_strategy(),
        cpus in 2u32..80,
        max_tdmrs in 2u16..64,
        linux in any::<bool>(),
        dpamt in any::<bool>(),
    ) {
        check(regions, cpus, max_tdmrs, linux, dpamt);
    }
}

/// The same over a fixed pseudo-random sample, counting what was checked: most cases plan,
/// and many of them split.
#[test]
fn shaped_plans_sample_is_not_vacuous() {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let (mut planned, mut split) = (0, 0);
    for _ in 0..200 {
        let regions: Vec<_> = (0..1 + next(7))
            .map(|_| (next(4), 1 + next(64 * 256 - 1), next(3) as u32))
            .collect();
        let r = check(
            regions,
            2 + next(78) as u32,
            2 + next(62) as u16,
            next(2) == 1,
            next(2) == 1,
        );
        planned += r.is_some() as u32;
        split += (r == Some(true)) as u32;
    }
    assert!(planned >= 150, "{planned}");
    assert!(split >= 50, "{split}");
}

#[test]
fn accounting_follows_dynamic_pamt_pairs_and_sums_static_pamt_per_node() {
    use tdmr::accounting::TdxMemoryUsage;
    use tdmr::dpamt::{DynamicPamt, PairCache};
    use tdmr::mock::PagePool;
    let input = fixture("spr-1t.log");
    let limits = TdxLimits::default().with_dynamic_pamt(1).unwrap();
    let p = Platform::new(input.cmrs().listed())
        .unwrap()
        .with_topology(4, 2)
        .unwrap()
        .with_limits(limits);
    let module = MockModule::new(p);
    let done = Bringup::new(
        &module,
        &module,
        &module,
        module.platform().private_keyids(),
    )
    .with_dynamic_pamt(true)
    .run(input.memory())
    .unwrap();
    let usage = TdxMemoryUsage::of_plan(&done.plan);
    assert_eq!(usage.static_pamt_bytes(), done.plan.pamt_bytes());
    let nodes: std::collections::BTreeSet<u32> =
        done.plan.tdmrs().iter().map(|t| t.node()).collect();
    assert_eq!(usage.static_pamt_by_node().len(), nodes.len());
    let dpamt = DynamicPamt::for_plan(&module, &done.plan).unwrap();
    let mut pool = PagePool::new(0x4000_0000, 4).unwrap();
    let mut cache = PairCache::new(4);
    cache.top_up(&mut pool);
    let pfns = [
        0x2_0000_0000u64 >> 12,
        0x2_0020_0000 >> 12,
        (0x2_0020_0000 >> 12) + 1,
    ];
    for pfn in pfns {
        dpamt.get(pfn, &mut cache).unwrap();
    }
    let now = TdxMemoryUsage::of_plan(&done.plan).with_dynamic_pamt(&dpamt);
    assert_eq!(
        (now.dynamic_pamt_pairs(), now.dynamic_pamt_bytes()),
        (2, 2 * 8192)
    );
    assert_eq!(now.total_bytes(), done.plan.pamt_bytes() + 2 * 8192);
    assert!(
        now.to_string()
            .contains("2 Dynamic PAMT page pairs (16 kB)")
    );
    for pfn in pfns {
        dpamt.put(pfn, &mut cache).unwrap();
    }
    assert_eq!(
        TdxMemoryUsage::of_plan(&done.plan)
            .with_dynamic_pamt(&dpamt)
            .dynamic_pamt_pairs(),
        0
    );
}
