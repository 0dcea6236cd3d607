#![no_main]

#[path = "../../tests/fuzz_bodies/plan.rs"]
mod plan;
#[path = "../../tests/fuzz_bodies/plan_optimal.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
