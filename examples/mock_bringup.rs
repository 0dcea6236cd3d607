//! Bring up the software TDX module (`tdmr::mock`, feature `mock`) on a kernel log's memory:
//! `init::Bringup` runs TDH.SYS.INIT, LP.INIT on every CPU at once, CONFIG, KEY.CONFIG per
//! package and TDMR.INIT spread over the CPUs, surviving an injected fault.
//!
//! ```text
//! cargo run --features mock,std --example mock_bringup [KERNEL_LOG]
//! ```
//!
//! `tdmr bringup` (`cli/`) has every knob: CPUs, packages, strategy, Dynamic PAMT, faults.

use tdmr::init::Bringup;
use tdmr::memmap::parse_kernel_log;
use tdmr::mock::{LpThreads, MockModule, Platform};
use tdmr::seamcall::FaultInjector;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let log = match std::env::args().nth(1) {
        Some(path) => std::fs::read_to_string(path)?,
        None => include_str!("../tests/fixtures/spr-1t.log").to_string(),
    };
    let input = parse_kernel_log(&log)?;
    // 8 logical processors in 2 packages, each an OS thread.
    let platform = Platform::new(input.cmrs().listed())?.with_topology(8, 2)?;
    let keyids = platform.private_keyids();
    let module = MockModule::new(platform);
    // The module has no entropy once, at the first call that can say so: Bringup retries.
    let faulty = FaultInjector::new(&module, 0).with("rnd-no-entropy@0".parse()?);
    let cpus = LpThreads::new(&module);
    let done = Bringup::new(&faulty, &cpus, &module, keyids).run(input.memory())?;
    println!(
        "TDX module {} initialized: {} TDMRs, {} KB allocated for PAMT, {} SEAMCALLs, global KeyID {}",
        done.info.version,
        done.plan.tdmrs().len(),
        done.pamt_bytes() / 1024,
        done.seamcalls.total(),
        done.global_keyid
    );
    for i in faulty.injections() {
        println!("  survived {} at call {} ({})", i.status, i.call, i.leaf);
    }
    Ok(())
}
