//! Fuzz body `plan`: a small arbitrary memory map and TDX limits through `Strategy::Linux`.
//!
//! The planner must never panic. It either fails for a documented reason (TDMRs exhausted,
//! reserved areas exhausted in a TDMR, no memory for a PAMT, or memory outside the CMRs when
//! the CMRs were clipped) or yields a plan whose `TDMR_INFO`s TDH.SYS.CONFIG accepts
//! (`validate::sys_config`), which leaves no TDX memory unusable (`validate::covers_memory`),
//! and which survives the ABI round trip.

use arbitrary::{Arbitrary, Unstructured};
use tdmr::layout::{HolePolicy, Plan, PlanError, Planner, Strategy};
use tdmr::memmap::{Cmr, Cmrs, MemoryMap, MemoryMapError, MemoryRegion};
use tdmr::sysinfo::TdxLimits;
use tdmr::tdx::abi::TdmrInfo;
use tdmr::tdx::validate::{ConfigEnv, covers_memory, sys_config};

const K4: u64 = 1 << 12;
const M2: u64 = 1 << 21;
const G: u64 = 1 << 30;
/// Most regions taken from one input.
const MAX_REGIONS: usize = 16;

/// A length: whole pages, 2 MiB units or GiB.
#[derive(Arbitrary, Debug)]
enum Amount {
    Pages(u16),
    Huge(u16),
    Gib(u8),
}

impl Amount {
    fn bytes(&self) -> u64 {
        match *self {
            Amount::Pages(n) => n as u64 * K4,
            Amount::Huge(n) => n as u64 * M2,
            Amount::Gib(n) => n as u64 * G,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Region {
    gap: Amount,
    /// Size minus one page.
    size: Amount,
    next_node: bool,
}

/// How the CMRs relate to the memory, per contiguous run of memory.
#[derive(Arbitrary, Debug)]
pub enum CmrChoice {
    /// CMRs equal to the memory.
    Equal,
    /// Each run grown into the gaps around it (by `below`/`above` 256ths of half the gap) and
    /// optionally split in two abutting CMRs.
    Slack(Vec<(u8, u8, u16)>),
    /// Each run shrunk by some pages at either end: memory may fall outside the CMRs.
    Clipped(Vec<(u8, u8)>),
}

#[derive(Arbitrary, Debug)]
pub struct Input {
    start: Amount,
    regions: Vec<Region>,
    pub cmrs: CmrChoice,
    max_tdmrs: u8,
    max_reserved: u8,
    pamt_entry_size: Option<u8>,
    dynamic_pamt: bool,
    pub cmr_holes: bool,
}

/// The input's memory map.
pub fn memory_of(input: &Input) -> MemoryMap {
    let mut regions = Vec::new();
    let mut cursor = input.start.bytes();
    let mut node = 0;
    for r in input.regions.iter().take(MAX_REGIONS) {
        let base = cursor + r.gap.bytes();
        let size = r.size.bytes() + K4;
        if r.next_node {
            node += 1;
        }
        regions.push(MemoryRegion::new(base, size, node));
        cursor = base + size;
    }
    if regions.is_empty() {
        regions.push(MemoryRegion::new(cursor, G, 0));
    }
    // At most 17 steps of at most 255 GiB each: far below 2^52.
    MemoryMap::new(regions).expect("the input decoder builds valid maps")
}

/// The input's CMRs.
pub fn cmrs_of(choice: &CmrChoice, memory: &MemoryMap) -> Cmrs {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for r in memory.regions() {
        match runs.last_mut() {
            Some(last) if last.1 == r.base => last.1 = r.end(),
            _ => runs.push((r.base, r.end())),
        }
    }
    let mut list = Vec::new();
    match choice {
        CmrChoice::Equal => return Cmrs::covering(memory),
        CmrChoice::Slack(specs) => {
            for (k, &(start, end)) in runs.iter().enumerate() {
                let (below, above, split) = specs.get(k).copied().unwrap_or_default();
                let gap_below = if k == 0 { start } else { start - runs[k - 1].1 };
                let gap_above = runs.get(k + 1).map_or(G, |n| n.0 - end);
                let take = |gap: u64, f: u8| (gap / 2 / 256 * f as u64) & !(K4 - 1);
                let (s, e) = (start - take(gap_below, below), end + take(gap_above, above));
                let cut = s + (((e - s) / 65536 * split as u64) & !(K4 - 1));
                if s < cut && cut < e {
                    list.push(Cmr::new(s, cut - s));
                    list.push(Cmr::new(cut, e - cut));
                } else {
                    list.push(Cmr::new(s, e - s));
                }
            }
        }
        CmrChoice::Clipped(specs) => {
            for (k, &(start, end)) in runs.iter().enumerate() {
                let (lo, hi) = specs.get(k).copied().unwrap_or_default();
                let (s, e) = (start + lo as u64 * K4, end.saturating_sub(hi as u64 * K4));
                if s < e {
                    list.push(Cmr::new(s, e - s));
                }
            }
        }
    }
    // Runs are disjoint and at most 16, so at most 32 CMRs, sorted and disjoint.
    Cmrs::new(list).expect("the input decoder builds valid CMR lists")
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let memory = memory_of(&input);
    let cmrs = cmrs_of(&input.cmrs, &memory);
    let limits = limits_of(&input);
    let holes = holes_of(&input);
    let planner = Planner::new()
        .with_strategy(Strategy::Linux)
        .with_holes(holes)
        .with_limits(limits);
    let result = planner.plan(&memory, &cmrs);
    assert_eq!(
        result,
        planner.plan(&memory, &cmrs),
        "planning is not deterministic"
    );

    let plan = match result {
        Ok(plan) => plan,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            match e {
                PlanError::TdmrsExhausted { limit } => assert_eq!(limit, limits.max_tdmrs()),
                PlanError::ReservedAreasExhausted { tdmr, limit } => {
                    assert_eq!(limit, limits.max_reserved_per_tdmr());
                    assert!(!tdmr.is_empty() && tdmr.start() % G == 0 && tdmr.end() % G == 0);
                }
                PlanError::PamtAllocationFailed { size, .. } => assert!(size > 0),
                PlanError::Memory(MemoryMapError::OutsideCmrs { range }) => {
                    assert!(matches!(input.cmrs, CmrChoice::Clipped(_)), "{range}");
                    assert!(!cmrs.contains(range));
                }
                other => panic!("undocumented failure: {other:?}"),
            }
            return;
        }
    };

    check_plan(&plan, &memory, &cmrs, &limits);
}

/// The input's limits: 1..=64 TDMRs, 0..=16 reserved areas, entry size, Dynamic PAMT.
pub fn limits_of(input: &Input) -> TdxLimits {
    let entry = input.pamt_entry_size.map_or(16, |e| e.max(1) as u16);
    let limits = TdxLimits::default()
        .with_max_tdmrs(input.max_tdmrs as u16 % 64 + 1)
        .expect("at least one TDMR")
        .with_max_reserved_per_tdmr(input.max_reserved as u16 % 17)
        .with_pamt_entry_size(entry)
        .expect("entry size at least 1");
    if input.dynamic_pamt {
        limits.with_dynamic_pamt(1).expect("one bit per page")
    } else {
        limits
    }
}

/// The input's hole policy.
pub fn holes_of(input: &Input) -> HolePolicy {
    if input.cmr_holes {
        HolePolicy::Cmr
    } else {
        HolePolicy::Memory
    }
}

/// Checks a plan as the module would (and the host's coverage policy, with its exclusions),
/// then the ABI round trip.
pub fn check_plan(plan: &Plan, memory: &MemoryMap, cmrs: &Cmrs, limits: &TdxLimits) {
    assert!(plan.tdmrs().len() <= limits.max_tdmrs());
    assert!(plan.max_reserved_in_one_tdmr() <= limits.max_reserved_per_tdmr());
    let infos = plan
        .tdmr_infos()
        .expect("at most 16 reserved areas fit a TDMR_INFO");
    let env = ConfigEnv::from_limits(limits, cmrs.listed());
    if let Err(status) = sys_config(&infos, &env) {
        panic!("TDH.SYS.CONFIG would refuse the plan: {status}\n{plan:#?}");
    }
    let regions = memory.regions().iter().map(|r| r.range());
    if let Err(e) = covers_memory(&infos, regions, plan.excluded()) {
        panic!("{e}\n{plan:#?}");
    }

    for info in &infos {
        assert_eq!(&TdmrInfo::from_bytes(&info.to_bytes()), info);
    }
    let back = Plan::from_tdmr_infos(&infos, plan.strategy(), plan.holes(), *limits)
        .expect("a plan's own TDMR_INFOs read back");
    assert_eq!(back.tdmr_infos().as_ref(), Ok(&infos));
}
