//! Plain-text rendering: a table of TDMRs, their reserved areas and PAMTs, and Linux's
//! `N KB allocated for PAMT` line.

use alloc::string::String;
use core::fmt::Write;

use super::Context;
use crate::addr::{PageSize, SZ_1G};
use crate::layout::Plan;

fn size(bytes: u64) -> String {
    let mut s = String::new();
    let _ = if bytes.is_multiple_of(SZ_1G) {
        write!(s, "{} GiB", bytes / SZ_1G)
    } else if bytes.is_multiple_of(1 << 20) {
        write!(s, "{} MiB", bytes >> 20)
    } else {
        write!(s, "{} KiB", bytes >> 10)
    };
    s
}

/// The layout table for a successful plan.
pub fn plan(plan: &Plan, ctx: &Context<'_>) -> String {
    let mut out = String::new();
    let l = plan.limits();
    let _ = writeln!(
        out,
        "strategy {}, holes from {}, limits: {} TDMRs, {} reserved areas per TDMR{}",
        plan.strategy().name(),
        plan.hole_policy().name(),
        l.max_tdmrs(),
        l.max_reserved_per_tdmr(),
        if l.dynamic_pamt() {
            ", Dynamic PAMT"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "TDX memory: {} ranges, {}; CMRs: {} ({} convertible)",
        ctx.memory.len(),
        size(ctx.memory.total_bytes()),
        ctx.cmrs.listed().len(),
        size(ctx.cmrs.total_bytes())
    );
    for (i, t) in plan.tdmrs().iter().enumerate() {
        let _ = writeln!(
            out,
            "TDMR {i:>2} {}  {}  node {}{}  {} reserved",
            t.range(),
            size(t.size()),
            t.node(),
            if t.mixes_nodes() {
                " (mixed nodes)"
            } else {
                ""
            },
            t.reserved().len()
        );
        for k in 0..t.reserved().len() {
            if let (Some(r), Some(a)) = (t.reserved_range(k), t.reserved().get(k)) {
                let _ = writeln!(out, "        reserved {r}  {}", a.kind.label());
            }
        }
        for level in PageSize::ALL {
            let p = t.pamt(level);
            let _ = writeln!(
                out,
                "        PAMT {} {p}  {} KiB",
                level.label(),
                p.size() >> 10
            );
        }
    }
    if !plan.excluded().is_empty() {
        let _ = writeln!(
            out,
            "excluded TDX memory (keep it from the page allocator):"
        );
        for r in plan.excluded() {
            let _ = writeln!(out, "        {r}  {}", size(r.size()));
        }
    }
    let _ = writeln!(
        out,
        "{} TDMRs, {} covered, {} reserved areas (at most {} in one TDMR)",
        plan.tdmrs().len(),
        size(plan.covered_bytes()),
        plan.reserved_area_count(),
        plan.max_reserved_in_one_tdmr()
    );
    let _ = writeln!(out, "{} KB allocated for PAMT", plan.pamt_bytes() / 1024);
    out
}

/// One column of a comparison: a plan's totals, or its failure.
fn column(r: &Result<Plan, crate::layout::PlanError>) -> [String; 6] {
    match r {
        Ok(p) => [
            String::from("ok"),
            alloc::format!("{}", p.tdmrs().len()),
            alloc::format!("{}", p.reserved_area_count()),
            alloc::format!("{}", p.pamt_bytes() / 1024),
            alloc::format!("{}", p.node_mixing_tdmrs()),
            alloc::format!("{}", p.excluded_bytes()),
        ],
        Err(_) => [
            String::from("FAILS"),
            String::from("-"),
            String::from("-"),
            String::from("-"),
            String::from("-"),
            String::from("-"),
        ],
    }
}

/// A side-by-side comparison of two strategies' results (e.g. Linux's and ours), with the
/// failure of either spelled out below the table.
pub fn compare(
    left_name: &str,
    left: &Result<Plan, crate::layout::PlanError>,
    right_name: &str,
    right: &Result<Plan, crate::layout::PlanError>,
) -> String {
    let mut out = String::new();
    let rows = [
        "result",
        "TDMRs",
        "reserved areas",
        "PAMT KB",
        "node-mixing TDMRs",
        "excluded bytes",
    ];
    let (l, r) = (column(left), column(right));
    let _ = writeln!(out, "{:<20} {:>14} {:>14}", "", left_name, right_name);
    for (k, row) in rows.iter().enumerate() {
        let _ = writeln!(out, "{row:<20} {:>14} {:>14}", l[k], r[k]);
    }
    for (name, res) in [(left_name, left), (right_name, right)] {
        if let Err(e) = res {
            let _ = writeln!(out, "{name}: {e}");
        }
    }
    out
}
