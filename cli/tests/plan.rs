//! `tdmr plan` as users run it: exit codes, Linux's published numbers, and every JSON plan
//! checked by the validator.

use serde_json::Value;
use tdmr::addr::PhysRange;
use tdmr::memmap::Cmr;
use tdmr::memmap::parse_kernel_log;
use tdmr::sysinfo::TdxLimits;
use tdmr::tdx::abi::TdmrInfo;
use tdmr::tdx::validate::{self, ConfigEnv};

mod common;

use common::{fixture, infos_of, plan as run, stdout, u};

/// Reads the CLI's JSON back into the module's ABI and the CMRs it planned against.
fn infos_from_json(doc: &Value) -> (Vec<TdmrInfo>, Vec<Cmr>) {
    let cmrs = doc["cmrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Cmr::new(u(&c["base"]), u(&c["size"])))
        .collect();
    (infos_of(doc), cmrs)
}

/// Validates a JSON plan against the module's rules and the host coverage policy.
fn assert_json_plan_valid(doc: &Value, log: &str) {
    assert_eq!(doc["status"], "ok");
    let (infos, cmrs) = infos_from_json(doc);
    let mut limits = TdxLimits::default()
        .with_max_tdmrs(u(&doc["limits"]["max_tdmrs"]) as u16)
        .unwrap();
    if !doc["limits"]["dynamic_pamt_bits"].is_null() {
        limits = limits.with_dynamic_pamt(1).unwrap();
    }
    let env = ConfigEnv::from_limits(&limits, &cmrs);
    validate::sys_config(&infos, &env).unwrap_or_else(|s| panic!("module refuses: {s}"));
    let parsed = parse_kernel_log(log).unwrap();
    let excluded: Vec<PhysRange> = doc["excluded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| PhysRange::from_base_size(u(&e["base"]), u(&e["size"])).unwrap())
        .collect();
    validate::covers_memory(
        &infos,
        parsed.memory().regions().iter().map(|r| r.range()),
        &excluded,
    )
    .unwrap();
    let sum: u64 = infos
        .iter()
        .map(|i| i.pamt_4k_size + i.pamt_2m_size + i.pamt_1g_size)
        .sum();
    assert_eq!(sum, u(&doc["pamt_bytes"]));
}

#[test]
fn linux_strategy_reproduces_what_linux_printed() {
    for (name, kb) in [
        ("spr-1t.log", 4202516u64),
        ("host-2t.log", 8396820),
        ("spr-tdx10.log", 3677208),
        ("icx-2s-256g.log", 1050632),
    ] {
        let o = run(&["--strategy", "linux", &fixture(name)]);
        assert_eq!(o.status.code(), Some(0), "{name}");
        let line = format!("{kb} KB allocated for PAMT");
        assert!(stdout(&o).contains(&line), "{name}: {}", stdout(&o));
    }
    let o = run(&["--strategy", "linux", &fixture("emr-4s-256g.log")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("TDMR [0x0, 0x80000000): reserved areas exhausted"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn every_json_plan_passes_the_validator() {
    let dir = common::root().join("tests/fixtures");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "log") {
            continue;
        }
        let log = std::fs::read_to_string(&path).unwrap();
        for extra in [&[][..], &["--holes", "cmr"], &["--dpamt"]] {
            let mut args = vec!["--strategy", "linux", "--format", "json"];
            args.extend_from_slice(extra);
            args.push(path.to_str().unwrap());
            let o = run(&args);
            let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
            match o.status.code() {
                Some(0) => {
                    assert_json_plan_valid(&doc, &log);
                    checked += 1;
                }
                Some(1) => {
                    assert_eq!(doc["status"], "infeasible");
                    assert!(doc["error"].as_str().unwrap().contains("exhausted"));
                }
                other => panic!("{path:?} {extra:?}: exit {other:?}"),
            }
        }
    }
    assert!(checked >= 10, "only {checked} plans checked");
}

#[test]
fn emr_boots_with_cmr_holes_like_distribution_kernels() {
    // Ubuntu kernels carry the CMR-based hole patch and report 1050644 KB on this class.
    let o = run(&[
        "--strategy",
        "linux",
        "--holes",
        "cmr",
        &fixture("emr-4s-256g.log"),
    ]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).contains("1050644 KB allocated for PAMT"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn dynamic_pamt_shrinks_the_static_footprint() {
    let o = run(&["--strategy", "linux", "--dpamt", &fixture("spr-1t.log")]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).contains("40980 KB allocated for PAMT"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn dynamic_pamt_plan_with_the_default_strategy_passes_validate_in_dpamt_mode() {
    // Issue 6's done-when: `plan --dpamt spr-1t.log` prints Linux's Dynamic PAMT figure.
    let path = fixture("spr-1t.log");
    let o = run(&["--dpamt", &path]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).contains("40980 KB allocated for PAMT"),
        "{}",
        stdout(&o)
    );
    let o = run(&["--dpamt", "--format", "json", &path]);
    assert_eq!(o.status.code(), Some(0));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["strategy"], "optimal");
    assert_eq!(u(&doc["pamt_bytes"]) / 1024, 40_980);
    assert_json_plan_valid(&doc, &std::fs::read_to_string(&path).unwrap());
    // Without R8 bit 16 the module wants full PAMT_4K tables: the bitmap of TDMR 0 is too small.
    let (infos, cmrs) = infos_from_json(&doc);
    let status = validate::sys_config(
        &infos,
        &ConfigEnv::from_limits(&TdxLimits::default(), &cmrs),
    )
    .unwrap_err();
    assert_eq!(status.raw(), tdmr::tdx::status::TDX_INVALID_PAMT);
}

#[test]
fn bad_input_exits_2_naming_the_line() {
    let dir = std::env::temp_dir().join(format!("tdmr-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.log");
    std::fs::write(
        &bad,
        "hello\nBIOS-e820: [mem 0x100000-0x1fffff] usable\nBIOS-e820: [mem 0x200000-0xzz] usable\n",
    )
    .unwrap();
    let o = run(&[bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("line 3"), "{err}");
    let o = run(&["--strategy", "fancy"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["--max-tdmrs", "0"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&[dir.join("missing.log").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn limits_are_taken_from_the_command_line() {
    let o = run(&[
        "--strategy",
        "linux",
        "--max-tdmrs",
        "4",
        "--format",
        "json",
        &fixture("spr-1t.log"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(doc["error"].as_str().unwrap().contains("TDMRs exhausted"));
    let o = run(&[
        "--strategy",
        "linux",
        "--pamt-entry-size",
        "32",
        "--format",
        "json",
        &fixture("spr-1t.log"),
    ]);
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(u(&doc["limits"]["pamt_entry_size"]["2m"]), 32);
    // Doubling every entry doubles each level (4K and 2M exactly; 1G rounds to pages).
    assert!(u(&doc["pamt_bytes"]) > 2 * 4202516 * 1024 - 5 * 8192);
}

#[test]
fn optimal_plans_every_fixture_and_never_costs_more_than_linux() {
    let dir = common::root().join("tests/fixtures");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "log") {
            continue;
        }
        let log = std::fs::read_to_string(&path).unwrap();
        let o = run(&["--format", "json", "--compare", path.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{path:?}");
        let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(doc["strategy"], "optimal");
        assert_eq!(doc["excluded"].as_array().unwrap().len(), 0);
        assert_json_plan_valid(&doc, &log);
        let linux = &doc["compare"]["linux"];
        if linux["status"] == "ok" {
            assert!(u(&doc["pamt_bytes"]) <= u(&linux["pamt_bytes"]), "{path:?}");
            let ours: usize = doc["tdmrs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["reserved"].as_array().unwrap().len())
                .sum();
            assert!(ours as u64 <= u(&linux["reserved_areas"]), "{path:?}");
        }
    }
}

fn covered_gib(args: &[&str]) -> u64 {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let o = run(&all);
    assert_eq!(o.status.code(), Some(0), "{args:?}");
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    doc["tdmrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| u(&t["size"]))
        .sum::<u64>()
        >> 30
}

#[test]
fn fewer_tdmrs_bridge_the_cheapest_gaps() {
    let f = fixture("spr-tdx10.log");
    assert_eq!(covered_gib(&[&f]), 896);
    assert_eq!(covered_gib(&["--max-tdmrs", "3", &f]), 898);
    assert_eq!(covered_gib(&["--max-tdmrs", "2", &f]), 962);
}

#[test]
fn memory_holes_on_emr_split_the_low_two_gigabytes() {
    let log = std::fs::read_to_string(fixture("emr-4s-256g.log")).unwrap();
    let o = run(&[
        "--holes",
        "memory",
        "--format",
        "json",
        &fixture("emr-4s-256g.log"),
    ]);
    assert_eq!(o.status.code(), Some(0));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_json_plan_valid(&doc, &log);
    let t = doc["tdmrs"].as_array().unwrap();
    assert_eq!((u(&t[0]["base"]), u(&t[0]["size"])), (0, 1 << 30));
    assert_eq!((u(&t[1]["base"]), u(&t[1]["size"])), (1 << 30, 1 << 30));
    // [1 GiB, 2 GiB) holds 16 holes of the e820 map: exactly the limit, so no PAMT may go there.
    assert_eq!(t[1]["reserved"].as_array().unwrap().len(), 16);
}

#[test]
fn the_smallest_obstacle_is_named_and_exclusions_are_listed() {
    let f = fixture("emr-4s-256g.log");
    let o = run(&["--holes", "memory", "--max-reserved", "15", &f]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains(
            "1 GiB window [0x40000000, 0x80000000) holds 16 holes in TDX memory; limit 15"
        ),
        "{}",
        stdout(&o)
    );
    let o = run(&[
        "--holes",
        "memory",
        "--max-reserved",
        "15",
        "--allow-exclusions",
        "--format",
        "json",
        &f,
    ]);
    assert_eq!(o.status.code(), Some(0));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    let excluded = doc["excluded"].as_array().unwrap();
    // The cheapest memory between two holes of that window: the 4 KiB usable page
    // [0x64158000, 0x64159000) of the e820 map.
    assert_eq!(excluded.len(), 1);
    assert_eq!(
        (u(&excluded[0]["base"]), u(&excluded[0]["size"])),
        (0x64158000, 4096)
    );
    assert_json_plan_valid(&doc, &std::fs::read_to_string(&f).unwrap());
}

#[test]
fn compare_shows_linux_failing_next_to_ours() {
    let o = run(&["--demo", "--compare"]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(out.contains("1050644 KB allocated for PAMT"), "{out}");
    assert!(out.contains("FAILS"), "{out}");
    assert!(
        out.contains("linux: TDMR [0x0, 0x80000000): reserved areas exhausted"),
        "{out}"
    );
}

#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = common::tdmr()
        .args(["plan", "--demo", "--verbose", "--compare"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the reading end at once: the child, still starting and planning, then writes into a
    // pipe nobody reads (EPIPE).
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    let out = std::process::Output {
        status,
        stdout: Vec::new(),
        stderr: err.into_bytes(),
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}

#[test]
fn cpus_64_on_twelve_tib_estimates_a_thirtieth_of_linux_and_the_plan_validates() {
    let path = fixture("hp-16s-12t.log");
    let log = std::fs::read_to_string(&path).unwrap();
    let one = run(&["--format", "json", &path]);
    let one: Value = serde_json::from_slice(&one.stdout).unwrap();
    let o = run(&["--cpus", "64", "--format", "json", &path]);
    assert_eq!(o.status.code(), Some(0));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_json_plan_valid(&doc, &log);
    let e = &doc["init_estimate"];
    assert_eq!(u(&e["cpus"]), 64);
    assert_eq!(e["s_per_tib"].as_f64(), Some(2.6));
    let (serial, ours) = (
        e["linux_serial_s"].as_f64().unwrap(),
        e["tdmr_s"].as_f64().unwrap(),
    );
    assert!(ours * 30.0 <= serial, "{e}");
    // TDMRs of 2 + 764 + 15 × 768 GiB at 4 MiB per call; Linux's ~31.2 s at 2.6 s per TiB.
    assert_eq!(u(&e["calls"]), (2 + 764 + 15 * 768) * 256);
    assert!((31.0..31.3).contains(&serial), "{e}");
    let extra = u(&doc["pamt_bytes"]) - u(&one["pamt_bytes"]);
    assert!(extra <= 64 * 4096);
    assert_eq!(u(&e["split"]["extra_pamt_bytes"]), extra);
    assert_eq!(
        doc["tdmrs"].as_array().unwrap().len() as u64,
        u(&e["tdmr_count"])
    );
    // One CPU: today's layout, no split priced.
    assert_eq!(u(&one["init_estimate"]["cpus"]), 1);
    assert!(one["init_estimate"]["split"].is_null());
    // Bad counts are usage errors.
    for bad in ["0", "x", "-1"] {
        assert_eq!(run(&["--cpus", bad, &path]).status.code(), Some(2));
    }
}

#[test]
fn linux_keeps_a_hotplug_range_a_tdmr_of_its_own_as_the_kernel_does() {
    // Node 0's RAM [4 GiB, 6 GiB) is plain and [6 GiB, 10 GiB) lies in an SRAT range marked
    // hotplug, one usable e820 block across both: memblock keeps them apart, so does Linux.
    let f = fixture("hotplug-srat.log");
    let o = run(&["--strategy", "linux", &f]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(out.contains("32844 KB allocated for PAMT"), "{out}");
    assert!(out.contains("\n3 TDMRs, "), "{out}");
    let o = run(&["--strategy", "linux", "--format", "json", &f]);
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    let tdmrs: Vec<(u64, u64)> = doc["tdmrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (u(&t["base"]) >> 30, u(&t["size"]) >> 30))
        .collect();
    assert_eq!(tdmrs, [(0, 2), (4, 2), (6, 4)]);
    assert_json_plan_valid(&doc, &std::fs::read_to_string(&f).unwrap());
}

#[test]
fn ram_outside_every_srat_node_plans_on_node_0_with_a_warning() {
    let f = fixture("numa-off.log");
    let o = run(&[&f]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(
        out.contains(
            "! log: 4 GiB of RAM in no SRAT node (the first: [0x2100000000, 0x2200000000)): Linux turns NUMA off"
        ),
        "{out}"
    );
    assert!(out.contains("on 1 node;"), "{out}");
    for strategy in ["linux", "optimal"] {
        let o = run(&["--strategy", strategy, "--format", "json", &f]);
        assert_eq!(o.status.code(), Some(0), "{strategy}");
        let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_json_plan_valid(&doc, &std::fs::read_to_string(&f).unwrap());
        let warnings = doc["log_warnings"].as_array().unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].as_str().unwrap().contains("NUMA off"));
        for t in doc["tdmrs"].as_array().unwrap() {
            assert_eq!((u(&t["node"]), u(&t["pamt_node"])), (0, 0), "{strategy}");
        }
    }
}

/// The node of the TDX memory at `pa`, from the log.
fn node_at(log: &str, pa: u64) -> Option<u64> {
    let parsed = parse_kernel_log(log).unwrap();
    parsed
        .memory()
        .regions()
        .iter()
        .find(|r| r.base <= pa && pa < r.end())
        .map(|r| u64::from(r.node))
}

/// Every TDMR's `pamt_node` is the node of the memory at its PAMT block, `majority_node` the
/// node holding most of its memory, and `pamt_node_reason` is there exactly when they differ.
fn assert_pamt_nodes_true(doc: &Value, log: &str) -> usize {
    let parsed = parse_kernel_log(log).unwrap();
    let mut off = 0;
    for t in doc["tdmrs"].as_array().unwrap() {
        let (base, end) = (u(&t["base"]), u(&t["base"]) + u(&t["size"]));
        let mut per_node = std::collections::BTreeMap::<u64, u64>::new();
        for r in parsed.memory().regions() {
            let (s, e) = (r.base.max(base), r.end().min(end));
            if s < e {
                *per_node.entry(u64::from(r.node)).or_default() += e - s;
            }
        }
        let majority = per_node
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|e| *e.0);
        assert_eq!(t["majority_node"].as_u64(), majority, "{t}");
        let at = node_at(log, u(&t["pamt"]["4k"]["base"]));
        assert_eq!(t["pamt_node"].as_u64(), at, "{t}");
        let differs = at != majority;
        assert_eq!(t.get("pamt_node_reason").is_some(), differs, "{t}");
        off += usize::from(differs);
    }
    assert_eq!(u(&doc["off_node_pamts"]) as usize, off);
    off
}

#[test]
fn json_names_each_pamts_node_and_why_it_is_off_node() {
    let dir = common::root().join("tests/fixtures");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "log") {
            continue;
        }
        let log = std::fs::read_to_string(&path).unwrap();
        for strategy in ["linux", "optimal"] {
            let o = run(&[
                "--strategy",
                strategy,
                "--format",
                "json",
                path.to_str().unwrap(),
            ]);
            let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
            if doc["status"] == "ok" {
                assert_pamt_nodes_true(&doc, &log);
                checked += 1;
            }
        }
    }
    assert!(checked >= 15, "{checked} plans checked");

    // One GiB window: 256 MiB of node 0, then 768 MiB of node 1. Linux asks for node 0 (the
    // lowest memory); the optimal strategy puts the PAMT on node 1.
    let dir = std::env::temp_dir().join(format!("tdmr-cli-nodes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("minor-node.log");
    let log = "BIOS-e820: [mem 0x0000000040000000-0x000000007fffffff] usable\n\
               ACPI: SRAT: Node 0 PXM 0 [mem 0x40000000-0x4fffffff]\n\
               ACPI: SRAT: Node 1 PXM 1 [mem 0x50000000-0x7fffffff]\n";
    std::fs::write(&f, log).unwrap();
    let o = run(&[
        "--strategy",
        "linux",
        "--format",
        "json",
        f.to_str().unwrap(),
    ]);
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(assert_pamt_nodes_true(&doc, log), 1);
    let t = &doc["tdmrs"][0];
    assert_eq!((u(&t["pamt_node"]), u(&t["majority_node"])), (0, 1));
    assert_eq!(t["pamt_node_reason"], "lowest-node");
    let o = run(&["--format", "json", f.to_str().unwrap()]);
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(assert_pamt_nodes_true(&doc, log), 0);
    assert_eq!(u(&doc["tdmrs"][0]["pamt_node"]), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_svg_marks_pamt_blocks_off_their_node() {
    let dir = std::env::temp_dir().join(format!("tdmr-cli-svg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("minor-node.log");
    std::fs::write(
        &f,
        "BIOS-e820: [mem 0x0000000040000000-0x000000007fffffff] usable\n\
         ACPI: SRAT: Node 0 PXM 0 [mem 0x40000000-0x4fffffff]\n\
         ACPI: SRAT: Node 1 PXM 1 [mem 0x50000000-0x7fffffff]\n",
    )
    .unwrap();
    // Linux's PAMT (node 0, most memory on node 1) above ours (node 1).
    let o = run(&["--format", "svg", "--compare", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    let doc = common::xml::parse_xml(&stdout(&o)).unwrap();
    let off: Vec<_> = doc
        .descendants()
        .into_iter()
        .filter(|e| e.has_class("bo") && e.title().is_some())
        .collect();
    let titles: Vec<&str> = off.iter().filter_map(|e| e.title()).collect();
    assert!(
        titles
            .iter()
            .any(|t| t.contains("PAMT of TDMR 0, off its node")),
        "{titles:?}"
    );
    // Only Linux's section has one: the legend's swatch, plus Linux's block.
    let sections: Vec<_> = doc
        .descendants()
        .into_iter()
        .filter(|e| e.attr("id").is_some_and(|i| i.starts_with("section-")))
        .collect();
    let marked = |id: &str| {
        sections
            .iter()
            .find(|s| s.attr("id") == Some(id))
            .unwrap()
            .descendants()
            .iter()
            .any(|e| e.has_class("bo"))
    };
    assert!(marked("section-linux"));
    assert!(!marked("section-optimal"));
    let tdmr_tip = doc
        .descendants()
        .into_iter()
        .filter_map(|e| e.title())
        .any(|t| t.contains("on node 0, most of its memory on node 1"));
    assert!(tdmr_tip);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_512g_log_shows_module_keyids_and_the_kernels_pamt_beside_the_prediction() {
    let f = common::root().join("tests/fixtures/spr-512g.log");
    let o = run(&[f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(
        out.contains("kernel log: module 1.5 build 698 (20240129), private KeyIDs [32, 64), 2101260 KB allocated for PAMT, module initialized"),
        "{out}"
    );
    assert!(
        out.contains(
            "this kernel printed 2101260 KB; Linux's strategy predicts 2101260 KB (the same)"
        ),
        "{out}"
    );
    assert!(out.contains("\nlayout (optimal strategy"), "{out}");
    assert!(out.contains("TDMR  0 [0x0, 0x80000000)"), "{out}");
    assert!(out.ends_with("2101260 KB allocated for PAMT\n"), "{out}");
    let o = run(&["--format", "json", f.to_str().unwrap()]);
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    let t = &doc["tdx_lines"];
    assert_eq!(
        (
            t["module"]["major"].as_u64(),
            t["module"]["minor"].as_u64(),
            t["module"]["build_num"].as_u64()
        ),
        (Some(1), Some(5), Some(698))
    );
    assert_eq!(
        (t["keyids"]["first"].as_u64(), t["keyids"]["end"].as_u64()),
        (Some(32), Some(64))
    );
    assert_eq!(
        (t["pamt_kb"].as_u64(), t["linux_pamt_kb"].as_u64()),
        (Some(2101260), Some(2101260))
    );
}

#[test]
fn demo_and_standard_input_are_inputs_too() {
    use std::io::Write;
    let o = run(&["--demo"]);
    assert_eq!(o.status.code(), Some(0));
    let demo = stdout(&o);
    assert!(
        demo.starts_with("input: the embedded Emerald Rapids 4-socket map"),
        "{demo}"
    );
    let mut child = common::tdmr()
        .args(["plan", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            std::fs::read_to_string(fixture("emr-4s-256g.log"))
                .unwrap()
                .as_bytes(),
        )
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let piped = stdout(&o);
    assert!(piped.starts_with("input: standard input\n"), "{piped}");
    // The same report after the input line.
    assert_eq!(
        piped.split_once('\n').unwrap().1,
        demo.split_once('\n').unwrap().1
    );
    // A log and --demo together are a usage error.
    assert_eq!(
        run(&["--demo", &fixture("spr-1t.log")]).status.code(),
        Some(2)
    );
}

#[test]
fn the_kernels_dynamic_pamt_line_plans_with_dynamic_pamt() {
    let dir = common::temp_dir("plan-dpamt-line");
    let f = dir.join("d.log");
    std::fs::write(
        &f,
        std::fs::read_to_string(fixture("spr-1t.log")).unwrap()
            + "virt/tdx: Enable Dynamic PAMT\nvirt/tdx: 40980 KB allocated for PAMT\n",
    )
    .unwrap();
    let o = run(&["--strategy", "linux", f.to_str().unwrap()]);
    let out = stdout(&o);
    assert!(
        out.contains("assumed: the kernel enabled Dynamic PAMT"),
        "{out}"
    );
    assert!(out.ends_with("40980 KB allocated for PAMT\n"), "{out}");
    assert!(
        out.contains("this kernel printed 40980 KB; Linux's strategy predicts 40980 KB with Dynamic PAMT (the same)"),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
