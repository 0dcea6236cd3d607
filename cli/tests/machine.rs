//! `tdmr plan` without a log: this machine, read from its own files. On a machine written out
//! under a directory (`--machine-root`): memory from `sys/firmware/memmap` or `proc/iomem`,
//! nodes from a real SRAT's bytes, CMRs and TDX lines from `dev/kmsg` records, the module's
//! version from sysfs; files a user may not read are named with "needs root" (run as `nobody`
//! when the tests run as root); and this machine itself, as root and as `nobody`.

mod common;

use std::path::Path;

use common::{plan, stderr, stdout, tdmr, temp_dir};
use serde_json::Value;

/// SRAT bytes: an x2APIC structure per domain (in order), then one memory structure per
/// `(base, length, domain, hotplug)`.
fn srat(domains: &[u32], memory: &[(u64, u64, u32, bool)]) -> Vec<u8> {
    let mut t = vec![0u8; 48];
    t[..4].copy_from_slice(b"SRAT");
    t[8] = 3;
    t[36] = 1;
    for &d in domains {
        let mut s = [0u8; 24];
        s[0] = 2;
        s[1] = 24;
        s[4..8].copy_from_slice(&d.to_le_bytes());
        s[12] = 1; // enabled
        t.extend_from_slice(&s);
    }
    for &(base, len, d, hotplug) in memory {
        let mut s = [0u8; 40];
        s[0] = 1;
        s[1] = 40;
        s[2..6].copy_from_slice(&d.to_le_bytes());
        s[8..16].copy_from_slice(&base.to_le_bytes());
        s[16..24].copy_from_slice(&len.to_le_bytes());
        s[28] = 1 | if hotplug { 2 } else { 0 };
        t.extend_from_slice(&s);
    }
    let len = t.len() as u32;
    t[4..8].copy_from_slice(&len.to_le_bytes());
    let sum = t.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    t[9] = 0u8.wrapping_sub(sum);
    t
}

const G: u64 = 1 << 30;

/// A two-socket machine of 64 GiB under `root`: the firmware map, an SRAT, a kernel log with
/// the TDX lines of a distribution 6.8 kernel, and the running module's version.
fn write_machine(root: &Path) {
    let entry = |n: usize, start: u64, end: u64, kind: &str| {
        let d = root.join(format!("sys/firmware/memmap/{n}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("start"), format!("{start:#x}\n")).unwrap();
        std::fs::write(d.join("end"), format!("{end:#x}\n")).unwrap();
        std::fs::write(d.join("type"), format!("{kind}\n")).unwrap();
    };
    entry(0, 0, 0x9fbff, "System RAM");
    entry(1, 0x9fc00, 0xfffff, "Reserved");
    entry(2, 0x10_0000, 0x7fff_ffff, "System RAM");
    entry(3, 0x8000_0000, 0xffff_ffff, "Reserved");
    entry(4, 4 * G, 34 * G - 1, "System RAM");
    entry(5, 34 * G, 66 * G - 1, "System RAM");
    entry(6, 66 * G, 66 * G + 0xfff, "ACPI Tables");
    let tables = root.join("sys/firmware/acpi/tables");
    std::fs::create_dir_all(&tables).unwrap();
    std::fs::write(
        tables.join("SRAT"),
        srat(
            &[0, 1],
            &[(0, 34 * G, 0, false), (34 * G, 32 * G, 1, false)],
        ),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("dev")).unwrap();
    std::fs::write(
        root.join("dev/kmsg"),
        "6,1,0,-;Linux version 6.8.0\n\
         6,2,2605559,-;virt/tdx: BIOS enabled: private KeyID range [32, 64)\n\
         \x20SUBSYSTEM=cpu\n\
         6,3,10456520,-;virt/tdx: TDX module: attributes 0x0, vendor_id 0x8086, major_version 1, minor_version 5, build_date 20240129, build_num 698\n\
         6,4,10456524,-;virt/tdx: CMR: [0x100000, 0x80000000)\n\
         6,5,10456527,-;virt/tdx: CMR: [0x100000000, 0x1080000000)\n\
         6,6,11746184,-;virt/tdx: 263180 KB allocated for PAMT\n\
         6,7,11746190,-;virt/tdx: module initialized\n",
    )
    .unwrap();
    let faux = root.join("sys/devices/faux/tdx_host");
    std::fs::create_dir_all(&faux).unwrap();
    std::fs::write(faux.join("version"), "1.5.06\n").unwrap();
}

fn json(args: &[&str]) -> (Option<i32>, Value, String) {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let o = plan(&all);
    let doc = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} {}", stdout(&o), stderr(&o)));
    (o.status.code(), doc, stderr(&o))
}

fn source<'a>(doc: &'a Value, what: &str) -> &'a Value {
    doc["sources"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|s| s["source"] == what)
        .unwrap_or_else(|| panic!("no {what} source in {doc}"))
}

#[test]
fn a_machine_written_out_reads_as_its_tables_and_log_say() {
    let root = temp_dir("machine");
    write_machine(&root);
    let r = root.to_str().unwrap();
    let (code, doc, err) = json(&["--machine-root", r]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(doc["schema"], 1);
    assert!(doc["input"].as_str().unwrap().starts_with("this machine"));
    let memory = source(&doc, "memory");
    assert_eq!(memory["used"], true);
    assert!(
        memory["detail"]
            .as_str()
            .unwrap()
            .starts_with("7 entries, 64.0 GiB of RAM"),
        "{memory}"
    );
    assert_eq!(source(&doc, "numa")["used"], true);
    assert!(
        source(&doc, "numa")["detail"]
            .as_str()
            .unwrap()
            .contains("2 nodes")
    );
    let log = source(&doc, "kernel log");
    assert_eq!(log["used"], true);
    assert!(
        log["detail"]
            .as_str()
            .unwrap()
            .starts_with("7 records; module 1.5 build 698"),
        "{log}"
    );
    assert_eq!(doc["sysfs_module_version"], "1.5.06");
    assert_eq!(doc["assumed"].as_array().unwrap().len(), 0, "{doc}");
    // The memory: RAM from 1 MiB, split at the node boundary; the CMRs are the log's.
    assert_eq!(doc["cmrs"].as_array().unwrap().len(), 2);
    let nodes: std::collections::BTreeSet<u64> = doc["tdmrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["node"].as_u64().unwrap())
        .collect();
    assert_eq!(nodes.into_iter().collect::<Vec<_>>(), [0, 1]);
    let k = &doc["tdx_lines"];
    assert_eq!(
        (k["keyids"]["first"].as_u64(), k["keyids"]["end"].as_u64()),
        (Some(32), Some(64))
    );
    assert_eq!(k["module"]["text"], "1.5 build 698 (20240129)");
    assert_eq!(k["pamt_kb"], 263180);
    assert!(k["linux_pamt_kb"].is_u64(), "{k}");
    // Text: the sources, one a line.
    let o = plan(&["--machine-root", r]);
    let out = stdout(&o);
    assert!(
        out.contains("  memory         ") && out.contains("sys/firmware/memmap: 7 entries"),
        "{out}"
    );
    assert!(
        out.contains("sys/firmware/acpi/tables/SRAT: 2 memory affinity structures, 2 nodes"),
        "{out}"
    );
    assert!(
        out.contains("TDX memory: 64.0 GiB in 3 ranges on 2 nodes"),
        "{out}"
    );
    assert!(
        out.contains("this kernel printed 263180 KB; Linux's strategy predicts"),
        "{out}"
    );

    // `check` reads the same machine: its plan is valid there.
    let plan_file = root.join("plan.json");
    std::fs::write(&plan_file, doc.to_string()).unwrap();
    let o = common::run(&["check", plan_file.to_str().unwrap(), "--machine-root", r]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("private KeyIDs [32, 64) (6 KeyID bits)"),
        "{}",
        stdout(&o)
    );

    // Without the firmware map: /proc/iomem's System RAM, the same memory.
    std::fs::rename(root.join("sys/firmware/memmap"), root.join("memmap.away")).unwrap();
    std::fs::create_dir_all(root.join("proc")).unwrap();
    std::fs::write(
        root.join("proc/iomem"),
        "00000000-00000fff : Reserved\n00001000-0009fbff : System RAM\n00100000-7fffffff : System RAM\n  01000000-01ffffff : Kernel code\n100000000-107fffffff : System RAM\n",
    )
    .unwrap();
    let (code, doc2, _) = json(&["--machine-root", r]);
    assert_eq!(code, Some(0));
    assert_eq!(
        source(&doc2, "memory")["detail"],
        "System RAM: 64.0 GiB in 3 ranges"
    );
    assert_eq!(doc2["tdmrs"], doc["tdmrs"]);
    // Addresses hidden (the kernel shows other users zeros), and no firmware map: no memory.
    std::fs::write(
        root.join("proc/iomem"),
        "00000000-00000000 : System RAM\n00000000-00000000 : System RAM\n",
    )
    .unwrap();
    let o = plan(&["--machine-root", r]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("proc/iomem: needs root"), "{err}");
    assert!(err.contains("sys/firmware/memmap: absent"), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn absent_sources_are_said_and_assumed() {
    let root = temp_dir("machine-bare");
    write_machine(&root);
    for f in [
        "sys/firmware/acpi/tables/SRAT",
        "dev/kmsg",
        "sys/devices/faux/tdx_host/version",
    ] {
        std::fs::remove_file(root.join(f)).unwrap();
    }
    let (code, doc, _) = json(&["--machine-root", root.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    let assumed: Vec<&str> = doc["assumed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(assumed.len(), 3, "{assumed:?}");
    assert!(assumed[0].contains("SRAT: absent): no NUMA information, all memory on node 0"));
    assert!(assumed[1].starts_with("no kernel log"));
    assert!(
        assumed[2].starts_with("no CMR lines in the kernel log: all memory taken as convertible")
    );
    assert!(
        source(&doc, "module version")["detail"]
            .as_str()
            .unwrap()
            .starts_with("absent")
    );
    assert!(
        doc["tdmrs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["node"] == 0)
    );
    // A broken table is bad input, named.
    std::fs::write(root.join("sys/firmware/acpi/tables/SRAT"), b"SRAT\x10").unwrap();
    let o = plan(&["--machine-root", root.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("tables/SRAT: "), "{}", stderr(&o));
    std::fs::remove_dir_all(&root).unwrap();
}

/// The effective user id, from /proc/self/status.
fn euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// `tdmr ARGS` as a user without privileges: `nobody` when the tests run as root.
fn unprivileged(args: &[&str]) -> std::process::Output {
    if euid() == 0 {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_tdmr"))
            .args(args)
            .output()
            .expect("setpriv (util-linux) runs the command as nobody")
    } else {
        tdmr().args(args).output().unwrap()
    }
}

#[test]
fn files_a_user_may_not_read_are_named_as_needing_root() {
    use std::os::unix::fs::PermissionsExt;
    let root = temp_dir("machine-root-only");
    write_machine(&root);
    for f in ["sys/firmware/acpi/tables/SRAT", "dev/kmsg"] {
        std::fs::set_permissions(root.join(f), std::fs::Permissions::from_mode(0o400)).unwrap();
    }
    if euid() != 0 {
        // The owner reads a 0400 file; nobody reads a 0000 one.
        for f in ["sys/firmware/acpi/tables/SRAT", "dev/kmsg"] {
            std::fs::set_permissions(root.join(f), std::fs::Permissions::from_mode(0o000)).unwrap();
        }
    }
    let o = unprivileged(&["plan", "--machine-root", root.to_str().unwrap()]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        out.contains("tables/SRAT: needs root (permission denied)"),
        "{out}"
    );
    assert!(out.contains("dev/kmsg: needs root"), "{out}");
    assert!(
        out.contains("assumed: no CMR lines in the kernel log"),
        "{out}"
    );
    // A log file given by name that the user may not read: named, with root, exit 2.
    let o = unprivileged(&["plan", root.join("dev/kmsg").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("dev/kmsg: needs root (permission denied"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn this_machine_plans_from_its_live_sources() {
    let (code, doc, err) = json(&[]);
    assert!(matches!(code, Some(0 | 1)), "{err}");
    assert_eq!(doc["input"], "this machine");
    assert_eq!(source(&doc, "memory")["used"], true, "{doc}");
    let srat = Path::new("/sys/firmware/acpi/tables/SRAT").exists();
    assert_eq!(source(&doc, "numa")["used"], srat);
    let assumed = doc["assumed"].as_array().unwrap();
    if !srat {
        assert!(
            assumed
                .iter()
                .any(|a| a.as_str().unwrap().contains("no NUMA information"))
        );
    }
    assert!(!doc["cmrs"].as_array().unwrap().is_empty(), "{doc}");
    // As a user without privileges: no stack trace, the kernel log named when it is root's.
    let o = unprivileged(&["plan"]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(matches!(o.status.code(), Some(0 | 1)), "{out}{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.starts_with("input: this machine\n"), "{out}");
    let restricted =
        std::fs::read_to_string("/proc/sys/kernel/dmesg_restrict").is_ok_and(|s| s.trim() == "1");
    if restricted {
        assert!(out.contains("needs root"), "{out}");
    }
}
