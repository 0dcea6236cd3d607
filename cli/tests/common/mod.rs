//! Shared by the command's tests: running `tdmr`, reading fixtures, the XML checker.

#![allow(dead_code)]

pub mod xml;

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;
use tdmr::tdx::abi::{TdmrInfo, TdmrReservedEntry};

/// The repository root (the fixtures live in its `tests/fixtures`).
pub fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

pub fn fixture(name: &str) -> String {
    root()
        .join("tests/fixtures")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// Every `tests/fixtures/*.log`, sorted.
pub fn fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("tests/fixtures"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

/// The `tdmr` binary of this build.
pub fn tdmr() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tdmr"))
}

/// `tdmr ARGS...`.
pub fn run(args: &[&str]) -> Output {
    tdmr().args(args).output().expect("run tdmr")
}

/// `tdmr plan ARGS...`.
pub fn plan(args: &[&str]) -> Output {
    let mut all = vec!["plan"];
    all.extend_from_slice(args);
    run(&all)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tdmr-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A JSON integer (panics on anything else: the tests' documents must hold integers there).
pub fn u(v: &Value) -> u64 {
    v.as_u64().expect("plain integer")
}

/// The TDMR_INFO entries of a JSON plan, as the module reads them.
pub fn infos_of(doc: &Value) -> Vec<TdmrInfo> {
    doc["tdmrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let mut info = TdmrInfo::ZERO;
            info.base = u(&t["base"]);
            info.size = u(&t["size"]);
            info.pamt_4k_base = u(&t["pamt"]["4k"]["base"]);
            info.pamt_4k_size = u(&t["pamt"]["4k"]["size"]);
            info.pamt_2m_base = u(&t["pamt"]["2m"]["base"]);
            info.pamt_2m_size = u(&t["pamt"]["2m"]["size"]);
            info.pamt_1g_base = u(&t["pamt"]["1g"]["base"]);
            info.pamt_1g_size = u(&t["pamt"]["1g"]["size"]);
            for (slot, r) in info
                .reserved
                .iter_mut()
                .zip(t["reserved"].as_array().unwrap())
            {
                *slot = TdmrReservedEntry {
                    offset: u(&r["offset"]),
                    size: u(&r["size"]),
                };
            }
            info
        })
        .collect()
}
