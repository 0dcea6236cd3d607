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
    /// What the kernel log said that changes how the kernel sees its memory (NUMA turned off,
    /// RAM without a node); empty for input that did not come from a log.
    pub log_warnings: &'a [crate::memmap::MapWarning],
    /// What the kernel printed about TDX (module, KeyIDs, initialization, its PAMT total);
    /// `None` for input that did not come from a log.
    pub tdx_lines: Option<&'a crate::memmap::TdxLines>,
}

impl<'a> Context<'a> {
    /// The context of memory and CMRs given directly (no log warnings).
    pub fn new(memory: &'a crate::memmap::MemoryMap, cmrs: &'a crate::memmap::Cmrs) -> Self {
        Context {
            memory,
            cmrs,
            log_warnings: &[],
            tdx_lines: None,
        }
    }

    /// The context of a parsed kernel log: its memory, CMRs, warnings and TDX lines.
    pub fn of(log: &'a crate::memmap::ParsedLog) -> Self {
        Context {
            memory: log.memory(),
            cmrs: log.cmrs(),
            log_warnings: log.warnings(),
            tdx_lines: Some(log.tdx_lines()),
        }
    }
}

/// What Linux's strategy predicts for the figure a kernel printed: its PAMT total in bytes in
/// the kernel's PAMT mode (with Dynamic PAMT when the kernel enabled it), or why there is no
/// layout (the error when the readiness assessment planned in that mode).
pub(crate) fn linux_prediction<'r>(
    lines: &crate::memmap::TdxLines,
    r: &'r crate::readiness::Readiness,
) -> Result<u64, Option<&'r crate::layout::PlanError>> {
    let v = &r.linux;
    let figure = if lines.dynamic_pamt() {
        v.dynamic_pamt
    } else {
        v.static_pamt
    };
    match figure {
        Some(bytes) => Ok(bytes),
        None if r.limits.dynamic_pamt() == lines.dynamic_pamt() => Err(v.result.as_ref().err()),
        None => Err(None),
    }
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
