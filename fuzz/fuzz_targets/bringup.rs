//! `Bringup` over a lying TDX module (`FuzzInjector` around the mock), on arbitrary inputs.
//! The body is shared with `cargo test` (tests/fuzz_seeds.rs replays the seeds).
#![no_main]

#[path = "../../tests/fuzz_bodies/bringup.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
