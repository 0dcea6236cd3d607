//! Proof that `Strategy::Optimal` is optimal: on small multi-node maps (at most 10 windows of
//! 1 GiB, up to 3 nodes in any order, so a node may own memory on both sides of another's),
//! every set of 1 GiB-aligned TDMRs covering the memory is enumerated and costed independently
//! of the planner, and the planner must find the same lexicographic minimum of (span,
//! remote-PAMT memory, TDMRs, reserved areas), and fail exactly when no set fits the limits.
//!
//! Remote-PAMT memory is costed as the planner's objective defines it: the bytes of each TDMR
//! whose PAMT block lies on another node, the block going to the node holding most of the
//! TDMR's memory. The enumeration costs reserved areas for holes only. PAMT blocks add none when
//! each node's memory touches a reserved area somewhere it can dock (true of real machines), so
//! on such maps the two must agree exactly — and the plan's own remote memory, measured from its
//! PAMT blocks, is that minimum. On every other map the planner's plan must pass the module's
//! checks, cost no less than the enumeration's lower bound, and exist whenever some TDMR set
//! leaves a spare reserved area in every TDMR.

use proptest::prelude::*;
use tdmr::addr::{PageSize, PhysRange, SZ_1G};
use tdmr::layout::{HolePolicy, Plan, PlanError, Planner, Strategy as PlanStrategy};
use tdmr::memmap::{Cmr, Cmrs, MemoryMap, MemoryRegion};
use tdmr::sysinfo::TdxLimits;
use tdmr::tdx::validate;

const MIB: u64 = 1 << 20;
const WINDOWS: u64 = 10;
/// Smallest region: large enough that any piece of it can take a node's whole PAMT.
const MIN_REGION_MIB: u64 = 128;

#[derive(Clone, Debug)]
struct Case {
    regions: Vec<MemoryRegion>,
    cmrs: Vec<Cmr>,
    max_tdmrs: u16,
    max_reserved: u16,
    policy: HolePolicy,
}

/// Regions walk up from 0 with random gaps (0 = abutting), MiB granular, inside 10 GiB; CMRs are
/// the regions widened by random margins, so some gaps are convertible and some are not.
fn case() -> impl Strategy<Value = Case> {
    let region = (0u64..3, 0u64..2600, MIN_REGION_MIB..2400, 0u32..3);
    (
        prop::collection::vec(region, 1..7),
        prop::collection::vec((0u64..3, 0u64..200, 0u64..3, 0u64..200), 7),
        1u16..=4,
        1u16..=4,
        prop::bool::ANY,
    )
        .prop_map(|(spec, margins, max_tdmrs, max_reserved, memory_holes)| {
            let limit = WINDOWS * 1024;
            let mut regions = Vec::new();
            let mut cursor = 0u64;
            for (gap_kind, gap, len, node) in spec {
                // gap_kind 0: abutting; 1: small gap; 2: gap of up to ~1 GiB.
                let gap = match gap_kind {
                    0 => 0,
                    1 => gap % 64 + 1,
                    _ => gap + 1,
                };
                let start = cursor + gap;
                if start + MIN_REGION_MIB > limit {
                    break;
                }
                let end = (start + len).min(limit);
                if end - start < MIN_REGION_MIB {
                    break;
                }
                regions.push(MemoryRegion::new(start * MIB, (end - start) * MIB, node));
                cursor = end;
            }
            if regions.is_empty() {
                regions.push(MemoryRegion::new(MIB, 512 * MIB, 0));
            }
            // CMR per region, widened into the gaps on either side (never into another region).
            let mut raw: Vec<(u64, u64)> = Vec::new();
            for (k, r) in regions.iter().enumerate() {
                let (lk, l, rk, rr) = margins[k];
                let prev_end = if k == 0 {
                    0
                } else {
                    regions[k - 1].base + regions[k - 1].size
                };
                let next_start = regions.get(k + 1).map_or(limit * MIB, |n| n.base);
                let left = if lk == 0 {
                    0
                } else {
                    (l * MIB).min(r.base - prev_end)
                };
                let right = if rk == 0 {
                    0
                } else {
                    (rr * MIB).min(next_start - (r.base + r.size))
                };
                raw.push((r.base - left, r.base + r.size + right));
            }
            let mut cmrs: Vec<Cmr> = Vec::new();
            for (s, e) in raw {
                match cmrs.last_mut() {
                    Some(last) if s <= last.base + last.size => {
                        last.size = e.max(last.base + last.size) - last.base
                    }
                    _ => cmrs.push(Cmr::new(s, e - s)),
                }
            }
            Case {
                regions,
                cmrs,
                max_tdmrs,
                max_reserved,
                policy: if memory_holes {
                    HolePolicy::Memory
                } else {
                    HolePolicy::Cmr
                },
            }
        })
}

/// Independent costing of one TDMR.
struct Oracle<'a> {
    c: &'a Case,
}

impl Oracle<'_> {
    fn in_cmr(&self, pa: u64) -> bool {
        self.c
            .cmrs
            .iter()
            .any(|m| m.base <= pa && pa < m.base + m.size)
    }

    /// Does `[s, e)` (holding no memory) contain a byte that must be reserved?
    fn must(&self, s: u64, e: u64) -> bool {
        match self.c.policy {
            HolePolicy::Memory => s < e,
            HolePolicy::Cmr => {
                // Non-convertible bytes exist iff some boundary point in [s, e) is outside CMRs.
                let mut points = vec![s];
                for m in &self.c.cmrs {
                    let end = m.base + m.size;
                    if s <= end && end < e {
                        points.push(end);
                    }
                }
                points.into_iter().any(|p| !self.in_cmr(p))
            }
        }
    }

    /// Reserved areas the TDMR needs for holes: non-memory stretches holding a must byte.
    fn areas(&self, a: u64, b: u64) -> usize {
        let mut count = 0;
        let mut cursor = a;
        for r in &self.c.regions {
            let (rs, re) = (r.base, r.base + r.size);
            if re <= a || rs >= b {
                continue;
            }
            if rs.max(a) > cursor && self.must(cursor, rs.max(a)) {
                count += 1;
            }
            cursor = cursor.max(re.min(b));
        }
        if cursor < b && self.must(cursor, b) {
            count += 1;
        }
        count
    }

    /// Bytes of `[a, b)` whose PAMT lies on another node when it goes to the node holding most
    /// of the TDMR's memory: all of its memory less that node's.
    fn remote(&self, a: u64, b: u64) -> u64 {
        let mut per_node = [0u64; 4];
        for r in &self.c.regions {
            let (s, e) = (r.base.max(a), (r.base + r.size).min(b));
            if s < e {
                per_node[r.node as usize] += e - s;
            }
        }
        per_node.iter().sum::<u64>() - per_node.iter().max().copied().unwrap_or(0)
    }

    fn has_memory(&self, w: u64) -> bool {
        let (a, b) = (w * SZ_1G, (w + 1) * SZ_1G);
        self.c
            .regions
            .iter()
            .any(|r| r.base < b && r.base + r.size > a)
    }

    /// Every node has a region end that touches must-reserve space inside the same window,
    /// with at least 64 MiB of the region in that window.
    fn every_node_can_dock(&self) -> bool {
        let regs = &self.c.regions;
        let mut nodes: Vec<u32> = regs.iter().map(|r| r.node).collect();
        nodes.sort_unstable();
        nodes.dedup();
        nodes.into_iter().all(|node| {
            regs.iter().enumerate().any(|(k, r)| {
                if r.node != node {
                    return false;
                }
                let (rs, re) = (r.base, r.base + r.size);
                let high = re % SZ_1G != 0 && {
                    let win_end = (re / SZ_1G + 1) * SZ_1G;
                    let next = regs.get(k + 1).map_or(u64::MAX, |n| n.base);
                    next > re
                        && self.must(re, next.min(win_end))
                        && re - rs.max(win_end - SZ_1G) >= 64 * MIB
                };
                let low = rs % SZ_1G != 0 && {
                    let win_start = rs / SZ_1G * SZ_1G;
                    let prev = if k == 0 {
                        0
                    } else {
                        regs[k - 1].base + regs[k - 1].size
                    };
                    prev < rs
                        && self.must(prev.max(win_start), rs)
                        && re.min(win_start + SZ_1G) - rs >= 64 * MIB
                };
                high || low
            })
        })
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Best {
    cost: Option<[u64; 4]>,
    /// Some TDMR set leaves a spare reserved area in every TDMR.
    feasible_with_spare: bool,
}

fn enumerate(o: &Oracle<'_>) -> Best {
    let last =
        o.c.regions
            .last()
            .map_or(0, |r| (r.base + r.size - 1) / SZ_1G)
            + 1;
    let mut best = Best::default();
    let mut tdmrs: Vec<(u64, u64)> = Vec::new();
    fn rec(o: &Oracle<'_>, w: u64, last: u64, tdmrs: &mut Vec<(u64, u64)>, best: &mut Best) {
        if w == last {
            let r = o.c.max_reserved as usize;
            let areas: Vec<usize> = tdmrs
                .iter()
                .map(|&(a, b)| o.areas(a * SZ_1G, b * SZ_1G))
                .collect();
            if areas.iter().any(|&x| x > r) {
                return;
            }
            if areas.iter().all(|&x| x < r) {
                best.feasible_with_spare = true;
            }
            let cost = [
                tdmrs.iter().map(|(a, b)| b - a).sum(),
                tdmrs
                    .iter()
                    .map(|&(a, b)| o.remote(a * SZ_1G, b * SZ_1G))
                    .sum(),
                tdmrs.len() as u64,
                areas.iter().sum::<usize>() as u64,
            ];
            if best.cost.is_none_or(|b| cost < b) {
                best.cost = Some(cost);
            }
            return;
        }
        if !o.has_memory(w) {
            rec(o, w + 1, last, tdmrs, best);
        }
        if tdmrs.len() < o.c.max_tdmrs as usize {
            for end in w + 1..=last {
                tdmrs.push((w, end));
                rec(o, end, last, tdmrs, best);
                tdmrs.pop();
            }
        }
    }
    rec(o, 0, last, &mut tdmrs, &mut best);
    best
}

/// The node of the memory at `pa`.
fn node_at(c: &Case, pa: u64) -> Option<u32> {
    c.regions
        .iter()
        .find(|r| r.base <= pa && pa < r.base + r.size)
        .map(|r| r.node)
}

/// The plan's cost, measured from its TDMRs and PAMT blocks (not from what it says of itself):
/// each TDMR's memory not on the node of its PAMT block counts as remote.
fn cost_of(c: &Case, plan: &Plan) -> [u64; 4] {
    let remote = plan
        .tdmrs()
        .iter()
        .map(|t| {
            let block = t.pamt(PageSize::Size4K).start();
            let node = node_at(c, block).expect("PAMT in TDX memory");
            let mut total = 0;
            let mut local = 0;
            for r in &c.regions {
                let (s, e) = (r.base.max(t.base()), (r.base + r.size).min(t.end()));
                if s < e {
                    total += e - s;
                    if r.node == node {
                        local += e - s;
                    }
                }
            }
            total - local
        })
        .sum();
    [
        plan.covered_bytes() / SZ_1G,
        remote,
        plan.tdmrs().len() as u64,
        plan.reserved_area_count() as u64,
    ]
}

fn assert_valid(c: &Case, plan: &Plan) {
    let infos = plan.tdmr_infos().unwrap();
    let env = validate::ConfigEnv::from_limits(plan.limits(), &c.cmrs);
    validate::sys_config(&infos, &env).unwrap_or_else(|s| panic!("module refuses: {s}\n{plan:#?}"));
    validate::covers_memory(&infos, c.regions.iter().map(|r| r.range()), &[]).unwrap();
    assert!(
        plan.tdmrs()
            .iter()
            .all(|t| t.reserved().len() <= c.max_reserved as usize)
    );
}

fn run(c: &Case) -> (Result<Plan, PlanError>, Best, bool) {
    let map = MemoryMap::new(c.regions.clone()).unwrap();
    let cmrs = Cmrs::new(c.cmrs.clone()).unwrap();
    let limits = TdxLimits::new(c.max_tdmrs, c.max_reserved, [16; 3]).unwrap();
    let result = Planner::new()
        .with_strategy(PlanStrategy::Optimal)
        .with_limits(limits)
        .with_holes(c.policy)
        .plan(&map, &cmrs);
    let oracle = Oracle { c };
    (result, enumerate(&oracle), oracle.every_node_can_dock())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 3000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn optimal_matches_brute_force(c in case()) {
        let (result, best, docks) = run(&c);
        match (&result, best.cost) {
            (Ok(plan), Some(lower)) => {
                assert_valid(&c, plan);
                let got = cost_of(&c, plan);
                if docks {
                    prop_assert_eq!(got, lower, "not optimal: {:#?}", plan);
                    // Every PAMT on the node holding most of its TDMR's memory, as the plan says.
                    for t in plan.tdmrs() {
                        let at = node_at(&c, t.pamt(PageSize::Size4K).start());
                        prop_assert_eq!(at, Some(t.pamt_node()));
                        prop_assert_eq!(t.pamt_node(), t.majority_node());
                        prop_assert!(t.off_node_reason().is_none());
                    }
                } else {
                    prop_assert!(got >= lower, "beat the lower bound: {:?} < {:?}", got, lower);
                }
            }
            (Ok(plan), None) => prop_assert!(false, "brute force finds nothing, planner did: {:#?}", plan),
            (Err(e), Some(lower)) => {
                prop_assert!(!docks, "planner failed ({e}) where {lower:?} exists");
                prop_assert!(!best.feasible_with_spare, "planner failed ({e}) though a layout with spare areas exists");
            }
            (Err(_), None) => {}
        }
    }
}

#[test]
fn generator_reaches_both_kinds_of_map() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut docks, mut infeasible, mut mixed, mut bridged, mut remote) = (0, 0, 0, 0, 0);
    for _ in 0..400 {
        let c = case().new_tree(&mut runner).unwrap().current();
        let (result, best, d) = run(&c);
        docks += usize::from(d);
        infeasible += usize::from(best.cost.is_none());
        remote += usize::from(d && best.cost.is_some_and(|b| b[1] > 0));
        if let Ok(plan) = result {
            mixed += usize::from(plan.node_mixing_tdmrs() > 0);
            let windows: std::collections::BTreeSet<u64> = c
                .regions
                .iter()
                .flat_map(|r| r.base / SZ_1G..=(r.base + r.size - 1) / SZ_1G)
                .collect();
            bridged += usize::from(plan.covered_bytes() / SZ_1G > windows.len() as u64);
        }
    }
    eprintln!(
        "docks {docks} infeasible {infeasible} mixed {mixed} bridged {bridged} remote {remote}"
    );
    // The property above is only as good as the variety it sees.
    assert!(docks > 100, "{docks} maps with docks");
    assert!(400 - docks > 40, "{} maps without", 400 - docks);
    assert!(infeasible > 10, "{infeasible} infeasible maps");
    assert!(mixed > 10, "{mixed} plans mixing nodes");
    assert!(bridged > 10, "{bridged} plans bridging gaps");
    // Maps whose best layout must leave some memory remote (checked exactly above).
    assert!(
        remote > 20,
        "{remote} docking maps with remote memory at the optimum"
    );
}

#[test]
fn fixture_bridging_matches_the_issue() {
    let log = std::fs::read_to_string(format!(
        "{}/tests/fixtures/spr-tdx10.log",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let parsed = tdmr::memmap::parse_kernel_log(&log).unwrap();
    for (tdmrs, gib) in [(4u16, 896u64), (3, 898), (2, 962), (1, 1026)] {
        let plan = Planner::new()
            .with_limits(TdxLimits::default().with_max_tdmrs(tdmrs).unwrap())
            .plan(parsed.memory(), parsed.cmrs())
            .unwrap();
        assert_eq!(plan.covered_bytes(), gib * SZ_1G, "{tdmrs} TDMRs");
        assert_eq!(plan.tdmrs().len(), tdmrs as usize);
    }
    let _ = PhysRange::EMPTY;
}
