//! One horizontal band of the picture as whole-pixel runs.
//!
//! Items arrive in address order with their x extent. Each becomes a run of whole pixels (at
//! least one); where items share a pixel the one of higher priority keeps it, and touching
//! runs of one class merge. So a track never holds more runs than it has pixels, whatever the
//! number of items: a terabyte map with thousands of 4 KiB holes draws a striped band, not one
//! element per hole.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use super::xml;
use crate::addr::Bytes;
use crate::addr::PhysRange;

/// Runs narrower than this are drawn without a tooltip, as part of one path per class.
const TITLED_MIN_PX: i64 = 3;

/// What a run shows: its CSS class, priority and the noun of its tooltip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Class {
    /// TDX memory of a node (colour index, node id in the run's index).
    Node(u8),
    /// No TDX memory (inside drawn space).
    NoMemory,
    /// A CMR (parity of its index, so abutting CMRs stay apart).
    Cmr(u8),
    /// Not convertible (inside drawn space).
    NotConvertible,
    /// A TDMR (parity of its index).
    Tdmr(u8),
    /// The range a failure names.
    Failure,
    /// Reserved area: hole.
    Hole,
    /// Reserved area: PAMT.
    Pamt,
    /// Reserved area: hole and PAMT merged.
    HoleAndPamt,
    /// Excluded TDX memory.
    Excluded,
    /// Reserved area of unknown cause.
    Unknown,
    /// A PAMT block (parity of its TDMR's index).
    PamtBlock(u8),
    /// A PAMT block on another node than most of its TDMR's memory.
    PamtOffNode,
    /// Collapsed empty address space.
    Void,
}

impl Class {
    fn priority(self) -> u8 {
        match self {
            Class::Node(_) | Class::Cmr(_) | Class::Tdmr(_) | Class::PamtBlock(_) => 1,
            Class::Hole | Class::Unknown | Class::Void => 1,
            Class::NoMemory | Class::NotConvertible => 2,
            Class::Pamt | Class::HoleAndPamt | Class::PamtOffNode => 2,
            Class::Failure | Class::Excluded => 3,
        }
    }

    /// The CSS class.
    pub fn css(self) -> &'static str {
        const NODES: [&str; super::NODE_COLOURS] =
            ["n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9"];
        match self {
            Class::Node(c) => NODES[c as usize % NODES.len()],
            Class::NoMemory | Class::NotConvertible => "g",
            Class::Cmr(p) => ["c0", "c1"][p as usize & 1],
            Class::Tdmr(p) => ["t0", "t1"][p as usize & 1],
            Class::Failure => "f",
            Class::Hole => "h",
            Class::Pamt => "p",
            Class::HoleAndPamt => "hp",
            Class::Excluded => "x",
            Class::Unknown => "u",
            Class::PamtBlock(p) => ["b0", "b1"][p as usize & 1],
            Class::PamtOffNode => "bo",
            Class::Void => "v",
        }
    }

    fn describe(self, out: &mut String, index: Option<u64>) {
        let i = index.unwrap_or(0);
        let _ = match self {
            Class::Node(_) => write!(out, "node {i} TDX memory"),
            Class::NoMemory => write!(out, "no TDX memory"),
            Class::Cmr(_) => write!(out, "CMR {i}"),
            Class::NotConvertible => write!(out, "not convertible"),
            Class::Tdmr(_) => write!(out, "TDMR {i}"),
            Class::Failure => write!(out, "failing range"),
            Class::Hole => write!(out, "reserved: hole"),
            Class::Pamt => write!(out, "reserved: PAMT"),
            Class::HoleAndPamt => write!(out, "reserved: hole + PAMT"),
            Class::Excluded => write!(out, "excluded TDX memory"),
            Class::Unknown => write!(out, "reserved"),
            Class::PamtBlock(_) => write!(out, "PAMT of TDMR {i}"),
            Class::PamtOffNode => write!(out, "PAMT of TDMR {i}, off its node"),
            Class::Void => write!(out, "empty address space"),
        };
    }
}

#[derive(Clone, Debug)]
struct Run {
    px0: i64,
    px1: i64,
    class: Class,
    /// A class of higher priority (or lesser share) also present in these pixels.
    mark: Option<Class>,
    /// Items starting in the run.
    count: u32,
    /// From the first item's start to the last item's end.
    range: PhysRange,
    /// The first item's index (node, CMR, TDMR).
    index: Option<u64>,
}

/// One class's share of the pixel being filled.
#[derive(Clone, Copy, Debug)]
struct Cell {
    class: Class,
    cover: f64,
    range: PhysRange,
    index: Option<u64>,
    starts: u32,
}

/// Whole-pixel runs of one band.
#[derive(Clone, Debug, Default)]
pub(super) struct Track {
    runs: Vec<Run>,
    /// The pixel being filled and the classes sharing it.
    pixel: i64,
    cells: Vec<Cell>,
}

/// The pixel holding a non-negative x.
pub(super) fn px(x: f64) -> i64 {
    x as i64
}

fn span(a: PhysRange, b: PhysRange) -> PhysRange {
    PhysRange::new_unchecked(a.start().min(b.start()), a.end().max(b.end()))
}

impl Track {
    /// Adds an item covering `[x0, x1)`. Items come sorted by start; where one overlaps pixels
    /// already drawn, only its part beyond them is added. Every item shows in at least one
    /// pixel: a pixel shared by several classes shows the one covering most of it, with the
    /// most important other one as a mark.
    pub fn push(&mut self, x0: f64, x1: f64, class: Class, range: PhysRange, index: Option<u64>) {
        let x0 = x0.max(self.pixel as f64);
        if x1.partial_cmp(&x0) != Some(core::cmp::Ordering::Greater) {
            return;
        }
        let (p0, p1) = (px(x0), px(x1));
        if p0 != self.pixel {
            self.flush();
            self.pixel = p0;
        }
        let mut starts = 1;
        if p1 == p0 {
            self.add(class, x1 - x0, range, index, starts);
            return;
        }
        self.add(class, (p0 + 1) as f64 - x0, range, index, starts);
        self.flush();
        starts = 0;
        if p1 > p0 + 1 {
            self.emit(p0 + 1, p1, class, None, range, index, starts);
        }
        self.pixel = p1;
        let rest = x1 - p1 as f64;
        if rest > 0.0 {
            self.add(class, rest, range, index, starts);
        }
    }

    fn add(&mut self, class: Class, cover: f64, range: PhysRange, index: Option<u64>, starts: u32) {
        match self.cells.iter_mut().find(|c| c.class == class) {
            Some(c) => {
                c.cover += cover;
                c.range = span(c.range, range);
                c.starts += starts;
            }
            None => self.cells.push(Cell {
                class,
                cover,
                range,
                index,
                starts,
            }),
        }
    }

    /// Turns the pixel being filled into a one-pixel run.
    fn flush(&mut self) {
        let cells = core::mem::take(&mut self.cells);
        let mut primary: Option<Cell> = None;
        for c in &cells {
            let better = match primary {
                None => true,
                Some(p) => {
                    c.cover > p.cover
                        || (c.cover == p.cover && c.class.priority() > p.class.priority())
                }
            };
            if better {
                primary = Some(*c);
            }
        }
        let Some(p) = primary else {
            self.cells = cells;
            return;
        };
        let mut mark: Option<Cell> = None;
        for c in cells.iter().filter(|c| c.class != p.class) {
            let better = match mark {
                None => true,
                Some(m) => {
                    c.class.priority() > m.class.priority()
                        || (c.class.priority() == m.class.priority() && c.cover > m.cover)
                }
            };
            if better {
                mark = Some(*c);
            }
        }
        let range = cells.iter().fold(p.range, |r, c| span(r, c.range));
        let starts = cells.iter().map(|c| c.starts).sum();
        self.emit(
            self.pixel,
            self.pixel + 1,
            p.class,
            mark.map(|m| m.class),
            range,
            p.index,
            starts,
        );
        self.cells = cells;
        self.cells.clear();
    }

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        px0: i64,
        px1: i64,
        class: Class,
        mark: Option<Class>,
        range: PhysRange,
        index: Option<u64>,
        starts: u32,
    ) {
        if let Some(last) = self.runs.last_mut()
            && last.px1 == px0
            && last.class == class
            && last.mark == mark
        {
            last.px1 = px1;
            last.count = last.count.saturating_add(starts);
            last.range = span(last.range, range);
            return;
        }
        self.runs.push(Run {
            px0,
            px1,
            class,
            mark,
            count: starts,
            range,
            index,
        });
    }

    /// Number of runs (after filling the last pixel).
    #[cfg(test)]
    pub fn len(&mut self) -> usize {
        self.flush();
        self.runs.len()
    }

    /// Writes the runs at height `[y, y + h)`: wide runs as rectangles with a tooltip, narrow
    /// ones as one path per class; marks as a strip along the bottom third.
    pub fn write(&mut self, out: &mut String, y: i64, h: i64) {
        self.flush();
        let mark_h = (h / 3).max(2);
        let mut narrow: Vec<(Class, String)> = Vec::new();
        let mut path = |class: Class, x: i64, y: i64, w: i64, h: i64| {
            let i = match narrow.iter().position(|(c, _)| *c == class) {
                Some(i) => i,
                None => {
                    narrow.push((class, String::new()));
                    narrow.len() - 1
                }
            };
            let _ = write!(narrow[i].1, "M{x} {y}h{w}v{h}h-{w}z");
        };
        for r in &self.runs {
            let w = r.px1 - r.px0;
            if let Some(m) = r.mark {
                path(m, r.px0, y + h - mark_h, w, mark_h);
            }
            if w < TITLED_MIN_PX {
                path(
                    r.class,
                    r.px0,
                    y,
                    w,
                    h - if r.mark.is_some() { mark_h } else { 0 },
                );
                continue;
            }
            let rh = h - if r.mark.is_some() { mark_h } else { 0 };
            let _ = write!(
                out,
                "<rect class=\"{}\" x=\"{}\" y=\"{y}\" width=\"{w}\" height=\"{rh}\"><title>",
                r.class.css(),
                r.px0
            );
            let mut t = String::new();
            if r.count > 1 {
                let _ = write!(t, "{} pieces, first: ", r.count);
            }
            r.class.describe(&mut t, r.index);
            let _ = write!(t, " {} {}", r.range, Bytes(r.range.size()));
            if let Some(m) = r.mark {
                t.push_str("; also ");
                m.describe(&mut t, None);
            }
            xml::escape_into(out, &t);
            out.push_str("</title></rect>\n");
        }
        for (class, d) in narrow {
            let _ = writeln!(out, "<path class=\"{}\" d=\"{d}\"/>", class.css());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(a: u64, b: u64) -> PhysRange {
        PhysRange::new(a, b).unwrap()
    }

    #[test]
    fn a_sub_pixel_hole_marks_its_pixel() {
        let mut t = Track::default();
        t.push(0.0, 10.2, Class::Node(0), r(0, 100), Some(0));
        t.push(10.2, 10.3, Class::NoMemory, r(100, 101), None);
        t.push(10.3, 20.0, Class::Node(0), r(101, 200), Some(0));
        assert_eq!(t.len(), 3);
        let spans: Vec<_> = t
            .runs
            .iter()
            .map(|r| (r.px0, r.px1, r.class, r.mark))
            .collect();
        assert_eq!(
            spans,
            [
                (0, 10, Class::Node(0), None),
                (10, 11, Class::Node(0), Some(Class::NoMemory)),
                (11, 20, Class::Node(0), None)
            ]
        );
        // Alone in its pixel, a sub-pixel item takes the whole pixel.
        let mut t = Track::default();
        t.push(5.5, 5.6, Class::Hole, r(0, 1), None);
        assert_eq!(t.len(), 1);
        assert_eq!((t.runs[0].px0, t.runs[0].px1), (5, 6));
    }

    #[test]
    fn runs_never_outnumber_pixels() {
        // Ten thousand holes over ten pixels.
        let mut t = Track::default();
        for i in 0..10_000u64 {
            let x = i as f64 * 0.001;
            t.push(x, x + 0.0009, Class::Node(0), r(2 * i, 2 * i + 1), Some(0));
            t.push(
                x + 0.0009,
                x + 0.001,
                Class::NoMemory,
                r(2 * i + 1, 2 * i + 2),
                None,
            );
        }
        assert_eq!(t.len(), 1);
        assert_eq!(t.runs[0].mark, Some(Class::NoMemory));
        assert_eq!(t.runs[0].count, 20_000);
        assert_eq!((t.runs[0].px0, t.runs[0].px1), (0, 10));
    }

    #[test]
    fn overlapping_items_never_draw_pixels_twice() {
        let mut t = Track::default();
        t.push(0.0, 50.0, Class::Hole, r(0, 50), None);
        t.push(0.0, 10.0, Class::Excluded, r(0, 10), None);
        t.push(20.0, 60.0, Class::Excluded, r(20, 60), None);
        assert_eq!(t.len(), 2);
        let spans: Vec<_> = t.runs.iter().map(|r| (r.px0, r.px1, r.class)).collect();
        assert_eq!(spans, [(0, 50, Class::Hole), (50, 60, Class::Excluded)]);
    }

    #[test]
    fn touching_runs_of_one_class_merge() {
        let mut t = Track::default();
        t.push(0.0, 5.0, Class::Hole, r(0, 5), None);
        t.push(5.0, 9.0, Class::Hole, r(5, 9), None);
        assert_eq!(t.len(), 1);
        assert_eq!(t.runs[0].count, 2);
        assert_eq!(t.runs[0].range, r(0, 9));
    }
}
