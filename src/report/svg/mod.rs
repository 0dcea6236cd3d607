//! The physical address space as an SVG memory map.
//!
//! [`render`] draws, on one address axis: the CMRs, TDX memory coloured by NUMA node, and for
//! each [`Section`] (a strategy's result) its TDMRs as brackets with their index, its reserved
//! areas hatched by cause (hole, PAMT, both, excluded memory), its PAMT blocks labelled with
//! their TDMR (striped red when a block lies on another node than most of its TDMR's memory)
//! — or, for a failure, the range it names in red with the message and the holes that range
//! holds. A legend closes the picture; every drawn piece carries a tooltip.
//!
//! The axis is piecewise linear: empty address space collapses to a break mark labelled with
//! its size, and every piece drawn keeps a minimum width while there is room, so a 16 TiB map
//! and its 4 KiB holes both show. Pieces that still fall below a pixel are aggregated per
//! pixel (the pixel shows what covers most of it, marked with what else is there): the output
//! is bounded by the picture's width times its tracks, and the work by the number of regions,
//! CMRs, TDMRs and reserved areas, never by the size of the address space.
//!
//! ```
//! use tdmr::layout::{HolePolicy, Planner, Strategy};
//! use tdmr::memmap::parse_kernel_log;
//! use tdmr::report::{Context, svg};
//! let log = "virt/tdx: CMR: [0x100000, 0x77800000)\nvirt/tdx: CMR: [0x100000000, 0x407a000000)\n";
//! let input = parse_kernel_log(log)?;
//! let plan = Planner::new().plan(input.memory(), input.cmrs());
//! let ctx = Context::of(&input);
//! let doc = svg::render(&ctx, "example", &[svg::Section {
//!     name: "optimal",
//!     holes: HolePolicy::Cmr,
//!     result: &plan,
//! }]);
//! assert!(doc.starts_with("<?xml") && doc.trim_end().ends_with("</svg>"));
//! # Ok::<(), tdmr::memmap::ParseError>(())
//! ```

mod scale;
mod track;
mod xml;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use super::Context;
use crate::addr::{Bytes, gaps};
use crate::addr::{PageSize, PhysRange};
use crate::layout::basis_in;
use crate::layout::{HolePolicy, Obstacle, Plan, PlanError, ReservedKind};
use crate::memmap::MemoryMap;
use scale::{Scale, Stretch};
use track::{Class, Track};

/// Distinct node colours; nodes beyond share them (labels tell them apart).
const NODE_COLOURS: usize = 10;
const NODE_FILL: [&str; NODE_COLOURS] = [
    "#8dd3c7", "#bebada", "#80b1d3", "#b3de69", "#fccde5", "#ffed6f", "#bc80bd", "#ccebc5",
    "#e5c494", "#a6cee3",
];

const WIDTH: i64 = 1600;
/// Left edge of the axis (row names sit left of it).
const X0: f64 = 150.0;
const PLOT_W: f64 = 1420.0;
/// Monospace advance per character, as a fraction of the font size.
const CHAR_EM: f64 = 0.6;
/// Vertical layout.
const AXIS_Y: i64 = 72;
const MEMORY_Y: i64 = 78;
const CMR_Y: i64 = 104;
const SECTIONS_Y: i64 = 128;
const SECTION_H: i64 = 114;

/// One layout to draw: a strategy's plan, or its failure.
#[derive(Clone, Copy, Debug)]
pub struct Section<'a> {
    /// Shown in the section's heading (e.g. `linux`, `optimal`).
    pub name: &'a str,
    /// The hole basis the strategy used: a failure's range is drawn with the holes it holds
    /// under this basis.
    pub holes: HolePolicy,
    /// The plan, or why there is none.
    pub result: &'a Result<Plan, PlanError>,
}

/// The range a failure names, what to call it, and the hole basis its holes follow.
fn failure_range(
    e: &PlanError,
    holes: HolePolicy,
) -> Option<(PhysRange, &'static str, HolePolicy)> {
    match *e {
        PlanError::ReservedAreasExhausted { tdmr, .. }
        | PlanError::PamtAllocationFailed { tdmr, .. }
        | PlanError::BadPamtBlock { tdmr, .. } => Some((tdmr, "TDMR", holes)),
        PlanError::Infeasible(Obstacle::WindowHoles { window, policy, .. }) => {
            Some((window, "window", policy))
        }
        PlanError::Memory(crate::memmap::MemoryMapError::OutsideCmrs { range }) => {
            Some((range, "memory", holes))
        }
        _ => None,
    }
}

fn reserved_class(kind: ReservedKind) -> Class {
    match kind {
        ReservedKind::Hole => Class::Hole,
        ReservedKind::Pamt => Class::Pamt,
        ReservedKind::HoleAndPamt => Class::HoleAndPamt,
        ReservedKind::Excluded => Class::Excluded,
        _ => Class::Unknown,
    }
}

fn text_w(chars: usize, font: f64) -> f64 {
    chars as f64 * font * CHAR_EM
}

/// Writes `<text>` at (x, y) with an anchor and CSS classes.
fn text(out: &mut String, x: f64, y: i64, anchor: &str, class: &str, s: &str) {
    let _ = write!(out, "<text x=\"{x:.1}\" y=\"{y}\"");
    if anchor != "start" {
        let _ = write!(out, " text-anchor=\"{anchor}\"");
    }
    if !class.is_empty() {
        let _ = write!(out, " class=\"{class}\"");
    }
    out.push('>');
    xml::escape_into(out, s);
    out.push_str("</text>\n");
}

/// Horizontal intervals already taken by labels on one line.
#[derive(Default)]
struct Taken(Vec<(f64, f64)>);

impl Taken {
    /// Takes `[a, b)` (with a small margin) if nothing there is taken yet.
    fn take(&mut self, a: f64, b: f64) -> bool {
        let (a, b) = (a - 3.0, b + 3.0);
        let i = self.0.partition_point(|&(_, end)| end <= a);
        if self.0.get(i).is_some_and(|&(start, _)| start < b) {
            return false;
        }
        self.0.insert(i, (a, b));
        true
    }
}

/// The longest candidate label that fits `width` pixels at `font`.
fn fitting(candidates: &[String], width: f64, font: f64) -> Option<&str> {
    candidates
        .iter()
        .find(|c| text_w(c.chars().count(), font) + 4.0 <= width)
        .map(String::as_str)
}

/// Renders the memory map: the shared CMR and memory tracks, then one block of tracks per
/// section, in order (put Linux's first to show it above ours), then the legend.
pub fn render(ctx: &Context<'_>, title: &str, sections: &[Section<'_>]) -> String {
    let scale = build_scale(ctx, sections);
    let y_end = SECTIONS_Y + SECTION_H * sections.len() as i64;
    let mut body = String::with_capacity(64 * 1024);

    // Collapsed empty space: a light band through every track, its size written along it.
    let mut voids = Track::default();
    for s in scale.stretches(true) {
        voids.push(s.x0, s.x1, Class::Void, s.range, None);
    }
    voids.write(&mut body, AXIS_Y - 12, y_end - AXIS_Y + 12);
    for s in scale.stretches(true) {
        let w = s.x1 - s.x0;
        if w >= 6.0 {
            let xm = (s.x0 + s.x1) / 2.0;
            let _ = writeln!(
                body,
                "<path class=\"brk\" d=\"M{:.1} {}l6 -10M{:.1} {}l6 -10\"/>",
                xm - 5.0,
                AXIS_Y + 5,
                xm - 1.0,
                AXIS_Y + 5
            );
        }
        // The size across the memory row if it fits, else along the band.
        let size = alloc::format!("{}", Bytes(s.range.size()));
        let xm = (s.x0 + s.x1) / 2.0;
        if text_w(size.len(), 10.0) + 2.0 <= w {
            text(&mut body, xm, MEMORY_Y + 14, "middle", "sm", &size);
        } else if w >= 12.0 {
            let label = alloc::format!("{size} empty");
            let y = (MEMORY_Y + y_end) / 2;
            let xm = xm + 3.5;
            let _ = write!(
                body,
                "<text x=\"{xm:.1}\" y=\"{y}\" text-anchor=\"middle\" class=\"sm\" transform=\"rotate(-90 {xm:.1} {y})\">"
            );
            xml::escape_into(&mut body, &label);
            body.push_str("</text>\n");
        }
    }

    axis(&mut body, &scale, ctx, sections, y_end);
    memory_track(&mut body, &scale, ctx.memory);
    cmr_track(&mut body, &scale, ctx);
    for (k, s) in sections.iter().enumerate() {
        section(&mut body, &scale, ctx, s, SECTIONS_Y + SECTION_H * k as i64);
    }
    let legend_y = y_end + 16;
    let height = legend(&mut body, ctx.memory, legend_y) + 10;

    let mut out = String::with_capacity(body.len() + 4096);
    let _ = writeln!(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\">"
    );
    out.push_str("<title>");
    xml::escape_into(&mut out, title);
    out.push_str(" - TDX memory map</title>\n");
    style(&mut out);
    let _ = writeln!(
        out,
        "<rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{height}\" fill=\"#fff\"/>"
    );
    text(
        &mut out,
        8.0,
        24,
        "start",
        "tt",
        &alloc::format!("TDX memory map: {title}"),
    );
    let nodes = nodes(ctx.memory);
    text(
        &mut out,
        8.0,
        44,
        "start",
        "",
        &alloc::format!(
            "{} of TDX memory in {} ranges on {} node{}, {} CMRs ({} convertible); empty address space collapsed to breaks, small pieces widened",
            Bytes(ctx.memory.total_bytes()),
            ctx.memory.len(),
            nodes.len(),
            if nodes.len() == 1 { "" } else { "s" },
            ctx.cmrs.listed().len(),
            Bytes(ctx.cmrs.total_bytes())
        ),
    );
    out.push_str(&body);
    out.push_str("</svg>\n");
    out
}

fn nodes(memory: &MemoryMap) -> Vec<u32> {
    let mut n: Vec<u32> = memory.regions().iter().map(|r| r.node).collect();
    n.sort_unstable();
    n.dedup();
    n
}

fn build_scale(ctx: &Context<'_>, sections: &[Section<'_>]) -> Scale {
    let mut points: Vec<u64> = Vec::new();
    let mut content: Vec<PhysRange> = Vec::new();
    let mut add = |r: PhysRange, is_content: bool, points: &mut Vec<u64>| {
        if r.is_empty() {
            return;
        }
        points.push(r.start());
        points.push(r.end());
        if is_content {
            content.push(r);
        }
    };
    for r in ctx.memory.regions() {
        add(r.range(), true, &mut points);
    }
    for c in ctx.cmrs.merged() {
        add(*c, true, &mut points);
    }
    for c in ctx.cmrs.listed() {
        add(
            PhysRange::new_unchecked(c.base, c.base.saturating_add(c.size)),
            true,
            &mut points,
        );
    }
    for s in sections {
        match s.result {
            Ok(plan) => {
                for t in plan.tdmrs() {
                    add(t.range(), true, &mut points);
                    for k in 0..t.reserved().len() {
                        if let Some(r) = t.reserved_range(k) {
                            add(r, false, &mut points);
                        }
                    }
                    for level in PageSize::ALL {
                        add(t.pamt(level), false, &mut points);
                    }
                }
                for r in plan.excluded() {
                    add(*r, true, &mut points);
                }
            }
            Err(e) => {
                if let Some((r, _, _)) = failure_range(e, s.holes) {
                    add(r, true, &mut points);
                }
            }
        }
    }
    Scale::new(points, content, X0, PLOT_W)
}

fn style(out: &mut String) {
    out.push_str("<defs>\n<style>\n");
    out.push_str(
        "text{font-family:'DejaVu Sans Mono',Menlo,Consolas,monospace;font-size:11px;fill:#222}\n\
.tt{font-size:15px;font-weight:bold}.sm{font-size:10px;fill:#555}.hd{font-weight:bold}\n\
.er{fill:#c00;font-weight:bold}.rn{fill:#444}\n\
.lb{paint-order:stroke;stroke:#fff;stroke-width:3px;stroke-linejoin:round}\n\
.ax{stroke:#444;stroke-width:1;fill:none}.gl{stroke:#aaa;stroke-width:0.6;stroke-dasharray:2 3;fill:none}\n\
.brk{stroke:#444;stroke-width:1.4;fill:none}\n\
.br{stroke:#333;stroke-width:1.2;fill:none}.bf{stroke:#d00;stroke-width:2;fill:none}\n\
.sw{stroke:#666;stroke-width:0.5}\n\
.v{fill:#f3f3f3}.g{fill:#d6d6d6}.fbg{fill:#fde2e2}\n\
.c0{fill:#6a9fd0}.c1{fill:#4a7fb5}.t0{fill:#444}.t1{fill:#999}.f{fill:#d00}\n\
.h{fill:url(#ph)}.p{fill:url(#pp)}.hp{fill:url(#php)}.x{fill:url(#px)}.u{fill:#999}\n\
.b0{fill:#e8871e}.b1{fill:#a85a12}.bo{fill:url(#pbo)}\n",
    );
    for (i, c) in NODE_FILL.iter().enumerate() {
        let _ = write!(out, ".n{i}{{fill:{c}}}");
    }
    out.push_str("\n</style>\n");
    // Hatches: hole grey, PAMT orange (other direction), both alternating, excluded red.
    let hatch = |out: &mut String, id: &str, angle: i32, bg: &str, stripes: &[(f64, &str)]| {
        let _ = write!(
            out,
            "<pattern id=\"{id}\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate({angle})\"><rect width=\"6\" height=\"6\" fill=\"{bg}\"/>"
        );
        for (x, c) in stripes {
            let _ = write!(
                out,
                "<rect x=\"{x}\" width=\"2.2\" height=\"6\" fill=\"{c}\"/>"
            );
        }
        out.push_str("</pattern>\n");
    };
    hatch(out, "ph", 45, "#fff", &[(0.0, "#777")]);
    hatch(out, "pp", -45, "#fff3e0", &[(0.0, "#e8871e")]);
    hatch(out, "php", 45, "#fff", &[(0.0, "#777"), (3.0, "#e8871e")]);
    hatch(out, "px", 45, "#fff", &[(0.0, "#d00")]);
    hatch(out, "pbo", 90, "#e8871e", &[(0.0, "#d00")]);
    out.push_str("</defs>\n");
}

/// The axis line over non-empty space, and addresses where they fit: cluster edges first,
/// then TDMR edges, then CMR edges; a faint grid line under each.
fn axis(out: &mut String, scale: &Scale, ctx: &Context<'_>, sections: &[Section<'_>], y_end: i64) {
    const FONT: f64 = 10.0;
    let clusters: Vec<Stretch> = scale.stretches(false).collect();
    for c in &clusters {
        let _ = writeln!(
            out,
            "<path class=\"ax\" d=\"M{:.1} {AXIS_Y}H{:.1}\"/>",
            c.x0, c.x1
        );
    }
    // (priority, address, anchor): starts read rightwards, ends leftwards.
    let mut candidates: Vec<(u8, u64, &str)> = Vec::new();
    for c in &clusters {
        candidates.push((0, c.range.start(), "start"));
        candidates.push((1, c.range.end(), "end"));
    }
    for s in sections {
        match s.result {
            Ok(plan) => {
                for t in plan.tdmrs() {
                    candidates.push((2, t.base(), "middle"));
                    candidates.push((2, t.end(), "middle"));
                }
            }
            Err(e) => {
                if let Some((r, _, _)) = failure_range(e, s.holes) {
                    candidates.push((2, r.start(), "middle"));
                    candidates.push((2, r.end(), "middle"));
                }
            }
        }
    }
    for c in ctx.cmrs.merged() {
        candidates.push((3, c.start(), "middle"));
        candidates.push((3, c.end(), "middle"));
    }
    // One candidate per address, the most important; then most important first.
    candidates.sort_unstable_by_key(|&(p, a, _)| (a, p));
    candidates.dedup_by_key(|c| c.1);
    candidates.sort_unstable_by_key(|&(p, a, _)| (p, a));
    let mut taken = Taken::default();
    let mut placed: Vec<(f64, u64, &str)> = Vec::new();
    let right = scale.end_x();
    for (_, addr, anchor) in candidates {
        let x = scale.x(addr);
        let label = alloc::format!("{addr:#x}");
        let w = text_w(label.len(), FONT);
        let (a, anchor) = match anchor {
            "start" => (x, "start"),
            "end" => (x - w, "end"),
            _ if x - w / 2.0 < X0 => (x, "start"),
            _ if x + w / 2.0 > right => (x - w, "end"),
            _ => (x - w / 2.0, "middle"),
        };
        if taken.take(a, a + w) {
            placed.push((x, addr, anchor));
        }
    }
    for (x, addr, anchor) in placed {
        let _ = writeln!(
            out,
            "<path class=\"gl\" d=\"M{x:.1} {}V{y_end}\"/><path class=\"ax\" d=\"M{x:.1} {}v6\"/>",
            AXIS_Y,
            AXIS_Y - 3
        );
        text(
            out,
            x,
            AXIS_Y - 6,
            anchor,
            "sm",
            &alloc::format!("{addr:#x}"),
        );
    }
}

fn row_name(out: &mut String, y: i64, name: &str) {
    text(out, 8.0, y, "start", "rn", name);
}

/// TDX memory coloured by node, what lies between drawn as "no TDX memory", node labels.
fn memory_track(out: &mut String, scale: &Scale, memory: &MemoryMap) {
    const H: i64 = 20;
    row_name(out, MEMORY_Y + 14, "TDX memory");
    let mut track = Track::default();
    let mut labels: Vec<(f64, f64, u32, u64)> = Vec::new();
    for c in scale.stretches(false) {
        let regions = memory.regions_in(c.range);
        let covered = regions.iter().map(|r| r.range());
        let mut holes = gaps(c.range, covered).peekable();
        // Group regions of one node (across holes) for labels.
        let mut group: Option<(u64, u64, u32, u64)> = None;
        for r in regions {
            while let Some(h) = holes.next_if(|h| h.start() < r.base) {
                track.push(
                    scale.x(h.start()),
                    scale.x(h.end()),
                    Class::NoMemory,
                    h,
                    None,
                );
            }
            let range = r.range().intersect(c.range).unwrap_or(PhysRange::EMPTY);
            track.push(
                scale.x(range.start()),
                scale.x(range.end()),
                Class::Node((r.node as usize % NODE_COLOURS) as u8),
                range,
                Some(u64::from(r.node)),
            );
            group = match group {
                Some((s, _, n, b)) if n == r.node => Some((s, range.end(), n, b + range.size())),
                Some((s, e, n, b)) => {
                    labels.push((scale.x(s), scale.x(e), n, b));
                    Some((range.start(), range.end(), r.node, range.size()))
                }
                None => Some((range.start(), range.end(), r.node, range.size())),
            };
        }
        for h in holes {
            track.push(
                scale.x(h.start()),
                scale.x(h.end()),
                Class::NoMemory,
                h,
                None,
            );
        }
        if let Some((s, e, n, b)) = group {
            labels.push((scale.x(s), scale.x(e), n, b));
        }
    }
    track.write(out, MEMORY_Y, H);
    for (x0, x1, node, bytes) in labels {
        let candidates = [
            alloc::format!("node {node} · {}", Bytes(bytes)),
            alloc::format!("node {node}"),
            alloc::format!("{node}"),
        ];
        if let Some(l) = fitting(&candidates, x1 - x0, 11.0) {
            text(out, (x0 + x1) / 2.0, MEMORY_Y + 14, "middle", "lb", l);
        }
    }
}

/// CMRs as listed (abutting ones in alternating shades), non-convertible space between.
fn cmr_track(out: &mut String, scale: &Scale, ctx: &Context<'_>) {
    const H: i64 = 12;
    row_name(out, CMR_Y + 10, "CMRs");
    let mut track = Track::default();
    let listed = ctx.cmrs.listed();
    let mut next = 0;
    for c in scale.stretches(false) {
        let mut holes = gaps(c.range, ctx.cmrs.merged().iter().copied()).peekable();
        while next < listed.len() {
            let cmr = listed[next];
            let r = PhysRange::new_unchecked(cmr.base, cmr.base.saturating_add(cmr.size));
            if r.start() >= c.range.end() {
                break;
            }
            while let Some(h) = holes.next_if(|h| h.start() < r.start()) {
                track.push(
                    scale.x(h.start()),
                    scale.x(h.end()),
                    Class::NotConvertible,
                    h,
                    None,
                );
            }
            track.push(
                scale.x(r.start()),
                scale.x(r.end()),
                Class::Cmr((next & 1) as u8),
                r,
                Some(next as u64),
            );
            next += 1;
        }
        for h in holes {
            track.push(
                scale.x(h.start()),
                scale.x(h.end()),
                Class::NotConvertible,
                h,
                None,
            );
        }
    }
    track.write(out, CMR_Y, H);
}

/// One strategy's tracks: heading, TDMR brackets, reserved areas, PAMT blocks.
fn section(out: &mut String, scale: &Scale, ctx: &Context<'_>, s: &Section<'_>, y: i64) {
    let _ = writeln!(out, "<g id=\"section-{}\">", css_id(s.name));
    let bar_y = y + 52;
    let rsvd_y = y + 66;
    let pamt_y = y + 82;
    row_name(out, bar_y + 6, "TDMRs");
    row_name(out, rsvd_y + 10, "reserved");
    row_name(out, pamt_y + 10, "PAMT");
    match s.result {
        Ok(plan) => {
            let l = plan.limits();
            let mut head = alloc::format!(
                "{}: {} of {} TDMRs, {} reserved areas (at most {} of {} in one TDMR), PAMT {} KB ({}), holes from {}",
                s.name,
                plan.tdmrs().len(),
                l.max_tdmrs(),
                plan.reserved_area_count(),
                plan.max_reserved_in_one_tdmr(),
                l.max_reserved_per_tdmr(),
                plan.pamt_bytes() / 1024,
                Bytes(plan.pamt_bytes()),
                plan.holes().name()
            );
            if plan.node_mixing_tdmrs() > 0 {
                let _ = write!(head, ", {} node-mixing TDMRs", plan.node_mixing_tdmrs());
            }
            if !plan.excluded().is_empty() {
                let _ = write!(head, ", {} excluded", Bytes(plan.excluded_bytes()));
            }
            text(out, 8.0, y + 16, "start", "hd lb", &head);
            plan_tracks(out, scale, ctx.memory, plan, (bar_y, rsvd_y, pamt_y));
        }
        Err(e) => {
            let mut head = alloc::format!("{}: FAILS", s.name);
            if let Some((range, what, holes)) = failure_range(e, s.holes) {
                let n = failure_tracks(out, scale, ctx, (range, what, holes), y, bar_y, rsvd_y);
                let _ = write!(
                    head,
                    " (in red: the {what} named below, with the {n} {} it holds)",
                    match holes {
                        HolePolicy::Cmr => "non-convertible holes",
                        HolePolicy::Memory => "holes in TDX memory",
                    }
                );
            }
            text(out, 8.0, y + 16, "start", "er lb", &head);
            text(out, 8.0, y + 32, "start", "er lb", &alloc::format!("{e}"));
        }
    }
    out.push_str("</g>\n");
}

fn css_id(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// A bracket over `[x0, x1)` opening downwards towards the bar at `bar_y`.
fn bracket(out: &mut String, x0: f64, x1: f64, bar_y: i64, class: &str, tooltip: &str) {
    let _ = write!(
        out,
        "<path class=\"{class}\" d=\"M{:.1} {}V{}H{:.1}V{}\"><title>",
        x0 + 0.6,
        bar_y + 10,
        bar_y - 3,
        x1 - 0.6,
        bar_y + 10
    );
    xml::escape_into(out, tooltip);
    out.push_str("</title></path>\n");
}

fn plan_tracks(
    out: &mut String,
    scale: &Scale,
    memory: &MemoryMap,
    plan: &Plan,
    (bar_y, rsvd_y, pamt_y): (i64, i64, i64),
) {
    let limit = plan.limits().max_reserved_per_tdmr();
    // TDMRs whose PAMT lies off the node holding most of their memory: (PAMT node, memory
    // node), measured from the map.
    let mut off: Vec<Option<(u32, u32)>> = alloc::vec![None; plan.tdmrs().len()];
    for (i, pamt_node, memory_node) in crate::readiness::off_node(plan, memory) {
        off[i] = Some((pamt_node, memory_node));
    }
    // TDMR bars (aggregated), then brackets and labels where there is room.
    let mut bars = Track::default();
    for (i, t) in plan.tdmrs().iter().enumerate() {
        bars.push(
            scale.x(t.base()),
            scale.x(t.end()),
            Class::Tdmr((i & 1) as u8),
            t.range(),
            Some(i as u64),
        );
    }
    bars.write(out, bar_y, 6);
    let mut taken = Taken::default();
    for (i, t) in plan.tdmrs().iter().enumerate() {
        let (x0, x1) = (scale.x(t.base()), scale.x(t.end()));
        if x1 - x0 < 2.0 {
            continue;
        }
        let mut tip = alloc::format!(
            "TDMR {i} {} {}, node {}{}, {} of {limit} reserved areas, PAMT {}",
            t.range(),
            Bytes(t.size()),
            t.node(),
            if t.mixes_nodes() {
                " (mixes nodes)"
            } else {
                ""
            },
            t.reserved().len(),
            Bytes(t.pamt_bytes())
        );
        if let Some((p, m)) = off[i] {
            let _ = write!(tip, " on node {p}, most of its memory on node {m}");
            if let Some(r) = t.off_node_reason() {
                let _ = write!(tip, " ({r})");
            }
        }
        bracket(out, x0, x1, bar_y, "br", &tip);
        let candidates = [
            alloc::format!(
                "TDMR {i} · {} · {}/{limit} reserved",
                Bytes(t.size()),
                t.reserved().len()
            ),
            alloc::format!("TDMR {i} · {}", Bytes(t.size())),
            alloc::format!("TDMR {i}"),
            alloc::format!("{i}"),
        ];
        if let Some(l) = fitting(&candidates, x1 - x0, 11.0) {
            let xm = (x0 + x1) / 2.0;
            let w = text_w(l.chars().count(), 11.0);
            if taken.take(xm - w / 2.0, xm + w / 2.0) {
                text(out, xm, bar_y - 8, "middle", "", l);
            }
        }
    }

    // Reserved areas and excluded memory, in address order.
    let mut items: Vec<(PhysRange, Class, u64)> = Vec::new();
    for (i, t) in plan.tdmrs().iter().enumerate() {
        for (k, a) in t.reserved().iter().enumerate() {
            if let Some(r) = t.reserved_range(k) {
                items.push((r, reserved_class(a.kind), i as u64));
            }
        }
    }
    for r in plan.excluded() {
        items.push((*r, Class::Excluded, 0));
    }
    items.sort_by_key(|(r, _, _)| r.start());
    let mut rsvd = Track::default();
    for (r, class, i) in items {
        rsvd.push(scale.x(r.start()), scale.x(r.end()), class, r, Some(i));
    }
    rsvd.write(out, rsvd_y, 12);

    // PAMT blocks, each TDMR's contiguous levels as one block, labelled with the TDMR.
    let mut blocks: Vec<(PhysRange, usize)> = Vec::new();
    for (i, t) in plan.tdmrs().iter().enumerate() {
        for level in PageSize::ALL {
            let b = t.pamt(level);
            if !b.is_empty() {
                blocks.push((b, i));
            }
        }
    }
    blocks.sort_by_key(|(r, _)| r.start());
    let mut merged: Vec<(PhysRange, usize)> = Vec::with_capacity(blocks.len());
    for (b, i) in blocks {
        match merged.last_mut() {
            Some((m, j)) if *j == i && m.end() == b.start() => {
                *m = PhysRange::new_unchecked(m.start(), b.end())
            }
            _ => merged.push((b, i)),
        }
    }
    let mut pamt = Track::default();
    for &(b, i) in &merged {
        let class = if off[i].is_some() {
            Class::PamtOffNode
        } else {
            Class::PamtBlock((i & 1) as u8)
        };
        pamt.push(
            scale.x(b.start()),
            scale.x(b.end()),
            class,
            b,
            Some(i as u64),
        );
    }
    pamt.write(out, pamt_y, 12);
    // Labels under contiguous groups of blocks: "PAMT 0,1" or "0,1".
    let mut taken = Taken::default();
    let mut k = 0;
    while k < merged.len() {
        let mut end = k + 1;
        while end < merged.len() && merged[end].0.start() == merged[end - 1].0.end() {
            end += 1;
        }
        let mut ids = String::new();
        for (n, (_, i)) in merged[k..end].iter().enumerate() {
            if n == 4 {
                ids.push_str(",…");
                break;
            }
            if n > 0 {
                ids.push(',');
            }
            let _ = write!(ids, "{i}");
        }
        let xm = (scale.x(merged[k].0.start()) + scale.x(merged[end - 1].0.end())) / 2.0;
        for l in [alloc::format!("PAMT {ids}"), ids] {
            let w = text_w(l.chars().count(), 10.0);
            if taken.take(xm - w / 2.0, xm + w / 2.0) {
                text(out, xm, pamt_y + 24, "middle", "sm", &l);
                break;
            }
        }
        k = end;
    }
}

/// Draws the range a failure names (a light red band over the section, a red bar and bracket,
/// the holes it holds under `holes`); returns the number of holes.
fn failure_tracks(
    out: &mut String,
    scale: &Scale,
    ctx: &Context<'_>,
    (range, what, holes): (PhysRange, &str, HolePolicy),
    y: i64,
    bar_y: i64,
    rsvd_y: i64,
) -> usize {
    let (x0, x1) = (scale.x(range.start()), scale.x(range.end()));
    let _ = writeln!(
        out,
        "<rect class=\"fbg\" x=\"{:.1}\" y=\"{}\" width=\"{:.1}\" height=\"{}\"/>",
        x0,
        y + 38,
        (x1 - x0).max(1.0),
        SECTION_H - 40
    );
    let mut bar = Track::default();
    bar.push(x0, x1, Class::Failure, range, None);
    bar.write(out, bar_y, 6);
    let label = alloc::format!("{what} {range}");
    bracket(out, x0, x1.max(x0 + 2.0), bar_y, "bf", &label);
    let w = text_w(label.chars().count(), 11.0);
    let xm = ((x0 + x1) / 2.0).max(X0 + w / 2.0);
    text(out, xm, bar_y - 8, "middle", "er lb", &label);
    // The holes that range holds under the strategy's hole basis.
    let mut track = Track::default();
    let mut n = 0usize;
    for h in gaps(range, basis_in(holes, ctx.memory, ctx.cmrs, range)) {
        track.push(scale.x(h.start()), scale.x(h.end()), Class::Hole, h, None);
        n += 1;
    }
    track.write(out, rsvd_y, 12);
    n
}

/// The legend; returns the y below it.
fn legend(out: &mut String, memory: &MemoryMap, y: i64) -> i64 {
    let nodes = nodes(memory);
    let mut items: Vec<(String, String)> = Vec::new();
    for c in 0..NODE_COLOURS.min(nodes.len()) {
        let on: Vec<u32> = nodes
            .iter()
            .copied()
            .filter(|n| *n as usize % NODE_COLOURS == c)
            .collect();
        let mut label = String::from("node ");
        for (k, n) in on.iter().enumerate() {
            if k == 3 {
                label.push_str(",…");
                break;
            }
            if k > 0 {
                label.push(',');
            }
            let _ = write!(label, "{n}");
        }
        items.push((alloc::format!("n{c}"), label));
    }
    for (class, label) in [
        ("g", "no TDX memory / not convertible"),
        ("c0", "CMR"),
        ("t0", "TDMR (bracket, index)"),
        ("f", "failing TDMR or window"),
        ("h", "reserved: hole"),
        ("p", "reserved: PAMT"),
        ("hp", "reserved: hole + PAMT"),
        ("x", "excluded TDX memory"),
        ("b0", "PAMT block (label: its TDMR)"),
        ("bo", "PAMT block off its TDMR's node"),
        ("v", "empty space, collapsed (size written)"),
    ] {
        items.push((String::from(class), String::from(label)));
    }
    text(out, 8.0, y + 9, "start", "rn", "legend");
    let (mut x, mut y) = (X0, y);
    for (class, label) in items {
        let w = 16.0 + 6.0 + text_w(label.chars().count(), 11.0) + 18.0;
        if x + w > X0 + PLOT_W {
            x = X0;
            y += 18;
        }
        let _ = writeln!(
            out,
            "<rect class=\"{class} sw\" x=\"{x:.1}\" y=\"{y}\" width=\"16\" height=\"10\"/>"
        );
        text(out, x + 22.0, y + 9, "start", "", &label);
        x += w;
    }
    y + 18
}
