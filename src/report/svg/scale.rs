//! The address axis: piecewise linear between every address the picture draws.
//!
//! Each elementary segment between two consecutive drawn addresses gets a width of its own.
//! Empty address space (no TDX memory, CMR or TDMR) collapses to a fixed-width break, whatever
//! its size. Everything else shares the rest of the width: a constant per segment (so a 4 KiB
//! hole shows next to terabytes), a constant per cluster of content between breaks (so a
//! small island shows), and the remainder in proportion to bytes. When segments outnumber
//! pixels the constants shrink below a pixel and the tracks aggregate what falls into one.
//! Cost: sorting the drawn addresses, then linear.

use alloc::vec;
use alloc::vec::Vec;

use crate::addr::PhysRange;

/// Width of one break in empty address space, when there is room.
const VOID_W: f64 = 40.0;
/// Extra width of each cluster of content between breaks, when there is room.
const CLUSTER_W: f64 = 30.0;
/// Least width of each segment, when there is room.
const SEG_W: f64 = 4.0;

/// A stretch of the axis: address range and x interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Stretch {
    pub range: PhysRange,
    pub x0: f64,
    pub x1: f64,
}

/// Address → x.
#[derive(Clone, Debug)]
pub(super) struct Scale {
    /// Every drawn address, sorted, distinct.
    points: Vec<u64>,
    /// x of each point.
    xs: Vec<f64>,
    /// Per segment `points[j]..points[j + 1]`: empty address space.
    void: Vec<bool>,
}

fn union(mut ranges: Vec<PhysRange>) -> Vec<PhysRange> {
    ranges.retain(|r| !r.is_empty());
    ranges.sort_unstable_by_key(|r| r.start());
    let mut out: Vec<PhysRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start() <= last.end() => {
                *last = PhysRange::new_unchecked(last.start(), last.end().max(r.end()))
            }
            _ => out.push(r),
        }
    }
    out
}

impl Scale {
    /// A scale over `points` (every address drawn, any order) where `content` (any order) is
    /// the space that holds something; the rest collapses. Spans `[x0, x0 + width]`.
    pub fn new(mut points: Vec<u64>, content: Vec<PhysRange>, x0: f64, width: f64) -> Scale {
        points.sort_unstable();
        points.dedup();
        let content = union(content);
        let nseg = points.len().saturating_sub(1);
        let mut void = vec![false; nseg];
        let mut c = 0;
        for (j, v) in void.iter_mut().enumerate() {
            let a = points[j];
            while c < content.len() && content[c].end() <= a {
                c += 1;
            }
            *v = !(c < content.len() && content[c].start() <= a);
        }
        // Clusters: maximal runs of content segments; voids: maximal runs of void segments.
        // `cluster_of[j]`: the cluster (or void run) segment j belongs to.
        let mut cluster_of = vec![usize::MAX; nseg];
        let mut cluster_bytes: Vec<u64> = Vec::new();
        // Segments in each void run, indexed like clusters.
        let mut void_segs: Vec<usize> = Vec::new();
        let (mut segs, mut bytes) = (0usize, 0u64);
        for j in 0..nseg {
            let size = points[j + 1] - points[j];
            if void[j] {
                if j == 0 || !void[j - 1] {
                    void_segs.push(0);
                }
                let k = void_segs.len() - 1;
                void_segs[k] += 1;
                cluster_of[j] = k;
                continue;
            }
            if j == 0 || void[j - 1] {
                cluster_bytes.push(0);
            }
            let k = cluster_bytes.len() - 1;
            cluster_of[j] = k;
            cluster_bytes[k] += size;
            segs += 1;
            bytes += size;
        }
        let voids = void_segs.len();
        let void_w = if voids > 0 {
            VOID_W.min(0.2 * width / voids as f64)
        } else {
            0.0
        };
        let content_w = width - void_w * voids as f64;
        let clusters = cluster_bytes.len().max(1) as f64;
        let cluster_w = CLUSTER_W.min(0.2 * content_w / clusters);
        let seg_w = SEG_W.min(0.35 * content_w / segs.max(1) as f64);
        let per_byte =
            (content_w - cluster_w * clusters - seg_w * segs as f64) / bytes.max(1) as f64;
        let mut xs = Vec::with_capacity(points.len());
        let mut x = x0;
        xs.push(x);
        for j in 0..nseg {
            let size = points[j + 1] - points[j];
            let w = if void[j] {
                // A void run shares one break width among its segments.
                void_w / void_segs[cluster_of[j]] as f64
            } else {
                let cb = cluster_bytes[cluster_of[j]].max(1) as f64;
                seg_w + per_byte * size as f64 + cluster_w * size as f64 / cb
            };
            x += w;
            xs.push(x);
        }
        Scale { points, xs, void }
    }

    /// The x of `addr` (clamped to the axis; interpolated inside a segment).
    pub fn x(&self, addr: u64) -> f64 {
        match self.points.binary_search(&addr) {
            Ok(i) => self.xs[i],
            Err(0) => self.xs.first().copied().unwrap_or(0.0),
            Err(i) if i >= self.points.len() => self.xs.last().copied().unwrap_or(0.0),
            Err(i) => {
                let (a, b) = (self.points[i - 1], self.points[i]);
                let (xa, xb) = (self.xs[i - 1], self.xs[i]);
                xa + (xb - xa) * ((addr - a) as f64 / (b - a) as f64)
            }
        }
    }

    /// The right end of the axis.
    pub fn end_x(&self) -> f64 {
        self.xs.last().copied().unwrap_or(0.0)
    }

    /// Maximal stretches of empty (`void`) or non-empty address space, in order.
    pub fn stretches(&self, want_void: bool) -> impl Iterator<Item = Stretch> + '_ {
        let n = self.void.len();
        let mut j = 0;
        core::iter::from_fn(move || {
            while j < n && self.void[j] != want_void {
                j += 1;
            }
            if j >= n {
                return None;
            }
            let start = j;
            while j < n && self.void[j] == want_void {
                j += 1;
            }
            Some(Stretch {
                range: PhysRange::new_unchecked(self.points[start], self.points[j]),
                x0: self.xs[start],
                x1: self.xs[j],
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(a: u64, b: u64) -> PhysRange {
        PhysRange::new(a, b).unwrap()
    }

    #[test]
    fn empty_space_collapses_and_small_pieces_keep_a_width() {
        const G: u64 = 1 << 30;
        // 1 TiB of memory, a 4 KiB hole at 512 GiB, then 14 TiB of nothing, then 1 GiB.
        let t = 1u64 << 40;
        let points = vec![0, 512 * G, 512 * G + 4096, t, 15 * t, 15 * t + G];
        let content = vec![r(0, t), r(15 * t, 15 * t + G)];
        let s = Scale::new(points, content, 100.0, 1000.0);
        assert_eq!(s.x(0), 100.0);
        assert!((s.end_x() - 1100.0).abs() < 1e-6);
        let hole = s.x(512 * G + 4096) - s.x(512 * G);
        assert!(hole >= SEG_W, "{hole}");
        let void = s.x(15 * t) - s.x(t);
        assert!((void - VOID_W).abs() < 1e-9, "{void}");
        let island = s.x(15 * t + G) - s.x(15 * t);
        assert!(island >= CLUSTER_W, "{island}");
        // Monotonic, and interpolation stays inside its segment.
        let mid = s.x(256 * G);
        assert!(s.x(0) < mid && mid < s.x(512 * G));
        let voids: Vec<_> = s.stretches(true).collect();
        assert_eq!(voids.len(), 1);
        assert_eq!(voids[0].range, r(t, 15 * t));
        let clusters: Vec<_> = s.stretches(false).collect();
        assert_eq!(clusters.len(), 2);
        assert_eq!(clusters[0].range, r(0, t));
    }

    #[test]
    fn many_segments_shrink_below_a_pixel_but_fill_the_width() {
        let points: Vec<u64> = (0..100_000u64).map(|i| i << 12).collect();
        let s = Scale::new(points, vec![r(0, 100_000 << 12)], 0.0, 1000.0);
        assert!((s.end_x() - 1000.0).abs() < 1e-6);
        assert!(s.x(1 << 12) - s.x(0) < 0.1);
    }
}
