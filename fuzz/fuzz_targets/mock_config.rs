//! The mock TDX module's TDH.SYS.CONFIG against the module's rules, on arbitrary inputs.
//! The body is shared with `cargo test` (tests/fuzz_seeds.rs replays the seeds).
#![no_main]

#[path = "../../tests/fuzz_bodies/mock_config.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
