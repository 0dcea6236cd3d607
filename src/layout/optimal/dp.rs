//! The exact TDMR partition: a dynamic program over the windows that hold memory.
//!
//! A layout is a partition of the window list into consecutive groups; each group becomes the
//! TDMR from its first window to its last (bridging the empty windows between). The cost of a
//! layout is the tuple (span in GiB, TDMRs mixing nodes, TDMRs, reserved areas for holes),
//! compared lexicographically, and a group is allowed when its reserved areas fit the limit.
//!
//! Every part of a group's cost splits into a term of its first window and a term of its last
//! one, except two 0/1 facts that hold on a contiguous range of first windows: "mixes nodes"
//! and "holds memory that needs a spare reserved area for a PAMT". The allowed first windows of
//! a group ending at `j` also form a range, whose ends never move left as `j` grows. So each
//! `f[j]` is a minimum over at most four sliding ranges, kept with monotone deques: O(windows)
//! per pass. Without a binding TDMR limit one pass suffices (the TDMR count is part of the
//! cost); otherwise one pass per allowed TDMR count, O(windows × max TDMRs).

use alloc::vec;
use alloc::vec::Vec;

use bitvec::slice::BitSlice;

use super::model::{Model, WindowNodes};

/// The lexicographic cost: span (GiB), node-mixing TDMRs, TDMRs, reserved areas.
pub(crate) type Cost = [i64; 4];

/// A cost packed into one integer whose order is the lexicographic order of the tuple. Every
/// component (and every partial sum the DP forms, including the negative start terms) stays
/// far inside its field: span and counts below 2^23 (2^52 / 1 GiB windows), areas below 2^43.
type Key = i128;

const WEIGHTS: [Key; 4] = [1 << 92, 1 << 68, 1 << 44, 1];
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

/// Per-window bounds of the allowed first windows of a group ending there.
struct Bounds {
    /// Smallest first window with areas <= max.
    lo: Vec<usize>,
    /// Smallest first window with areas <= max - 1 (only with slack).
    lo_slack: Vec<usize>,
    /// Smallest first window such that the group holds a single node's memory.
    single_from: Vec<usize>,
    /// Number of windows up to and including `j` ... as "last window index holding slack
    /// memory, plus one" (0 when none).
    slack_upto: Vec<usize>,
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

fn bounds(p: &Problem<'_>) -> Bounds {
    let m = p.model;
    let n = m.windows.len();
    let lo = lower_bounds(m, p.max_areas);
    let lo_slack = if p.needs_slack.is_empty() {
        Vec::new()
    } else {
        lower_bounds(m, p.max_areas - 1)
    };
    let mut single_from = vec![0usize; n];
    let mut slack_upto = vec![0usize; n];
    for j in 0..n {
        single_from[j] = match m.windows[j].nodes {
            WindowNodes::Mixed => j + 1,
            WindowNodes::Single(node) => {
                if j > 0 && m.windows[j - 1].nodes == WindowNodes::Single(node) {
                    single_from[j - 1]
                } else {
                    j
                }
            }
        };
        slack_upto[j] = if p.needs_slack.get(j).is_some_and(|b| *b) {
            j + 1
        } else if j > 0 {
            slack_upto[j - 1]
        } else {
            0
        };
    }
    Bounds {
        lo,
        lo_slack,
        single_from,
        slack_upto,
    }
}

/// One sliding range of first windows: `[l, r]` inclusive, with the mixing flag it implies.
#[derive(Clone, Copy)]
struct Range {
    l: usize,
    r_excl: usize,
    mix: i64,
}

/// The ranges of first windows for a group ending at `j`: with and without node mixing, and
/// (only when some node needs a spare area) the same two for groups holding that node's memory.
fn ranges(b: &Bounds, j: usize) -> [Range; 4] {
    let p = b.single_from[j];
    let q = b.slack_upto[j]; // first windows < q hold slack memory
    let lo = b.lo[j].max(q);
    let lo_s = if b.lo_slack.is_empty() {
        j + 1
    } else {
        b.lo_slack[j]
    };
    [
        Range {
            l: lo,
            r_excl: p.min(j + 1),
            mix: 1,
        },
        Range {
            l: lo.max(p),
            r_excl: j + 1,
            mix: 0,
        },
        Range {
            l: lo_s,
            r_excl: p.min(q),
            mix: 1,
        },
        Range {
            l: lo_s.max(p),
            r_excl: q,
            mix: 0,
        },
    ]
}

/// Monotone deque of first-window candidates for one range type. Indices enter in increasing
/// order and leave from the front as the range's left end advances, so a vector with a head
/// index is enough.
struct Slider {
    next: usize,
    head: usize,
    items: Vec<(u32, Key)>,
}

impl Slider {
    fn new(capacity: usize) -> Self {
        Slider {
            next: 0,
            head: 0,
            items: Vec::with_capacity(capacity),
        }
    }

    /// Advances to range `r` and returns the best candidate in it.
    fn best(&mut self, r: Range, cand: &[Key]) -> Option<(usize, Key)> {
        while self.next < r.r_excl {
            let i = self.next;
            self.next += 1;
            let c = cand[i];
            if c == NONE {
                continue;
            }
            while self.items.len() > self.head && self.items[self.items.len() - 1].1 > c {
                self.items.pop();
            }
            self.items.push((i as u32, c));
        }
        while self.head < self.items.len() && (self.items[self.head].0 as usize) < r.l {
            self.head += 1;
        }
        self.items
            .get(self.head)
            .map(|&(i, c)| (i as usize, c))
            .filter(|&(i, _)| i < r.r_excl)
    }
}

/// Each window's packed start term (`-index` span, its area term) and end term (`index + 1`
/// span, one TDMR, its area term), computed once for every pass.
struct Terms {
    start: Vec<Key>,
    end: Vec<Key>,
}

impl Terms {
    fn new(m: &Model) -> Self {
        Terms {
            start: m
                .windows
                .iter()
                .map(|w| key([-(w.index as i64), 0, 0, w.start_term]))
                .collect(),
            end: m
                .windows
                .iter()
                .map(|w| key([w.last as i64 + 1, 0, 1, w.end_term]))
                .collect(),
        }
    }
}

/// One pass: `cur[j + 1]` = best over groups `(i, j)` of `prev[i]` + group cost. Without `prev`,
/// `cur` itself feeds the candidates (unbounded TDMR count).
fn pass(
    p: &Problem<'_>,
    b: &Bounds,
    terms: &Terms,
    prev: Option<&[Key]>,
    cur: &mut [Key],
    parent: &mut [u32],
) {
    let n = p.model.windows.len();
    let types = if p.needs_slack.is_empty() { 2 } else { 4 };
    let mut sliders: Vec<Slider> = (0..types).map(|_| Slider::new(n)).collect();
    // cand[i] = f(i) + start term of window i, filled as f(i) becomes known.
    let start = |i: usize, f: Key| if f == NONE { NONE } else { f + terms.start[i] };
    let mut cand: Vec<Key> = match prev {
        Some(prev) => (0..n).map(|i| start(i, prev[i])).collect(),
        None => alloc::vec![NONE; n],
    };
    for j in 0..n {
        if prev.is_none() {
            cand[j] = start(j, cur[j]);
        }
        let mut best: Option<(usize, Key)> = None;
        for (s, r) in sliders.iter_mut().zip(ranges(b, j)) {
            if let Some((i, c)) = s.best(r, &cand) {
                let c = c + Key::from(r.mix) * WEIGHTS[1];
                if best.is_none_or(|(bi, bc)| c < bc || (c == bc && i < bi)) {
                    best = Some((i, c));
                }
            }
        }
        match best {
            Some((i, c)) => {
                cur[j + 1] = c + terms.end[j];
                parent[j + 1] = i as u32;
            }
            None => {
                cur[j + 1] = NONE;
                parent[j + 1] = u32::MAX;
            }
        }
    }
}

fn groups_from(parents: &[&[u32]], n: usize) -> Vec<(usize, usize)> {
    let mut groups = Vec::new();
    let mut j = n;
    let mut layer = parents.len();
    while j > 0 && layer > 0 {
        let i = parents[layer - 1][j] as usize;
        groups.push((i, j - 1));
        j = i;
        if parents.len() > 1 {
            layer -= 1;
        }
    }
    groups.reverse();
    groups
}

/// The cheapest partition, or why there is none.
pub(crate) fn solve(p: &Problem<'_>) -> Result<Partition, Infeasible> {
    let m = p.model;
    let n = m.windows.len();
    let b = bounds(p);
    for j in 0..n {
        if b.lo[j] > j {
            return Err(Infeasible::Window {
                window: j,
                areas: m.areas(j, j),
            });
        }
    }

    // One pass with the TDMR count in the cost: optimal when its count fits the limit.
    let mut f = vec![NONE; n + 1];
    f[0] = 0;
    let mut parent = vec![u32::MAX; n + 1];
    let terms = Terms::new(m);
    pass(p, &b, &terms, None, &mut f, &mut parent);
    if f[n] == NONE {
        // Only the slack requirement can make this happen (every window fits on its own).
        let window = (0..n)
            .find(|&j| ranges(&b, j).iter().all(|r| r.l >= r.r_excl))
            .unwrap_or(0);
        return Err(Infeasible::Window {
            window,
            areas: m.areas(window, window),
        });
    }
    let unbounded = cost(f[n]);
    if unbounded[2] as usize <= p.max_tdmrs {
        return Ok(Partition {
            groups: groups_from(&[&parent], n),
            cost: unbounded,
        });
    }

    // The TDMR limit binds: one layer per TDMR count.
    let layers = p.max_tdmrs.min(n);
    let mut prev: Vec<Key> = vec![NONE; n + 1];
    prev[0] = 0;
    let mut parents: Vec<Vec<u32>> = Vec::with_capacity(layers);
    let mut best: Option<(usize, Key)> = None;
    for k in 1..=layers {
        let mut cur = vec![NONE; n + 1];
        let mut par = vec![u32::MAX; n + 1];
        pass(p, &b, &terms, Some(&prev), &mut cur, &mut par);
        let c = cur[n];
        if c != NONE && best.is_none_or(|(_, bc)| c < bc) {
            best = Some((k, c));
        }
        parents.push(par);
        prev = cur;
    }
    match best {
        Some((k, c)) => {
            let refs: Vec<&[u32]> = parents[..k].iter().map(Vec::as_slice).collect();
            Ok(Partition {
                groups: groups_from(&refs, n),
                cost: cost(c),
            })
        }
        None => Err(Infeasible::TooFewTdmrs {
            needed: min_groups(p, &b),
        }),
    }
}

/// Fewest groups within the area limit (greedy longest groups from the right is optimal because
/// allowed groups are intervals closed under shrinking).
fn min_groups(p: &Problem<'_>, b: &Bounds) -> usize {
    let n = p.model.windows.len();
    let mut count = 0;
    let mut j = n;
    while j > 0 {
        let first = b.lo[j - 1];
        count += 1;
        j = first;
    }
    count
}
