//! `tdmr`: Intel TDX host memory bring-up.
//!
//! Plans TDMRs (Trust Domain Memory Regions) over a physical memory map, sizes and places their
//! PAMTs (Physical Address Metadata Tables), checks a configuration exactly as the TDX module's
//! TDH.SYS.CONFIG does, lays it out in the module's binary ABI, drives the module through a
//! SEAMCALL backend, manages Dynamic PAMT pages at run time and guards memory and CPU hotplug.
//! `no_std` + `alloc`, no floating point; see [Features](#features).
//!
//! ```
//! use tdmr::layout::{Planner, Strategy};
//! use tdmr::memmap::parse_kernel_log;
//! use tdmr::tdx::validate::{self, ConfigEnv};
//!
//! let log = "virt/tdx: CMR: [0x100000, 0x77800000)\nvirt/tdx: CMR: [0x100000000, 0x407a000000)\n";
//! let input = parse_kernel_log(log)?;
//! let plan = Planner::new().with_strategy(Strategy::Linux).plan(input.memory(), input.cmrs())?;
//! let infos = plan.tdmr_infos()?;
//! let env = ConfigEnv::from_limits(plan.limits(), input.cmrs().listed());
//! validate::sys_config(&infos, &env)?;
//! println!("{} KB allocated for PAMT", plan.pamt_bytes() / 1024);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Floors
//!
//! Each module imports only from the floors below it. The order is declared once, by the
//! `// Floor N.` comments over the module list in `src/lib.rs`; `tests/layers.rs` reads them
//! and every `crate::` path in `src/`, and fails on an import that points up or sideways and
//! on any circle of files.
//!
//! | floor | modules | what lives there |
//! |---|---|---|
//! | 1 | [`addr`] | physical addresses and ranges, page sizes, range sets |
//! | 2 | [`memmap`], [`sysinfo`] | the planner's input (TDX memory, CMRs); the module's limits, private KeyIDs |
//! | 3 | [`tdx`] | the TDX module's contract: `TDMR_INFO`, registers, leaves, status codes, metadata ids, the referee [`tdx::validate`] |
//! | 4 | [`pamt`] | PAMT sizes, the PAMT allocator contract, placement |
//! | 5 | [`layout`] | the [`layout::Planner`], [`layout::Plan`] and its `TDMR_INFO` form |
//! | 6 | [`readiness`], [`seamcall`] | will TDX come up, Linux's verdict next to ours; the `Seamcall` trait, the instruction, fault injection |
//! | 7 | [`init`] | [`init::Bringup`], the host's CPU and memory traits |
//! | 8 | [`dpamt`] | the lock-free Dynamic PAMT manager |
//! | 9 | [`accounting`], [`hotplug_gate`] | what the TDX module holds now (static PAMT per node, Dynamic PAMT pairs, module extensions); the lock-free hotplug admission gate |
//! | 10 | `mock` (feature `mock`), `report` (feature `report`) | the software TDX module; text, JSON and SVG renderers |
//!
//! # Where the host's memory is at stake
//!
//! The TDX module writes the memory the host hands it: PAMT blocks from TDH.SYS.TDMR.INIT on,
//! Dynamic PAMT page pairs at TDH.PHYMEM.PAMT.ADD. Every trait whose answers become such
//! addresses is an `unsafe trait` whose `# Safety` section says what the implementer promises:
//! [`pamt::PamtAllocator`], [`init::HostMemory`] (buffers, and the PAMT memory the planner
//! carved out of TDX memory, which [`init::Bringup`] claims before TDH.SYS.CONFIG and stops
//! cleanly if it cannot), [`dpamt::PairSource`]. Issuing the instruction itself takes an
//! `unsafe` constructor ([`seamcall::SeamcallInstruction::new`]). Everything else is safe code.
//!
//! # Walkthrough: from a kernel log to a configuration the module accepts
//!
//! The machine below is an Emerald Rapids 4-socket host whose firmware fragments the low
//! 2 GiB: Linux mainline fails on it with `TDMR [0x0, 0x80000000): reserved areas exhausted`
//! (its 17 holes exceed the module's 16 reserved areas per TDMR).
//!
//! ## 1. Read the machine ([`memmap`])
//!
//! [`memmap::parse_kernel_log`] reads the lines a user pastes from `dmesg` or `/proc/iomem`:
//! `BIOS-e820:` memory, `ACPI: SRAT:` NUMA nodes and `virt/tdx: CMR:` lines. It yields a
//! [`memmap::MemoryMap`] (TDX memory: sorted ranges, each on one node) and [`memmap::Cmrs`]
//! (the convertible memory ranges the module reported). Bad input is an error naming the line;
//! the map never grows with the size of the address space.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tdmr::memmap::parse_kernel_log;
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
//! A [`layout::Planner`] holds how to plan — strategy, hole policy, the module's limits
//! ([`sysinfo::TdxLimits`]: MAX_TDMRS, reserved areas per TDMR, PAMT entry sizes, Dynamic
//! PAMT) — and [`layout::Planner::plan`] applies it to the map and the CMRs, returning a
//! [`layout::Plan`]: TDMRs with their reserved areas and PAMT blocks.
//! [`layout::Strategy::Optimal`] (the default) finds the layout with the least covered span
//! (so the least PAMT), then the least memory whose PAMT lies on another NUMA node, the fewest
//! TDMRs and reserved areas, or names the smallest obstacle; [`layout::Strategy::Linux`]
//! reproduces Linux mainline, failure included, its PAMTs placed by a model of the kernel's
//! allocator ([`pamt::PamtModel`]).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let input = tdmr::memmap::parse_kernel_log(include_str!("../tests/fixtures/emr-4s-256g.log"))?;
//! use tdmr::layout::{Planner, PlanError, Strategy};
//!
//! let (memory, cmrs) = (input.memory(), input.cmrs());
//! let linux = Planner::new().with_strategy(Strategy::Linux).plan(memory, cmrs);
//! assert!(matches!(linux, Err(PlanError::ReservedAreasExhausted { .. })));
//!
//! let plan = Planner::new().plan(memory, cmrs)?;
//! assert_eq!(plan.tdmrs().len(), 5);
//! assert_eq!(plan.pamt_bytes() / 1024, 1_050_644); // what distribution kernels print here
//! assert!(plan.excluded().is_empty());              // no memory left out
//! # Ok(()) }
//! ```
//!
//! ## 3. Check it as the module will ([`tdx`])
//!
//! [`layout::Plan::tdmr_infos`] lays the plan out as the 512-byte `TDMR_INFO` structures
//! TDH.SYS.CONFIG reads. [`tdx::validate::sys_config`] runs the module's checks in the
//! module's order and returns its exact 64-bit status on the first failure, in an environment
//! built from the same limits the plan was made against; [`tdx::validate::covers_memory`]
//! checks the host's side of the contract: every byte of TDX memory is usable or holds a PAMT
//! (or was explicitly excluded).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let input = tdmr::memmap::parse_kernel_log(include_str!("../tests/fixtures/emr-4s-256g.log"))?;
//! # let plan = tdmr::layout::Planner::new().plan(input.memory(), input.cmrs())?;
//! use tdmr::tdx::validate::{self, ConfigEnv};
//!
//! let infos = plan.tdmr_infos()?;
//! validate::sys_config(&infos, &ConfigEnv::from_limits(plan.limits(), input.cmrs().listed()))?;
//! let memory = input.memory().regions().iter().map(|r| r.range());
//! validate::covers_memory(&infos, memory, plan.excluded())?;
//! # Ok(()) }
//! ```
//!
//! ## 4. Tell people what it costs ([`readiness`])
//!
//! [`readiness::Readiness`] answers "will TDX come up here, and what will it cost?": Linux
//! mainline's verdict next to ours, PAMT static and with Dynamic PAMT, limits and warnings.
//! The `report` feature renders it and plans as text, JSON and SVG.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let input = tdmr::memmap::parse_kernel_log(include_str!("../tests/fixtures/emr-4s-256g.log"))?;
//! use tdmr::layout::Planner;
//! use tdmr::readiness::Readiness;
//!
//! let r = Readiness::assess(&Planner::new(), input.memory(), input.cmrs());
//! assert!(!r.linux.is_ok() && r.ours.is_ok());
//! # Ok(()) }
//! ```
//!
//! ## 5. Bring the module up ([`init`], [`seamcall`])
//!
//! [`init::Bringup`] drives the TDX module through any [`seamcall::Seamcall`] backend: the real
//! instruction ([`seamcall::SeamcallInstruction`], x86_64, `unsafe` to construct) or the
//! software TDX module of the `mock` feature, which keeps the module's state machine and checks
//! the configuration with [`tdx::validate`]. It runs TDH.SYS.INIT, TDH.SYS.LP.INIT on every
//! CPU, reads the limits and CMRs with TDH.SYS.RD, plans, claims the PAMT memory from the host,
//! writes the `TDMR_INFO`s, calls TDH.SYS.CONFIG, flushes caches, TDH.SYS.KEY.CONFIG once per
//! package and TDH.SYS.TDMR.INIT until every TDMR is initialized — spread over the host's CPUs
//! ([`init::Cpus::run_on_each`]), on TDMRs shaped for them by
//! [`layout::Planner::with_init_cpus`] — retrying what Linux retries.
//! [`seamcall::FaultInjector`] makes chosen calls fail, to test recovery;
//! [`seamcall::FuzzInjector`] makes the module lie. [`accounting::TdxMemoryUsage`] then says
//! what the module holds.
//!
//! ```
//! # #[cfg(all(feature = "mock", feature = "std"))]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let input = tdmr::memmap::parse_kernel_log(include_str!("../tests/fixtures/emr-4s-256g.log"))?;
//! use tdmr::init::Bringup;
//! use tdmr::mock::{MockModule, Platform};
//! use tdmr::seamcall::FaultInjector;
//!
//! // A 4-socket machine with 16 CPUs, reporting the log's CMRs.
//! let module = MockModule::new(Platform::new(input.cmrs().listed())?.with_topology(16, 4)?);
//! // The first TDH.SYS.INIT runs out of entropy; the driver retries it, as Linux does.
//! let faulty = FaultInjector::new(&module, 1).with("rnd-no-entropy@0".parse()?);
//! let keyids = module.platform().private_keyids();
//! let done = Bringup::new(&faulty, &module, &module, keyids).run(input.memory())?;
//! assert_eq!(done.pamt_bytes() / 1024, 1_050_644);
//! assert_eq!(done.plan.tdmrs().len(), 5);
//! assert_eq!(module.claimed_pamt(), done.plan.pamt_ranges()); // taken from the host first
//! # Ok(()) }
//! # #[cfg(not(all(feature = "mock", feature = "std")))]
//! # fn main() {}
//! ```
//!
//! ## 6. Guard memory and CPU hotplug ([`hotplug_gate`])
//!
//! Once the module is initialized its TDX memory configuration is frozen. A
//! [`hotplug_gate::HotplugGate`] makes initialization and hotplug exclude each other without a
//! lock: before initialization it admits memory that lies in the CMRs; while initialization runs
//! it answers `Busy` at once; afterwards it admits only memory that is TDX memory of the
//! published plan, wait-free, with one atomic load and a search of an immutable snapshot.
//! Removals go through it as well: after initialization it refuses to let a PAMT block (or a
//! Dynamic PAMT pair added now) go, naming the TDMR and the bytes. Asking for initialization
//! marks it pending, so hotplug cannot starve it. CPUs are tracked per package: the last CPU of
//! a package cannot go offline while initialization runs or guest KeyIDs are in use.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let input = tdmr::memmap::parse_kernel_log(include_str!("../tests/fixtures/emr-4s-256g.log"))?;
//! # let plan = tdmr::layout::Planner::new().plan(input.memory(), input.cmrs())?;
//! use tdmr::addr::{PageSize, PhysRange};
//! use tdmr::hotplug_gate::{AdmitError, GateConfig, HotplugGate, RemoveError};
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
//! let pamt = plan.tdmrs()[1].pamt(PageSize::Size4K);
//! assert!(matches!(gate.admit_memory(pamt), Err(AdmitError::NotTdxMemory { .. })));
//! // TDX memory may go offline; a PAMT block may not.
//! gate.admit_removal(node1)?.finish();
//! assert!(matches!(gate.admit_removal(pamt), Err(RemoveError::HoldsTdxMetadata { .. })));
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! All off by default, all additive:
//!
//! - `std`: std-only conveniences (the software backends' interior mutability becomes a
//!   mutex, so they are `Sync`, which [`init::Bringup`] needs of a backend its work shares
//!   across CPUs; `mock::LpThreads` runs the mock's LPs on OS threads).
//! - `parallel`: rayon where the work is independent (the readiness assessment plans both
//!   strategies at once); implies `std`.
//! - `mock`: the software TDX module (`tdmr::mock`), for tests and for hosts without TDX.
//! - `report`: text, JSON and SVG renderers (`tdmr::report`); the SVG code uses floating point,
//!   which is why kernels leave it off.
//!
//! The kernel build is `cargo build --target x86_64-unknown-none --no-default-features`.
#![no_std]
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

// The floors, bottom up: a module imports only from modules on lower floors.
// Floor 1.
pub mod addr;
// Floor 2.
pub mod memmap;
pub mod sysinfo;
// Floor 3.
pub mod tdx;
// Floor 4.
pub mod pamt;
// Floor 5.
pub mod layout;
// Floor 6.
pub mod readiness;
pub mod seamcall;
// Floor 7.
pub mod init;
// Floor 8.
pub mod dpamt;
// Floor 9.
pub mod accounting;
pub mod hotplug_gate;
// Floor 10.
#[cfg(feature = "mock")]
#[cfg_attr(docsrs, doc(cfg(feature = "mock")))]
pub mod mock;
#[cfg(feature = "report")]
#[cfg_attr(docsrs, doc(cfg(feature = "report")))]
pub mod report;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
