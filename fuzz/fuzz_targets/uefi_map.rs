#![no_main]

#[path = "../../tests/fuzz_bodies/uefi_map.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
