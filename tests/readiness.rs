//! The readiness assessment: Linux's verdict next to ours, where Linux's PAMTs land, and what
//! the report prints about it. (The `tdmr plan` report over the fixtures is tested in
//! `cli/tests/readiness.rs`.)

use tdmr::layout::{OffNodeReason, PlanError, Planner, Strategy};
use tdmr::memmap::{Cmrs, MemoryMap, MemoryRegion, parse_kernel_log};
use tdmr::pamt::PamtModel;
use tdmr::readiness::{Readiness, Warning};
use tdmr::report::{Context, text};

const GIB: u64 = 1 << 30;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn a_pamt_on_the_minor_node_is_reported() {
    // One 1 GiB window: 256 MiB of node 0, then 768 MiB of node 1. Linux takes the node of the
    // lowest memory (0) for the TDMR's PAMT although node 1 holds most of it.
    let memory = MemoryMap::new(vec![
        MemoryRegion::new(GIB, GIB / 4, 0),
        MemoryRegion::new(GIB + GIB / 4, 3 * GIB / 4, 1),
    ])
    .unwrap();
    let cmrs = Cmrs::covering(&memory);
    let r = Readiness::assess(
        &Planner::new().with_strategy(Strategy::Linux),
        &memory,
        &cmrs,
    );
    assert!(r.linux.is_ok());
    assert_eq!(r.linux.off_node_pamts, 1);
    assert!(r.warnings.iter().any(|w| matches!(
        w,
        Warning::PamtOffNode {
            strategy: Strategy::Linux,
            index: 0,
            pamt_node: 0,
            memory_node: 1,
            reason: Some(OffNodeReason::LowestNode),
            ..
        }
    )));
    assert_eq!(r.linux.result.as_ref().unwrap().tdmrs()[0].pamt_node(), 0);
    // Ours puts it on node 1.
    assert!(r.ours.is_ok());
    assert_eq!(r.ours.off_node_pamts, 0);
    assert_eq!(r.chosen, Strategy::Linux);
}

#[test]
fn a_linux_verdict_that_depends_on_where_its_pamts_land_is_flagged() {
    // [4 GiB, 5 GiB) holds 15 holes. alloc_contig_pages() puts all four PAMTs at the start of
    // ZONE_NORMAL, there: 19 reserved areas. From the top down they land in [7 GiB, 9 GiB).
    let path = fixture("linux-pamt-flip.log");
    let input = parse_kernel_log(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let (memory, cmrs) = (input.memory(), input.cmrs());
    let linux = Planner::new().with_strategy(Strategy::Linux);
    let g = 1u64 << 30;
    let fragmented = tdmr::addr::PhysRange::new(4 * g, 5 * g).unwrap();
    assert_eq!(
        linux.plan(memory, cmrs).unwrap_err(),
        PlanError::ReservedAreasExhausted {
            tdmr: fragmented,
            limit: 16
        }
    );
    let top_down = linux
        .with_pamt_model(PamtModel::TopDown)
        .plan(memory, cmrs)
        .unwrap();
    assert!(
        top_down
            .tdmrs()
            .iter()
            .all(|t| t.pamt_bytes() > 0 && t.pamt(tdmr::addr::PageSize::Size4K).start() >= 7 * g)
    );

    let r = Readiness::assess(&Planner::new(), memory, cmrs);
    let flip = r
        .linux_placement_flip
        .as_ref()
        .expect("the flip is flagged");
    assert_eq!(
        (flip.predicted, flip.other),
        (PamtModel::BottomUp, PamtModel::TopDown)
    );
    assert!(flip.other_result.is_ok());
    assert!(!r.linux.is_ok() && r.ours.is_ok());
    assert_eq!(
        r.warnings.first(),
        Some(&Warning::LinuxDependsOnPamtPlacement {
            predicted: PamtModel::BottomUp,
            predicted_ok: false,
            other: PamtModel::TopDown,
        })
    );
    // Planned the other way round, the other way round.
    let r = Readiness::assess(
        &Planner::new()
            .with_strategy(Strategy::Linux)
            .with_pamt_model(PamtModel::TopDown),
        memory,
        cmrs,
    );
    let flip = r.linux_placement_flip.as_ref().unwrap();
    assert_eq!(
        (flip.predicted, flip.other),
        (PamtModel::TopDown, PamtModel::BottomUp)
    );
    assert!(r.linux.is_ok() && flip.other_result.is_err());

    // What the report prints.
    let out = text::readiness(
        &Readiness::assess(&Planner::new(), memory, cmrs),
        &Context::of(&input),
    );
    assert!(
        out.contains(
            "! linux: the verdict depends on where its PAMTs land: it fails with bottom-up placement (the order of alloc_contig_pages), the prediction, and succeeds with top-down placement"
        ),
        "{out}"
    );
    assert!(
        out.contains("Linux mainline fails here (or not: that depends on where its PAMTs land)"),
        "{out}"
    );
}

#[test]
fn no_fixture_but_the_flip_one_depends_on_pamt_placement() {
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "log") {
            continue;
        }
        let input = parse_kernel_log(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let r = Readiness::assess(&Planner::new(), input.memory(), input.cmrs());
        let flips = path.ends_with("linux-pamt-flip.log");
        assert_eq!(r.linux_placement_flip.is_some(), flips, "{path:?}");
        assert_eq!(
            r.warnings
                .iter()
                .any(|w| matches!(w, Warning::LinuxDependsOnPamtPlacement { .. })),
            flips
        );
        checked += 1;
    }
    assert!(checked >= 9, "{checked} fixtures");
}
