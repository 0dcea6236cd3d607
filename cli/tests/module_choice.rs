//! The module a kernel log names picks what `bringup` plays and what `plan` and `check` hold a
//! layout to: the release itself, the newest modelled release of its line, an error naming an
//! unmodelled line; `--module` wins; Dynamic PAMT only where the module has it.

mod common;

use common::{fixture, run, stderr, stdout, temp_dir};
use serde_json::Value;

/// The EMR fixture with `lines` appended, written to a file of its own.
fn log_with(dir: &std::path::Path, name: &str, lines: &str) -> String {
    let text = std::fs::read_to_string(fixture("emr-4s-256g.log")).unwrap() + lines;
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

fn json(args: &[&str]) -> (Option<i32>, Value) {
    let o = run(args);
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {} {}", stdout(&o), stderr(&o)));
    (o.status.code(), v)
}

fn assumed(d: &Value) -> String {
    d["assumed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn bringup_plays_the_module_the_log_names_in_each_form() {
    let dir = temp_dir("module-choice-bringup");
    for (line, version, how) in [
        // The release itself.
        (
            "virt/tdx: TDX module 2.0.08.00, build number 882, build date 0134fed5\n",
            "2.0.08",
            "the same release",
        ),
        (
            "virt/tdx: Module version: 1.5.06\n",
            "1.5.06",
            "the same release",
        ),
        // A release no profile models, and a line without an update number: the line's newest.
        (
            "virt/tdx: Module version: 1.5.16\n",
            "1.5.25",
            "newest modelled release",
        ),
        (
            "virt/tdx: TDX module: attributes 0x0, vendor_id 0x8086, major_version 1, minor_version 0, build_date 20230101, build_num 100\n",
            "1.0.00",
            "newest modelled release",
        ),
    ] {
        let log = log_with(&dir, "m.log", line);
        let (code, d) = json(&["bringup", "--format", "json", "--holes", "memory", &log]);
        assert_eq!(code, Some(0), "{line}: {d}");
        assert_eq!(d["module"]["chosen_by"], "machine", "{line}");
        assert_eq!(d["module"]["version"], version, "{line}");
        let a = assumed(&d);
        assert!(
            a.contains("kernel log's module") && a.contains(how),
            "{line}: {a}"
        );
        // --module wins over the log.
        let (code, d) = json(&["bringup", "--format", "json", "--module", "1.5.01", &log]);
        assert_eq!(code, Some(0));
        assert_eq!(
            (
                d["module"]["chosen_by"].as_str(),
                d["module"]["version"].as_str()
            ),
            (Some("flag"), Some("1.5.01"))
        );
    }
    // Nothing names one: the default, said so.
    let (_, d) = json(&["bringup", "--format", "json", &fixture("spr-1t.log")]);
    assert_eq!(d["module"]["chosen_by"], "default");
    assert_eq!(d["module"]["version"], "1.5.25");
    assert!(assumed(&d).contains("no module line"));
    // A line no profile models: bad input, naming it.
    let log = log_with(&dir, "m3.log", "virt/tdx: Module version: 3.1.00\n");
    let o = run(&["bringup", &log]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("3.1.00") && stderr(&o).contains("--module"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dynamic_pamt_needs_a_module_that_has_it() {
    let dir = temp_dir("module-choice-dpamt");
    // The 512 GiB host's log names TDX 1.5: no Dynamic PAMT, the metadata stage says so.
    let (code, d) = json(&[
        "bringup",
        "--format",
        "json",
        "--dynamic-pamt",
        &fixture("spr-512g.log"),
    ]);
    assert_eq!(code, Some(1), "{d}");
    assert_eq!(d["stage"], "metadata read");
    assert!(
        d["metadata_error"].as_str().unwrap().contains("bit 36"),
        "{d}"
    );
    // A 2.0.08 log that enabled it: the module has it, even without the flag.
    let log = log_with(
        &dir,
        "dpamt.log",
        "virt/tdx: TDX module 2.0.08.00, build number 882, build date 0134fed5\nvirt/tdx: Enable Dynamic PAMT\n",
    );
    let (code, d) = json(&["bringup", "--format", "json", "--dynamic-pamt", &log]);
    assert_eq!(code, Some(0), "{d}");
    assert_eq!(d["dynamic_pamt_pages"]["pairs_returned"], true);
    // Without the flag, and without a module line: the kernel's line turns it on.
    let log = log_with(&dir, "dpamt-only.log", "virt/tdx: Enable Dynamic PAMT\n");
    let (code, d) = json(&["bringup", "--format", "json", &log]);
    assert_eq!(code, Some(0), "{d}");
    assert_eq!(d["dynamic_pamt_pages"]["pairs_returned"], true, "{d}");
    assert!(assumed(&d).contains("brought up with it"), "{d}");
    // One TDMR.INIT per 16 MiB with Dynamic PAMT.
    let covered: u64 = d["tdmrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["size"].as_u64().unwrap())
        .sum();
    assert_eq!(
        d["seamcalls"]["TDH.SYS.TDMR.INIT"].as_u64(),
        Some(covered >> 24)
    );
    // A 1.5 log claiming Dynamic PAMT: the software module is given it, and says so.
    let log = log_with(
        &dir,
        "dpamt15.log",
        "virt/tdx: Module version: 1.5.24\nvirt/tdx: Enable Dynamic PAMT\n",
    );
    let (code, d) = json(&["bringup", "--format", "json", "--dynamic-pamt", &log]);
    assert_eq!(code, Some(0), "{d}");
    assert!(assumed(&d).contains("Enable Dynamic PAMT"), "{d}");
    // No module named: the default module gets it.
    let (code, d) = json(&[
        "bringup",
        "--format",
        "json",
        "--dynamic-pamt",
        &fixture("spr-1t.log"),
    ]);
    assert_eq!(code, Some(0), "{d}");
    assert!(assumed(&d).contains("default software module has Dynamic PAMT"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn plan_and_check_hold_a_layout_to_the_logs_module_version() {
    let dir = temp_dir("module-choice-plan");
    let v10 = log_with(&dir, "v10.log", "virt/tdx: Module version: 1.0.00\n");
    let v15 = fixture("emr-4s-256g.log");
    let plan = |log: &str| {
        let (code, d) = json(&["plan", "--format", "json", "--holes", "memory", log]);
        assert_eq!(code, Some(0), "{d}");
        let p = dir.join(format!("plan-{}.json", log.len()));
        std::fs::write(&p, d.to_string()).unwrap();
        (d, p.to_string_lossy().into_owned())
    };
    let (d10, p10) = plan(&v10);
    let (d15, p15) = plan(&v15);
    let detail = |d: &Value| d["sources"][0]["detail"].as_str().unwrap().to_string();
    assert!(detail(&d10).ends_with("; planned for TDX 1.0"), "{d10}");
    assert!(detail(&d15).ends_with("lines"), "{d15}");
    let text = stdout(&run(&["plan", "--holes", "memory", &v10]));
    assert!(text.contains("\n  planned for TDX 1.0\n"), "{text}");
    // 1.0's rule changes the layout on this map: no TDMR ends in its 16th reserved area.
    assert_ne!(d10["tdmrs"], d15["tdmrs"]);
    for t in d10["tdmrs"].as_array().unwrap() {
        let r = t["reserved"].as_array().unwrap();
        if r.len() == 16 {
            let last = &r[15];
            assert_ne!(
                last["offset"].as_u64().unwrap() + last["size"].as_u64().unwrap(),
                t["size"].as_u64().unwrap(),
                "{t}"
            );
        }
    }
    let check = |layout: &str, log: &str| {
        let o = run(&["check", layout, "--log", log, "--format", "json"]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        (o.status.code(), v)
    };
    // Each plan passes the module it was made for; 1.5's layout is what TDX 1.0 refuses.
    assert_eq!(check(&p10, &v10).0, Some(0));
    assert_eq!(check(&p15, &v15).0, Some(0));
    assert_eq!(check(&p10, &v15).0, Some(0));
    let (code, v) = check(&p15, &v10);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["module_status"]["name"], "TDX_TDMR_OUTSIDE_CMRS", "{v}");
    assert!(detail(&v).ends_with("; checked as TDX 1.0"), "{v}");
    std::fs::remove_dir_all(&dir).unwrap();
}
