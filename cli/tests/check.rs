//! `tdmr check`: every fixture's plan is accepted (JSON, hex dump and `xxd` dump alike);
//! random corruptions of them are refused with exactly the status TDH.SYS.CONFIG returns and
//! the TDMR it names (the referee `tdx::validate` run here on the same bytes, and, for the
//! corruptions whose outcome the module's rules fix, the status and TDMR those rules give);
//! bad input exits 2 naming the offending value.

mod common;

use common::{fixture, fixtures, infos_of, run, stderr, stdout, temp_dir, u};
use serde_json::{Value, json};
use tdmr::memmap::parse_kernel_log;
use tdmr::sysinfo::{PrivateKeyIds, TdxLimits};
use tdmr::tdx::abi::{TDMR_INFO_RESERVED_SLOTS, TdmrInfo, TdmrReservedEntry};
use tdmr::tdx::status::{
    Status, TDX_INVALID_PAMT, TDX_INVALID_RESERVED_IN_TDMR, TDX_INVALID_TDMR, TDX_NON_ORDERED_TDMR,
};
use tdmr::tdx::validate::{self, ConfigEnv};

/// A JSON plan of exactly these entries (every slot up to the last used one, empty ones
/// included, so the module reads the same bytes).
fn json_of(infos: &[TdmrInfo]) -> String {
    let tdmrs: Vec<Value> = infos
        .iter()
        .map(|t| {
            let used = t
                .reserved
                .iter()
                .rposition(|r| *r != TdmrReservedEntry::default())
                .map_or(0, |k| k + 1);
            json!({
                "base": t.base,
                "size": t.size,
                "reserved": t.reserved[..used].iter().map(|r| json!({"offset": r.offset, "size": r.size})).collect::<Vec<_>>(),
                "pamt": {
                    "4k": {"base": t.pamt_4k_base, "size": t.pamt_4k_size},
                    "2m": {"base": t.pamt_2m_base, "size": t.pamt_2m_size},
                    "1g": {"base": t.pamt_1g_base, "size": t.pamt_1g_size},
                },
            })
        })
        .collect();
    json!({"schema": 1, "tdmrs": tdmrs}).to_string()
}

/// `xxd -p`-style hex of the entries.
fn hex_of(infos: &[TdmrInfo]) -> String {
    let mut s = String::new();
    for t in infos {
        for chunk in t.to_bytes().chunks(32) {
            for b in chunk {
                s.push_str(&format!("{b:02x}"));
            }
            s.push('\n');
        }
    }
    s
}

/// `xxd`'s default dump of the entries (offsets, groups of two bytes, the text column).
fn xxd_of(infos: &[TdmrInfo]) -> String {
    let bytes: Vec<u8> = infos.iter().flat_map(|t| t.to_bytes()).collect();
    let mut s = String::new();
    for (k, chunk) in bytes.chunks(16).enumerate() {
        s.push_str(&format!("{:08x}: ", k * 16));
        for pair in chunk.chunks(2) {
            s.push_str(&format!("{:02x}{:02x} ", pair[0], pair[1]));
        }
        let text: String = chunk
            .iter()
            .map(|&b| if b.is_ascii_graphic() { b as char } else { '.' })
            .collect();
        s.push_str(&format!(" {text}\n"));
    }
    s
}

/// The module's answer on `infos` with the log's CMRs and KeyIDs, then the host's coverage
/// rule: what `tdmr check` must say.
fn referee(infos: &[TdmrInfo], log: &str, limits: &TdxLimits) -> (Result<(), Status>, bool) {
    let parsed = parse_kernel_log(log).unwrap();
    let mut env = ConfigEnv::from_limits(limits, parsed.cmrs().listed());
    if let Some(k) = parsed.tdx_lines().keyids() {
        let bits = u32::BITS - (k.end - 1).leading_zeros();
        env = env.with_keyids(bits, PrivateKeyIds::new(k.start, k.end - k.start).unwrap());
    }
    let module = validate::sys_config(infos, &env);
    let covered = module.is_ok()
        && validate::covers_memory(
            infos,
            parsed.memory().regions().iter().map(|r| r.range()),
            &[],
        )
        .is_ok();
    (module, covered)
}

/// `tdmr check FILE --log LOG --format json ARGS`, with the layout written to a file.
fn check(
    dir: &std::path::Path,
    layout: &str,
    log: &str,
    args: &[&str],
) -> (Option<i32>, Value, String) {
    let file = dir.join("layout");
    std::fs::write(&file, layout).unwrap();
    let mut all = vec![
        "check",
        file.to_str().unwrap(),
        "--log",
        log,
        "--format",
        "json",
    ];
    all.extend_from_slice(args);
    let o = run(&all);
    let doc = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} / {}", stdout(&o), stderr(&o)));
    (o.status.code(), doc, stderr(&o))
}

#[test]
fn every_fixtures_plan_is_accepted_as_json_and_as_hex() {
    let dir = temp_dir("check-accept");
    let mut checked = 0;
    for path in fixtures() {
        let log = path.to_str().unwrap();
        for (plan_args, check_args) in [
            (&[][..], &[][..]),
            (&["--strategy", "linux"], &[]),
            (&["--holes", "memory"], &[]),
            (&["--dpamt"], &["--dpamt"][..]),
            (&["--cpus", "16"], &[]),
        ] {
            let mut args = vec!["plan", "--format", "json", log];
            args.extend_from_slice(plan_args);
            let o = run(&args);
            if o.status.code() == Some(1) {
                continue; // Linux fails on some of them: nothing to check.
            }
            assert_eq!(o.status.code(), Some(0), "{log} {plan_args:?}");
            let plan = stdout(&o);
            let doc: Value = serde_json::from_str(&plan).unwrap();
            let infos = infos_of(&doc);
            // Our own output as is, then the same entries as JSON, hex and an xxd dump.
            for layout in [
                plan.clone(),
                json_of(&infos),
                hex_of(&infos),
                xxd_of(&infos),
            ] {
                let (code, out, err) = check(&dir, &layout, log, check_args);
                assert_eq!(code, Some(0), "{log} {plan_args:?}: {out} {err}");
                assert_eq!(out["status"], "valid");
                assert_eq!(out["module_status"]["name"], "TDX_SUCCESS");
                assert_eq!(u(&out["layout"]["tdmr_count"]), infos.len() as u64);
                checked += 1;
            }
            // Without Dynamic PAMT the module wants full PAMT_4K tables.
            if plan_args == ["--dpamt"] {
                let (code, out, _) = check(&dir, &plan, log, &[]);
                assert_eq!(code, Some(1), "{log}");
                assert_eq!(out["module_status"]["name"], "TDX_INVALID_PAMT");
                assert_eq!(out["area"]["level"], "4k");
            }
        }
    }
    assert!(checked >= 4 * 40, "only {checked} layouts checked");
    // The text output says the same.
    let f = fixture("spr-512g.log");
    let plan = stdout(&run(&["plan", "--format", "json", &f]));
    std::fs::write(dir.join("p.json"), plan).unwrap();
    let o = run(&["check", dir.join("p.json").to_str().unwrap(), "--log", &f]);
    assert_eq!(o.status.code(), Some(0));
    let text = stdout(&o);
    assert!(text.contains("TDH.SYS.CONFIG: TDX_SUCCESS"), "{text}");
    assert!(
        text.contains("private KeyIDs [32, 64) (6 KeyID bits)"),
        "{text}"
    );
    assert!(text.contains("verdict: valid"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A random corruption of `infos` and, where the module's rules fix the outcome, the status
/// code and TDMR they give.
fn corrupt(infos: &mut [TdmrInfo], rng: &mut Rng) -> (&'static str, Option<(u64, usize)>) {
    let n = infos.len();
    let i = rng.below(n as u64) as usize;
    let t = &mut infos[i];
    match rng.below(9) {
        0 => {
            // Off 1 GiB alignment (later, so still in order).
            t.base += 4096 * (1 + rng.below((1 << 18) - 1));
            ("base off alignment", Some((TDX_INVALID_TDMR, i)))
        }
        1 => {
            t.size = 0;
            ("empty TDMR", Some((TDX_INVALID_TDMR, i)))
        }
        2 if n >= 2 => {
            let i = i.min(n - 2);
            infos.swap(i, i + 1);
            ("two TDMRs swapped", Some((TDX_NON_ORDERED_TDMR, i + 1)))
        }
        3 => {
            // PAMT_4K below its minimum (PAMT_1G and PAMT_2M, checked first, untouched).
            t.pamt_4k_size = (t.pamt_4k_size / 2 - rng.below(t.pamt_4k_size / 2 / 4096 + 1) * 4096)
                .min(t.pamt_4k_size.saturating_sub(4096));
            ("PAMT_4K too small", Some((TDX_INVALID_PAMT, i)))
        }
        4 => match t
            .reserved
            .iter()
            .position(|r| r.size == 0)
            .unwrap_or(TDMR_INFO_RESERVED_SLOTS)
        {
            0 => {
                t.size += 1 << 30;
                ("grown by 1 GiB", None)
            }
            used => {
                let k = rng.below(used as u64) as usize;
                t.reserved[k].offset += 1 + rng.below(4095);
                (
                    "reserved area off 4 KiB",
                    Some((TDX_INVALID_RESERVED_IN_TDMR, i)),
                )
            }
        },
        5 => {
            // The PAMT_1G block moved onto some TDMR's memory.
            let j = rng.below(n as u64) as usize;
            let target = infos[j].base + rng.below(infos[j].size / 4096) * 4096;
            infos[i].pamt_1g_base = target;
            ("PAMT_1G moved", None)
        }
        6 => {
            // A reserved area dropped (the later ones move up).
            let used = t.reserved.iter().take_while(|r| r.size != 0).count();
            if used > 0 {
                let k = rng.below(used as u64) as usize;
                t.reserved.copy_within(k + 1.., k);
                t.reserved[TDMR_INFO_RESERVED_SLOTS - 1] = TdmrReservedEntry::default();
            } else {
                t.base = t.base.wrapping_add(1 << 30);
            }
            ("reserved area dropped", None)
        }
        7 => {
            t.size += (1 + rng.below(4)) << 30;
            ("grown", None)
        }
        _ => {
            // One bit of one field flipped.
            let bit = 1u64 << rng.below(52);
            match rng.below(5) {
                0 => t.base ^= bit,
                1 => t.size ^= bit,
                2 => t.pamt_2m_base ^= bit,
                3 => t.pamt_4k_size ^= bit,
                _ => t.reserved[0].offset ^= bit,
            }
            ("a bit flipped", None)
        }
    }
}

#[test]
fn random_corruptions_are_refused_with_the_modules_status_and_tdmr() {
    let dir = temp_dir("check-corrupt");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut refused, mut predicted, mut cases) = (0, 0, 0);
    for path in fixtures() {
        let log_path = path.to_str().unwrap();
        let log = std::fs::read_to_string(&path).unwrap();
        let plan: Value =
            serde_json::from_slice(&run(&["plan", "--format", "json", log_path]).stdout).unwrap();
        let original = infos_of(&plan);
        for case in 0..12 {
            let mut infos = original.clone();
            let (what, want) = corrupt(&mut infos, &mut rng);
            let layout = if case % 2 == 0 {
                json_of(&infos)
            } else {
                hex_of(&infos)
            };
            let (code, out, err) = check(&dir, &layout, log_path, &[]);
            let (module, covered) = referee(&infos, &log, &TdxLimits::default());
            let name = format!("{log_path} case {case} ({what}): {out} {err}");
            cases += 1;
            match module {
                Ok(()) => {
                    assert_eq!(out["module_status"]["name"], "TDX_SUCCESS", "{name}");
                    assert_eq!(code, Some(if covered { 0 } else { 1 }), "{name}");
                    if !covered {
                        assert_eq!(out["refused_by"], "coverage", "{name}");
                        assert!(out["uncovered"]["size"].as_u64().unwrap() > 0, "{name}");
                    }
                    assert!(want.is_none(), "{name}: the module's rules refuse this");
                }
                Err(s) => {
                    refused += 1;
                    assert_eq!(code, Some(1), "{name}");
                    assert_eq!(out["status"], "refused", "{name}");
                    assert_eq!(out["refused_by"], "module", "{name}");
                    assert_eq!(
                        out["module_status"]["raw"],
                        format!("{:#018x}", s.raw()),
                        "{name}"
                    );
                    if s.has_tdmr_info() {
                        let tdmr = u64::from(s.info_bytes()[0]);
                        assert_eq!(out["tdmr"].as_u64(), Some(tdmr), "{name}");
                        assert!(
                            out["explanation"]
                                .as_str()
                                .unwrap()
                                .starts_with(&format!("TDMR {tdmr} [")),
                            "{name}"
                        );
                        assert!(out["area"]["kind"].is_string(), "{name}");
                    }
                    if let Some((code, tdmr)) = want {
                        assert_eq!(
                            (s.code(), s.info_bytes()[0] as usize),
                            (code, tdmr),
                            "{name}"
                        );
                        predicted += 1;
                    }
                }
            }
        }
    }
    assert!(cases >= 100, "{cases} cases");
    assert!(
        refused * 10 >= cases * 7,
        "only {refused} of {cases} corruptions refused"
    );
    assert!(
        predicted >= cases / 3,
        "only {predicted} with a predicted status"
    );
    // The text output names the status and the TDMR.
    let path = fixture("spr-1t.log");
    let plan: Value =
        serde_json::from_slice(&run(&["plan", "--format", "json", &path]).stdout).unwrap();
    let mut infos = infos_of(&plan);
    infos[1].pamt_4k_size /= 2;
    std::fs::write(dir.join("bad.json"), json_of(&infos)).unwrap();
    let o = run(&[
        "check",
        dir.join("bad.json").to_str().unwrap(),
        "--log",
        &path,
    ]);
    assert_eq!(o.status.code(), Some(1));
    let text = stdout(&o);
    assert!(
        text.contains("TDH.SYS.CONFIG: TDX_INVALID_PAMT (0xc0000a1000000001: TDMR 1, PAMT 4k)"),
        "{text}"
    );
    assert!(text.contains("  TDMR 1 [0x"), "{text}");
    assert!(text.contains("PAMT 4k ["), "{text}");
    assert!(text.contains("verdict: refused by the module"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_input_exits_2_naming_the_offending_value() {
    let dir = temp_dir("check-bad");
    let log = fixture("spr-1t.log");
    let plan: Value =
        serde_json::from_slice(&run(&["plan", "--format", "json", &log]).stdout).unwrap();
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut v = plan.clone();
        f(&mut v);
        v.to_string()
    };
    let cases: Vec<(String, &str)> = vec![
        ("{ not json".into(), "not a JSON plan"),
        ("[1, 2]".into(), "a JSON plan is an object"),
        (edit(&|v| v["schema"] = json!(2)), "schema: 2"),
        (
            edit(&|v| v["status"] = json!("infeasible")),
            "status: \"infeasible\"",
        ),
        (
            edit(&|v| {
                v.as_object_mut().unwrap().remove("tdmrs");
            }),
            "tdmrs: missing",
        ),
        (
            edit(&|v| v["tdmrs"][1]["pamt"]["2m"]["size"] = json!(-5)),
            "tdmrs[1].pamt.2m.size: expected an integer from 0 to 2^64 - 1, found -5",
        ),
        (
            edit(&|v| v["tdmrs"][0]["size"] = json!("1G")),
            "tdmrs[0].size: expected an integer from 0 to 2^64 - 1, found \"1G\"",
        ),
        (
            edit(&|v| v["tdmrs"][0]["base"] = json!(1.5)),
            "tdmrs[0].base: expected an integer from 0 to 2^64 - 1, found 1.5",
        ),
        (
            edit(&|v| {
                v["tdmrs"][0]["reserved"] = json!(vec![json!({"offset": 0, "size": 4096}); 17])
            }),
            "tdmrs[0].reserved: 17 reserved areas, a TDMR_INFO holds 16",
        ),
        (
            edit(&|v| {
                v["tdmrs"][0]["reserved"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("offset");
            }),
            "tdmrs[0].reserved[0].offset: missing",
        ),
        (
            edit(&|v| v["excluded"] = json!([{"base": u64::MAX, "size": 4096}])),
            "excluded[0]: base 0xffffffffffffffff size 0x1000",
        ),
        (
            "00".repeat(512) + "\nzz\n",
            "line 2: `z` (column 1) is not a hexadecimal digit",
        ),
        (
            "00".repeat(100),
            "100 bytes: not a whole number of 512-byte TDMR_INFO entries",
        ),
        ("0".into(), "line 1: an odd number of hexadecimal digits"),
    ];
    let mut checked = 0;
    for (layout, want) in &cases {
        std::fs::write(dir.join("layout"), layout).unwrap();
        let o = run(&["check", dir.join("layout").to_str().unwrap(), "--log", &log]);
        assert_eq!(o.status.code(), Some(2), "{want}: {}", stdout(&o));
        let err = stderr(&o);
        assert!(err.contains(want), "want `{want}` in: {err}");
        assert!(!err.contains("panicked"), "{err}");
        checked += 1;
    }
    assert_eq!(checked, cases.len());
    // The log and the flags are input too.
    std::fs::write(dir.join("p.json"), plan.to_string()).unwrap();
    let p = dir.join("p.json");
    let p = p.to_str().unwrap();
    std::fs::write(
        dir.join("bad.log"),
        "CMR: [0x100000, 0x40000000)\nCMR: [0x2000, 0x1000)\n",
    )
    .unwrap();
    for (args, want) in [
        (
            vec![
                "check",
                p,
                "--log",
                dir.join("missing.log").to_str().unwrap(),
            ],
            "missing.log: no such file",
        ),
        (
            vec!["check", p, "--log", dir.join("bad.log").to_str().unwrap()],
            "line 2:",
        ),
        (
            vec![
                "check",
                dir.join("none.json").to_str().unwrap(),
                "--log",
                &log,
            ],
            "none.json: no such file",
        ),
        (
            vec!["check", p, "--log", &log, "--max-tdmrs", "0"],
            "--max-tdmrs 0",
        ),
        (
            vec!["check", p, "--log", &log, "--pamt-entry-size", "0"],
            "--pamt-entry-size 0",
        ),
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&o).contains(want),
            "want `{want}` in: {}",
            stderr(&o)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn limits_are_the_plans_limits_flags() {
    let dir = temp_dir("check-limits");
    let log = fixture("spr-1t.log");
    let plan = stdout(&run(&[
        "plan",
        "--format",
        "json",
        "--strategy",
        "linux",
        &log,
    ]));
    let n = serde_json::from_str::<Value>(&plan).unwrap()["tdmrs"]
        .as_array()
        .unwrap()
        .len();
    // Fewer TDMRs than the plan has: the module refuses the count (RDX).
    let (code, out, _) = check(&dir, &plan, &log, &["--max-tdmrs", &(n - 1).to_string()]);
    assert_eq!(code, Some(1));
    assert_eq!(out["module_status"]["raw"], "0xc000010000000002");
    assert!(
        out["explanation"]
            .as_str()
            .unwrap()
            .contains(&format!("{n} TDMRs"))
    );
    // Fewer reserved areas than a TDMR uses: over the limit before the module sees it.
    let (code, out, _) = check(&dir, &plan, &log, &["--max-reserved", "1"]);
    assert_eq!(code, Some(1));
    assert_eq!(out["refused_by"], "limits");
    assert_eq!(out["reserved_limit"]["limit"], 1);
    // Larger PAMT entries: PAMT_2M, checked before PAMT_4K, is too small.
    let (code, out, _) = check(&dir, &plan, &log, &["--pamt-entry-size", "32"]);
    assert_eq!(code, Some(1));
    assert_eq!(out["module_status"]["name"], "TDX_INVALID_PAMT");
    assert_eq!(out["tdmr"], 0);
    std::fs::remove_dir_all(&dir).unwrap();
}
