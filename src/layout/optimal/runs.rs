//! Node runs: for each NUMA node, the maximal stretches of consecutive windows (in the model's
//! window list) that hold its memory, with the bytes per window. They answer, in O(1) plus the
//! nodes of two windows, "how many bytes does the best node have in windows `i..=j`?", which is
//! what the remote-PAMT term of a TDMR needs (its memory less its PAMT node's).
//!
//! A node whose memory is one address interval (every real machine's nodes, save low memory
//! split around another node's) is one run, and then the answer is exact. A node with two runs
//! inside one group is counted by its larger run only: the estimate never claims more local
//! memory than there is.

use alloc::vec::Vec;

use super::model::Model;
use crate::addr::SZ_4K;
use crate::memmap::NodeId;

/// One run of one node.
#[derive(Clone, Copy, Debug)]
struct Run {
    /// First and last window (list indices).
    first: usize,
    last: usize,
    /// Offset of its prefix sums in [`Runs::prefix`].
    at: usize,
}

/// The runs of a model, with per-window membership and a range-maximum table of run totals.
#[derive(Clone, Debug)]
pub(crate) struct Runs {
    runs: Vec<Run>,
    /// Per run, pages in its windows `first..=x`, for `x` from `first` to `last`.
    prefix: Vec<u64>,
    /// Runs present in window `w`: `members[member_at[w]..member_at[w + 1]]`, by run id.
    members: Vec<u32>,
    member_at: Vec<usize>,
    /// `max[k][r]` = largest total of runs `r..r + 2^k`.
    max: Vec<Vec<u64>>,
}

impl Runs {
    /// O(windows + other-node entries).
    pub(crate) fn new(model: &Model) -> Runs {
        let n = model.windows.len();
        // Per node: its open run (id) and that run's pages so far.
        let mut open: Vec<(NodeId, usize)> = Vec::new();
        let mut runs: Vec<Run> = Vec::new();
        let mut per_run: Vec<Vec<u64>> = Vec::new();
        let mut members: Vec<u32> = Vec::new();
        let mut member_at = Vec::with_capacity(n + 1);
        for w in 0..n {
            member_at.push(members.len());
            for (node, bytes) in model.entries(w) {
                let pages = bytes / SZ_4K;
                let slot = open.iter().position(|o| o.0 == node);
                let id = match slot.map(|s| open[s].1) {
                    Some(id) if runs[id].last + 1 >= w => id,
                    _ => {
                        let id = runs.len();
                        runs.push(Run {
                            first: w,
                            last: w,
                            at: 0,
                        });
                        per_run.push(Vec::new());
                        match slot {
                            Some(s) => open[s].1 = id,
                            None => open.push((node, id)),
                        }
                        id
                    }
                };
                let run = &mut runs[id];
                let sums = &mut per_run[id];
                if sums.is_empty() || run.last < w {
                    let before = sums.last().copied().unwrap_or(0);
                    sums.push(before + pages);
                    run.last = w;
                    members.push(id as u32);
                } else if let Some(s) = sums.last_mut() {
                    // The node's second entry in this window.
                    *s += pages;
                }
            }
            // Keep only nodes whose run can still continue, so `open` stays small.
            open.retain(|o| runs[o.1].last == w);
        }
        member_at.push(members.len());
        let mut prefix = Vec::with_capacity(members.len());
        for (run, sums) in runs.iter_mut().zip(&per_run) {
            run.at = prefix.len();
            prefix.extend_from_slice(sums);
        }
        let totals: Vec<u64> = per_run
            .iter()
            .map(|s| s.last().copied().unwrap_or(0))
            .collect();
        let mut max = alloc::vec![totals];
        let mut width = 1;
        while 2 * width <= runs.len() {
            let prev = &max[max.len() - 1];
            let next: Vec<u64> = (0..=runs.len() - 2 * width)
                .map(|r| prev[r].max(prev[r + width]))
                .collect();
            max.push(next);
            width *= 2;
        }
        Runs {
            runs,
            prefix,
            members,
            member_at,
            max,
        }
    }

    /// Runs present in window `w`.
    pub(crate) fn in_window(&self, w: usize) -> &[u32] {
        &self.members[self.member_at[w]..self.member_at[w + 1]]
    }

    /// Pages of run `r` in windows `first..=w` (0 before the run starts, its total after).
    pub(crate) fn upto(&self, r: usize, w: usize) -> u64 {
        let run = &self.runs[r];
        if w < run.first {
            return 0;
        }
        self.prefix[run.at + w.min(run.last) - run.first]
    }

    /// Pages of run `r` in windows `i..=j`.
    pub(crate) fn between(&self, r: usize, i: usize, j: usize) -> u64 {
        let before = if i == 0 { 0 } else { self.upto(r, i - 1) };
        self.upto(r, j) - before
    }

    /// First window of run `r`.
    pub(crate) fn first(&self, r: usize) -> usize {
        self.runs[r].first
    }

    fn range_max(&self, lo: usize, hi_excl: usize) -> u64 {
        if lo >= hi_excl {
            return 0;
        }
        let k = (usize::BITS - 1 - (hi_excl - lo).leading_zeros()) as usize;
        self.max[k][lo].max(self.max[k][hi_excl - (1 << k)])
    }

    /// Pages of the run with the most memory in windows `i..=j` (`i <= j`): the runs present
    /// in window `i` or `j` clipped to the range, and the largest total of those between.
    pub(crate) fn best(&self, i: usize, j: usize) -> u64 {
        let mut best = 0;
        for &r in self.in_window(i).iter().chain(self.in_window(j)) {
            best = best.max(self.between(r as usize, i, j));
        }
        if j > i + 1 {
            // Runs are numbered in order of their first window: those starting strictly
            // between i and j form one id range; the ones still present at j are clipped
            // above and left out of it.
            let lo = self.runs.partition_point(|r| r.first <= i);
            let hi = self.runs.partition_point(|r| r.first < j);
            let mut still: smallvec::SmallVec<[usize; 8]> = self
                .in_window(j)
                .iter()
                .map(|&r| r as usize)
                .filter(|r| (lo..hi).contains(r))
                .collect();
            still.sort_unstable();
            let mut cut = lo;
            for r in still {
                best = best.max(self.range_max(cut, r));
                cut = r + 1;
            }
            best = best.max(self.range_max(cut, hi));
        }
        best
    }
}
