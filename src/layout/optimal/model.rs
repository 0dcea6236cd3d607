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

/// A maximal stretch without TDX memory, with the extent of its must-reserve bytes.
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

/// A 1 GiB window holding TDX memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    /// Window number: the window is `[index * 1 GiB, (index + 1) * 1 GiB)`.
    pub index: u64,
    pub nodes: WindowNodes,
    /// Reserved areas this window's TDMR needs if it starts here: `areas = end + start`.
    pub start_term: i64,
    /// Reserved areas term if a TDMR ends here.
    pub end_term: i64,
}

impl Window {
    pub fn range(&self) -> PhysRange {
        PhysRange::new_unchecked(self.index * SZ_1G, (self.index + 1) * SZ_1G)
    }
}

/// Windows and runs of one memory map under one hole policy.
#[derive(Clone, Debug)]
pub(crate) struct Model {
    pub windows: Vec<Window>,
    pub runs: Vec<Run>,
}

/// Non-memory runs of `memory`, with their must-reserve extents under `policy`.
fn runs(memory: &MemoryMap, cmrs: &Cmrs, policy: HolePolicy) -> Vec<Run> {
    let mut gaps: Vec<(u64, u64)> = Vec::with_capacity(memory.len() + 1);
    let mut cursor = 0u64;
    for r in memory.regions() {
        if r.base > cursor {
            gaps.push((cursor, r.base));
        }
        cursor = r.end();
    }
    if cursor < MAX_PA {
        gaps.push((cursor, MAX_PA));
    }
    let merged = cmrs.merged();
    let mut c = 0usize;
    gaps.into_iter()
        .map(|(start, end)| {
            let (must_first, must_last_end) = match policy {
                HolePolicy::Memory => (start, end),
                HolePolicy::Cmr => {
                    // Non-convertible bytes of [start, end): the complement of the CMRs.
                    while c < merged.len() && merged[c].end() <= start {
                        c += 1;
                    }
                    let mut first = u64::MAX;
                    let mut last_end = 0;
                    let mut pos = start;
                    let mut k = c;
                    while pos < end {
                        match merged.get(k) {
                            Some(cmr) if cmr.start() <= pos => {
                                pos = cmr.end();
                                k += 1;
                            }
                            next => {
                                let stop = next.map_or(end, |cmr| cmr.start().min(end));
                                if first == u64::MAX {
                                    first = pos;
                                }
                                last_end = stop;
                                pos = stop;
                            }
                        }
                    }
                    (first, last_end)
                }
            };
            Run {
                start,
                end,
                must_first,
                must_last_end,
            }
        })
        .collect()
}

impl Model {
    /// Builds the model. O(regions + CMRs + windows).
    pub fn new(memory: &MemoryMap, cmrs: &Cmrs, policy: HolePolicy) -> Model {
        let runs = runs(memory, cmrs, policy);

        let mut windows: Vec<Window> = Vec::new();
        for r in memory.regions() {
            let first = r.base / SZ_1G;
            let last = (r.end() - 1) / SZ_1G;
            for index in first..=last {
                match windows.last_mut() {
                    Some(w) if w.index == index => {
                        if w.nodes != WindowNodes::Single(r.node) {
                            w.nodes = WindowNodes::Mixed;
                        }
                    }
                    _ => windows.push(Window {
                        index,
                        nodes: WindowNodes::Single(r.node),
                        start_term: 0,
                        end_term: 0,
                    }),
                }
            }
        }

        // Prefix counts of runs that count when wholly inside a TDMR.
        let mut whole = Vec::with_capacity(runs.len() + 1);
        whole.push(0i64);
        for r in &runs {
            let last = whole.last().copied().unwrap_or(0);
            whole.push(last + i64::from(r.counts_whole()));
        }

        // Two pointers: L(A) = first run ending after A; U(B) = first run starting at or after B.
        let mut l = 0usize;
        let mut u = 0usize;
        for w in &mut windows {
            let a = w.index * SZ_1G;
            let b = a + SZ_1G;
            while l < runs.len() && runs[l].end <= a {
                l += 1;
            }
            while u < runs.len() && runs[u].start < b {
                u += 1;
            }
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
        Model { windows, runs }
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
            (self.windows[j].index + 1) * SZ_1G,
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
        let idx: Vec<_> = m.windows.iter().map(|w| (w.index, w.nodes)).collect();
        assert_eq!(
            idx,
            vec![
                (0, WindowNodes::Mixed),
                (1, WindowNodes::Single(1)),
                (3, WindowNodes::Single(1))
            ]
        );
    }
}
