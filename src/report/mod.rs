//! Human- and machine-readable renderings of a plan (feature `report`): the CLI's output
//! formats. The assessment they render is [`crate::readiness`], which kernels can use without
//! this feature.
//!
//! - [`text`]: the readiness report and the TDMR layout table as plain text.
//! - [`json`]: the plan as JSON (plain integers, stable key order).
//! - [`svg`]: the physical address space as an SVG memory map.
//!
//! Only `alloc` is needed: every renderer returns a `String`.

pub mod json;
pub mod svg;
pub mod text;

/// What a report says about the input besides the plan itself.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The TDX memory planned for.
    pub memory: &'a crate::memmap::MemoryMap,
    /// The CMRs planned against.
    pub cmrs: &'a crate::memmap::Cmrs,
}
