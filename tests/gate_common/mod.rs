//! Helpers shared by the hotplug-gate integration tests (included with `#[path]`, apart from
//! `tests/common`, which serves the CLI tests): fixtures, planning with a fallback,
//! and a point-wise reference for the frozen TDX memory written independently of the gate.
#![allow(dead_code)]

use tdmr::addr::{PageSize, PhysRange};
use tdmr::layout::{HolePolicy, Plan, Planner};
use tdmr::memmap::parse_kernel_log;
use tdmr::memmap::{Cmrs, MemoryMap};

/// Every fixture, by name.
pub const FIXTURES: [(&str, &str); 6] = [
    ("emr-4s-256g", include_str!("../fixtures/emr-4s-256g.log")),
    ("host-2t", include_str!("../fixtures/host-2t.log")),
    ("icx-2s-256g", include_str!("../fixtures/icx-2s-256g.log")),
    ("spr-1t", include_str!("../fixtures/spr-1t.log")),
    ("spr-tdx10", include_str!("../fixtures/spr-tdx10.log")),
    ("numa-256", include_str!("../fixtures/numa-256.log")),
];

/// Parses a fixture and plans it with the planner's defaults, or with CMR-based holes when the
/// defaults fail (the Linux strategy's memory-based holes run out of reserved areas on
/// `emr-4s-256g`).
pub fn planned(log: &str) -> (MemoryMap, Cmrs, Plan) {
    let (memory, cmrs) = parse_kernel_log(log).expect("fixture parses").into_parts();
    let plan = Planner::new()
        .plan(&memory, &cmrs)
        .or_else(|_| {
            Planner::new()
                .with_holes(HolePolicy::Cmr)
                .plan(&memory, &cmrs)
        })
        .expect("fixture plans");
    (memory, cmrs, plan)
}

pub fn r(start: u64, end: u64) -> PhysRange {
    PhysRange::new(start, end).unwrap()
}

/// Whether the byte `pa` is TDX memory after init, by definition: inside a TDMR and outside its
/// reserved areas, inside a memory region, inside no PAMT block.
pub fn frozen_byte(plan: &Plan, memory: &MemoryMap, pa: u64) -> bool {
    let in_tdmr_space = plan.tdmrs().iter().any(|t| {
        t.range().contains(pa)
            && !(0..t.reserved().len()).any(|i| t.reserved_range(i).unwrap().contains(pa))
    });
    let in_memory = memory.regions().iter().any(|m| m.range().contains(pa));
    let in_pamt = plan
        .tdmrs()
        .iter()
        .any(|t| PageSize::ALL.iter().any(|&l| t.pamt(l).contains(pa)));
    in_tdmr_space && in_memory && !in_pamt
}

/// Every address where membership in the frozen set may change.
pub fn boundaries(plan: &Plan, memory: &MemoryMap) -> Vec<u64> {
    let mut v = Vec::new();
    for t in plan.tdmrs() {
        v.extend([t.base(), t.end()]);
        for i in 0..t.reserved().len() {
            let a = t.reserved_range(i).unwrap();
            v.extend([a.start(), a.end()]);
        }
        for l in PageSize::ALL {
            v.extend([t.pamt(l).start(), t.pamt(l).end()]);
        }
    }
    for m in memory.regions() {
        v.extend([m.base, m.end()]);
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// Whether every byte of `range` is TDX memory after init: membership is constant between
/// consecutive boundaries, so one byte of each elementary piece decides.
pub fn frozen_range(plan: &Plan, memory: &MemoryMap, bounds: &[u64], range: PhysRange) -> bool {
    let mut cuts: Vec<u64> = bounds
        .iter()
        .copied()
        .filter(|&b| range.start() < b && b < range.end())
        .collect();
    cuts.insert(0, range.start());
    cuts.iter().all(|&p| frozen_byte(plan, memory, p))
}

/// Whether every byte of `range` is inside some CMR (abutting CMRs count as one).
pub fn convertible(cmrs: &Cmrs, range: PhysRange) -> bool {
    let mut cursor = range.start();
    for c in cmrs.listed() {
        let (s, e) = (c.base, c.base + c.size);
        if s <= cursor && cursor < e {
            cursor = e;
        }
        if cursor >= range.end() {
            return true;
        }
    }
    false
}

/// A simple deterministic generator (xorshift64*), so failures reproduce from the seed.
#[derive(Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Candidate ranges for additions: around every boundary (plan, memory, CMRs), 4 KiB to
/// 256 MiB long, so they straddle the edges where the rules change.
pub fn candidates(
    plan: &Plan,
    memory: &MemoryMap,
    cmrs: &Cmrs,
    rng: &mut Rng,
    n: usize,
) -> Vec<PhysRange> {
    let mut points = boundaries(plan, memory);
    for c in cmrs.listed() {
        points.extend([c.base, c.base + c.size]);
    }
    points.sort_unstable();
    points.dedup();
    let sizes = [0x1000u64, 0x20_0000, 0x800_0000, 0x1000_0000];
    (0..n)
        .map(|_| {
            let p = points[rng.below(points.len() as u64) as usize];
            let size = sizes[rng.below(sizes.len() as u64) as usize];
            let start = match rng.below(3) {
                0 => p,
                1 => p.saturating_sub(size),
                _ => p.saturating_sub(size / 2) & !0xfff,
            };
            r(start, start + size)
        })
        .collect()
}

/// The first static PAMT block (lowest start) `range` overlaps, with its TDMR and level: what
/// a removal after init must be refused for, by definition.
pub fn first_pamt_hit(
    plan: &Plan,
    range: PhysRange,
) -> Option<(PhysRange, usize, tdmr::addr::PageSize)> {
    plan.tdmrs()
        .iter()
        .enumerate()
        .flat_map(|(i, t)| PageSize::ALL.into_iter().map(move |l| (t.pamt(l), i, l)))
        .filter(|(b, _, _)| b.overlaps(range))
        .min_by_key(|(b, _, _)| (b.start(), b.end()))
}

/// A stand-in for the TDX module's TDH.PHYMEM.PAMT.ADD and REMOVE: keeps each 2 MiB range's
/// pair, refuses an ADD on a backed range or with a page that is a PAMT page already, and says
/// which pages it owns now. `on_add` sees every page an ADD takes (while the module takes it),
/// to check the page is not being removed.
pub struct PairModule {
    state: std::sync::Mutex<PairState>,
    on_add: Box<dyn Fn(u64) + Send + Sync>,
}

#[derive(Default)]
struct PairState {
    pairs: std::collections::HashMap<u64, (u64, u64)>,
    pages: std::collections::HashSet<u64>,
}

impl PairModule {
    pub fn new() -> Self {
        Self::with_add_hook(|_| {})
    }

    pub fn with_add_hook(on_add: impl Fn(u64) + Send + Sync + 'static) -> Self {
        PairModule {
            state: Default::default(),
            on_add: Box::new(on_add),
        }
    }

    /// Pages of added pairs inside `range`.
    pub fn owned_in(&self, range: PhysRange) -> Vec<u64> {
        let st = self.state.lock().unwrap();
        let mut v: Vec<u64> = st
            .pages
            .iter()
            .copied()
            .filter(|&p| range.overlaps(r(p, p + 0x1000)))
            .collect();
        v.sort_unstable();
        v
    }

    /// Ranges backed now.
    pub fn pairs(&self) -> usize {
        self.state.lock().unwrap().pairs.len()
    }
}

impl tdmr::seamcall::Seamcall for PairModule {
    fn seamcall(&self, l: tdmr::tdx::leaf::Leaf, regs: &tdmr::tdx::Regs) -> tdmr::tdx::Output {
        use tdmr::tdx::leaf;
        use tdmr::tdx::status::Status;
        let range = regs.rcx & !0xfff;
        let mut out = *regs;
        let mut st = self.state.lock().unwrap();
        let ok = if l == leaf::TDH_PHYMEM_PAMT_ADD {
            let fresh = !st.pairs.contains_key(&range)
                && regs.rdx != regs.r8
                && !st.pages.contains(&regs.rdx)
                && !st.pages.contains(&regs.r8);
            if fresh {
                for p in [regs.rdx, regs.r8] {
                    (self.on_add)(p);
                    st.pages.insert(p);
                }
                st.pairs.insert(range, (regs.rdx, regs.r8));
            }
            fresh
        } else if l == leaf::TDH_PHYMEM_PAMT_REMOVE {
            match st.pairs.remove(&range) {
                Some((a, b)) => {
                    st.pages.remove(&a);
                    st.pages.remove(&b);
                    (out.rdx, out.r8) = (a, b);
                    true
                }
                None => false,
            }
        } else {
            false
        };
        // Any error status: the manager only looks at success.
        let status = if ok {
            Status::SUCCESS
        } else {
            Status::new(0xC000_0000_0000_0000)
        };
        tdmr::tdx::Output::new(status, out)
    }
}

/// A pair source over a list of page pairs: hands them out, takes them back.
pub struct Pairs(pub Vec<tdmr::dpamt::PamtPagePair>);

impl Pairs {
    /// Pairs of consecutive pages from `at`, `n` of them.
    pub fn from(at: u64, n: u64) -> Self {
        Pairs(
            (0..n)
                .map(|i| {
                    let p = at + i * 0x2000;
                    tdmr::dpamt::PamtPagePair::new(p, p + 0x1000).unwrap()
                })
                .collect(),
        )
    }
}

// SAFETY: the module stand-in writes nothing; the addresses are labels.
unsafe impl tdmr::dpamt::PairSource for Pairs {
    fn take_pair(&mut self) -> Option<tdmr::dpamt::PamtPagePair> {
        self.0.pop()
    }
    fn return_pair(
        &mut self,
        p: tdmr::dpamt::ReturnedPair,
    ) -> Result<(), tdmr::dpamt::ReturnedPair> {
        self.0.push(p.pair());
        Ok(())
    }
}
