//! Property: on any memory map, `Strategy::Linux` either fails for a documented reason or
//! produces a plan the TDX module would accept (`validate::sys_config`) and that makes every
//! byte of TDX memory usable (`validate::covers_memory`). Its PAMT blocks are where each model
//! of the kernel's allocator puts them, checked against a reference written here from the
//! models' rules: bottom-up (`alloc_contig_pages()`: the node's zones highest first, candidates
//! from the zone start rounded with the kernel's ALIGN, stepping by the request; then higher
//! node ids, then lower) and top-down (the top of the node's highest region with room, then of
//! any node's).
//!
//! Maps are random regions with random gaps (none, page-sized, 2 MiB-sized, GiB-sized, any
//! number of pages), sizes from one page to many GiB, NUMA nodes changing at random region
//! boundaries; CMRs either equal to the memory or covering it with slack taken from the gaps
//! (sometimes split in two abutting CMRs, with a null slot in the module's CMR table); limits of
//! 1..=8 TDMRs and 0..=16 reserved areas per TDMR, Dynamic PAMT on or off, either hole basis.

use proptest::prelude::*;
use tdmr::addr::PhysRange;
use tdmr::layout::{HolePolicy, PlanError, Planner, Strategy as PlanStrategy};
use tdmr::memmap::{Cmr, Cmrs, MemoryMap, MemoryRegion};
use tdmr::pamt::PamtModel;
use tdmr::sysinfo::TdxLimits;
use tdmr::tdx::validate::{ConfigEnv, covers_memory, sys_config};

const K4: u64 = 1 << 12;
const M2: u64 = 1 << 21;
const G: u64 = 1 << 30;

#[derive(Clone, Debug)]
struct RegionSpec {
    gap: u64,
    size: u64,
    next_node: bool,
}

fn region_spec() -> impl Strategy<Value = RegionSpec> {
    let gap = prop_oneof![
        3 => Just(0u64),
        2 => (1u64..=256).prop_map(|p| p * K4),
        2 => (1u64..=64).prop_map(|n| n * M2),
        1 => (1u64..=4).prop_map(|n| n * G),
        2 => (1u64..=(8 * G / K4)).prop_map(|p| p * K4),
    ];
    let size = prop_oneof![
        2 => (1u64..=1024).prop_map(|p| p * K4),
        2 => (1u64..=512).prop_map(|n| n * M2),
        1 => (1u64..=8).prop_map(|n| n * G),
        3 => (1u64..=(16 * G / K4)).prop_map(|p| p * K4),
    ];
    (gap, size, any::<bool>()).prop_map(|(gap, size, next_node)| RegionSpec {
        gap,
        size,
        next_node,
    })
}

/// Per contiguous run of memory: how much of the gap below and above its CMR takes (in 1/256
/// of half the gap), and where to split it in two abutting CMRs (0 = no split).
#[derive(Clone, Debug)]
struct CmrSpec {
    below: u8,
    above: u8,
    split: u16,
}

fn cmr_spec() -> impl Strategy<Value = CmrSpec> {
    (any::<u8>(), any::<u8>(), any::<u16>()).prop_map(|(below, above, split)| CmrSpec {
        below,
        above,
        split,
    })
}

#[derive(Clone, Debug)]
struct Case {
    start: u64,
    regions: Vec<RegionSpec>,
    /// `None`: CMRs equal to the memory.
    cmrs: Option<Vec<CmrSpec>>,
    /// Where to put a null slot in the module's CMR table.
    null_slot: Option<usize>,
    max_tdmrs: u16,
    max_reserved: u16,
    dpamt: bool,
    holes: HolePolicy,
    model: PamtModel,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just(0u64), Just(1u64 << 20), (0u64..64).prop_map(|g| g * G)],
        prop::collection::vec(region_spec(), 1..=10),
        prop::option::of(prop::collection::vec(cmr_spec(), 10)),
        prop::option::of(0usize..24),
        1u16..=8,
        0u16..=16,
        any::<bool>(),
        prop_oneof![Just(HolePolicy::Memory), Just(HolePolicy::Cmr)],
        prop_oneof![Just(PamtModel::BottomUp), Just(PamtModel::TopDown)],
    )
        .prop_map(
            |(start, regions, cmrs, null_slot, max_tdmrs, max_reserved, dpamt, holes, model)| {
                Case {
                    start,
                    regions,
                    cmrs,
                    null_slot,
                    max_tdmrs,
                    max_reserved,
                    dpamt,
                    holes,
                    model,
                }
            },
        )
}

fn memory_of(c: &Case) -> MemoryMap {
    let mut regions = Vec::new();
    let mut cursor = c.start;
    let mut node = 0;
    for r in &c.regions {
        let base = cursor + r.gap;
        if r.next_node {
            node = (node + 1) % 4;
        }
        regions.push(MemoryRegion::new(base, r.size, node));
        cursor = base + r.size;
    }
    MemoryMap::new(regions).expect("the generator builds valid maps")
}

/// Maximal runs of contiguous memory.
fn runs(memory: &MemoryMap) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for r in memory.regions() {
        match out.last_mut() {
            Some(last) if last.1 == r.base => last.1 = r.end(),
            _ => out.push((r.base, r.end())),
        }
    }
    out
}

fn cmrs_of(c: &Case, memory: &MemoryMap) -> Cmrs {
    let Some(specs) = &c.cmrs else {
        return Cmrs::covering(memory);
    };
    let runs = runs(memory);
    let mut list = Vec::new();
    for (k, &(start, end)) in runs.iter().enumerate() {
        let spec = &specs[k % specs.len()];
        let below = if k == 0 { start } else { start - runs[k - 1].1 };
        let above = runs.get(k + 1).map_or(G, |n| n.0 - end);
        let take = |gap: u64, f: u8| (gap / 2 / 256 * f as u64) & !(K4 - 1);
        let (s, e) = (
            start - take(below, spec.below),
            end + take(above, spec.above),
        );
        let cut = s + (((e - s) / 65536 * spec.split as u64) & !(K4 - 1));
        if spec.split != 0 && s < cut && cut < e {
            list.push(Cmr::new(s, cut - s));
            list.push(Cmr::new(cut, e - cut));
        } else {
            list.push(Cmr::new(s, e - s));
        }
    }
    Cmrs::new(list).expect("the generator builds valid CMR lists")
}

/// Linux's TDMR boundaries, computed here from its rule: each memory region rounded out to
/// 1 GiB, skipped if the previous TDMR already covers it, clipped to start where it ends.
fn linux_tdmrs(memory: &MemoryMap) -> Vec<PhysRange> {
    let mut out: Vec<PhysRange> = Vec::new();
    for r in memory.regions() {
        let mut s = r.base / G * G;
        let e = r.end().div_ceil(G) * G;
        if let Some(last) = out.last() {
            if e <= last.end() {
                continue;
            }
            s = s.max(last.end());
        }
        out.push(PhysRange::new(s, e).unwrap());
    }
    out
}

/// PAMT bytes of a TDMR from the spec's formula (16-byte entries; 1 bit per page with DPAMT).
fn pamt_bytes(tdmr: PhysRange, dpamt: bool) -> u64 {
    let round = |b: u64| b.div_ceil(K4) * K4;
    let pages_4k = tdmr.size() / K4;
    let l4k = if dpamt {
        round(pages_4k.div_ceil(8))
    } else {
        round(pages_4k * 16)
    };
    l4k + round(tdmr.size() / M2 * 16) + round(tdmr.size() / G * 16)
}

/// The node of the lowest memory of a TDMR (Linux's `tdmr_get_nid`).
fn lowest_node(memory: &MemoryMap, tdmr: PhysRange) -> u32 {
    memory
        .regions()
        .iter()
        .find(|r| r.end() > tdmr.start())
        .map_or(0, |r| r.node)
}

/// The reference models of the kernel's allocator: every TDMR's block, in TDMR order, or the
/// index of the first TDMR whose block no memory holds.
fn reference_blocks(
    memory: &MemoryMap,
    tdmrs: &[PhysRange],
    dpamt: bool,
    model: PamtModel,
) -> Result<Vec<PhysRange>, usize> {
    let mut taken: Vec<PhysRange> = Vec::new();
    let mut out = Vec::new();
    for (k, &t) in tdmrs.iter().enumerate() {
        let size = pamt_bytes(t, dpamt);
        let node = lowest_node(memory, t);
        let block = match model {
            PamtModel::TopDown => top_down(memory, &taken, size, node),
            _ => bottom_up(memory, &taken, size, node),
        };
        let block = block.ok_or(k)?;
        taken.push(block);
        out.push(block);
    }
    Ok(out)
}

/// Top-down: from the top of the highest region of `node` whose untaken top part holds `size`,
/// else of any node. Blocks are taken from region tops down, so a region's free part is
/// `[base, lowest block taken in it)`.
fn top_down(memory: &MemoryMap, taken: &[PhysRange], size: u64, node: u32) -> Option<PhysRange> {
    let top = |r: &MemoryRegion| {
        taken
            .iter()
            .filter(|b| b.start() >= r.base && b.end() <= r.end())
            .map(|b| b.start())
            .min()
            .unwrap_or(r.end())
    };
    let fits = |r: &&MemoryRegion| top(r) - r.base >= size;
    let regions = memory.regions();
    let r = regions
        .iter()
        .rev()
        .filter(|r| r.node == node)
        .find(fits)
        .or_else(|| regions.iter().rev().find(fits))?;
    let t = top(r);
    Some(PhysRange::new(t - size, t).unwrap())
}

/// Bottom-up, `alloc_contig_pages()`' order.
fn bottom_up(memory: &MemoryMap, taken: &[PhysRange], size: u64, node: u32) -> Option<PhysRange> {
    let mut nodes: Vec<u32> = memory.regions().iter().map(|r| r.node).collect();
    nodes.sort_unstable();
    nodes.dedup();
    let order = nodes
        .iter()
        .filter(|&&n| n >= node)
        .chain(nodes.iter().filter(|&&n| n < node));
    let pages = size / K4;
    for &n in order {
        let mine: Vec<&MemoryRegion> = memory.regions().iter().filter(|r| r.node == n).collect();
        let node_start = mine[0].base;
        let node_end = mine[mine.len() - 1].end();
        for (lo, hi) in [(4 * G, u64::MAX), (16 << 20, 4 * G), (0, 16 << 20)] {
            if !mine.iter().any(|r| r.base < hi && r.end() > lo) {
                continue;
            }
            let zone_start = node_start.clamp(lo, hi);
            let zone_end = node_end.min(hi);
            // The kernel's ALIGN: mask arithmetic.
            let mut c = ((zone_start / K4 + pages - 1) & !(pages - 1)) * K4;
            while c + size <= zone_end {
                let cand = PhysRange::new(c, c + size).unwrap();
                // Wholly memory of node n in the zone: walk the abutting regions.
                let mut cursor = c;
                let mut obstacle = None;
                for r in &mine {
                    if r.end() <= cursor || r.base >= cand.end() {
                        continue;
                    }
                    if r.base > cursor {
                        break;
                    }
                    cursor = r.end();
                }
                if cursor < cand.end() {
                    // Not memory from `cursor`: skip past the next memory start beyond it.
                    obstacle = Some(cursor + 1);
                }
                if obstacle.is_none()
                    && let Some(b) = taken.iter().find(|b| b.overlaps(cand))
                {
                    obstacle = Some(b.end());
                }
                match obstacle {
                    None => return Some(cand),
                    Some(past) => {
                        // The next candidate starting at or after `past`... any candidate
                        // overlapping the obstacle fails too, so jump to the first one whose
                        // start is not below it.
                        let k = (past.saturating_sub(c)).div_ceil(size).max(1);
                        c += k * size;
                    }
                }
            }
        }
    }
    None
}

fn check(c: &Case) -> Result<(), TestCaseError> {
    let memory = memory_of(c);
    let cmrs = cmrs_of(c, &memory);
    let mut limits = TdxLimits::default()
        .with_max_tdmrs(c.max_tdmrs)
        .unwrap()
        .with_max_reserved_per_tdmr(c.max_reserved);
    if c.dpamt {
        limits = limits.with_dynamic_pamt(1).unwrap();
    }
    let planner = Planner::new()
        .with_strategy(PlanStrategy::Linux)
        .with_holes(c.holes)
        .with_limits(limits)
        .with_pamt_model(c.model);
    let result = planner.plan(&memory, &cmrs);
    prop_assert_eq!(
        &result,
        &planner.plan(&memory, &cmrs),
        "planning is not deterministic"
    );
    let expected_tdmrs = linux_tdmrs(&memory);

    match result {
        Ok(plan) => {
            prop_assert!(plan.tdmrs().len() <= c.max_tdmrs as usize);
            prop_assert!(plan.max_reserved_in_one_tdmr() <= c.max_reserved as usize);
            prop_assert!(plan.excluded().is_empty());
            let ranges: Vec<PhysRange> = plan.tdmrs().iter().map(|t| t.range()).collect();
            prop_assert_eq!(&ranges, &expected_tdmrs);
            let blocks: Vec<PhysRange> = plan
                .tdmrs()
                .iter()
                .map(|t| {
                    let s = t.pamt(tdmr::addr::PageSize::Size4K).start();
                    PhysRange::new(s, s + t.pamt_bytes()).unwrap()
                })
                .collect();
            let reference = reference_blocks(&memory, &expected_tdmrs, c.dpamt, c.model);
            prop_assert_eq!(Ok(blocks), reference, "{:?} model", c.model);

            let infos = plan
                .tdmr_infos()
                .expect("at most 16 reserved areas fit TDMR_INFO");
            let mut slots = cmrs.listed().to_vec();
            if let Some(at) = c.null_slot {
                slots.insert(at.min(slots.len()), Cmr::new(0, 0));
            }
            slots.resize(slots.len().max(32), Cmr::new(0, 0));
            let env = ConfigEnv::from_limits(plan.limits(), &slots);
            if let Err(status) = sys_config(&infos, &env) {
                return Err(TestCaseError::fail(format!(
                    "the module would refuse the plan: {status}\n{plan:#?}"
                )));
            }
            let regions = memory.regions().iter().map(|r| r.range());
            if let Err(e) = covers_memory(&infos, regions, plan.excluded()) {
                return Err(TestCaseError::fail(format!("{e}\n{plan:#?}")));
            }
        }
        Err(PlanError::TdmrsExhausted { limit }) => {
            prop_assert_eq!(limit, c.max_tdmrs as usize);
            prop_assert!(expected_tdmrs.len() > limit);
        }
        Err(PlanError::ReservedAreasExhausted { tdmr, limit }) => {
            prop_assert_eq!(limit, c.max_reserved as usize);
            prop_assert!(expected_tdmrs.len() <= c.max_tdmrs as usize);
            // With room for any number of reserved areas the same plan succeeds; the named
            // TDMR is the first that needs more than `limit`.
            let roomy = planner
                .with_limits(limits.with_max_reserved_per_tdmr(u16::MAX))
                .plan(&memory, &cmrs)
                .expect("only the reserved-area limit failed");
            let first = roomy
                .tdmrs()
                .iter()
                .find(|t| t.reserved().len() > limit)
                .map(|t| t.range());
            prop_assert_eq!(first, Some(tdmr));
        }
        Err(PlanError::PamtAllocationFailed { tdmr, size, node }) => {
            prop_assert!(expected_tdmrs.len() <= c.max_tdmrs as usize);
            let index = expected_tdmrs.iter().position(|&t| t == tdmr);
            prop_assert!(index.is_some(), "{} is not a TDMR of the layout", tdmr);
            prop_assert_eq!(size, pamt_bytes(tdmr, c.dpamt));
            prop_assert_eq!(node, lowest_node(&memory, tdmr));
            // The model finds no room for exactly this TDMR's block, after the earlier ones'.
            prop_assert_eq!(
                reference_blocks(&memory, &expected_tdmrs, c.dpamt, c.model),
                Err(index.unwrap())
            );
        }
        Err(other) => {
            return Err(TestCaseError::fail(format!(
                "undocumented failure: {other:?}"
            )));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn linux_plans_are_accepted_or_fail_for_a_documented_reason(c in case()) {
        check(&c)?;
    }
}

/// Each documented outcome is reachable with these generators (so the property above is not
/// vacuously true for one of them).
#[test]
fn every_outcome_is_reachable() {
    let spec = |gap, size, next_node| RegionSpec {
        gap,
        size,
        next_node,
    };
    let base = Case {
        start: 1 << 20,
        regions: vec![spec(0, 4 * G, false), spec(G, 4 * G, true)],
        cmrs: None,
        null_slot: Some(1),
        max_tdmrs: 8,
        max_reserved: 16,
        dpamt: false,
        holes: HolePolicy::Memory,
        model: PamtModel::BottomUp,
    };
    let outcome = |c: &Case| {
        check(c).unwrap();
        let memory = memory_of(c);
        let cmrs = cmrs_of(c, &memory);
        let limits = TdxLimits::default()
            .with_max_tdmrs(c.max_tdmrs)
            .unwrap()
            .with_max_reserved_per_tdmr(c.max_reserved);
        Planner::new()
            .with_strategy(PlanStrategy::Linux)
            .with_holes(c.holes)
            .with_limits(limits)
            .with_pamt_model(c.model)
            .plan(&memory, &cmrs)
            .map(|p| p.tdmrs().len())
    };
    assert_eq!(outcome(&base), Ok(2));

    let few = Case {
        max_tdmrs: 1,
        ..base.clone()
    };
    assert_eq!(outcome(&few), Err(PlanError::TdmrsExhausted { limit: 1 }));

    let none_reserved = Case {
        max_reserved: 0,
        ..base.clone()
    };
    assert!(matches!(
        outcome(&none_reserved),
        Err(PlanError::ReservedAreasExhausted { limit: 0, .. })
    ));

    let tiny = Case {
        regions: vec![spec(0, 64 * K4, false), spec(G, 64 * K4, false)],
        ..base.clone()
    };
    assert!(matches!(
        outcome(&tiny),
        Err(PlanError::PamtAllocationFailed { .. })
    ));

    let with_cmrs = Case {
        cmrs: Some(vec![CmrSpec {
            below: 255,
            above: 255,
            split: 0x8000,
        }]),
        holes: HolePolicy::Cmr,
        ..base
    };
    assert_eq!(outcome(&with_cmrs), Ok(2));
}

/// Maps whose Linux verdict flips between the two models of where its PAMTs land exist among
/// the generator's, and the readiness assessment flags exactly those.
#[test]
fn flips_between_the_allocator_models_are_found_and_flagged() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use tdmr::readiness::Readiness;
    let mut runner = TestRunner::deterministic();
    let (mut flips, mut checked) = (0, 0);
    for _ in 0..3000 {
        let c = case().new_tree(&mut runner).unwrap().current();
        let memory = memory_of(&c);
        let cmrs = cmrs_of(&c, &memory);
        let mut limits = TdxLimits::default()
            .with_max_tdmrs(c.max_tdmrs)
            .unwrap()
            .with_max_reserved_per_tdmr(c.max_reserved);
        if c.dpamt {
            limits = limits.with_dynamic_pamt(1).unwrap();
        }
        let linux = Planner::new()
            .with_strategy(PlanStrategy::Linux)
            .with_holes(c.holes)
            .with_limits(limits);
        let ok = |m: PamtModel| linux.with_pamt_model(m).plan(&memory, &cmrs).is_ok();
        let flip = ok(PamtModel::BottomUp) != ok(PamtModel::TopDown);
        let r = Readiness::assess(&linux, &memory, &cmrs);
        assert_eq!(r.linux_placement_flip.is_some(), flip, "{c:?}");
        flips += usize::from(flip);
        checked += 1;
    }
    eprintln!("{flips} of {checked} maps flip");
    assert!(flips >= 10, "only {flips} of {checked} maps flip");
}
