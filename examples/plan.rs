//! Plan a memory map: a kernel log's memory and CMRs in, TDMRs and PAMTs out, the way Linux
//! mainline does it and the way this crate does.
//!
//! ```text
//! cargo run --example plan [KERNEL_LOG]     (default: the Emerald Rapids 4-socket fixture)
//! ```
//!
//! The operator's command, with the readiness report, JSON and SVG, is `tdmr plan` (`cli/`).

use tdmr::layout::{Planner, Strategy};
use tdmr::memmap::parse_kernel_log;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let log = match std::env::args().nth(1) {
        Some(path) => std::fs::read_to_string(path)?,
        None => include_str!("../tests/fixtures/emr-4s-256g.log").to_string(),
    };
    let input = parse_kernel_log(&log)?;
    println!(
        "{} bytes of TDX memory in {} ranges, {} CMRs",
        input.memory().total_bytes(),
        input.memory().len(),
        input.cmrs().listed().len()
    );
    for strategy in [Strategy::Linux, Strategy::Optimal] {
        match Planner::new()
            .with_strategy(strategy)
            .plan(input.memory(), input.cmrs())
        {
            Ok(plan) => {
                println!("{}: {} TDMRs", strategy.name(), plan.tdmrs().len());
                for (i, t) in plan.tdmrs().iter().enumerate() {
                    println!(
                        "  TDMR {i} {}  {} reserved areas  PAMT on node {}",
                        t.range(),
                        t.reserved().len(),
                        t.pamt_node()
                    );
                }
                println!("  {} KB allocated for PAMT", plan.pamt_bytes() / 1024);
            }
            Err(e) => println!("{}: no layout: {e}", strategy.name()),
        }
    }
    Ok(())
}
