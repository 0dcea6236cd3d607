//! `tdmr bringup`: the software TDX module brought up on every fixture; TDMR.INIT spread over
//! the CPUs with no LP running two calls; Dynamic PAMT pages mapped and every pair returned;
//! injected faults survived; the log's KeyID range used; bad flags exit 2.

mod common;

use common::{fixture, fixtures, run, stderr, stdout};
use serde_json::Value;

fn bringup(args: &[&str]) -> (Option<i32>, Value) {
    let mut all = vec!["bringup", "--format", "json"];
    all.extend_from_slice(args);
    let o = run(&all);
    let doc = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} {}", stdout(&o), stderr(&o)));
    (o.status.code(), doc)
}

#[test]
fn every_fixture_comes_up_or_fails_with_its_stage_and_status() {
    let mut up = 0;
    for path in fixtures() {
        let (code, doc) = bringup(&["--cpus", "2", path.to_str().unwrap()]);
        assert_eq!(doc["schema"], 1);
        match code {
            Some(0) => {
                assert_eq!(doc["status"], "initialized", "{path:?}");
                let tdmrs = doc["tdmrs"].as_array().unwrap().len() as u64;
                assert!(tdmrs > 0);
                // One TDMR.INIT call per 4 MiB of each TDMR.
                let covered: u64 = doc["tdmrs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["size"].as_u64().unwrap())
                    .sum();
                assert_eq!(
                    doc["seamcalls"]["TDH.SYS.TDMR.INIT"].as_u64(),
                    Some(covered >> 22),
                    "{path:?}"
                );
                up += 1;
            }
            Some(1) => {
                assert_eq!(doc["status"], "failed", "{path:?}");
                assert!(doc["stage"].is_string() && doc["error"].is_string());
            }
            other => panic!("{path:?}: exit {other:?}"),
        }
    }
    assert!(up >= 9, "{up} fixtures came up");
}

#[test]
fn the_1t_map_takes_262144_tdmr_inits_spread_over_4_lps() {
    let (code, doc) = bringup(&["--cpus", "4", &fixture("spr-1t.log")]);
    assert_eq!(code, Some(0));
    assert_eq!(doc["status"], "initialized");
    assert_eq!(doc["seamcalls"]["TDH.SYS.TDMR.INIT"], 262144);
    let per_lp: Vec<u64> = doc["tdmr_init_per_lp"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    assert_eq!(per_lp.len(), 4);
    assert!(per_lp.iter().filter(|&&n| n > 0).count() >= 2, "{per_lp:?}");
    assert_eq!(per_lp.iter().sum::<u64>(), 262144);
    assert_eq!(doc["lp_conflicts"], 0);
    assert_eq!(doc["pamt_bytes"].as_u64().map(|b| b / 1024), Some(4202516));
    // --demo is the same map.
    let (_, demo) = bringup(&["--demo", "--cpus", "4"]);
    assert_eq!(demo["seamcalls"], doc["seamcalls"]);
}

#[test]
fn dynamic_pamt_returns_every_page_pair() {
    let (code, doc) = bringup(&["--dynamic-pamt", &fixture("spr-1t.log")]);
    assert_eq!(code, Some(0));
    assert_eq!(doc["seamcalls"]["TDH.SYS.TDMR.INIT"], 65536);
    let d = &doc["dynamic_pamt_pages"];
    assert_eq!(d["pairs_returned"], true);
    assert_eq!(
        (d["pamt_add"].as_u64(), d["pamt_remove"].as_u64()),
        (Some(8), Some(8))
    );
    let (_, plain) = bringup(&[&fixture("spr-1t.log")]);
    assert!(plain["dynamic_pamt_pages"].is_null());
}

#[test]
fn injected_faults_are_survived_or_reported_with_the_raw_status() {
    let (code, doc) = bringup(&[
        "--inject",
        "rnd-no-entropy@0x3",
        "--inject",
        "sys-busy@50%",
        "--seed",
        "7",
        &fixture("icx-2s-256g.log"),
    ]);
    assert_eq!(code, Some(0), "{doc}");
    let injected = doc["injected"].as_array().unwrap();
    assert!(injected.len() >= 3, "{doc}");
    assert!(
        injected
            .iter()
            .all(|i| i["status"]["raw"].as_str().unwrap().starts_with("0x"))
    );
    assert!(
        injected
            .iter()
            .any(|i| i["status"]["name"] == "TDX_RND_NO_ENTROPY")
    );
    // Text says how each was recovered.
    let o = run(&[
        "bringup",
        "--inject",
        "rnd-no-entropy@0",
        &fixture("icx-2s-256g.log"),
    ]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("recovered by retry"), "{}", stdout(&o));
}

#[test]
fn the_logs_keyid_range_is_the_modules() {
    let text = std::fs::read_to_string(fixture("spr-512g.log"))
        .unwrap()
        .replace("[32, 64)", "[64, 128)");
    let dir = common::temp_dir("bringup-keyids");
    let f = dir.join("k.log");
    std::fs::write(&f, text).unwrap();
    let (code, doc) = bringup(&[f.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{doc}");
    assert_eq!(
        (
            doc["keyids"]["first"].as_u64(),
            doc["keyids"]["end"].as_u64()
        ),
        (Some(64), Some(128))
    );
    assert_eq!(doc["global_keyid"], 64);
    let o = run(&["bringup", f.to_str().unwrap()]);
    assert!(
        stdout(&o).contains("private KeyIDs [64, 128), global KeyID 64"),
        "{}",
        stdout(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_flags_exit_2_naming_the_value() {
    for (args, want) in [
        (
            vec!["bringup", "--inject", "nonsense@1"],
            "--inject nonsense@1",
        ),
        (vec!["bringup", "--cpus", "0"], "0"),
        (
            vec!["bringup", "--demo", "--cpus", "2", "--packages", "3"],
            "--cpus 2 --packages 3",
        ),
        (vec!["bringup", "--strategy", "fancy"], "fancy"),
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains(want), "want `{want}`: {}", stderr(&o));
    }
}
