//! The readiness assessment in a few lines of plain text, integers only, for a kernel's log
//! (`Display for Readiness`). The `report` feature renders the full report.

use core::fmt;

use super::{Readiness, Verdict};
use crate::addr::Bytes;

fn verdict(f: &mut fmt::Formatter<'_>, who: &str, v: &Verdict) -> fmt::Result {
    match &v.result {
        Ok(plan) => {
            write!(
                f,
                "{who} ({}, {} holes): {} TDMRs, {} reserved areas, {} KB of PAMT",
                v.strategy.name(),
                v.holes.name(),
                plan.tdmrs().len(),
                plan.reserved_area_count(),
                plan.pamt_bytes() / 1024
            )?;
            if let Some(d) = v.dynamic_pamt {
                write!(f, " ({} KB with Dynamic PAMT)", d / 1024)?;
            }
            if v.off_node_pamts > 0 {
                write!(f, ", {} PAMTs off their node", v.off_node_pamts)?;
            }
            Ok(())
        }
        Err(e) => write!(f, "{who} ({}): fails: {e}", v.strategy.name()),
    }
}

impl fmt::Display for Readiness {
    /// ```
    /// use tdmr::layout::Planner;
    /// use tdmr::memmap::parse_kernel_log;
    /// use tdmr::readiness::Readiness;
    /// let input = parse_kernel_log("CMR: [0x100000, 0x7f000000)\nCMR: [0x100000000, 0x1080000000)\n")?;
    /// let r = Readiness::assess(&Planner::new(), input.memory(), input.cmrs());
    /// let text = r.to_string();
    /// assert!(text.starts_with("TDX readiness: TDX comes up"));
    /// assert!(text.contains("Linux mainline (linux, memory holes): 2 TDMRs"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chosen = self.chosen();
        match (&chosen.result, self.linux.is_ok()) {
            (Ok(plan), linux_ok) => write!(
                f,
                "TDX readiness: TDX comes up ({} of TDMRs, {} of PAMT){}",
                Bytes(plan.covered_bytes()),
                Bytes(plan.pamt_bytes()),
                if linux_ok {
                    ""
                } else {
                    "; Linux mainline fails here"
                }
            )?,
            (Err(e), _) => write!(f, "TDX readiness: no layout: {e}")?,
        }
        write!(f, "\n  ")?;
        verdict(f, "Linux mainline", &self.linux)?;
        write!(f, "\n  ")?;
        verdict(f, "tdmr", &self.ours)?;
        if let Some(e) = &self.init_estimate {
            write!(
                f,
                "\n  TDH.SYS.TDMR.INIT: {} calls, Linux serial {} ms, ours on {} CPUs {} ms",
                e.calls, e.linux_serial_ms, e.cpus, e.tdmr_ms
            )?;
        }
        for w in &self.warnings {
            write!(f, "\n  warning: {w}")?;
        }
        Ok(())
    }
}
