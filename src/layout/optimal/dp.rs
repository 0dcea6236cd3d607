//! The exact TDMR partition: a dynamic program over the windows that hold memory.
//!
//! A layout is a partition of the window list into consecutive groups; each group becomes the
//! TDMR from its first window to its last (bridging the empty windows between). The cost of a
//! layout is the tuple (span in GiB, remote-PAMT memory, TDMRs, reserved areas for holes),
//! compared lexicographically, and a group is allowed when its reserved areas fit the limit.
//! The remote-PAMT memory of a group is its memory less the memory of the node holding the most
//! of it (the node its PAMT goes to): the bytes whose PAMT lies on another node.
//!
//! Span, TDMRs and reserved areas split into a term of a group's first window and one of its
//! last (the areas because of how runs are counted, see [`super::model`]); the allowed first
//! windows of a group ending at `j` form a range `[first[j], j]` whose left end never moves left
//! as `j` grows (also when some node's PAMT needs a spare area: see [`Problem::needs_slack`]).
//! Only the best node's memory does not split. Three ways to take the minimum over first
//! windows, all exact:
//!
//! - Maps of at most [`EXACT_WINDOWS`] windows: every allowed group, its best node counted
//!   directly. O(windows² × TDMRs).
//! - Larger maps, TDMR limit not binding: one pass, each group's node taken among the *runs*
//!   (see [`super::runs`]) present in both its first and its last window, with one monotone
//!   deque per run. In a cheapest partition every group's best run has memory in its first and
//!   last window — otherwise splitting the group where that run's memory ends keeps the span,
//!   never adds areas to any TDMR, and strictly lowers the remote memory. O(windows + runs).
//! - Larger maps, TDMR limit binding: one layer per TDMR count, each by divide and conquer
//!   over the (monotone) best first window, with the best run of a group read from a range
//!   maximum. Every term is Monge over the allowed band when each node's memory is one address
//!   interval, so the best first window moves right with `j`. O(TDMRs × windows × log windows).
//!
//! With the TDMR limit binding, ties are broken by the sum of the TDMRs' squared spans, which
//! spreads the PAMTs over TDMRs of similar size (on 256 equal nodes and 64 TDMRs: four nodes
//! each, not 63 of one node and one of 193).

use alloc::vec;
use alloc::vec::Vec;

use bitvec::slice::BitSlice;

use super::model::Model;
use super::runs::Runs;
use crate::addr::SZ_4K;
use crate::memmap::NodeId;

/// Maps with at most this many windows are solved by direct enumeration of the groups.
pub(crate) const EXACT_WINDOWS: usize = 96;

/// The lexicographic cost: span (GiB), remote-PAMT memory (4 KiB pages), TDMRs, reserved areas.
pub(crate) type Cost = [i64; 4];

/// A cost packed into one integer whose order is the lexicographic order of the tuple. Every
/// component of a complete partition's cost stays inside its field: span and TDMRs below 2^22
/// (2^52 / 1 GiB windows), remote pages below 2^40, areas below 2^35. Partial sums the DP forms
/// (with negative start terms) stay below 2^127 in magnitude.
type Key = i128;

const WEIGHTS: [Key; 4] = [1 << 102, 1 << 60, 1 << 36, 1];
const NONE: Key = Key::MAX;

fn key(c: Cost) -> Key {
    c.iter().zip(WEIGHTS).map(|(&x, w)| Key::from(x) * w).sum()
}

/// Unpacks a key whose components are all non-negative (a finished partition's cost).
fn cost(k: Key) -> Cost {
    let mut out = [0i64; 4];
    let mut rest = k;
    for (slot, w) in out.iter_mut().zip(WEIGHTS) {
        *slot = (rest / w) as i64;
        rest %= w;
    }
    out
}

/// What the DP is asked.
pub(crate) struct Problem<'a> {
    pub model: &'a Model,
    /// Reserved areas allowed per TDMR.
    pub max_areas: i64,
    /// TDMRs allowed.
    pub max_tdmrs: usize,
    /// Per window: it holds memory of a node whose PAMT needs a spare reserved area in every
    /// TDMR holding that node's memory. Empty when no node does.
    pub needs_slack: &'a BitSlice,
}

/// A partition: groups of window indices `(first, last)`, and its cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Partition {
    pub groups: Vec<(usize, usize)>,
    pub cost: Cost,
}

/// Why no partition exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Infeasible {
    /// Window `window` alone needs `areas` reserved areas (more than allowed, or no spare one
    /// where a spare one is needed).
    Window { window: usize, areas: i64 },
    /// Every partition within the area limit needs at least `needed` TDMRs.
    TooFewTdmrs { needed: usize },
}

fn lower_bounds(model: &Model, max: i64) -> Vec<usize> {
    let n = model.windows.len();
    let mut lo = vec![0usize; n];
    let mut i = 0usize;
    for (j, slot) in lo.iter_mut().enumerate() {
        while i <= j && model.areas(i, j) > max {
            i += 1;
        }
        *slot = i; // i == j + 1: no allowed group ends at j
    }
    lo
}

/// Per window `j`: the smallest first window of an allowed group ending at `j` (`j + 1`: none).
/// A group needs `areas <= max`, and `areas <= max - 1` when it holds slack memory; the second
/// applies to first windows below `q` (the last slack window up to `j`, plus one), so the
/// allowed first windows are `[max(lo, min(q, lo_slack)), j]`: one range, both ends monotone.
fn first_windows(p: &Problem<'_>) -> (Vec<usize>, Vec<usize>) {
    let m = p.model;
    let lo = lower_bounds(m, p.max_areas);
    if p.needs_slack.is_empty() {
        return (lo.clone(), lo);
    }
    let lo_slack = lower_bounds(m, p.max_areas - 1);
    let mut q = 0usize;
    let first = (0..m.windows.len())
        .map(|j| {
            if p.needs_slack.get(j).is_some_and(|b| *b) {
                q = j + 1;
            }
            lo[j].max(q.min(lo_slack[j]))
        })
        .collect();
    (lo, first)
}

/// Each window's packed start term (`-index` span, `-pages before it`, its area term) and end
/// term (`last + 1` span, `pages up to it`, one TDMR, its area term): a group `(i, j)` whose
/// best node has `g` pages costs `start[i] + end[j] - g · W[1]`.
struct Terms {
    start: Vec<Key>,
    end: Vec<Key>,
    /// First and last GiB of each window (for the balance tie-break).
    index: Vec<(u64, u64)>,
}

impl Terms {
    fn new(m: &Model) -> Self {
        let mut pages = 0i64;
        let mut start = Vec::with_capacity(m.windows.len());
        let mut end = Vec::with_capacity(m.windows.len());
        for (k, w) in m.windows.iter().enumerate() {
            start.push(key([-(w.index as i64), -pages, 0, w.start_term]));
            pages += m.entries(k).map(|e| (e.1 / SZ_4K) as i64).sum::<i64>();
            end.push(key([w.last as i64 + 1, pages, 1, w.end_term]));
        }
        Terms {
            start,
            end,
            index: m.windows.iter().map(|w| (w.index, w.last)).collect(),
        }
    }

    #[inline]
    fn group(&self, i: usize, j: usize, best_pages: u64) -> Key {
        self.start[i] + self.end[j] - Key::from(best_pages) * WEIGHTS[1]
    }

    /// The balance tie-break of a group: its span squared (GiB²).
    #[inline]
    fn balance(&self, i: usize, j: usize) -> u64 {
        let span = self.index[j].1 + 1 - self.index[i].0;
        span * span
    }
}

/// A layer's value at a boundary: the packed cost, then the balance tie-break.
type Val = (Key, u64);
const NO_VAL: Val = (NONE, u64::MAX);

fn groups_from(parents: &[Vec<u32>], n: usize, layered: bool) -> Vec<(usize, usize)> {
    let mut groups = Vec::new();
    let mut j = n;
    let mut layer = parents.len();
    while j > 0 && layer > 0 {
        let i = parents[layer - 1][j] as usize;
        groups.push((i, j - 1));
        j = i;
        if layered {
            layer -= 1;
        }
    }
    groups.reverse();
    groups
}

/// How the minimum over first windows is taken (see the module documentation).
enum Method {
    Direct(Dense),
    Runs(Runs),
}

impl Method {
    fn for_model(m: &Model) -> Method {
        if m.windows.len() <= EXACT_WINDOWS {
            Method::Direct(Dense::new(m))
        } else {
            Method::Runs(Runs::new(m))
        }
    }

    fn unbounded(&self, first: &[usize], terms: &Terms, f: &mut [Key], parent: &mut [u32]) {
        match self {
            Method::Direct(d) => unbounded_direct(d, first, terms, f, parent),
            Method::Runs(r) => unbounded_runs(r, first, terms, f, parent),
        }
    }

    fn layer(
        &self,
        first: &[usize],
        terms: &Terms,
        prev: &[Val],
        cur: &mut [Val],
        parent: &mut [u32],
    ) {
        match self {
            Method::Direct(d) => layer_direct(d, first, terms, prev, cur, parent),
            Method::Runs(r) => layer_runs(r, first, terms, prev, cur, parent),
        }
    }
}

/// The cheapest partition, or why there is none.
pub(crate) fn solve(p: &Problem<'_>) -> Result<Partition, Infeasible> {
    solve_by(p, &Method::for_model(p.model))
}

fn solve_by(p: &Problem<'_>, method: &Method) -> Result<Partition, Infeasible> {
    let m = p.model;
    let n = m.windows.len();
    let (lo, first) = first_windows(p);
    for j in 0..n {
        if lo[j] > j || first[j] > j {
            return Err(Infeasible::Window {
                window: j,
                areas: m.areas(j, j),
            });
        }
    }
    let terms = Terms::new(m);

    // One pass with the TDMR count in the cost: optimal when its count fits the limit.
    let mut f = vec![NONE; n + 1];
    f[0] = 0;
    let mut parent = vec![u32::MAX; n + 1];
    method.unbounded(&first, &terms, &mut f, &mut parent);
    if f[n] == NONE {
        // Every window fits on its own, so this cannot happen; say what would be needed.
        return Err(Infeasible::TooFewTdmrs {
            needed: min_groups(&first),
        });
    }
    let unbounded = cost(f[n]);
    if unbounded[2] as usize <= p.max_tdmrs {
        return Ok(Partition {
            groups: groups_from(&[parent], n, false),
            cost: unbounded,
        });
    }

    // The TDMR limit binds: one layer per TDMR count.
    let layers = p.max_tdmrs.min(n);
    let mut prev: Vec<Val> = vec![NO_VAL; n + 1];
    prev[0] = (0, 0);
    let mut parents: Vec<Vec<u32>> = Vec::with_capacity(layers);
    let mut best: Option<(usize, Val)> = None;
    for k in 1..=layers {
        let mut cur = vec![NO_VAL; n + 1];
        let mut par = vec![u32::MAX; n + 1];
        method.layer(&first, &terms, &prev, &mut cur, &mut par);
        let c = cur[n];
        if c.0 != NONE && best.is_none_or(|(_, bc)| c < bc) {
            best = Some((k, c));
        }
        parents.push(par);
        prev = cur;
    }
    match best {
        Some((k, c)) => Ok(Partition {
            groups: groups_from(&parents[..k], n, true),
            cost: cost(c.0),
        }),
        None => Err(Infeasible::TooFewTdmrs {
            needed: min_groups(&first),
        }),
    }
}

/// Fewest groups within the area limit (greedy longest groups from the right is optimal because
/// allowed groups are intervals closed under shrinking).
fn min_groups(first: &[usize]) -> usize {
    let mut count = 0;
    let mut j = first.len();
    while j > 0 {
        count += 1;
        j = first[j - 1];
    }
    count
}

// ------------------------------------------------------------------ direct enumeration

/// Nodes renumbered densely, and each window's memory as (dense node, pages).
struct Dense {
    nodes: usize,
    entries: Vec<Vec<(usize, u64)>>,
}

impl Dense {
    fn new(m: &Model) -> Self {
        let mut ids: Vec<NodeId> = (0..m.windows.len())
            .flat_map(|w| m.entries(w).map(|e| e.0))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let entries = (0..m.windows.len())
            .map(|w| {
                m.entries(w)
                    .map(|(node, bytes)| (ids.partition_point(|&x| x < node), bytes / SZ_4K))
                    .collect()
            })
            .collect();
        Dense {
            nodes: ids.len(),
            entries,
        }
    }

    /// Walks the groups ending at `j` from the shortest to the longest, calling `visit(i,
    /// best)` with the pages of the node holding the most memory in windows `i..=j`.
    fn groups_ending_at(
        &self,
        first: usize,
        j: usize,
        counts: &mut [u64],
        mut visit: impl FnMut(usize, u64),
    ) {
        let mut best = 0u64;
        for i in (first..=j).rev() {
            for &(node, pages) in &self.entries[i] {
                counts[node] += pages;
                best = best.max(counts[node]);
            }
            visit(i, best);
        }
        for i in first..=j {
            for &(node, _) in &self.entries[i] {
                counts[node] = 0;
            }
        }
    }
}

fn unbounded_direct(d: &Dense, first: &[usize], terms: &Terms, f: &mut [Key], parent: &mut [u32]) {
    let mut counts = vec![0u64; d.nodes];
    for j in 0..first.len() {
        let mut best: Option<(usize, Key)> = None;
        d.groups_ending_at(first[j], j, &mut counts, |i, g| {
            if f[i] == NONE {
                return;
            }
            let c = f[i] + terms.group(i, j, g);
            // Walking i downwards: on a tie the smaller first window wins.
            if best.is_none_or(|(_, bc)| c <= bc) {
                best = Some((i, c));
            }
        });
        if let Some((i, c)) = best {
            f[j + 1] = c;
            parent[j + 1] = i as u32;
        }
    }
}

fn layer_direct(
    d: &Dense,
    first: &[usize],
    terms: &Terms,
    prev: &[Val],
    cur: &mut [Val],
    parent: &mut [u32],
) {
    let mut counts = vec![0u64; d.nodes];
    for j in 0..first.len() {
        let mut best: Option<(usize, Val)> = None;
        d.groups_ending_at(first[j], j, &mut counts, |i, g| {
            if prev[i].0 == NONE {
                return;
            }
            let c = (
                prev[i].0 + terms.group(i, j, g),
                prev[i].1 + terms.balance(i, j),
            );
            if best.is_none_or(|(_, bc)| c <= bc) {
                best = Some((i, c));
            }
        });
        if let Some((i, c)) = best {
            cur[j + 1] = c;
            parent[j + 1] = i as u32;
        }
    }
}

// ------------------------------------------------------------------ runs, large maps

/// A monotone deque of first-window candidates of one run: indices enter in increasing order and
/// leave from the front as the allowed range's left end advances.
#[derive(Default)]
struct Deque {
    head: usize,
    items: Vec<(u32, Key)>,
}

impl Deque {
    fn push(&mut self, i: usize, c: Key) {
        while self.items.len() > self.head && self.items[self.items.len() - 1].1 > c {
            self.items.pop();
        }
        self.items.push((i as u32, c));
    }

    fn front_from(&mut self, lo: usize) -> Option<(usize, Key)> {
        while self.head < self.items.len() && (self.items[self.head].0 as usize) < lo {
            self.head += 1;
        }
        self.items.get(self.head).map(|&(i, c)| (i as usize, c))
    }
}

fn unbounded_runs(r: &Runs, first: &[usize], terms: &Terms, f: &mut [Key], parent: &mut [u32]) {
    let n = first.len();
    let mut deques: Vec<Deque> = Vec::new();
    for j in 0..n {
        // Window j as a first window: for each run present, f[j] + start + the run's pages
        // before j (so that subtracting its pages up to the last window leaves its pages in
        // the group).
        if f[j] != NONE {
            for &run in r.in_window(j) {
                let run = run as usize;
                if deques.len() <= run {
                    deques.resize_with(run + 1, Deque::default);
                }
                let before = if j == 0 { 0 } else { r.upto(run, j - 1) };
                deques[run].push(j, f[j] + terms.start[j] + Key::from(before) * WEIGHTS[1]);
            }
        }
        let mut best: Option<(usize, Key)> = None;
        for &run in r.in_window(j) {
            let run = run as usize;
            let Some(d) = deques.get_mut(run) else {
                continue;
            };
            if let Some((i, c)) = d.front_from(first[j].max(r.first(run))) {
                let c = c + terms.end[j] - Key::from(r.upto(run, j)) * WEIGHTS[1];
                if best.is_none_or(|(bi, bc)| c < bc || (c == bc && i < bi)) {
                    best = Some((i, c));
                }
            }
        }
        if let Some((i, c)) = best {
            f[j + 1] = c;
            parent[j + 1] = i as u32;
        }
    }
}

fn layer_runs(
    r: &Runs,
    first: &[usize],
    terms: &Terms,
    prev: &[Val],
    cur: &mut [Val],
    parent: &mut [u32],
) {
    let n = first.len();
    let eval = |i: usize, j: usize| -> Val {
        if prev[i].0 == NONE {
            return NO_VAL;
        }
        (
            prev[i].0 + terms.group(i, j, r.best(i, j)),
            prev[i].1 + terms.balance(i, j),
        )
    };
    // The boundaries the previous layer reaches form one range (allowed groups are closed
    // under shrinking, so a prefix that k groups can cover, k + 1 can too while it has the
    // windows); the groups ending at j that can follow one of them, too.
    let Some(reach_lo) = prev.iter().position(|v| v.0 != NONE) else {
        return;
    };
    let reach_hi = prev.iter().rposition(|v| v.0 != NONE).unwrap_or(reach_lo);
    let j_hi = first.partition_point(|&f| f <= reach_hi).min(n);
    let band = |j: usize| (first[j].max(reach_lo), j.min(reach_hi));
    // Divide and conquer over j with the best first window's range (explicit stack).
    let mut stack: Vec<(usize, usize, usize, usize)> = vec![(reach_lo, j_hi, reach_lo, reach_hi)];
    while let Some((jl, jh, ol, oh)) = stack.pop() {
        if jl >= jh {
            continue;
        }
        let mid = (jl + jh) / 2;
        let scan = |lo: usize, hi: usize| {
            let mut best: Option<(usize, Val)> = None;
            for i in lo..=hi {
                let c = eval(i, mid);
                if c.0 != NONE && best.is_none_or(|(_, bc)| c < bc) {
                    best = Some((i, c));
                }
            }
            best
        };
        let (blo, bhi) = band(mid);
        let (lo, hi) = (blo.max(ol), bhi.min(oh));
        let found = if lo <= hi { scan(lo, hi) } else { None };
        // Off the monotone path (only where the Monge assumptions fail): the whole band.
        let found = found.or_else(|| scan(blo, bhi));
        let (left_hi, right_lo) = match found {
            Some((i, c)) => {
                cur[mid + 1] = c;
                parent[mid + 1] = i as u32;
                (i, i)
            }
            None => (oh, ol),
        };
        stack.push((mid + 1, jh, right_lo, oh));
        stack.push((jl, mid, ol, left_hi));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::SZ_1G;
    use crate::layout::HolePolicy;
    use crate::memmap::{Cmrs, MemoryMap, MemoryRegion};
    use proptest::prelude::*;

    const G: u64 = SZ_1G;

    fn problem(m: &Model, max_tdmrs: usize) -> Problem<'_> {
        Problem {
            model: m,
            max_areas: 16,
            max_tdmrs,
            needs_slack: BitSlice::empty(),
        }
    }

    fn both(m: &Model, max_tdmrs: usize) -> [Result<Partition, Infeasible>; 2] {
        let p = problem(m, max_tdmrs);
        [
            solve_by(&p, &Method::Direct(Dense::new(m))),
            solve_by(&p, &Method::Runs(Runs::new(m))),
        ]
    }

    /// Maps whose nodes are each one address interval, of MiB-granular pieces with gaps, node
    /// boundaries inside windows included.
    fn interval_map() -> impl Strategy<Value = MemoryMap> {
        prop::collection::vec((0u64..3, 0u64..3000, 64u64..9000), 2..60).prop_map(|spec| {
            let mut regions = Vec::new();
            let mut cursor = G;
            for (node, (gap_kind, gap, size_mib)) in spec.into_iter().enumerate() {
                let gap = match gap_kind {
                    0 => 0,
                    1 => gap % 3 * G,
                    _ => (gap % 700) << 20,
                };
                let base = cursor + gap;
                let size = size_mib << 20;
                regions.push(MemoryRegion::new(base, size, node as u32));
                cursor = base + size;
            }
            MemoryMap::new(regions).unwrap()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

        /// The run-based passes find the same cost as direct enumeration where every node is
        /// one address interval, with and without a binding TDMR limit.
        #[test]
        fn runs_agree_with_enumeration_on_interval_nodes(m in interval_map(), limit in 1usize..24) {
            let model = Model::new(&m, &Cmrs::covering(&m), HolePolicy::Cmr);
            let [direct, runs] = both(&model, limit);
            prop_assert_eq!(direct.map(|p| p.cost), runs.map(|p| p.cost));
        }
    }

    #[test]
    fn the_runs_test_sees_binding_limits_and_remote_memory() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        let (mut bound, mut remote) = (0, 0);
        for _ in 0..200 {
            let m = interval_map().new_tree(&mut runner).unwrap().current();
            let model = Model::new(&m, &Cmrs::covering(&m), HolePolicy::Cmr);
            let [direct, _] = both(&model, 8);
            let p = direct.unwrap();
            bound += usize::from(p.cost[2] == 8);
            remote += usize::from(p.cost[1] > 0);
        }
        assert!(
            bound > 100 && remote > 100,
            "bound {bound}, remote {remote}"
        );
    }

    #[test]
    fn a_giant_tdmr_loses_to_one_per_node() {
        // 8 nodes of 4 GiB each, contiguous: one TDMR per node, nothing remote.
        let regions: Vec<_> = (0..8u64)
            .map(|k| MemoryRegion::new(4 * G + 4 * k * G, 4 * G, k as u32))
            .collect();
        let m = MemoryMap::new(regions).unwrap();
        let model = Model::new(&m, &Cmrs::covering(&m), HolePolicy::Cmr);
        for p in both(&model, 64) {
            assert_eq!(p.unwrap().cost, [32, 0, 8, 0]);
        }
        // Four TDMRs: each pairs two nodes, half of each TDMR's memory remote; balanced.
        for p in both(&model, 4) {
            let p = p.unwrap();
            assert_eq!(p.cost, [32, (16 * G / SZ_4K) as i64, 4, 0]);
            assert_eq!(p.groups, [(0, 1), (2, 3), (4, 5), (6, 7)]);
        }
    }
}
