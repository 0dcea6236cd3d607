//! Random hotplug-gate operation sequences never disagree with the rules and never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_bodies/gate.rs"]
mod body;

fuzz_target!(|data: &[u8]| body::run(data));
