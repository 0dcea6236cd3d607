//! Shared by the command's tests: running `tdmr`, reading fixtures, the XML checker.

#![allow(dead_code)]

pub mod xml;

use std::path::PathBuf;
use std::process::{Command, Output};

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
