//! Plain-text rendering: the readiness report, the TDMR layout table, and Linux's
//! `N KB allocated for PAMT` line.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use super::Context;
use crate::addr::Bytes;
use crate::addr::PageSize;
use crate::layout::{Plan, PlanError, Strategy};
use crate::memmap::MemoryMap;
use crate::readiness::{Readiness, Verdict, Warning, unremovable_memory};

/// Warnings of one kind listed before the rest are counted.
const WARNINGS_PER_KIND: usize = 3;

/// `covered` as a percentage of `total`, two decimals, integer arithmetic (`0.39%`).
fn percent(part: u64, total: u64) -> String {
    let bp = (u128::from(part) * 10_000)
        .checked_div(u128::from(total))
        .unwrap_or(0);
    alloc::format!("{}.{:02}%", bp / 100, bp % 100)
}

fn kb(bytes: u64) -> String {
    alloc::format!("{} KB ({})", bytes / 1024, Bytes(bytes))
}

/// The layout of a plan, one line per TDMR (with `verbose`, also each reserved area and PAMT
/// block), then the excluded memory, the totals and Linux's `N KB allocated for PAMT` line.
pub fn layout(plan: &Plan, verbose: bool) -> String {
    let mut out = String::new();
    let l = plan.limits();
    let _ = writeln!(
        out,
        "layout ({} strategy, holes from {}{}):",
        plan.strategy().name(),
        plan.holes().name(),
        if l.dynamic_pamt() {
            ", Dynamic PAMT"
        } else {
            ""
        }
    );
    for (i, t) in plan.tdmrs().iter().enumerate() {
        let _ = write!(
            out,
            "TDMR {i:>2} {}  {}  node {}{}  {} of {} reserved  PAMT {}",
            t.range(),
            Bytes(t.size()),
            t.node(),
            if t.mixes_nodes() {
                " (mixed nodes)"
            } else {
                ""
            },
            t.reserved().len(),
            l.max_reserved_per_tdmr(),
            Bytes(t.pamt_bytes()),
        );
        if t.pamt_node() != t.majority_node() {
            let _ = write!(
                out,
                " on node {}, most memory on node {}",
                t.pamt_node(),
                t.majority_node()
            );
            if let Some(r) = t.off_node_reason() {
                let _ = write!(out, " ({})", r.label());
            }
        }
        out.push('\n');
        if !verbose {
            continue;
        }
        for k in 0..t.reserved().len() {
            if let (Some(r), Some(a)) = (t.reserved_range(k), t.reserved().get(k)) {
                let _ = writeln!(
                    out,
                    "        reserved {r}  {}  {}",
                    Bytes(r.size()),
                    a.kind.label()
                );
            }
        }
        for level in PageSize::ALL {
            let p = t.pamt(level);
            let _ = writeln!(
                out,
                "        PAMT {} {p}  {}",
                level.label(),
                Bytes(p.size())
            );
        }
    }
    if !plan.excluded().is_empty() {
        let _ = writeln!(
            out,
            "excluded TDX memory (keep it from the page allocator):"
        );
        for r in plan.excluded() {
            let _ = writeln!(out, "        {r}  {}", Bytes(r.size()));
        }
    }
    let _ = writeln!(
        out,
        "{} TDMRs, {} covered, {} reserved areas (at most {} in one TDMR)",
        plan.tdmrs().len(),
        Bytes(plan.covered_bytes()),
        plan.reserved_area_count(),
        plan.max_reserved_in_one_tdmr()
    );
    let _ = writeln!(out, "{} KB allocated for PAMT", plan.pamt_bytes() / 1024);
    out
}

/// The input and the limits, then the full layout table of a successful plan (every reserved
/// area and PAMT block).
pub fn plan(plan: &Plan, ctx: &Context<'_>) -> String {
    let mut out = header(ctx, plan.limits());
    out.push_str(&layout(plan, true));
    out
}

fn header(ctx: &Context<'_>, l: &crate::sysinfo::TdxLimits) -> String {
    let mut out = String::new();
    let mut nodes: Vec<u32> = ctx.memory.regions().iter().map(|r| r.node).collect();
    nodes.sort_unstable();
    nodes.dedup();
    let _ = writeln!(
        out,
        "TDX memory: {} in {} ranges on {} node{}; {} CMRs, {} convertible",
        Bytes(ctx.memory.total_bytes()),
        ctx.memory.len(),
        nodes.len(),
        if nodes.len() == 1 { "" } else { "s" },
        ctx.cmrs.listed().len(),
        Bytes(ctx.cmrs.total_bytes())
    );
    let _ = write!(
        out,
        "module limits: {} TDMRs, {} reserved areas per TDMR, PAMT entries {}/{}/{} bytes",
        l.max_tdmrs(),
        l.max_reserved_per_tdmr(),
        l.pamt_entry_size(PageSize::Size4K),
        l.pamt_entry_size(PageSize::Size2M),
        l.pamt_entry_size(PageSize::Size1G),
    );
    match l.dynamic_pamt_bits() {
        Some(b) => {
            let _ = writeln!(out, ", Dynamic PAMT ({b} bit per 4 KiB page)");
        }
        None => out.push('\n'),
    }
    for w in ctx.log_warnings {
        let _ = writeln!(out, "  ! log: {w}");
    }
    if let Some(t) = ctx.tdx_lines.filter(|t| !t.is_empty()) {
        let _ = writeln!(out, "kernel log: {}", tdx_lines(t));
    }
    out
}

/// The kernel's TDX lines in one phrase: `module 1.5 build 698 (20240129), private KeyIDs
/// [32, 64), module initialized, 2101260 KB allocated for PAMT`.
pub fn tdx_lines(t: &crate::memmap::TdxLines) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(m) = t.module() {
        parts.push(alloc::format!("module {m}"));
    }
    if let Some(k) = t.keyids() {
        parts.push(alloc::format!("private KeyIDs [{}, {})", k.start, k.end));
    }
    if t.dynamic_pamt() {
        parts.push(String::from("Dynamic PAMT enabled"));
    }
    if let Some(kb) = t.extension_kb() {
        parts.push(alloc::format!("{kb} KB for module extensions"));
    }
    if let Some(kb) = t.pamt_kb() {
        parts.push(alloc::format!("{kb} KB allocated for PAMT"));
    }
    if let Some(i) = t.init() {
        parts.push(alloc::format!("{i}"));
    }
    parts.join(", ")
}

/// What the kernel printed set beside what Linux's strategy predicts, when the log has the
/// kernel's PAMT total or its initialization outcome:
/// `this kernel printed 2101260 KB; Linux's strategy predicts 2101260 KB (the same)`.
fn kernel_beside_prediction(r: &Readiness, ctx: &Context<'_>, out: &mut String) {
    let Some(t) = ctx.tdx_lines else {
        return;
    };
    let mode = if t.dynamic_pamt() {
        " with Dynamic PAMT"
    } else {
        ""
    };
    let predicted = super::linux_prediction(t, r);
    let said = match (t.pamt_kb(), t.init()) {
        (Some(kb), _) => alloc::format!("this kernel printed {kb} KB"),
        (None, Some(i)) => alloc::format!("this kernel printed `{i}`"),
        (None, None) => return,
    };
    let _ = match (predicted, t.pamt_kb()) {
        (Ok(bytes), Some(kb)) => {
            let ours = bytes / 1024;
            let diff = match ours.cmp(&kb) {
                core::cmp::Ordering::Equal => String::from("the same"),
                core::cmp::Ordering::Greater => alloc::format!("{} KB more", ours - kb),
                core::cmp::Ordering::Less => alloc::format!("{} KB less", kb - ours),
            };
            writeln!(
                out,
                "{said}; Linux's strategy predicts {ours} KB{mode} ({diff})"
            )
        }
        (Ok(bytes), None) => writeln!(
            out,
            "{said}; Linux's strategy predicts a layout with {} KB of PAMT{mode}",
            bytes / 1024
        ),
        (Err(Some(e)), _) => writeln!(
            out,
            "{said}; Linux's strategy predicts no layout{mode}: {e}"
        ),
        (Err(None), _) => writeln!(out, "{said}; Linux's strategy predicts no layout{mode}"),
    };
}

/// One column of the readiness table.
fn readiness_column(v: &Verdict) -> [String; 9] {
    let pamt = |p: Option<u64>| p.map_or_else(|| String::from("FAILS"), kb);
    match &v.result {
        Ok(p) => {
            let l = p.limits();
            let excluded = if p.excluded().is_empty() {
                String::from("none")
            } else {
                alloc::format!(
                    "{} in {} range{}",
                    Bytes(p.excluded_bytes()),
                    p.excluded().len(),
                    if p.excluded().len() == 1 { "" } else { "s" }
                )
            };
            [
                String::from("ok"),
                alloc::format!("{} of {}", p.tdmrs().len(), l.max_tdmrs()),
                alloc::format!(
                    "{}, at most {} of {} in one",
                    p.reserved_area_count(),
                    p.max_reserved_in_one_tdmr(),
                    l.max_reserved_per_tdmr()
                ),
                alloc::format!("{}", Bytes(p.covered_bytes())),
                pamt(v.static_pamt),
                pamt(v.dynamic_pamt),
                alloc::format!("{}", p.node_mixing_tdmrs()),
                alloc::format!("{}", v.off_node_pamts),
                excluded,
            ]
        }
        Err(_) => {
            let mut c: [String; 9] = Default::default();
            c[0] = String::from("FAILS");
            for s in &mut c[1..] {
                *s = String::from("-");
            }
            // A layout may still exist with the other PAMT flavour.
            if v.static_pamt.is_some() {
                c[4] = pamt(v.static_pamt);
            }
            if v.dynamic_pamt.is_some() {
                c[5] = pamt(v.dynamic_pamt);
            }
            c
        }
    }
}

fn column_title(v: &Verdict, chosen: bool) -> String {
    let mut s = String::from(v.strategy.name());
    if chosen {
        s.push_str(" (chosen)");
    }
    s
}

/// The readiness report: the input, Linux mainline's verdict next to ours (PAMT static and
/// with Dynamic PAMT, TDMRs and reserved areas used against the limits, node mixing, excluded
/// memory), each failure spelled out, the verdict in one sentence, and warnings.
pub fn readiness(r: &Readiness, ctx: &Context<'_>) -> String {
    let mut out = header(ctx, &r.limits);
    out.push('\n');
    let rows = [
        "result",
        "TDMRs",
        "reserved areas",
        "covered span",
        "PAMT, static",
        "PAMT, Dynamic PAMT",
        "node-mixing TDMRs",
        "PAMT off its node",
        "excluded memory",
    ];
    let (lc, oc) = (readiness_column(&r.linux), readiness_column(&r.ours));
    let linux_chosen = core::ptr::eq(r.chosen(), &r.linux);
    let _ = writeln!(
        out,
        "{:<19} {:<29} {}",
        "",
        column_title(&r.linux, linux_chosen),
        column_title(&r.ours, !linux_chosen)
    );
    for (k, row) in rows.iter().enumerate() {
        let _ = writeln!(out, "{row:<19} {:<29} {}", lc[k], oc[k]);
    }
    for v in [&r.linux, &r.ours] {
        if let Err(e) = &v.result {
            if core::ptr::eq(v, r.chosen()) {
                let _ = writeln!(out, "no valid layout ({} strategy): {e}", v.strategy.name());
            } else {
                let _ = writeln!(out, "{}: {e}", v.strategy.name());
            }
        }
    }
    out.push('\n');
    verdict(r, ctx, &mut out);
    kernel_beside_prediction(r, ctx, &mut out);
    if let Some(e) = &r.init_estimate {
        init_estimate(e, &mut out);
    }
    if let Ok(plan) = &r.chosen().result {
        out.push_str(&unremovable(plan, ctx.memory));
    }
    if r.warnings.is_empty() {
        let _ = writeln!(out, "warnings: none");
    } else {
        let _ = writeln!(out, "warnings:");
        warnings(&r.warnings, &mut out);
    }
    out
}

/// The TDH.SYS.TDMR.INIT line(s) of the readiness report.
fn init_estimate(e: &crate::readiness::InitEstimate, out: &mut String) {
    use super::seconds;
    let _ = writeln!(
        out,
        "TDMR.INIT: {} calls; Linux issues them serially: {} s at {} s per TiB; here on {} CPU{}: {} s ({} TDMRs)",
        e.calls,
        seconds(e.linux_serial_ms),
        seconds(e.ms_per_tib),
        e.cpus,
        if e.cpus == 1 { "" } else { "s" },
        seconds(e.tdmr_ms),
        e.tdmrs
    );
    if let Some(s) = e.split {
        let _ = writeln!(
            out,
            "  shaped for {} CPUs: {} more TDMR{}, {} more PAMT, {} s saved",
            e.cpus,
            s.extra_tdmrs,
            if s.extra_tdmrs == 1 { "" } else { "s" },
            Bytes(s.extra_pamt_bytes),
            seconds(s.saved_ms)
        );
    }
    let _ = writeln!(out, "  rate: {}", crate::readiness::RATE_SOURCE);
}

/// ` (or not: …)` when `v` is Linux's verdict and it depends on where Linux's PAMTs land.
fn coin(r: &Readiness, v: &Verdict) -> &'static str {
    if v.strategy == Strategy::Linux && r.linux_placement_flip.is_some() {
        " (or not: that depends on where its PAMTs land)"
    } else {
        ""
    }
}

/// The memory `plan` keeps from ever being removed once the TDX module is initialized, one
/// line per NUMA node that has some (what to know before planning a DIMM or CXL removal):
///
/// ```text
/// never removable after init (PAMT; Dynamic PAMT pairs at plan time: none; extensions: none):
///   node 0  256.5 MiB of PAMT (TDMR 0, 1) [0x1069f7e000, 0x107a000000)
///   other nodes: nothing
/// ```
///
/// (With Dynamic PAMT, pairs come at run time and hold only the 2 MiB ranges their pages lie
/// in, while they are added; the hotplug gate refuses removals there.)
pub fn unremovable(plan: &Plan, memory: &MemoryMap) -> String {
    let mut out = String::new();
    let nodes = unremovable_memory(plan, memory);
    let _ = writeln!(
        out,
        "never removable after init (PAMT; Dynamic PAMT pairs at plan time: none; extensions: none):"
    );
    for n in &nodes {
        let node = match n.node {
            Some(id) => alloc::format!("node {id}"),
            None => String::from("outside TDX memory"),
        };
        let tdmrs: Vec<String> = n.tdmrs.iter().map(|t| alloc::format!("{t}")).collect();
        let _ = write!(
            out,
            "  {node}  {} of PAMT (TDMR {})",
            Bytes(n.pamt_bytes),
            tdmrs.join(", ")
        );
        for (k, r) in n.pamt.iter().enumerate() {
            if k == WARNINGS_PER_KIND {
                let _ = write!(out, " and {} more", n.pamt.len() - k);
                break;
            }
            let _ = write!(out, " {r}");
        }
        out.push('\n');
    }
    let mut all: Vec<u32> = memory.regions().iter().map(|r| r.node).collect();
    all.sort_unstable();
    all.dedup();
    let listed = nodes.iter().filter(|n| n.node.is_some()).count();
    if listed < all.len() {
        let _ = writeln!(out, "  other nodes: nothing");
    }
    out
}

/// How a strategy is called in sentences.
fn called(v: &Verdict) -> String {
    match v.strategy {
        Strategy::Linux => String::from("Linux mainline"),
        s => alloc::format!("the {} strategy", s.name()),
    }
}

/// The verdict in one sentence and, when TDX comes up, what it costs.
fn verdict(r: &Readiness, ctx: &Context<'_>, out: &mut String) {
    let chosen = r.chosen();
    let other = if core::ptr::eq(chosen, &r.linux) {
        &r.ours
    } else {
        &r.linux
    };
    let _ = match (&chosen.result, &other.result) {
        (Ok(_), Ok(_)) => writeln!(
            out,
            "verdict: TDX comes up, with {}{} and with {}{}",
            called(chosen),
            coin(r, chosen),
            called(other),
            coin(r, other)
        ),
        (Ok(_), Err(_)) => writeln!(
            out,
            "verdict: TDX comes up with {}; {} fails here{}",
            called(chosen),
            called(other),
            coin(r, other)
        ),
        (Err(_), Ok(_)) => writeln!(
            out,
            "verdict: no layout with {}; {} brings TDX up{}",
            called(chosen),
            called(other),
            coin(r, other)
        ),
        (Err(e), Err(_)) => writeln!(
            out,
            "verdict: TDX cannot come up with these limits{}",
            if !r.exclusions_allowed && matches!(e, PlanError::Infeasible(_)) {
                " unless some TDX memory is left out (allow exclusions)"
            } else {
                ""
            }
        ),
    };
    let Ok(p) = &chosen.result else {
        return;
    };
    let _ = write!(
        out,
        "cost: {} TDMRs, {} of PAMT ({} of TDX memory)",
        p.tdmrs().len(),
        Bytes(p.pamt_bytes()),
        percent(p.pamt_bytes(), ctx.memory.total_bytes())
    );
    if !p.limits().dynamic_pamt()
        && let Some(d) = chosen.dynamic_pamt
    {
        let _ = write!(out, ", {} with Dynamic PAMT", Bytes(d));
    }
    if p.excluded_bytes() > 0 {
        let _ = write!(
            out,
            ", {} of TDX memory left out",
            Bytes(p.excluded_bytes())
        );
    }
    if let Ok(o) = &other.result {
        let (a, b) = (p.pamt_bytes(), o.pamt_bytes());
        let _ = match a.cmp(&b) {
            core::cmp::Ordering::Less => {
                write!(out, "; {} less PAMT than {}", Bytes(b - a), called(other))
            }
            core::cmp::Ordering::Greater => {
                write!(out, "; {} needs {} less PAMT", called(other), Bytes(a - b))
            }
            core::cmp::Ordering::Equal => write!(out, "; the same PAMT as {}", called(other)),
        };
    }
    out.push('\n');
}

/// Lists warnings, a few of each kind (they come grouped by strategy and kind).
fn warnings(all: &[Warning], out: &mut String) {
    let same = |a: &Warning, b: &Warning| {
        core::mem::discriminant(a) == core::mem::discriminant(b) && a.strategy() == b.strategy()
    };
    for group in all.chunk_by(same) {
        for w in group.iter().take(WARNINGS_PER_KIND) {
            let _ = writeln!(out, "  ! {w}");
        }
        if let (Some(w), true) = (group.first(), group.len() > WARNINGS_PER_KIND) {
            let _ = writeln!(
                out,
                "  ! {}: {} more like this",
                w.strategy().name(),
                group.len() - WARNINGS_PER_KIND
            );
        }
    }
}

/// One column of a comparison: a plan's totals, or its failure.
fn column(r: &Result<Plan, PlanError>) -> [String; 6] {
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
    left: &Result<Plan, PlanError>,
    right_name: &str,
    right: &Result<Plan, PlanError>,
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

#[cfg(test)]
mod tests {
    use crate::layout::Planner;
    use crate::memmap::parse_kernel_log;

    #[test]
    fn unremovable_memory_is_listed_per_node() {
        let input = parse_kernel_log(include_str!("../../tests/fixtures/emr-4s-256g.log")).unwrap();
        let plan = Planner::new().plan(input.memory(), input.cmrs()).unwrap();
        let text = super::unremovable(&plan, input.memory());
        let lines: alloc::vec::Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("never removable after init (PAMT;"),
            "{text}"
        );
        // One line per socket, each naming its PAMT: 256.5 MiB, the top of the node.
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(
            lines[1],
            "  node 0  256.5 MiB of PAMT (TDMR 0, 1) [0x1069f7e000, 0x107a000000)"
        );
        assert_eq!(
            lines[4],
            "  node 3  256.5 MiB of PAMT (TDMR 4) [0x406bf7f000, 0x407c000000)"
        );
        // A node with no PAMT is summed up.
        let input = parse_kernel_log(include_str!("../../tests/fixtures/numa-256.log")).unwrap();
        let plan = Planner::new().plan(input.memory(), input.cmrs()).unwrap();
        let text = super::unremovable(&plan, input.memory());
        assert!(text.ends_with("  other nodes: nothing\n"), "{text}");
        // One line per node that holds a PAMT, between the header and the summary.
        let mut pamt_nodes: alloc::vec::Vec<u32> =
            plan.tdmrs().iter().map(|t| t.pamt_node()).collect();
        pamt_nodes.sort_unstable();
        pamt_nodes.dedup();
        assert!(pamt_nodes.len() < 256);
        assert_eq!(text.lines().count(), pamt_nodes.len() + 2, "{text}");
    }
}
