//! `tdmr`: Intel TDX host memory bring-up.
//!
//! Plans TDMRs (Trust Domain Memory Regions) over a physical memory map, sizes and places their
//! PAMTs (Physical Address Metadata Tables), checks a configuration exactly as the TDX module's
//! TDH.SYS.CONFIG does, and lays it out in the module's binary ABI. `no_std` + `alloc`; the
//! `std` feature adds std-only conveniences, `parallel` adds rayon.
//!
//! ```
//! use tdmr::layout::{Planner, Strategy, validate};
//! use tdmr::memmap::parse::parse_kernel_log;
//! use tdmr::seamcall::abi;
//!
//! let log = "virt/tdx: CMR: [0x100000, 0x77800000)\nvirt/tdx: CMR: [0x100000000, 0x407a000000)\n";
//! let input = parse_kernel_log(log)?;
//! let plan = Planner::new(input.memory(), input.cmrs()).strategy(Strategy::Linux).plan()?;
//! let infos = abi::tdmr_infos(&plan)?;
//! let env = validate::ConfigEnv::new(input.cmrs().listed());
//! validate::sys_config(&infos, &env)?;
//! println!("{} KB allocated for PAMT", plan.pamt_bytes() / 1024);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Walkthrough: from a kernel log to a configuration the module accepts
//!
//! The machine below is an Emerald Rapids 4-socket host whose firmware fragments the low
//! 2 GiB: Linux mainline fails on it with `TDMR [0x0, 0x80000000): reserved areas exhausted`
//! (its 17 holes exceed the module's 16 reserved areas per TDMR). Each step names the module
//! that owns it.
//!
//! ## 1. Read the machine ([`memmap`])
//!
//! [`memmap::parse::parse_kernel_log`] reads the lines a user pastes from `dmesg` or
//! `/proc/iomem`: `BIOS-e820:` memory, `ACPI: SRAT:` NUMA nodes and `virt/tdx: CMR:` lines. It
//! yields a [`memmap::MemoryMap`] (TDX memory: sorted ranges, each on one node) and
//! [`memmap::Cmrs`] (the convertible memory ranges the module reported). Bad input is an error
//! naming the line; the map never grows with the size of the address space.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tdmr::memmap::parse::parse_kernel_log;
//!
//! let log = include_str!("../tests/fixtures/emr-4s-256g.log");
//! let input = parse_kernel_log(log)?;
//! assert_eq!(input.memory().len(), 20);        // 20 TDX memory ranges
//! assert_eq!(input.cmrs().listed().len(), 5);  // 5 CMRs
//! # Ok(()) }
//! ```
//!
//! ## 2. Plan ([`layout`], [`pamt`], [`sysinfo`])
//!
//! A [`layout::Planner`] takes the map, the CMRs and the module's limits
//! ([`sysinfo::TdxLimits`]: MAX_TDMRS, reserved areas per TDMR, PAMT entry sizes, Dynamic PAMT)
//! and returns a [`layout::Plan`]: TDMRs with their reserved areas and PAMT blocks.
//! [`layout::Strategy::Optimal`] (the default) finds the layout with the least covered span
//! (so the least PAMT), then the fewest node-mixing TDMRs, TDMRs and reserved areas, or names
//! the smallest obstacle; [`layout::Strategy::Linux`] reproduces Linux mainline, failure
//! included.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let input = tdmr::memmap::parse::parse_kernel_log(include_str!("../tests/fixtures/emr-4s-256g.log"))?;
//! use tdmr::layout::{Planner, PlanError, Strategy};
//!
//! let linux = Planner::new(input.memory(), input.cmrs()).strategy(Strategy::Linux).plan();
//! assert!(matches!(linux, Err(PlanError::ReservedAreasExhausted { .. })));
//!
//! let plan = Planner::new(input.memory(), input.cmrs()).plan()?;
//! assert_eq!(plan.tdmrs().len(), 5);
//! assert_eq!(plan.pamt_bytes() / 1024, 1_050_644); // what distribution kernels print here
//! assert!(plan.excluded().is_empty());              // no memory left out
//! # Ok(()) }
//! ```
//!
//! ## 3. Check it as the module will ([`seamcall::abi`], [`layout::validate`])
//!
//! [`seamcall::abi::tdmr_infos`] lays the plan out as the 512-byte `TDMR_INFO` structures
//! TDH.SYS.CONFIG reads. [`layout::validate::sys_config`] runs the module's checks in the
//! module's order and returns its exact 64-bit status on the first failure;
//! [`layout::validate::covers_memory`] checks the host's side of the contract: every byte of
//! TDX memory is usable or holds a PAMT (or was explicitly excluded).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let input = tdmr::memmap::parse::parse_kernel_log(include_str!("../tests/fixtures/emr-4s-256g.log"))?;
//! # let plan = tdmr::layout::Planner::new(input.memory(), input.cmrs()).plan()?;
//! use tdmr::layout::validate::{self, ConfigEnv};
//! use tdmr::seamcall::abi;
//!
//! let infos = abi::tdmr_infos(&plan)?;
//! validate::sys_config(&infos, &ConfigEnv::new(input.cmrs().listed()))?;
//! let memory = input.memory().regions().iter().map(|r| r.range());
//! validate::covers_memory(&infos, memory, plan.excluded())?;
//! # Ok(()) }
//! ```
//!
//! ## 4. Tell people what it costs ([`report`])
//!
//! [`report::readiness::Readiness`] answers "will TDX come up here, and what will it cost?":
//! Linux mainline's verdict next to ours, PAMT static and with Dynamic PAMT, limits and
//! warnings. [`report::text`], [`report::json`] and [`report::svg`] render plans for people,
//! scripts and eyes; the `plan` example is the command-line front end
//! (`cargo run --release --example plan -- --format svg --compare <log>`).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let input = tdmr::memmap::parse::parse_kernel_log(include_str!("../tests/fixtures/emr-4s-256g.log"))?;
//! use tdmr::layout::Planner;
//! use tdmr::report::{Context, readiness::Readiness, svg, text};
//!
//! let r = Readiness::assess(&Planner::new(input.memory(), input.cmrs()));
//! assert!(!r.linux.is_ok() && r.ours.is_ok());
//! let ctx = Context { memory: input.memory(), cmrs: input.cmrs() };
//! assert!(text::readiness(&r, &ctx).contains("Linux mainline fails here"));
//! let map = svg::render(&ctx, "emr", &[
//!     svg::Section { name: "linux", holes: r.linux.holes, result: &r.linux.result },
//!     svg::Section { name: "optimal", holes: r.ours.holes, result: &r.ours.result },
//! ]);
//! assert!(map.contains("TDMR [0x0, 0x80000000)"));
//! # Ok(()) }
//! ```
//!
//! ## 5. Bring the module up ([`init`], [`seamcall`])
//!
//! [`init::Bringup`] drives the TDX module through any [`seamcall::Seamcall`] backend: the real
//! instruction ([`seamcall::asm::SeamcallInstruction`], x86_64, `unsafe` to construct) or
//! [`seamcall::mock::MockModule`], a software TDX module that keeps the module's state machine
//! and checks the configuration with [`layout::validate`]. It runs TDH.SYS.INIT, TDH.SYS.LP.INIT
//! on every CPU, reads the limits and CMRs with TDH.SYS.RD, plans, writes the `TDMR_INFO`s,
//! calls TDH.SYS.CONFIG, flushes caches, TDH.SYS.KEY.CONFIG once per package and
//! TDH.SYS.TDMR.INIT until every TDMR is initialized, retrying what Linux retries.
//! [`seamcall::mock::FaultInjector`] makes chosen calls fail, to test recovery.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let input = tdmr::memmap::parse::parse_kernel_log(include_str!("../tests/fixtures/emr-4s-256g.log"))?;
//! use tdmr::init::{Bringup, PrivateKeyIds};
//! use tdmr::seamcall::mock::{FaultInjector, MockModule, Platform};
//!
//! // A 4-socket machine with 16 CPUs, reporting the log's CMRs.
//! let module = MockModule::new(Platform::new(input.cmrs().listed())?.topology(16, 4)?);
//! // The first TDH.SYS.INIT runs out of entropy; the driver retries it, as Linux does.
//! let faulty = FaultInjector::new(&module, 1).with("rnd-no-entropy@0".parse()?);
//! let done = Bringup::new(&faulty, &module, &module, PrivateKeyIds::new(32, 32))
//!     .run(input.memory())?;
//! assert_eq!(done.pamt_bytes() / 1024, 1_050_644);
//! assert_eq!(done.plan.tdmrs().len(), 5);
//! # Ok(()) }
//! ```
//!
//! ## 6. Guard memory and CPU hotplug ([`hotplug_gate`])
//!
//! Once the module is initialized its TDX memory configuration is frozen. A
//! [`hotplug_gate::HotplugGate`] makes initialization and hotplug exclude each other without a
//! lock: before initialization it admits memory that lies in the CMRs; while initialization runs
//! it answers `Busy` at once; afterwards it admits only memory that is TDX memory of the
//! published plan, wait-free, with one atomic load and a search of an immutable snapshot. CPUs
//! are tracked per package: the last CPU of a package cannot go offline while initialization
//! runs or guest KeyIDs are in use.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let input = tdmr::memmap::parse::parse_kernel_log(include_str!("../tests/fixtures/emr-4s-256g.log"))?;
//! # let plan = tdmr::layout::Planner::new(input.memory(), input.cmrs()).plan()?;
//! use tdmr::addr::PhysRange;
//! use tdmr::hotplug_gate::{AdmitError, GateConfig, HotplugGate};
//!
//! let gate = HotplugGate::new(input.cmrs().clone(), GateConfig::new(4, 4))?;
//! for cpu in 0..4 {
//!     gate.cpu_online(cpu, cpu)?.finish(); // one CPU per package
//! }
//! // Before initialization: convertible memory is admitted, the rest refused.
//! let node1 = PhysRange::new(0x1080000000, 0x1090000000)?;
//! gate.admit_memory(node1)?.finish();
//! let mmio = PhysRange::new(0x80000000, 0x90000000)?;
//! assert!(matches!(gate.admit_memory(mmio), Err(AdmitError::NotConvertible { .. })));
//!
//! // Initialization: hotplug waits (Busy, never blocking) until the plan is published.
//! let ticket = gate.begin_init()?;
//! assert!(matches!(gate.admit_memory(node1), Err(AdmitError::Busy)));
//! ticket.publish(&plan, input.memory())?;
//!
//! // Afterwards: TDX memory of the plan only (PAMT blocks and holes are not).
//! gate.admit_memory(node1)?.finish();
//! let pamt = plan.tdmrs()[1].pamt(tdmr::addr::PageSize::Size4K);
//! assert!(matches!(gate.admit_memory(pamt), Err(AdmitError::NotTdxMemory { .. })));
//! # Ok(()) }
//! ```
#![no_std]
#![deny(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

pub mod addr;
pub mod hotplug_gate;
pub mod init;
pub mod layout;
pub mod memmap;
pub mod pamt;
pub mod report;
pub mod seamcall;
pub mod sysinfo;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
