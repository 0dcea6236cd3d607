//! A caller's PAMT allocator (the kernel's contiguous allocator): the optimal planner asks it for
//! one block per NUMA node, fits reserved areas around whatever it returns, and fails precisely
//! when the block is unusable or breaks a TDMR's reserved-area limit.

use tdmr::addr::{PhysRange, SZ_1G};
use tdmr::layout::{BadPamtReason, PlanError, Planner};
use tdmr::memmap::parse_kernel_log;
use tdmr::memmap::{Cmrs, MemoryMap, MemoryRegion, NodeId};
use tdmr::pamt::{PamtAllocator, TopDownAllocator};
use tdmr::sysinfo::TdxLimits;
use tdmr::tdx::validate;

/// Hands out what it is told to, and records what it was asked.
struct Scripted {
    answers: Vec<Option<PhysRange>>,
    asked: Vec<(u64, NodeId)>,
}

// SAFETY: test allocator; the plans it helps make are only validated, never handed to a
// module, so no memory is written.
unsafe impl PamtAllocator for Scripted {
    fn allocate(&mut self, size: u64, node: NodeId) -> Option<PhysRange> {
        self.asked.push((size, node));
        self.answers.get(self.asked.len() - 1).copied().flatten()
    }
}

/// The top-down placement model as a caller's allocator.
struct Offline(TopDownAllocator);

// SAFETY: as for `Scripted`: planning only.
unsafe impl PamtAllocator for Offline {
    fn allocate(&mut self, size: u64, node: NodeId) -> Option<PhysRange> {
        self.0.allocate(size, node)
    }
}

fn r(a: u64, b: u64) -> PhysRange {
    PhysRange::new(a, b).unwrap()
}

/// Two nodes of about 3 GiB, one hole in each node's first window: TDMRs [1, 4) and [8, 11) GiB.
fn two_nodes() -> (MemoryMap, Cmrs) {
    let m = MemoryMap::new(vec![
        MemoryRegion::new(SZ_1G, 0x1000_0000, 0),
        MemoryRegion::new(SZ_1G + 0x2000_0000, 3 * SZ_1G - 0x2000_0000, 0),
        MemoryRegion::new(8 * SZ_1G, 0x1000_0000, 1),
        MemoryRegion::new(8 * SZ_1G + 0x2000_0000, 3 * SZ_1G - 0x2000_0000, 1),
    ])
    .unwrap();
    let c = Cmrs::new(vec![
        tdmr::memmap::Cmr::new(SZ_1G, 0x1000_0000),
        tdmr::memmap::Cmr::new(SZ_1G + 0x2000_0000, 3 * SZ_1G - 0x2000_0000),
        tdmr::memmap::Cmr::new(8 * SZ_1G, 0x1000_0000),
        tdmr::memmap::Cmr::new(8 * SZ_1G + 0x2000_0000, 3 * SZ_1G - 0x2000_0000),
    ])
    .unwrap();
    (m, c)
}

fn assert_valid(plan: &tdmr::layout::Plan, memory: &MemoryMap, cmrs: &Cmrs) {
    let infos = plan.tdmr_infos().unwrap();
    validate::sys_config(
        &infos,
        &validate::ConfigEnv::from_limits(plan.limits(), cmrs.listed()),
    )
    .unwrap();
    validate::covers_memory(&infos, memory.regions().iter().map(|r| r.range()), &[]).unwrap();
}

#[test]
fn one_block_per_node_and_areas_fitted_around_it() {
    let (m, c) = two_nodes();
    let mut alloc = Scripted {
        answers: Vec::new(),
        asked: Vec::new(),
    };
    // The block sizes: 3 GiB TDMRs: 12 MiB + 24 KiB + 4 KiB.
    let size = 12 * (1 << 20) + 24 * 1024 + 4096;
    alloc.answers = vec![
        Some(r(3 * SZ_1G, 3 * SZ_1G + size)),
        Some(r(10 * SZ_1G, 10 * SZ_1G + size)),
    ];
    let plan = Planner::new().plan_with(&m, &c, &mut alloc).unwrap();
    assert_eq!(alloc.asked, vec![(size, 0), (size, 1)]);
    assert_eq!(plan.tdmrs().len(), 2);
    for t in plan.tdmrs() {
        // The hole, plus the block where the allocator put it (not next to the hole).
        assert_eq!(t.reserved().len(), 2, "{t:?}");
    }
    assert_valid(&plan, &m, &c);
}

#[test]
fn unusable_blocks_are_refused_by_name() {
    let (m, c) = two_nodes();
    let size = 12 * (1 << 20) + 24 * 1024 + 4096;
    let cases = [
        (None, None),
        (
            Some(r(3 * SZ_1G, 3 * SZ_1G + size - 4096)),
            Some(BadPamtReason::WrongSize),
        ),
        (
            Some(r(3 * SZ_1G + 0x800, 3 * SZ_1G + 0x800 + size)),
            Some(BadPamtReason::Misaligned),
        ),
        (
            Some(r(
                SZ_1G + 0x1000_0000 - 4096,
                SZ_1G + 0x1000_0000 - 4096 + size,
            )),
            Some(BadPamtReason::NotTdxMemory),
        ),
    ];
    for (answer, reason) in cases {
        let mut alloc = Scripted {
            answers: vec![answer],
            asked: Vec::new(),
        };
        let err = Planner::new().plan_with(&m, &c, &mut alloc).unwrap_err();
        match (err, reason) {
            (
                PlanError::PamtAllocationFailed {
                    size: s, node: 0, ..
                },
                None,
            ) => assert_eq!(s, size),
            (
                PlanError::BadPamtBlock {
                    reason: got, block, ..
                },
                Some(want),
            ) => {
                assert_eq!(got, want);
                assert_eq!(Some(block), answer);
            }
            (e, _) => panic!("{e:?} for {answer:?}"),
        }
    }
    // The second node's block overlapping the first's.
    let mut alloc = Scripted {
        answers: vec![
            Some(r(3 * SZ_1G, 3 * SZ_1G + size)),
            Some(r(3 * SZ_1G, 3 * SZ_1G + size)),
        ],
        asked: Vec::new(),
    };
    assert!(matches!(
        Planner::new().plan_with(&m, &c, &mut alloc),
        Err(PlanError::BadPamtBlock {
            reason: BadPamtReason::OverlapsPamt,
            ..
        })
    ));
}

#[test]
fn a_block_that_breaks_a_limit_names_the_tdmr() {
    let (m, c) = two_nodes();
    let size = 12 * (1 << 20) + 24 * 1024 + 4096;
    // One reserved area per TDMR: the hole fits, a block in the middle of memory does not.
    let limits = TdxLimits::default().with_max_reserved_per_tdmr(1);
    let mut alloc = Scripted {
        answers: vec![
            Some(r(3 * SZ_1G, 3 * SZ_1G + size)),
            Some(r(10 * SZ_1G, 10 * SZ_1G + size)),
        ],
        asked: Vec::new(),
    };
    let err = Planner::new()
        .with_limits(limits)
        .plan_with(&m, &c, &mut alloc)
        .unwrap_err();
    assert_eq!(
        err,
        PlanError::ReservedAreasExhausted {
            tdmr: r(SZ_1G, 4 * SZ_1G),
            limit: 1
        }
    );
    // Against the hole instead, it merges with it and fits.
    let mut alloc = Scripted {
        answers: vec![
            Some(r(SZ_1G + 0x1000_0000 - size, SZ_1G + 0x1000_0000)),
            Some(r(8 * SZ_1G + 0x1000_0000 - size, 8 * SZ_1G + 0x1000_0000)),
        ],
        asked: Vec::new(),
    };
    let plan = Planner::new()
        .with_limits(limits)
        .plan_with(&m, &c, &mut alloc)
        .unwrap();
    assert!(plan.tdmrs().iter().all(|t| t.reserved().len() == 1));
    assert_valid(&plan, &m, &c);
}

#[test]
fn the_kernel_style_allocator_plans_every_fixture() {
    for name in [
        "spr-1t.log",
        "host-2t.log",
        "emr-4s-256g.log",
        "icx-2s-256g.log",
        "spr-tdx10.log",
    ] {
        let log = std::fs::read_to_string(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let input = parse_kernel_log(&log).unwrap();
        let mut alloc = Offline(TopDownAllocator::new(input.memory()));
        let plan = Planner::new()
            .plan_with(input.memory(), input.cmrs(), &mut alloc)
            .unwrap();
        assert_valid(&plan, input.memory(), input.cmrs());
        let docked = Planner::new().plan(input.memory(), input.cmrs()).unwrap();
        // Same TDMRs; docking never needs more reserved areas than the allocator's placement.
        assert_eq!(
            plan.tdmrs().iter().map(|t| t.range()).collect::<Vec<_>>(),
            docked.tdmrs().iter().map(|t| t.range()).collect::<Vec<_>>(),
            "{name}"
        );
        assert!(
            docked.reserved_area_count() <= plan.reserved_area_count(),
            "{name}"
        );
    }
}
