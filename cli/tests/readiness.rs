//! The readiness report (`tdmr plan` text output): Linux's verdict next to ours, PAMT static
//! and with Dynamic PAMT, limits and warnings, checked against what Linux printed on these
//! machines.

mod common;

use common::{fixture, plan as run, stdout};

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
