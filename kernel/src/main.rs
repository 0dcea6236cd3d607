//! A tiny UEFI kernel that links `tdmr` exactly as a kernel would — `no_std`, `alloc`, no
//! `std` feature — and runs the whole host side on the machine it boots on:
//!
//! 1. the firmware's memory map (`GetMemoryMap`) and the ACPI SRAT (RSDP from the UEFI
//!    configuration table, XSDT, SRAT) become the library's `MemoryMap`, with the same rules
//!    as a kernel log;
//! 2. there is no TDX under QEMU: the CMRs are taken to be the usable memory (said in the
//!    output), and the plan and readiness assessment are made for them;
//! 3. the software TDX module is brought up with TDH.SYS.LP.INIT and TDH.SYS.TDMR.INIT issued
//!    on the machine's real vCPUs through MP Services (`cpus.rs`, the library's `Cpus` trait);
//! 4. the hotplug gate is raced from every vCPU at once around an initialization (`gate.rs`);
//! 5. the readiness report and one JSON line go to the console (the serial port under
//!    `-nographic`), and the machine powers off.
#![no_std]
#![no_main]

extern crate alloc;

mod acpi;
mod cpus;
mod gate;
mod heap;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use tdmr::addr::RangeSet;
use tdmr::init::{Bringup, Cpus};
use tdmr::layout::Planner;
use tdmr::memmap::firmware::{Srat, UefiDescriptor, memory_map, ram_from_uefi};
use tdmr::memmap::{Cmrs, MemoryMap};
use tdmr::mock::{MockModule, Platform};
use tdmr::readiness::Readiness;
use tdmr::sysinfo::PrivateKeyIds;
use tdmr::tdx::leaf;
use uefi::mem::memory_map::MemoryMap as _;
use uefi::prelude::*;
use uefi::runtime::ResetType;

/// What the console says before the JSON line: one assumption, stated.
const ASSUMPTION: &str = "no TDX under QEMU: CMRs taken to be the usable memory";

/// A JSON string literal of `s` (quotes, backslashes and control characters escaped).
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn fail(stage: &str, error: &str) -> ! {
    uefi::println!(
        "{{\"status\":\"failed\",\"stage\":{},\"error\":{}}}",
        json_str(stage),
        json_str(error)
    );
    uefi::runtime::reset(ResetType::SHUTDOWN, Status::ABORTED, None)
}

/// The firmware's memory map as the library's descriptors.
fn uefi_descriptors() -> Vec<UefiDescriptor> {
    let map = match uefi::boot::memory_map(uefi::boot::MemoryType::LOADER_DATA) {
        Ok(m) => m,
        Err(e) => fail("memory map", &format!("{e:?}")),
    };
    map.entries()
        .map(|d| UefiDescriptor::new(d.ty.0, d.phys_start, d.page_count, d.att.bits()))
        .collect()
}

/// The SRAT, or `None` when the firmware has none (no NUMA information: one node).
fn srat() -> Option<Srat> {
    let rsdp = uefi::system::with_config_table(|t| {
        t.iter()
            .find(|e| e.guid == uefi::table::cfg::ACPI2_GUID)
            .map(|e| e.address as u64)
    });
    let Some(rsdp) = rsdp else {
        fail("ACPI", &format!("{}", acpi::AcpiError::NoRsdp));
    };
    // SAFETY: the RSDP address comes from the firmware's configuration table, and boot
    // services still run, so the tables are mapped and unchanged.
    let bytes = match unsafe { acpi::srat_bytes(rsdp) } {
        Ok(b) => b,
        Err(acpi::AcpiError::NoSrat) => return None,
        Err(e) => fail("ACPI", &format!("{e}")),
    };
    match Srat::parse(&bytes) {
        Ok(s) => Some(s),
        Err(e) => fail("SRAT", &format!("{e}")),
    }
}

fn nodes_of(memory: &MemoryMap) -> usize {
    let mut nodes: Vec<u32> = memory.regions().iter().map(|r| r.node).collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes.len()
}

#[entry]
fn main() -> Status {
    if heap::init().is_err() {
        return Status::OUT_OF_RESOURCES;
    }
    uefi::println!("tdmr-kernel: {ASSUMPTION}");

    // 1. Firmware inputs.
    let descriptors = uefi_descriptors();
    let ram: RangeSet = match ram_from_uefi(&descriptors) {
        Ok(r) => r,
        Err(e) => fail("memory map", &format!("{e}")),
    };
    let srat = srat();
    // The same rules as a kernel log: whole pages from 1 MiB up, split at the SRAT's nodes,
    // NUMA off when more than 1 MiB of RAM has no node.
    let firmware = match memory_map(&ram, srat.as_ref()) {
        Ok(m) => m,
        Err(e) => fail("memory map", &format!("{e}")),
    };
    for w in firmware.warnings() {
        uefi::println!("tdmr-kernel: warning: {w}");
    }
    let memory = firmware.memory();
    let nodes = nodes_of(memory);
    uefi::println!(
        "tdmr-kernel: {} UEFI descriptors, {} MiB of RAM in {} ranges on {} NUMA nodes",
        descriptors.len(),
        memory.total_bytes() >> 20,
        memory.len(),
        nodes
    );

    // 2. Plan and assess.
    let cmrs = Cmrs::covering(memory);
    let cpus = match cpus::MpCpus::new() {
        Ok(c) => c,
        Err(e) => fail("MP Services", &format!("{:?}", e.0)),
    };
    let cpu_list = cpus.cpus();
    let planner = Planner::new().with_init_cpus(cpu_list.len() as u32);
    let readiness = Readiness::assess(&planner, memory, &cmrs);
    uefi::println!("{}", readiness);

    // 3. Bring up the mock module on the vCPUs.
    let mut packages: Vec<u32> = cpu_list.iter().map(|c| c.package).collect();
    packages.sort_unstable();
    packages.dedup();
    let platform = Platform::new(cmrs.listed())
        .and_then(|p| p.with_topology(cpu_list.len() as u32, packages.len() as u32))
        // Host buffers above the machine's memory, so no PAMT the planner carves meets them.
        .and_then(|p| {
            let top = memory.span().end().next_multiple_of(1 << 30) + (1 << 30);
            p.with_host_buffers(
                tdmr::addr::PhysRange::new(top, top + (1 << 20)).unwrap_or_default(),
            )
        });
    let platform = match platform {
        Ok(p) => p,
        Err(e) => fail("platform", &format!("{e}")),
    };
    let keyids: PrivateKeyIds = platform.private_keyids();
    let module = MockModule::new(platform).with_lp_source(cpus::who_am_i);
    let done = match Bringup::new(&module, &cpus, &module, keyids)
        .with_planner(planner)
        .run(memory)
    {
        Ok(d) => d,
        Err(e) => fail("bring-up", &format!("{e}")),
    };
    let per_lp: Vec<u64> = module
        .calls_per_lp()
        .iter()
        .map(|c| c.get(leaf::TDH_SYS_TDMR_INIT))
        .collect();
    let init_cpus = per_lp.iter().filter(|&&n| n > 0).count();

    // 4. The hotplug gate from every vCPU.
    let run = match gate::race(&cpus, &cmrs, memory, &done.plan) {
        Ok(r) => r,
        Err(e) => fail("hotplug gate", &format!("{e}")),
    };

    // 5. The summary.
    let per_lp_json: Vec<String> = per_lp.iter().map(|n| format!("{n}")).collect();
    uefi::println!(
        "{{\"status\":\"initialized\",\"nodes\":{nodes},\"memory_bytes\":{},\"cpus\":{},\
         \"tdmrs\":{},\"pamt_kb\":{},\"seamcalls\":{},\"tdmr_init_per_lp\":[{}],\
         \"tdmr_init_cpus\":{init_cpus},\"lp_conflicts\":{},\"gate_admitted_before\":{},\
         \"gate_admitted_after\":{},\"gate_busy\":{},\"gate_refused\":{},\"gate_init_retries\":{},\
         \"gate_violations\":{},\"assumption\":{}}}",
        memory.total_bytes(),
        cpu_list.len(),
        done.plan.tdmrs().len(),
        done.pamt_bytes() / 1024,
        done.seamcalls.total(),
        per_lp_json.join(","),
        module.lp_conflicts(),
        run.admitted_before,
        run.admitted_after,
        run.busy,
        run.refused,
        run.init_retries,
        run.violations,
        json_str(ASSUMPTION)
    );
    uefi::runtime::reset(ResetType::SHUTDOWN, Status::SUCCESS, None)
}
