//! Validate a layout as the TDX module does: a plan laid out in the module's `TDMR_INFO` ABI,
//! checked by `tdx::validate` (TDH.SYS.CONFIG's checks in the module's order, its exact
//! statuses), then broken on purpose to show a refusal naming the TDMR and the PAMT.
//!
//! ```text
//! cargo run --example validate [KERNEL_LOG]     (default: the 1 TiB Sapphire Rapids fixture)
//! ```
//!
//! `tdmr check` (`cli/`) does this for a JSON plan or a hex dump of someone else's layout.

use tdmr::layout::Planner;
use tdmr::memmap::parse_kernel_log;
use tdmr::tdx::validate::{self, ConfigEnv};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let log = match std::env::args().nth(1) {
        Some(path) => std::fs::read_to_string(path)?,
        None => include_str!("../tests/fixtures/spr-1t.log").to_string(),
    };
    let input = parse_kernel_log(&log)?;
    let plan = Planner::new().plan(input.memory(), input.cmrs())?;
    let mut infos = plan.tdmr_infos()?; // 512-byte TDMR_INFO entries
    let env = ConfigEnv::from_limits(plan.limits(), input.cmrs().listed());
    validate::sys_config(&infos, &env)?;
    let memory = input.memory().regions().iter().map(|r| r.range());
    validate::covers_memory(&infos, memory, plan.excluded())?;
    println!(
        "{} TDMR_INFOs: TDX_SUCCESS, and every byte of TDX memory covered",
        infos.len()
    );

    // The last TDMR's PAMT_2M moved onto the first TDMR's PAMT_4K.
    let last = infos.len() - 1;
    infos[last].pamt_2m_base = infos[0].pamt_4k_base;
    match validate::sys_config(&infos, &env) {
        Err(status) => {
            let [tdmr, level, other, _] = status.info_bytes();
            println!("refused: {status}");
            println!(
                "  (raw {:#018x}: TDMR {tdmr}, PAMT level {level}, other TDMR {other})",
                status.raw()
            );
        }
        Ok(()) => println!("accepted?"),
    }
    Ok(())
}
