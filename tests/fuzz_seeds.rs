//! Replays every checked-in fuzz seed, `tests/seeds/<target>/*`, through the same body the
//! cargo-fuzz target runs (`tests/fuzz_bodies/<target>.rs`), so `cargo test` catches
//! regressions without cargo-fuzz or nightly.
//!
//! Adding a target `x`: write `tests/fuzz_bodies/x.rs` with `pub fn run(data: &[u8])`, a
//! three-line `fuzz/fuzz_targets/x.rs` including it like the others, a `[[bin]]` block in
//! `fuzz/Cargo.toml`, seeds in `tests/seeds/x/`, and a block at the end of this file.

use std::path::Path;

/// Runs every file of `tests/seeds/<target>/` through `run`, naming the file that fails.
fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/seeds")
        .join(target);
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("readable seed directory").path())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    for seed in seeds {
        let data = std::fs::read(&seed).unwrap_or_else(|e| panic!("{}: {e}", seed.display()));
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            panic!("fuzz seed {} fails", seed.display());
        }
    }
}

#[path = "fuzz_bodies/parse.rs"]
mod parse;

#[test]
fn parse_seeds() {
    replay("parse", parse::run);
}

#[path = "fuzz_bodies/plan.rs"]
mod plan;

#[test]
fn plan_seeds() {
    replay("plan", plan::run);
}

#[path = "fuzz_bodies/plan_optimal.rs"]
mod plan_optimal;

#[test]
fn plan_optimal_seeds() {
    replay("plan_optimal", plan_optimal::run);
}

#[path = "fuzz_bodies/mock_config.rs"]
mod mock_config;

#[test]
fn mock_config_seeds() {
    replay("mock_config", mock_config::run);
}

#[path = "fuzz_bodies/gate.rs"]
mod gate;

#[test]
fn gate_seeds() {
    replay("gate", gate::run);
}

/// The gate body's model check on a deterministic batch of pseudo-random inputs as well: it
/// holds tokens across operations, so longer random sequences than the seeds reach more states.
#[test]
fn gate_pseudo_random_inputs() {
    let mut x = 0x853c_49e6_748f_ea9bu64;
    for len in (0..400).map(|i| 64 + (i % 8) * 256) {
        let data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        gate::run(&data);
    }
}

#[path = "fuzz_bodies/srat.rs"]
mod srat;

#[test]
fn srat_seeds() {
    replay("srat", srat::run);
}

#[path = "fuzz_bodies/uefi_map.rs"]
mod uefi_map;

#[test]
fn uefi_map_seeds() {
    replay("uefi_map", uefi_map::run);
}

#[path = "fuzz_bodies/bringup.rs"]
mod bringup;

#[test]
fn bringup_seeds() {
    replay("bringup", bringup::run);
}
