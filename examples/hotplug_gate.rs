//! Guard memory and CPU hotplug with the lock-free `hotplug_gate::HotplugGate`: memory inside
//! the CMRs comes in before initialization, initialization waits for what is in flight and
//! publishes its plan, afterwards only TDX memory of the plan comes back and a removal that
//! would take a PAMT is refused, naming the TDMR.
//!
//! ```text
//! cargo run --example hotplug_gate
//! ```
//!
//! `tdmr hotplug` (`cli/`) races threads of all of this around one initialization.

use tdmr::addr::PhysRange;
use tdmr::hotplug_gate::{GateConfig, HotplugGate};
use tdmr::layout::Planner;
use tdmr::memmap::parse_kernel_log;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let input = parse_kernel_log(include_str!("../tests/fixtures/spr-1t.log"))?;
    let (memory, cmrs) = input.into_parts();
    // 2 packages of 2 CPUs, all online.
    let gate = HotplugGate::new(cmrs, GateConfig::new(4, 2))?;
    for cpu in 0..4 {
        gate.cpu_online(cpu, cpu / 2)?.finish();
    }

    // Before initialization: memory inside the CMRs may come (the kernel then adds it).
    let block = PhysRange::from_base_size(0x20_0000_0000, 128 << 20)?;
    let added = gate.admit_memory(block)?;
    println!("before init: {block} admitted ({:?})", added.rule());
    added.finish();

    // Initialization: nothing in flight any more, plan the map, publish the plan.
    let ticket = gate.begin_init()?;
    let plan = Planner::new().plan(&memory, gate.cmrs())?;
    ticket.publish(&plan, &memory)?;
    println!(
        "initialized: {} TDMRs, state {}",
        plan.tdmrs().len(),
        gate.state()
    );

    // After: TDX memory may go offline and come back; memory holding a PAMT may not leave.
    gate.admit_removal(block)?.finish();
    gate.admit_memory(block)?.finish();
    println!("after init: {block} removed and admitted again");
    let pamt = plan.tdmrs()[0].pamt(tdmr::addr::PageSize::Size4K);
    match gate.admit_removal(pamt) {
        Err(e) => println!("after init: removing {pamt} refused: {e}"),
        Ok(_) => println!("after init: removing {pamt} admitted?"),
    }
    Ok(())
}
