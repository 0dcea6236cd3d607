//! `docs/json.md` is the JSON contract, and it cannot drift: the subcommands run over inputs
//! that reach every optional field, and every field of every output must be listed there for
//! its subcommand (or for every document) with its type, and every field listed there must
//! appear in some output.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{fixture, root, run, stderr, stdout, temp_dir};
use serde_json::Value;

/// Section (`common`, `plan`, `check`, `bringup`, `hotplug`) → field path → allowed types.
type Doc = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn documented() -> Doc {
    let text = std::fs::read_to_string(root().join("docs/json.md")).unwrap();
    let mut doc = Doc::new();
    let mut section = String::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            section = if h == "Every document" {
                "common".into()
            } else {
                h.trim_matches('`')
                    .strip_prefix("tdmr ")
                    .unwrap_or_else(|| panic!("unknown section {h}"))
                    .into()
            };
            continue;
        }
        if !line.starts_with("| `") {
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let path = cells[1].trim_matches('`').to_string();
        let types = cells[2].split(" or ").map(String::from).collect();
        assert!(!cells[3].is_empty(), "{path}: no meaning given");
        let prev = doc
            .entry(section.clone())
            .or_default()
            .insert(path.clone(), types);
        assert!(prev.is_none(), "{section}: {path} listed twice");
    }
    doc
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every field of `v` as (path segments, type); an array's elements under `name[]` (an
/// element that is an object is not a field itself: its fields are).
fn flatten(v: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, &'static str)>) {
    let object_element = v.is_object() && path.last().is_some_and(|l| l.ends_with("[]"));
    if !path.is_empty() && !object_element {
        out.push((path.clone(), type_of(v)));
    }
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                path.push(k.clone());
                flatten(x, path, out);
                path.pop();
            }
        }
        Value::Array(a) => {
            let last = path.pop().expect("arrays are fields");
            path.push(format!("{last}[]"));
            for x in a {
                flatten(x, path, out);
            }
            path.pop();
            path.push(last);
        }
        _ => {}
    }
}

fn matches(documented: &str, path: &[String]) -> bool {
    let segs: Vec<&str> = documented.split('.').collect();
    segs.len() == path.len()
        && segs
            .iter()
            .zip(path)
            .all(|(d, p)| *d == p || *d == "*" || (*d == "*[]" && p.ends_with("[]")))
}

fn allowed(types: &[String], t: &str) -> bool {
    types
        .iter()
        .any(|d| d == t || (d == "number" && t == "integer"))
}

/// Runs `tdmr ARGS`, which must exit `code`, and parses its JSON.
fn json(args: &[&str], code: i32) -> Value {
    let o = run(args);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", stdout(&o)))
}

#[test]
fn every_field_of_every_output_is_documented_and_every_documented_field_exists() {
    let doc = documented();
    for s in ["common", "plan", "check", "bringup", "hotplug"] {
        assert!(doc.contains_key(s), "docs/json.md has no section for {s}");
    }
    let dir = temp_dir("json-doc");
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    };
    // Inputs that reach the optional fields.
    let next_calls = json(
        &[
            "bringup",
            "--format",
            "json",
            "--module",
            "next",
            &fixture("spr-1t.log"),
        ],
        0,
    )["seamcalls"]
        .clone();
    let ext_init_starts = next_calls
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum::<u64>()
        - next_calls["TDH.EXT.INIT"].as_u64().unwrap();
    let update_starts: u64 = json(
        &[
            "bringup",
            "--format",
            "json",
            "--module",
            "next",
            &fixture("spr-1t.log"),
        ],
        0,
    )["seamcalls"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    let emr = fixture("emr-4s-256g.log");
    let spr = fixture("spr-1t.log");
    let spr512 = fixture("spr-512g.log");
    let failed = write(
        "failed.log",
        std::fs::read_to_string(&emr).unwrap()
            + "virt/tdx: TDX module 2.0.08.00, build number 882, build date 0134fed5\n\
               virt/tdx: Enable Dynamic PAMT\n\
               virt/tdx: 51200 KB consumed for TDX module extensions\n\
               virt/tdx: module initialization failed (-28)\n",
    );
    let minor_node = write(
        "minor-node.log",
        "BIOS-e820: [mem 0x0000000040000000-0x000000007fffffff] usable\n\
         ACPI: SRAT: Node 0 PXM 0 [mem 0x40000000-0x4fffffff]\n\
         ACPI: SRAT: Node 1 PXM 1 [mem 0x50000000-0x7fffffff]\n"
            .to_string(),
    );
    let machine = dir.join("machine");
    for (n, (start, end, kind)) in [
        (0x0u64, 0x9fbffu64, "System RAM"),
        (0x10_0000, 0x3fff_ffff, "System RAM"),
    ]
    .into_iter()
    .enumerate()
    {
        let d = machine.join(format!("sys/firmware/memmap/{n}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("start"), format!("{start:#x}")).unwrap();
        std::fs::write(d.join("end"), format!("{end:#x}")).unwrap();
        std::fs::write(d.join("type"), kind).unwrap();
    }
    std::fs::create_dir_all(machine.join("sys/devices/faux/tdx_host")).unwrap();
    std::fs::write(
        machine.join("sys/devices/faux/tdx_host/version"),
        "1.5.24\n",
    )
    .unwrap();
    let machine = machine.to_string_lossy().into_owned();

    let mut outputs: Vec<(&str, Value)> = vec![
        ("plan", json(&["plan", "--format", "json", &spr512], 0)),
        (
            "plan",
            json(&["plan", "--format", "json", "--compare", &spr], 0),
        ),
        (
            "plan",
            json(&["plan", "--format", "json", "--demo", "--compare"], 0),
        ),
        (
            "plan",
            json(
                &[
                    "plan",
                    "--format",
                    "json",
                    "--cpus",
                    "64",
                    &fixture("hp-16s-12t.log"),
                ],
                0,
            ),
        ),
        (
            "plan",
            json(
                &[
                    "plan",
                    "--format",
                    "json",
                    "--strategy",
                    "linux",
                    &minor_node,
                ],
                0,
            ),
        ),
        (
            "plan",
            json(&["plan", "--format", "json", &fixture("numa-off.log")], 0),
        ),
        (
            "plan",
            json(
                &[
                    "plan",
                    "--format",
                    "json",
                    "--holes",
                    "memory",
                    "--max-reserved",
                    "15",
                    "--allow-exclusions",
                    &emr,
                ],
                0,
            ),
        ),
        (
            "plan",
            json(
                &[
                    "plan",
                    "--format",
                    "json",
                    "--holes",
                    "memory",
                    "--max-reserved",
                    "15",
                    &emr,
                ],
                1,
            ),
        ),
        ("plan", json(&["plan", "--format", "json", &failed], 0)),
        (
            "plan",
            json(
                &[
                    "plan",
                    "--format",
                    "json",
                    "--dpamt",
                    "--machine-root",
                    &machine,
                ],
                0,
            ),
        ),
        ("plan", json(&["plan", "--format", "json"], 0)),
        ("hotplug", json(&["hotplug", "--demo", "--ops", "1000"], 0)),
        (
            "bringup",
            json(
                &[
                    "bringup",
                    "--format",
                    "json",
                    "--dynamic-pamt",
                    "--inject",
                    "rnd-no-entropy@0",
                    &spr,
                ],
                0,
            ),
        ),
        (
            "bringup",
            json(
                &[
                    "bringup",
                    "--format",
                    "json",
                    "--demo",
                    "--inject",
                    "operand-busy@200x100000",
                ],
                1,
            ),
        ),
        (
            "bringup",
            json(
                &[
                    "bringup",
                    "--format",
                    "json",
                    "--strategy",
                    "linux",
                    &minor_node,
                ],
                0,
            ),
        ),
        (
            "bringup",
            json(
                &[
                    "bringup",
                    "--format",
                    "json",
                    "--module",
                    "next",
                    "--update-to",
                    "next,update=1",
                    "--disable",
                    &spr,
                ],
                0,
            ),
        ),
        (
            "bringup",
            json(
                &[
                    "bringup",
                    "--format",
                    "json",
                    "--update-to",
                    "1.5.25,update=26,max_reserved=1",
                    "--holes",
                    "memory",
                    "--disable",
                    &emr,
                ],
                1,
            ),
        ),
        // Bring-up failing at the extensions stage, with memory already handed over: TDH.EXT.INIT
        // (the last calls of a `next` bring-up) interrupted for good.
        (
            "bringup",
            json(
                &[
                    "bringup",
                    "--format",
                    "json",
                    "--module",
                    "next",
                    "--inject",
                    &format!("interrupted-resumable@{ext_init_starts}x100000"),
                    &spr,
                ],
                1,
            ),
        ),
        // An update that fails with the module's status: inject into its first call, the
        // one after every call bring-up made.
        (
            "bringup",
            json(
                &[
                    "bringup",
                    "--format",
                    "json",
                    "--module",
                    "next",
                    "--update-to",
                    "next,update=1",
                    "--inject",
                    &format!("rnd-no-entropy@{update_starts}x100"),
                    &spr,
                ],
                1,
            ),
        ),
        (
            "bringup",
            json(
                &[
                    "bringup",
                    "--format",
                    "json",
                    "--module",
                    "2.0,lacks=MAX_TDMRS",
                    &spr,
                ],
                1,
            ),
        ),
    ];
    // check: valid (JSON and hex), and each way of being refused.
    let plan_of = |log: &str, extra: &[&str]| {
        let mut args = vec!["plan", "--format", "json", log];
        args.extend_from_slice(extra);
        json(&args, 0)
    };
    let valid = write("valid.json", plan_of(&spr512, &[]).to_string());
    outputs.push((
        "check",
        json(&["check", &valid, "--log", &spr512, "--format", "json"], 0),
    ));
    let mut p = plan_of(&spr, &["--strategy", "linux"]);
    let hex: String = {
        let t = &p["tdmrs"][0];
        let mut info = tdmr::tdx::abi::TdmrInfo::ZERO;
        info.base = t["base"].as_u64().unwrap();
        info.size = t["size"].as_u64().unwrap();
        info.to_bytes().iter().map(|b| format!("{b:02x}")).collect()
    };
    let hex = write("one.hex", hex);
    outputs.push((
        "check",
        json(&["check", &hex, "--log", &spr, "--format", "json"], 1),
    ));
    let linux = write("linux.json", p.to_string());
    outputs.push((
        "check",
        json(
            &[
                "check",
                &linux,
                "--log",
                &spr,
                "--format",
                "json",
                "--max-reserved",
                "1",
            ],
            1,
        ),
    ));
    p["tdmrs"][1]["reserved"][0]["offset"] =
        Value::from(p["tdmrs"][1]["reserved"][0]["offset"].as_u64().unwrap() + 1);
    let reserved = write("reserved.json", p.to_string());
    outputs.push((
        "check",
        json(&["check", &reserved, "--log", &spr, "--format", "json"], 1),
    ));
    let mut p = plan_of(&spr, &["--strategy", "linux"]);
    let t = p["tdmrs"].as_array_mut().unwrap();
    t.swap(0, 1);
    let swapped = write("swapped.json", p.to_string());
    outputs.push((
        "check",
        json(&["check", &swapped, "--log", &spr, "--format", "json"], 1),
    ));
    let mut p = plan_of(&spr, &["--strategy", "linux"]);
    p["tdmrs"].as_array_mut().unwrap().pop();
    let short = write("short.json", p.to_string());
    outputs.push((
        "check",
        json(&["check", &short, "--log", &spr, "--format", "json"], 1),
    ));

    let mut seen: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for (section, out) in &outputs {
        let mut fields = Vec::new();
        flatten(out, &mut Vec::new(), &mut fields);
        for (path, t) in fields {
            let found = ["common", section].iter().find_map(|s| {
                doc[*s]
                    .iter()
                    .find(|(d, _)| matches(d, &path))
                    .map(|(d, types)| (*s, d, types))
            });
            match found {
                Some((s, d, types)) => {
                    if !allowed(types, t) {
                        problems.push(format!(
                            "{section}: {} is {t}, documented {types:?}",
                            path.join(".")
                        ));
                    }
                    seen.entry(s).or_default().insert(d.clone());
                }
                None => problems.push(format!(
                    "{section}: {} ({t}) is not in docs/json.md",
                    path.join(".")
                )),
            }
        }
    }
    for (section, fields) in &doc {
        for f in fields.keys() {
            if !seen.get(section.as_str()).is_some_and(|s| s.contains(f)) {
                problems.push(format!(
                    "{section}: docs/json.md lists {f}, no output has it"
                ));
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let documented_fields: usize = doc.values().map(|f| f.len()).sum();
    assert!(documented_fields > 200, "{documented_fields} fields");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_readme_links_the_contract() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.contains("(docs/json.md)"),
        "README.md does not link docs/json.md"
    );
}
