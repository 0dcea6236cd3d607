//! `tdmr`: Intel TDX host memory bring-up.
//!
//! Plans TDMRs (Trust Domain Memory Regions) over a physical memory map, sizes and places their
//! PAMTs (Physical Address Metadata Tables), checks a configuration exactly as the TDX module's
//! TDH.SYS.CONFIG does, and lays it out in the module's binary ABI.
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
#![no_std]
#![deny(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

pub mod addr;
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
