//! Human- and machine-readable renderings of a plan: the `plan` CLI's output formats.
//!
//! Only `alloc` is needed: every renderer returns a `String`.

pub mod json;
pub mod text;

/// What a report says about the input besides the plan itself.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The TDX memory planned for.
    pub memory: &'a crate::memmap::MemoryMap,
    /// The CMRs planned against.
    pub cmrs: &'a crate::memmap::Cmrs,
}
