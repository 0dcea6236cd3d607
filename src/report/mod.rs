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

/// Milliseconds as seconds, trailing zeros dropped: `31949` → `31.949`, `2600` → `2.6`,
/// `650` → `0.65`, `3000` → `3`.
pub(crate) fn seconds(ms: u64) -> alloc::string::String {
    let (whole, frac) = (ms / 1000, ms % 1000);
    if frac == 0 {
        return alloc::format!("{whole}");
    }
    let mut f = alloc::format!("{frac:03}");
    while f.ends_with('0') {
        f.pop();
    }
    alloc::format!("{whole}.{f}")
}

/// What a report says about the input besides the plan itself.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The TDX memory planned for.
    pub memory: &'a crate::memmap::MemoryMap,
    /// The CMRs planned against.
    pub cmrs: &'a crate::memmap::Cmrs,
}

#[cfg(test)]
mod tests {
    #[test]
    fn seconds_drop_trailing_zeros() {
        for (ms, s) in [
            (31949, "31.949"),
            (2600, "2.6"),
            (650, "0.65"),
            (3000, "3"),
            (0, "0"),
            (5, "0.005"),
        ] {
            assert_eq!(super::seconds(ms), s);
        }
    }
}
