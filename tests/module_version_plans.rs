//! Module versions in the referee and the planner: TDX 1.0's reserved-area quirk as table rows
//! of `validate` (exact statuses), and a planner told the target version that never emits a
//! layout that version refuses — over random maps built to hit the quirk, with counts.

use tdmr::addr::PhysRange;
use tdmr::layout::{HolePolicy, PlanError, Planner, Strategy};
use tdmr::memmap::{Cmr, Cmrs, MemoryMap, MemoryRegion};
use tdmr::sysinfo::TdxLimits;
use tdmr::tdx::abi::{TdmrInfo, TdmrReservedEntry};
use tdmr::tdx::metadata::ModuleVersion;
use tdmr::tdx::validate::{self, ConfigEnv};

const G: u64 = 1 << 30;
const M: u64 = 1 << 20;

/// TDMR 0 = [0, 1 GiB) with one reserved area and its PAMT outside; TDMR 1 = [1 GiB, 2 GiB)
/// with `areas` reserved areas, the last ending `gap` bytes before the TDMR's end; PAMTs in the
/// CMR at 8 GiB.
fn two_tdmrs(areas: usize, gap: u64) -> [TdmrInfo; 2] {
    let mut t0 = TdmrInfo::ZERO;
    (t0.base, t0.size) = (0, G);
    t0.reserved[0] = TdmrReservedEntry { offset: 0, size: M };
    let mut t1 = TdmrInfo::ZERO;
    (t1.base, t1.size) = (G, G);
    for j in 0..areas - 1 {
        t1.reserved[j] = TdmrReservedEntry {
            offset: (j as u64 + 1) * 16 * M,
            size: 4096,
        };
    }
    let last_end = G - gap;
    t1.reserved[areas - 1] = TdmrReservedEntry {
        offset: G / 2,
        size: last_end - G / 2,
    };
    for (k, t) in [&mut t0, &mut t1].into_iter().enumerate() {
        let base = 8 * G + k as u64 * 8 * M;
        (t.pamt_1g_base, t.pamt_1g_size) = (base, 4096);
        (t.pamt_2m_base, t.pamt_2m_size) = (base + 4096, 8192);
        (t.pamt_4k_base, t.pamt_4k_size) = (base + 3 * 4096, 4 * M);
    }
    [t0, t1]
}

#[test]
fn tdx_1_0_checks_the_empty_tail_of_a_tdmr_with_16_reserved_areas() {
    // CMRs: [0, 1.5 GiB) holds every non-reserved byte of both TDMRs (TDMR 1's last area is
    // [1.5 GiB, end)); `tail` says whether a CMR also holds the point 2 GiB.
    let cmrs = |tail: bool| -> Vec<Cmr> {
        let mut v = vec![Cmr::new(0, G + G / 2)];
        if tail {
            v.push(Cmr::new(2 * G, G));
        }
        v.push(Cmr::new(8 * G, G));
        v
    };
    let v1_0 = ModuleVersion::new(1, 0, 0);
    let v1_0_3 = ModuleVersion::new(1, 0, 3);
    let v1_5 = ModuleVersion::new(1, 5, 6);
    let v2_0 = ModuleVersion::new(2, 0, 8);
    // (areas, gap before the end, a CMR at the end point, version, status)
    let rows: [(usize, u64, bool, Option<ModuleVersion>, u64); 12] = [
        (16, 0, false, Some(v1_0), 0xC000_0A02_0000_0001),
        (16, 0, false, Some(v1_0_3), 0xC000_0A02_0000_0001),
        (16, 0, false, Some(v1_5), 0),
        (16, 0, false, Some(v2_0), 0),
        (16, 0, false, None, 0),
        // One area fewer: a null slot, no quirk.
        (15, 0, false, Some(v1_0), 0),
        // The last area short of the end: the tail is memory, checked as any segment. It lies
        // outside the CMRs here, so every version refuses it.
        (16, 4096, false, Some(v1_0), 0xC000_0A02_0000_0001),
        (16, 4096, false, Some(v1_5), 0xC000_0A02_0000_0001),
        // ...and inside them here (a CMR from 2 GiB - 1 MiB): accepted.
        (16, M, true, Some(v1_0), 0),
        // The end point inside a CMR chain: the empty tail passes the in-CMR test.
        (16, 0, true, Some(v1_0), 0),
        (16, 0, true, Some(v1_5), 0),
        (14, 0, false, Some(v1_0), 0),
    ];
    let mut checked = 0;
    for (areas, gap, tail, version, expect) in rows {
        let mut c = cmrs(tail);
        if gap == M {
            c[1] = Cmr::new(2 * G - M, G + M);
        }
        let tdmrs = two_tdmrs(areas, gap);
        let mut env = ConfigEnv::from_limits(&TdxLimits::default(), &c);
        if let Some(v) = version {
            env = env.with_module_version(v);
        }
        let got = validate::sys_config(&tdmrs, &env).map_or_else(|s| s.raw(), |()| 0);
        assert_eq!(
            got, expect,
            "{areas} areas, gap {gap:#x}, tail CMR {tail}, {version:?}"
        );
        checked += 1;
    }
    assert_eq!(checked, 12);
}

/// xorshift64.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A map whose window [1 GiB, 2 GiB) holds `holes` holes between 4 KiB-aligned pieces, the
/// last piece ending short of 2 GiB or not, memory below 1 GiB and from 4 GiB on, on one or
/// two nodes.
fn quirky_map(rng: &mut Rng) -> MemoryMap {
    let mut regions: Vec<MemoryRegion> = vec![MemoryRegion::new(M, 512 * M, 0)];
    let pieces = 12 + rng.next(6); // 12..=17 pieces in the window
    let mut at = G + rng.next(2) * 4 * M;
    let step = (G - 8 * M) / pieces / 4096 * 4096;
    for _ in 0..pieces {
        let size = (step - 8 * M).max(4096) / 4096 * 4096 - rng.next(64) * 4096;
        regions.push(MemoryRegion::new(at, size, 0));
        at += step;
    }
    // The window's end: memory up to 2 GiB (no tail hole) or short of it.
    if rng.next(3) == 0 {
        let last = regions.pop().unwrap();
        regions.push(MemoryRegion::new(last.base, 2 * G - last.base, 0));
    }
    let node = rng.next(2) as u32;
    match rng.next(3) {
        0 => regions.push(MemoryRegion::new(4 * G, (2 + rng.next(6)) * G, node)),
        1 => regions.push(MemoryRegion::new(2 * G + 64 * M, 2 * G, node)),
        _ => {}
    }
    MemoryMap::new(regions).unwrap()
}

fn offends(plan: &tdmr::layout::Plan) -> bool {
    plan.tdmrs().iter().any(|t| {
        t.reserved().len() == 16
            && t.reserved()
                .last()
                .is_some_and(|a| a.offset + a.size == t.size())
    })
}

#[test]
fn a_planner_told_tdx_1_0_never_emits_a_layout_1_0_refuses() {
    let v1_0 = ModuleVersion::new(1, 0, 0);
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let (mut planned, mut repaired, mut refused, mut both_fail) = (0, 0, 0, 0);
    for _ in 0..600 {
        let memory = quirky_map(&mut rng);
        let cmrs = Cmrs::covering(&memory);
        let strategy = if rng.next(4) == 0 {
            Strategy::Linux
        } else {
            Strategy::Optimal
        };
        let planner = Planner::new()
            .with_strategy(strategy)
            .with_holes(HolePolicy::Memory)
            .with_init_cpus(1 + rng.next(4) as u32);
        let base = planner.plan(&memory, &cmrs);
        let for_1_0 = planner.with_module_version(v1_0).plan(&memory, &cmrs);
        match (&base, for_1_0) {
            (Err(_), Err(_)) => both_fail += 1,
            (Err(e), Ok(_)) => panic!("1.0 planned where 1.5 failed: {e}"),
            (Ok(b), Err(e)) => {
                // Refused only for the version, and only when 1.5's plan breaks the invariant.
                assert!(
                    matches!(e, PlanError::RefusedByModuleVersion { version, .. } if version == v1_0),
                    "{e}"
                );
                assert!(offends(b));
                refused += 1;
            }
            (Ok(b), Ok(p)) => {
                planned += 1;
                assert!(!offends(&p), "the invariant");
                let infos = p.tdmr_infos().unwrap();
                let env =
                    ConfigEnv::from_limits(p.limits(), cmrs.listed()).with_module_version(v1_0);
                validate::sys_config(&infos, &env).unwrap_or_else(|s| panic!("1.0 refuses: {s}"));
                let mem = memory.regions().iter().map(|r| r.range());
                validate::covers_memory(&infos, mem, p.excluded()).unwrap();
                if offends(b) {
                    repaired += 1;
                    assert_ne!(b.tdmrs(), p.tdmrs());
                } else {
                    assert_eq!(b, &p, "a plan 1.0 accepts is left alone");
                }
            }
        }
    }
    // The generator reaches every case.
    assert!(planned >= 300, "{planned}");
    assert!(repaired >= 30, "{repaired} repaired");
    assert!(
        refused + both_fail < 300,
        "{refused} refused, {both_fail} infeasible"
    );
    println!("{planned} planned ({repaired} repaired), {refused} refused, {both_fail} infeasible");
}

/// The top-down placement model as a caller's allocator.
struct Offline(tdmr::pamt::TopDownAllocator);

// SAFETY: planning only: nothing is ever written to the blocks.
unsafe impl tdmr::pamt::PamtAllocator for Offline {
    fn allocate(&mut self, size: u64, node: tdmr::memmap::NodeId) -> Option<PhysRange> {
        self.0.allocate(size, node)
    }
}

#[test]
fn an_allocator_plan_that_1_0_would_refuse_is_an_error_naming_the_tdmr() {
    use tdmr::pamt::TopDownAllocator;
    // The Emerald Rapids window [1 GiB, 2 GiB) with holes from memory: 16 holes, the last to
    // 2 GiB. PAMT from the caller's allocator cannot be moved, so no repair.
    let log = include_str!("fixtures/emr-4s-256g.log");
    let input = tdmr::memmap::parse_kernel_log(log).unwrap();
    let planner = Planner::new().with_holes(HolePolicy::Memory);
    let mut alloc = Offline(TopDownAllocator::new(input.memory()));
    let plan = planner
        .plan_with(input.memory(), input.cmrs(), &mut alloc)
        .unwrap();
    assert!(offends(&plan));
    let mut alloc = Offline(TopDownAllocator::new(input.memory()));
    let e = planner
        .with_module_version(ModuleVersion::new(1, 0, 0))
        .plan_with(input.memory(), input.cmrs(), &mut alloc)
        .unwrap_err();
    assert!(
        matches!(e, PlanError::RefusedByModuleVersion { tdmr, .. } if tdmr == PhysRange::new(G, 2 * G).unwrap())
    );
    assert!(e.to_string().contains("1.0.00"));
    // Carved, the same map is repaired: [1 GiB, 5 GiB) ends in memory.
    let p = planner
        .with_module_version(ModuleVersion::new(1, 0, 0))
        .plan(input.memory(), input.cmrs())
        .unwrap();
    assert!(!offends(&p));
    assert!(
        p.tdmrs()
            .iter()
            .any(|t| t.range() == PhysRange::new(G, 5 * G).unwrap())
    );
}
