#![no_main]

#[path = "../../tests/fuzz_bodies/parse.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
