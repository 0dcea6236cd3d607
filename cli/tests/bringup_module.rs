//! `tdmr bringup` with module profiles, as users run it: `--module` with each kind of profile,
//! the log's module chosen when no flag names one, extension memory and every stage's
//! SEAMCALLs in the JSON, a missing field named, `--update-to` updating or refusing before
//! TDH.SYS.SHUTDOWN, `--disable`, exit codes.

mod common;

use std::process::Output;

use serde_json::Value;

use common::u;

fn fixture(name: &str) -> String {
    common::fixture(name)
}

fn run(args: &[&str]) -> (Output, Value) {
    let mut all = vec!["bringup"];
    all.extend_from_slice(args);
    let out = common::run(&all);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (out, json)
}

#[test]
fn tdx_1_0_comes_up_on_the_emerald_rapids_map_with_holes_from_memory() {
    let emr = fixture("emr-4s-256g.log");
    let (out, d) = run(&[
        "--module", "1.0", &emr, "--holes", "memory", "--format", "json",
    ]);
    assert!(out.status.success(), "{d}");
    assert_eq!(d["status"], "initialized");
    assert_eq!(d["module"]["version"], "1.0.00");
    assert_eq!(d["module"]["metadata"], "SysInfo");
    // One probing TDH.SYS.RD, then TDH.SYS.INFO; the mock (as 1.0) accepted CONFIG.
    assert_eq!(u(&d["seamcalls_by_stage"]["metadata"]["TDH.SYS.RD"]), 1);
    assert_eq!(u(&d["seamcalls_by_stage"]["metadata"]["TDH.SYS.INFO"]), 1);
    assert_eq!(u(&d["seamcalls"]["TDH.SYS.CONFIG"]), 1);
}

#[test]
fn next_reports_the_extension_calls_and_memory() {
    let (out, d) = run(&[
        "--module",
        "next",
        &fixture("spr-512g.log"),
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{d}");
    let ext = &d["seamcalls_by_stage"]["extensions"];
    assert_eq!(u(&ext["TDH.EXT.MEM.ADD"]), 200);
    assert_eq!(u(&ext["TDH.EXT.INIT"]), 4);
    assert_eq!(u(&d["seamcalls"]["TDH.EXT.MEM.ADD"]), 200);
    assert_eq!(u(&d["extension_memory"]["pages"]), 12_800);
    assert_eq!(u(&d["extension_memory"]["bytes"]), 50 << 20);
    assert_eq!(
        u(&d["memory_budget"]),
        u(&d["pamt_bytes"]) + u(&d["extension_memory"]["bytes"])
    );
    // Every stage's calls add up to the total.
    let mut sum = 0;
    for stage in d["seamcalls_by_stage"].as_object().unwrap().values() {
        sum += stage.as_object().unwrap().values().map(u).sum::<u64>();
    }
    assert_eq!(
        sum,
        d["seamcalls"]
            .as_object()
            .unwrap()
            .values()
            .map(u)
            .sum::<u64>()
    );
}

#[test]
fn a_2_0_profile_lacking_a_field_fails_naming_it() {
    for field in ["MAX_TDMRS", "NUM_CMRS", "PAMT_1G_ENTRY_SIZE"] {
        let module = format!("2.0,lacks={field}");
        let (out, d) = run(&[
            "--module",
            &module,
            &fixture("spr-1t.log"),
            "--format",
            "json",
        ]);
        assert_eq!(out.status.code(), Some(1), "{d}");
        assert_eq!(d["status"], "failed");
        assert_eq!(d["stage"], "metadata read");
        let error = d["error"].as_str().unwrap();
        assert!(
            error.contains(field) && error.contains("0xc0000c0000000000"),
            "{error}"
        );
    }
    // Text output names it too.
    let (out, _) = run(&[
        "--module",
        "2.0.08,lacks=MAX_RESERVED_PER_TDMR",
        &fixture("spr-1t.log"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("MAX_RESERVED_PER_TDMR"));
}

#[test]
fn update_to_updates_with_every_step_counted_or_refuses_before_shutdown() {
    let (out, d) = run(&[
        "--module",
        "2.0.04",
        "--dynamic-pamt",
        "--update-to",
        "2.0.08",
        "--cpus",
        "4",
        &fixture("spr-512g.log"),
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{d}");
    let up = &d["update"];
    assert_eq!(up["status"], "updated");
    assert_eq!(
        (up["from"].as_str(), up["to"].as_str()),
        (Some("2.0.04"), Some("2.0.08"))
    );
    let steps = &up["steps"];
    assert_eq!(u(&steps["check"]["TDH.SYS.RD"]), 2);
    assert_eq!(u(&steps["shutdown"]["TDH.SYS.SHUTDOWN"]), 1);
    assert_eq!(u(&steps["install"]["SEAMLDR.INSTALL"]), 4);
    assert_eq!(u(&steps["lp_init"]["TDH.SYS.LP.INIT"]), 4);
    assert_eq!(u(&steps["update"]["TDH.SYS.UPDATE"]), 1);
    assert_eq!(u(&steps["verify"]["TDH.SYS.RD"]), 4);
    // Limits the frozen layout breaks: refused at the check, nothing shut down.
    let (out, d) = run(&[
        "--update-to",
        "1.5.25,update=26,max_reserved=1",
        "--holes",
        "memory",
        &fixture("emr-4s-256g.log"),
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let up = &d["update"];
    assert_eq!(up["status"], "refused");
    assert_eq!(up["step"], "check");
    assert_eq!(up["module_left"], "Running");
    assert!(up["steps"].get("shutdown").is_none());
    assert!(
        up["error"].as_str().unwrap().contains("16 reserved areas"),
        "{up}"
    );
    // And the rest of the refusals name their reason.
    for (module, to, needle) in [
        ("1.5.06", "1.5.25,max_tdmrs=1", "TDMRs"),
        (
            "next",
            "next,update=1,ext_pages=20000",
            "extensions need 20000 pages",
        ),
        ("2.0.08", "next", "not an update"),
    ] {
        let (out, d) = run(&[
            "--module",
            module,
            "--update-to",
            to,
            &fixture("spr-512g.log"),
            "--format",
            "json",
        ]);
        assert_eq!(out.status.code(), Some(1), "{d}");
        assert_eq!(d["update"]["status"], "refused");
        assert!(
            d["update"]["error"].as_str().unwrap().contains(needle),
            "{d}"
        );
    }
}

#[test]
fn disable_and_usage_errors() {
    let (out, d) = run(&[
        "--module",
        "next",
        "--disable",
        &fixture("spr-512g.log"),
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{d}");
    assert_eq!(d["disable"]["status"], "disabled");
    assert_eq!(d["disable"]["state"], "DISABLED");
    let (out, d) = run(&["--disable", &fixture("spr-512g.log"), "--format", "json"]);
    assert!(out.status.success());
    assert_eq!(d["disable"]["status"], "not disabled");
    for bad in [
        ["--module", "3.0"],
        ["--module", "1.5,lacks=NOPE"],
        ["--update-to", "x"],
    ] {
        let (out, _) = run(&bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
}

#[test]
fn a_fault_in_the_update_is_injected_reported_and_fails_it() {
    let spr = fixture("spr-1t.log");
    let (out, d) = run(&["--module", "next", &spr, "--format", "json"]);
    assert!(out.status.success());
    let boot_calls: u64 = d["seamcalls"].as_object().unwrap().values().map(u).sum();
    let inject = format!("rnd-no-entropy@{boot_calls}x100");
    let (out, d) = run(&[
        "--module",
        "next",
        "--update-to",
        "next,update=1",
        "--inject",
        &inject,
        &spr,
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{d}");
    // Bring-up was untouched; the update stopped with the module's status, after SHUTDOWN.
    assert_eq!(d["status"], "initialized");
    let up = &d["update"];
    assert_eq!(up["status"], "failed", "{up}");
    assert_eq!(up["module_status"]["name"], "TDX_RND_NO_ENTROPY");
    assert_eq!(up["module_left"], "ShutDown");
    assert!(up["steps"].get("shutdown").is_some());
    let injected = d["injected"].as_array().unwrap();
    assert!(!injected.is_empty());
    assert!(injected.iter().all(|i| u(&i["call"]) >= boot_calls), "{d}");
}

#[test]
fn extension_init_interrupted_for_good_fails_and_says_the_memory_is_the_modules() {
    let spr = fixture("spr-1t.log");
    let (_, d) = run(&["--module", "next", &spr, "--format", "json"]);
    let calls = &d["seamcalls"];
    let before: u64 =
        calls.as_object().unwrap().values().map(u).sum::<u64>() - u(&calls["TDH.EXT.INIT"]);
    let inject = format!("interrupted-resumable@{before}x100000");
    let (out, d) = run(&[
        "--module", "next", "--inject", &inject, &spr, "--format", "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{d}");
    assert_eq!(d["stage"], "module extensions");
    assert!(
        d["error"]
            .as_str()
            .unwrap()
            .contains("TDH.EXT.INIT still interrupted")
    );
    // All 12800 pages were handed over before TDH.EXT.INIT: 50 MiB the module keeps.
    let kept = d["teardown"]["extension_memory"].as_array().unwrap();
    assert_eq!(kept.len(), 1, "{d}");
    let r = kept[0].as_str().unwrap();
    let (a, b) = r
        .trim_matches(|c| c == '[' || c == ')')
        .split_once(", ")
        .unwrap();
    let n = |h: &str| u64::from_str_radix(h.trim_start_matches("0x"), 16).unwrap();
    assert_eq!(n(b) - n(a), 50 << 20, "{r}");
    // The text output says so too.
    let (out, _) = run(&["--module", "next", "--inject", &inject, &spr]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("module extension memory"));
}
