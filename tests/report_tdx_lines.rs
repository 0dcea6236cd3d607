//! What the kernel printed about TDX, in the report: the module, the KeyIDs, how initialization
//! ended, and the kernel's own PAMT total beside what Linux's strategy predicts (text and JSON,
//! in the kernel's PAMT mode).

use serde_json::Value;
use tdmr::layout::Planner;
use tdmr::memmap::parse_kernel_log;
use tdmr::readiness::Readiness;
use tdmr::report::{self, Context};
use tdmr::sysinfo::TdxLimits;

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The text report and the `tdx_lines` JSON object of `log` planned with `planner`.
fn report(log: &str, planner: Planner) -> (String, Value) {
    let parsed = parse_kernel_log(log).unwrap();
    let ctx = Context::of(&parsed);
    let r = Readiness::assess(&planner, parsed.memory(), parsed.cmrs());
    let text = report::text::readiness(&r, &ctx);
    let json = report::json::tdx_lines(parsed.tdx_lines(), Some(&r));
    (text, serde_json::from_str(&json).unwrap())
}

#[test]
fn the_512g_host_printed_what_linux_predicts() {
    let (text, json) = report(&fixture("spr-512g.log"), Planner::new());
    assert!(
        text.contains(
            "kernel log: module 1.5 build 698 (20240129), private KeyIDs [32, 64), 2101260 KB allocated for PAMT, module initialized"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "this kernel printed 2101260 KB; Linux's strategy predicts 2101260 KB (the same)"
        ),
        "{text}"
    );
    assert_eq!(json["module"]["text"], "1.5 build 698 (20240129)");
    assert_eq!(json["module"]["form"], "attributes");
    assert_eq!(
        (
            json["module"]["major"].as_u64(),
            json["module"]["build_num"].as_u64()
        ),
        (Some(1), Some(698))
    );
    assert!(json["module"]["update"].is_null());
    assert_eq!(json["keyids"], serde_json::json!({"first": 32, "end": 64}));
    assert_eq!(json["init"], "initialized");
    assert_eq!(json["pamt_kb"], 2101260);
    assert_eq!(json["linux_pamt_kb"], 2101260);
    assert!(json["linux_error"].is_null());
}

#[test]
fn a_kernel_that_failed_is_set_beside_linux_failing() {
    let log = fixture("emr-4s-256g.log")
        + "[   11.7] virt/tdx: initialization failed: TDMR [0x0, 0x80000000): reserved areas exhausted.\n\
           [   11.7] virt/tdx: module initialization failed (-28)\n";
    let (text, json) = report(&log, Planner::new());
    assert!(
        text.contains(
            "this kernel printed `module initialization failed (-28)`; Linux's strategy predicts no layout: TDMR [0x0, 0x80000000): reserved areas exhausted"
        ),
        "{text}"
    );
    assert_eq!(
        (json["init"].as_str(), json["init_code"].as_i64()),
        (Some("failed"), Some(-28))
    );
    assert!(json["linux_pamt_kb"].is_null());
    assert!(
        json["linux_error"]
            .as_str()
            .unwrap()
            .contains("reserved areas exhausted")
    );
}

#[test]
fn with_dynamic_pamt_the_prediction_is_linux_with_dynamic_pamt() {
    // Linux with Dynamic PAMT on the 1 TiB machine: 40980 KB (static: 4202516 KB). The
    // prediction follows the kernel's mode whatever the planner's limits.
    let log = fixture("spr-1t.log")
        + "virt/tdx: Enable Dynamic PAMT\nvirt/tdx: 40980 KB allocated for PAMT\n";
    for limits in [
        TdxLimits::default(),
        TdxLimits::default().with_dynamic_pamt(1).unwrap(),
    ] {
        let (text, json) = report(&log, Planner::new().with_limits(limits));
        assert!(
            text.contains(
                "this kernel printed 40980 KB; Linux's strategy predicts 40980 KB with Dynamic PAMT (the same)"
            ),
            "{text}"
        );
        assert!(text.contains("Dynamic PAMT enabled"), "{text}");
        assert_eq!(
            (
                json["dynamic_pamt"].as_bool(),
                json["linux_pamt_kb"].as_u64()
            ),
            (Some(true), Some(40980))
        );
    }
}

#[test]
fn a_different_figure_says_by_how_much() {
    let log = fixture("spr-1t.log") + "virt/tdx: 4202000 KB allocated for PAMT\n";
    let (text, _) = report(&log, Planner::new());
    assert!(
        text.contains(
            "this kernel printed 4202000 KB; Linux's strategy predicts 4202516 KB (516 KB more)"
        ),
        "{text}"
    );
    // No TDX lines, no kernel line and no comparison.
    let (text, json) = report(&fixture("spr-1t.log"), Planner::new());
    assert!(
        !text.contains("kernel log:") && !text.contains("this kernel printed"),
        "{text}"
    );
    assert!(json["module"].is_null() && json["pamt_kb"].is_null());
}

#[test]
fn every_document_starts_with_its_schema() {
    let parsed = parse_kernel_log(&fixture("spr-512g.log")).unwrap();
    let ctx = Context::of(&parsed);
    let plan = Planner::new().plan(parsed.memory(), parsed.cmrs()).unwrap();
    let doc = report::json::plan(&plan, &ctx);
    assert!(doc.starts_with("{\"schema\":1,"), "{doc}");
    let err = Planner::new()
        .with_limits(TdxLimits::default().with_max_reserved_per_tdmr(0))
        .plan(parsed.memory(), parsed.cmrs())
        .unwrap_err();
    let doc = report::json::infeasible_in("optimal", &err, &ctx);
    assert!(doc.starts_with("{\"schema\":1,"), "{doc}");
    let doc =
        report::json::with_tdx_lines(report::json::plan(&plan, &ctx), parsed.tdx_lines(), None);
    let v: Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(v["schema"], report::json::SCHEMA);
    assert_eq!(v["tdx_lines"]["pamt_kb"], 2101260);
    assert!(v["tdx_lines"].get("linux_pamt_kb").is_none());
}
