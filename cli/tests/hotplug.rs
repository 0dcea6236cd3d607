//! `tdmr hotplug`: hotplug raced around one initialization on every fixture, 0 violations, one
//! JSON line with the counts; initialization never starved.

mod common;

use common::{fixtures, run, stderr, stdout};
use serde_json::Value;

#[test]
fn every_fixture_races_without_a_violation() {
    let mut runs = 0;
    for path in fixtures() {
        let o = run(&[
            "hotplug",
            path.to_str().unwrap(),
            "--ops",
            "1500",
            "--threads",
            "2",
        ]);
        assert_eq!(o.status.code(), Some(0), "{path:?}: {}", stderr(&o));
        let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(doc["schema"], 1);
        assert_eq!(
            (doc["status"].as_str(), doc["violations"].as_u64()),
            (Some("ok"), Some(0)),
            "{doc}"
        );
        assert!(doc["init"]["attempts"].as_u64().unwrap() >= 1);
        assert_eq!(doc["threads"], 2);
        assert_eq!(doc["ops_per_thread"], 1500);
        let admitted = doc["admitted"].as_u64().unwrap();
        assert_eq!(
            admitted,
            doc["admitted_before_init"].as_u64().unwrap()
                + doc["admitted_after_init"].as_u64().unwrap()
        );
        runs += 1;
    }
    assert!(runs >= 10, "{runs} fixtures");
}

#[test]
fn the_demo_initializes_and_the_seed_is_taken() {
    let o = run(&["hotplug", "--demo", "--ops", "2000", "--seed", "9"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(doc["state"], "initialized", "{doc}");
    assert_eq!(doc["cpu"]["packages"], 4);
    assert!(doc["input"].as_str().unwrap().contains("emr-4s-256g.log"));
    for bad in [["hotplug", "--threads", "0"], ["hotplug", "--ops", "x"]] {
        assert_eq!(run(&bad).status.code(), Some(2), "{bad:?}");
    }
}
