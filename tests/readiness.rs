//! The readiness report (`plan` text output): Linux's verdict next to ours, PAMT static and
//! with Dynamic PAMT, limits and warnings, checked against what Linux printed on these machines.

mod common;

use common::{fixture, run, stdout};
use tdmr::layout::{OffNodeReason, PlanError, Planner, Strategy};
use tdmr::memmap::{Cmrs, MemoryMap, MemoryRegion, parse_kernel_log};
use tdmr::pamt::PamtModel;
use tdmr::readiness::{Readiness, Warning};

const GIB: u64 = 1 << 30;

/// The two columns of a row of the readiness table (Linux's, ours).
fn row(out: &str, name: &str) -> (String, String) {
    let line = out
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with("  "))
        .unwrap_or_else(|| panic!("no row {name} in\n{out}"));
    // Columns start at fixed offsets: label 19 + 1, Linux 29 + 1.
    let linux = line[20..50].trim().to_string();
    let ours = line[50..].trim().to_string();
    (linux, ours)
}

#[test]
fn emr_linux_fails_ours_comes_up() {
    let o = run(&[&fixture("emr-4s-256g.log")]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert_eq!(row(&out, "result"), ("FAILS".into(), "ok".into()));
    assert!(
        out.contains("linux: TDMR [0x0, 0x80000000): reserved areas exhausted"),
        "{out}"
    );
    assert!(
        out.contains("verdict: TDX comes up with the optimal strategy; Linux mainline fails here"),
        "{out}"
    );
    // Distribution kernels with CMR-based holes print 1050644 KB on this machine, the least
    // covered span (256 GiB in 5 TDMRs) prints the same.
    assert!(
        row(&out, "PAMT, static").1.starts_with("1050644 KB"),
        "{out}"
    );
    assert!(out.contains("1050644 KB allocated for PAMT"), "{out}");
    assert_eq!(row(&out, "TDMRs").1, "5 of 64");
    assert_eq!(row(&out, "excluded memory").1, "none");
    // One screen: the report and the one-line-per-TDMR layout fit 40 lines.
    assert!(out.lines().count() <= 40, "{} lines", out.lines().count());
}

#[test]
fn spr_dynamic_pamt_footprint_matches_linux() {
    // Linux with Dynamic PAMT on this machine: 40980 KB (static: 4202516 KB).
    let o = run(&[&fixture("spr-1t.log")]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    let (linux_static, _) = row(&out, "PAMT, static");
    assert!(linux_static.starts_with("4202516 KB"), "{out}");
    let (linux_dpamt, ours_dpamt) = row(&out, "PAMT, Dynamic PAMT");
    assert!(linux_dpamt.starts_with("40980 KB"), "{out}");
    assert!(ours_dpamt.starts_with("40980 KB"), "{out}");
    // Asking for Dynamic PAMT keeps the static figure in the report.
    let o = run(&["--dpamt", "--strategy", "linux", &fixture("spr-1t.log")]);
    let out = stdout(&o);
    assert!(
        row(&out, "PAMT, static").0.starts_with("4202516 KB"),
        "{out}"
    );
    assert!(out.contains("40980 KB allocated for PAMT"), "{out}");
}

#[test]
fn human_sizes_replace_raw_kib() {
    let out = stdout(&run(&[&fixture("emr-4s-256g.log")]));
    // 20 ranges totalling 267785280 KiB.
    assert!(
        out.contains("TDX memory: 255.4 GiB in 20 ranges on 4 nodes"),
        "{out}"
    );
    assert!(!out.contains("267785280"), "{out}");
}

#[test]
fn warnings_name_limits_being_reached() {
    // Linux builds 5 TDMRs here: with 6 allowed, fewer than 4 stay spare (TDMR_NR_WARN).
    let out = stdout(&run(&[
        "--strategy",
        "linux",
        "--max-tdmrs",
        "6",
        &fixture("spr-1t.log"),
    ]));
    assert!(
        out.contains("! linux: 5 of 6 TDMRs used, fewer than 4 spare"),
        "{out}"
    );
    // Memory holes on EMR: [1 GiB, 2 GiB) holds 16 holes, the whole reserved-area budget.
    let out = stdout(&run(&["--holes", "memory", &fixture("emr-4s-256g.log")]));
    assert!(
        out.contains("! optimal: TDMR 1 [0x40000000, 0x80000000) uses all 16 reserved areas"),
        "{out}"
    );
    // Exclusions are always called out.
    let out = stdout(&run(&[
        "--holes",
        "memory",
        "--max-reserved",
        "15",
        "--allow-exclusions",
        &fixture("emr-4s-256g.log"),
    ]));
    assert!(
        out.contains("! optimal: 4 KiB of TDX memory in 1 range left out"),
        "{out}"
    );
    assert_eq!(row(&out, "excluded memory").1, "4 KiB in 1 range");
}

#[test]
fn when_nothing_fits_the_report_says_so() {
    let o = run(&[
        "--holes",
        "memory",
        "--max-reserved",
        "15",
        &fixture("emr-4s-256g.log"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert_eq!(row(&out, "result"), ("FAILS".into(), "FAILS".into()));
    assert!(
        out.contains(
            "verdict: TDX cannot come up with these limits unless some TDX memory is left out"
        ),
        "{out}"
    );
    assert!(!out.contains("allocated for PAMT"), "{out}");
}

#[test]
fn verbose_lists_every_reserved_area_and_pamt_block() {
    let short = stdout(&run(&[&fixture("emr-4s-256g.log")]));
    let long = stdout(&run(&["--verbose", &fixture("emr-4s-256g.log")]));
    assert!(!short.contains("        reserved ["));
    // TDMR 0 of the optimal layout reserves the non-convertible [0, 1 MiB).
    assert!(
        long.contains("        reserved [0x0, 0x100000)  1 MiB  hole"),
        "{long}"
    );
    assert_eq!(long.matches("        PAMT ").count(), 15);
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
    let out = stdout(&run(&[&path]));
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
