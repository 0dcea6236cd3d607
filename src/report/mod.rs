//! Human- and machine-readable renderings of a plan: the `plan` CLI's output formats.
//!
//! - [`readiness`]: will TDX come up here, and what will it cost? (Linux mainline's verdict
//!   next to ours, PAMT static and with Dynamic PAMT, limits, warnings.)
//! - [`text`]: the readiness report and the TDMR layout table as plain text.
//! - [`json`]: the plan as JSON (plain integers, stable key order).
//! - [`svg`]: the physical address space as an SVG memory map.
//!
//! Only `alloc` is needed: every renderer returns a `String`.

mod bytes;
pub mod json;
pub mod readiness;
pub mod svg;
pub mod text;

pub use bytes::Bytes;

/// What a report says about the input besides the plan itself.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The TDX memory planned for.
    pub memory: &'a crate::memmap::MemoryMap,
    /// The CMRs planned against.
    pub cmrs: &'a crate::memmap::Cmrs,
}
