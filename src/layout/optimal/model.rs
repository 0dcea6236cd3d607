//! The planning model: 1 GiB windows that hold TDX memory, and the non-memory runs between
//! memory segments, with what each run costs in reserved areas.
//!
//! A *run* is a maximal stretch of address space without TDX memory. Inside a TDMR, the part of
//! a run that the TDMR clips out needs one reserved area when it holds a *must-reserve* byte:
//! every byte under [`HolePolicy::Memory`], only non-convertible bytes under [`HolePolicy::Cmr`]
//! (convertible non-memory bytes may be reserved or not, so they never cost an area on their own,
//! and they let neighbouring must-reserve pieces merge). The reserved areas a TDMR `[A, B)` needs
//! for its holes are therefore the runs it intersects whose clipped part holds a must-reserve
//! byte.
//!
//! For TDMRs made of whole windows this count splits into a term of the first window and a term
//! of the last one (`areas(i..=j) = end_term(j) + start_term(i)`), which is what lets the
//! dynamic program run in linear time. Everything here costs O(regions + CMRs + windows).

use alloc::vec::Vec;

use crate::addr::{MAX_PA, PhysRange, SZ_1G};
use crate::layout::HolePolicy;
use crate::memmap::{Cmrs, MemoryMap, NodeId};

/// A maximal stretch without TDX memory that holds must-reserve bytes, with their extent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    pub start: u64,
    pub end: u64,
    /// Start of the first must-reserve byte, or `u64::MAX` when there is none.
    pub must_first: u64,
    /// End of the last must-reserve byte, or 0 when there is none.
    pub must_last_end: u64,
}

impl Run {
    pub fn counts_whole(&self) -> bool {
        self.must_first < self.must_last_end
    }
}

/// NUMA content of a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WindowNodes {
    Single(NodeId),
    Mixed,
}

/// A 1 GiB window holding TDX memory, or a stretch of consecutive ones no run touches, of one
/// node (the DP never needs to split inside such a stretch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    /// First window number: the window starts at `index * 1 GiB`.
    pub index: u64,
    /// Last window number (equal to `index` for a single window).
    pub last: u64,
    /// Node of the first region in the window, and its bytes here; bytes of other nodes are in
    /// [`Model::other_nodes`].
    pub node: NodeId,
    pub bytes: u64,
    pub nodes: WindowNodes,
    /// Reserved areas this window's TDMR needs if it starts here: `areas = end + start`.
    pub start_term: i64,
    /// Reserved areas term if a TDMR ends here.
    pub end_term: i64,
}

impl Window {
    pub fn range(&self) -> PhysRange {
        PhysRange::new_unchecked(self.index * SZ_1G, (self.last + 1) * SZ_1G)
    }
}

/// Windows and runs of one memory map under one hole policy.
#[derive(Clone, Debug)]
pub(crate) struct Model {
    pub windows: Vec<Window>,
    /// Runs holding a must-reserve byte, sorted.
    pub runs: Vec<Run>,
    /// Bytes in a window of nodes other than its first: (window list index, node, bytes),
    /// sorted by window.
    pub other_nodes: Vec<(usize, NodeId, u64)>,
    /// Where each window's entries start in `other_nodes` (one more entry: the end).
    other_at: Vec<usize>,
}

/// The non-memory runs of `memory` that hold a must-reserve byte, with its extent. Runs without
/// one never cost a reserved area, so they are left out.
///
/// Under [`HolePolicy::Memory`] every run qualifies: O(regions). Under [`HolePolicy::Cmr`] only
/// runs holding non-convertible space do; memory lies in the CMRs, so each non-convertible stretch
/// sits inside one run, found by binary search: O(CMRs × log regions).
fn runs(memory: &MemoryMap, cmrs: &Cmrs, policy: HolePolicy) -> Vec<Run> {
    let regions = memory.regions();
    match policy {
        HolePolicy::Memory => {
            let mut out = Vec::with_capacity(regions.len() + 1);
            let mut cursor = 0u64;
            for r in regions {
                if r.base > cursor {
                    out.push(Run {
                        start: cursor,
                        end: r.base,
                        must_first: cursor,
                        must_last_end: r.base,
                    });
                }
                cursor = r.end();
            }
            if cursor < MAX_PA {
                out.push(Run {
                    start: cursor,
                    end: MAX_PA,
                    must_first: cursor,
                    must_last_end: MAX_PA,
                });
            }
            out
        }
        HolePolicy::Cmr => {
            let mut out: Vec<Run> = Vec::new();
            let mut cursor = 0u64;
            let merged = cmrs.merged();
            let non_convertible = merged
                .iter()
                .map(|c| (c.start(), c.end()))
                .chain(core::iter::once((MAX_PA, MAX_PA)))
                .filter_map(|(start, end)| {
                    let hole = (cursor < start).then(|| PhysRange::new_unchecked(cursor, start));
                    cursor = end;
                    hole
                });
            for hole in non_convertible {
                // The run around `hole`: from the end of the last region before it to the
                // base of the first region after it.
                let k = memory.first_ending_above(hole.start());
                let start = if k == 0 { 0 } else { regions[k - 1].end() };
                let end = regions.get(k).map_or(MAX_PA, |r| r.base);
                match out.last_mut() {
                    Some(last) if last.start == start => last.must_last_end = hole.end(),
                    _ => out.push(Run {
                        start,
                        end,
                        must_first: hole.start(),
                        must_last_end: hole.end(),
                    }),
                }
            }
            out
        }
    }
}

impl Model {
    /// Builds the model from the map's window summary: O(windows + CMRs × log regions),
    /// independent of the size of the address space.
    pub fn new(memory: &MemoryMap, cmrs: &Cmrs, policy: HolePolicy) -> Model {
        let runs = runs(memory, cmrs, policy);

        // The map summarised its windows when it was built: no pass over the regions here.
        let summary = memory.windows();
        let mut windows: Vec<Window> = summary
            .entries
            .iter()
            .map(|e| Window {
                index: e.index,
                last: e.last,
                node: e.node,
                bytes: e.bytes,
                nodes: if e.mixed {
                    WindowNodes::Mixed
                } else {
                    WindowNodes::Single(e.node)
                },
                start_term: 0,
                end_term: 0,
            })
            .collect();
        let mut other_nodes = summary.other_nodes.clone();

        // Prefix counts of runs that count when wholly inside a TDMR.
        let mut whole = Vec::with_capacity(runs.len() + 1);
        whole.push(0i64);
        for r in &runs {
            let last = whole.last().copied().unwrap_or(0);
            whole.push(last + i64::from(r.counts_whole()));
        }

        // Two pointers: L(A) = first run ending after A; U(B) = first run starting at or after B.
        // A window is plain when no run touches it.
        let mut plain = Vec::with_capacity(windows.len());
        let mut l = 0usize;
        let mut u = 0usize;
        for w in &mut windows {
            let a = w.index * SZ_1G;
            let b = (w.last + 1) * SZ_1G;
            while l < runs.len() && runs[l].end <= a {
                l += 1;
            }
            while u < runs.len() && runs[u].start < b {
                u += 1;
            }
            plain.push(l == u);
            let mut start = -whole[l];
            if let Some(run) = runs.get(l)
                && run.start < a
            {
                start += i64::from(run.must_last_end > a) - i64::from(run.counts_whole());
            }
            let mut end = whole[u];
            if u > 0 {
                let run = &runs[u - 1];
                if run.end > b {
                    end += i64::from(run.must_first < b) - i64::from(run.counts_whole());
                }
            }
            w.start_term = start;
            w.end_term = end;
        }

        // Adjacent plain windows of one node merge: no run lies at the boundary between them,
        // so splitting there never lowers any group's reserved areas, and never helps the span
        // or the TDMR count. Nor the remote-PAMT memory: moving the boundary to either end of
        // the stretch (towards the side whose PAMT is not on this node, or either way when
        // neither is) never adds remote memory. Some optimal partition keeps them together.
        let mut merged: Vec<Window> = Vec::with_capacity(windows.len());
        let mut last_plain = false;
        let mut others = other_nodes.iter_mut().peekable();
        for (k, (w, is_plain)) in windows.into_iter().zip(plain).enumerate() {
            match merged.last_mut() {
                Some(m)
                    if last_plain
                        && is_plain
                        && m.last + 1 == w.index
                        && m.nodes == w.nodes
                        && w.nodes != WindowNodes::Mixed =>
                {
                    m.last = w.last;
                    m.bytes += w.bytes;
                    m.end_term = w.end_term;
                }
                _ => merged.push(w),
            }
            // Renumber the other-node entries of this window to its merged index.
            while let Some(o) = others.next_if(|o| o.0 == k) {
                o.0 = merged.len() - 1;
            }
            last_plain = is_plain;
        }
        let mut other_at = Vec::with_capacity(merged.len() + 1);
        let mut k = 0;
        for w in 0..merged.len() {
            while k < other_nodes.len() && other_nodes[k].0 < w {
                k += 1;
            }
            other_at.push(k);
        }
        other_at.push(other_nodes.len());
        Model {
            windows: merged,
            runs,
            other_nodes,
            other_at,
        }
    }

    /// The memory of window `w` by node: `(node, bytes)`, its first node first (a node may
    /// appear twice when other nodes' memory lies between its pieces).
    pub fn entries(&self, w: usize) -> impl Iterator<Item = (NodeId, u64)> + '_ {
        let first = &self.windows[w];
        core::iter::once((first.node, first.bytes)).chain(
            self.other_nodes[self.other_at[w]..self.other_at[w + 1]]
                .iter()
                .map(|o| (o.1, o.2)),
        )
    }

    /// Bytes per node in windows `i..=j`, most first (ties: the lower id first). O(windows
    /// and entries in the group).
    pub fn node_bytes(&self, i: usize, j: usize) -> smallvec::SmallVec<[(NodeId, u64); 4]> {
        let mut per_node: smallvec::SmallVec<[(NodeId, u64); 4]> = smallvec::SmallVec::new();
        for w in i..=j {
            for (node, bytes) in self.entries(w) {
                match per_node.iter_mut().find(|e| e.0 == node) {
                    Some(e) => e.1 += bytes,
                    None => per_node.push((node, bytes)),
                }
            }
        }
        crate::layout::nodes::sort_by_bytes(&mut per_node);
        per_node
    }

    /// Reserved areas for holes of the TDMR made of windows `i..=j` (list indices).
    #[inline]
    pub fn areas(&self, i: usize, j: usize) -> i64 {
        self.windows[j].end_term + self.windows[i].start_term
    }

    /// The TDMR covering windows `i..=j`.
    pub fn tdmr(&self, i: usize, j: usize) -> PhysRange {
        PhysRange::new_unchecked(
            self.windows[i].index * SZ_1G,
            (self.windows[j].last + 1) * SZ_1G,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memmap::{Cmr, MemoryRegion};
    use alloc::vec;

    const G: u64 = SZ_1G;
    const M: u64 = 1 << 20;

    fn map(v: &[(u64, u64, u32)]) -> MemoryMap {
        MemoryMap::new(
            v.iter()
                .map(|&(b, s, n)| MemoryRegion::new(b, s, n))
                .collect(),
        )
        .unwrap()
    }

    /// Counts areas the slow way: every run clipped to the TDMR with a must-reserve byte.
    fn slow_areas(m: &Model, t: PhysRange) -> i64 {
        m.runs
            .iter()
            .filter(|r| {
                let s = r.start.max(t.start());
                let e = r.end.min(t.end());
                s < e && r.must_first.max(s) < r.must_last_end.min(e)
            })
            .count() as i64
    }

    #[test]
    fn split_terms_match_direct_counting() {
        let mem = map(&[
            (M, 100 * M, 0),
            (200 * M, 100 * M, 0),
            (G - 10 * M, 20 * M, 1),
            (3 * G, G / 2, 1),
            (4 * G + 5 * M, 2 * G, 2),
        ]);
        let cmrs = Cmrs::new(vec![
            Cmr::new(M, 300 * M),
            Cmr::new(G - 20 * M, 30 * M),
            Cmr::new(3 * G, G / 2 + 8 * M),
            Cmr::new(4 * G, 3 * G),
        ])
        .unwrap();
        for policy in [HolePolicy::Memory, HolePolicy::Cmr] {
            let m = Model::new(&mem, &cmrs, policy);
            for i in 0..m.windows.len() {
                for j in i..m.windows.len() {
                    assert_eq!(
                        m.areas(i, j),
                        slow_areas(&m, m.tdmr(i, j)),
                        "{policy:?} {i}..={j}"
                    );
                }
            }
        }
    }

    #[test]
    fn windows_record_mixed_nodes() {
        let mem = map(&[(0, G / 2, 0), (G / 2, G, 1), (3 * G, G, 1)]);
        let m = Model::new(&mem, &Cmrs::covering(&mem), HolePolicy::Cmr);
        let idx: Vec<_> = m
            .windows
            .iter()
            .map(|w| (w.index, w.last, w.nodes))
            .collect();
        assert_eq!(
            idx,
            vec![
                (0, 0, WindowNodes::Mixed),
                (1, 1, WindowNodes::Single(1)),
                (3, 3, WindowNodes::Single(1))
            ]
        );
    }
}
