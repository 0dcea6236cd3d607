//! Dynamic PAMT end to end against the mock TDX module: every fixture comes up with Dynamic
//! PAMT, and 4 KiB "mappings" created and destroyed through `pamt::dynamic` (with the mock's
//! TD-leaf stand-in taking each page into use) leave every page pair returned and the module
//! holding none.

use tdmr::dpamt::{DynamicPamt, Get, PairCache, PairSource, PamtPagePair, Put, ReturnedPair};
use tdmr::init::{Bringup, Initialized};
use tdmr::layout::{HolePolicy, Planner, Strategy};
use tdmr::memmap::parse_kernel_log;
use tdmr::mock::{MockModule, Platform, SysState};
use tdmr::sysinfo::TdxLimits;
use tdmr::tdx::leaf;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
const TWO_MIB: u64 = 2 * MIB;

const FIXTURES: [&str; 5] = [
    "spr-1t.log",
    "host-2t.log",
    "spr-tdx10.log",
    "icx-2s-256g.log",
    "emr-4s-256g.log",
];

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn dpamt_limits() -> TdxLimits {
    TdxLimits::default().with_dynamic_pamt(1).unwrap()
}

/// Brings a fresh Dynamic PAMT mock up on a fixture.
fn bring_up(name: &str, strategy: Strategy) -> (MockModule, Initialized) {
    let input = parse_kernel_log(&fixture(name)).unwrap();
    let platform = Platform::new(input.cmrs().listed())
        .unwrap()
        .with_topology(4, 2)
        .unwrap()
        .with_limits(dpamt_limits());
    let keyids = platform.private_keyids();
    let module = MockModule::new(platform);
    let mut planner = Planner::new().with_strategy(strategy);
    if strategy == Strategy::Linux && name.starts_with("emr") {
        // Linux mainline's memory-based holes exhaust the reserved areas there (with or
        // without Dynamic PAMT); distribution kernels use CMR-based holes.
        planner = planner.with_holes(HolePolicy::Cmr);
    }
    let b = Bringup::new(&module, &module, &module, keyids)
        .with_planner(planner)
        .with_dynamic_pamt(true);
    let done = b
        .run(input.memory())
        .unwrap_or_else(|e| panic!("{name} ({strategy:?}): {e}"));
    (module, done)
}

/// Bounded pairs from a fixed list: stands in for the kernel's page allocator.
struct Pool(Vec<PamtPagePair>);

// SAFETY: the pages are the mock's simulated memory, free TDX memory of the plan that nothing
// else in the test uses.
unsafe impl PairSource for Pool {
    fn take_pair(&mut self) -> Option<PamtPagePair> {
        self.0.pop()
    }
    fn return_pair(&mut self, p: ReturnedPair) -> Result<(), ReturnedPair> {
        self.0.push(p.pair());
        Ok(())
    }
}

/// `n` pairs from the 4 KiB pages at `base`.
fn pairs_at(base: u64, n: u64) -> Vec<PamtPagePair> {
    (0..n)
        .map(|i| PamtPagePair::new(base + 2 * i * 4096, base + (2 * i + 1) * 4096).unwrap())
        .collect()
}

/// A 2 MiB-aligned address about `skip` bytes into the plan's available (non-reserved TDMR)
/// memory, with `bytes` of it free after it.
fn free_window(done: &Initialized, bytes: u64, skip: u64) -> u64 {
    let mut left = skip;
    for r in done.plan.tdmrs().iter().flat_map(|t| t.available()) {
        let start = r.start().next_multiple_of(TWO_MIB);
        if start >= r.end() {
            continue;
        }
        if left < r.end() - start {
            let at = (start + left).next_multiple_of(TWO_MIB);
            if at + bytes <= r.end() {
                return at;
            }
            left = 0;
            continue;
        }
        left -= r.end() - start;
    }
    panic!("no free window of {bytes:#x} bytes");
}

#[test]
fn every_fixture_comes_up_with_dynamic_pamt_and_serves_pages() {
    for name in FIXTURES {
        for strategy in [Strategy::Linux, Strategy::Optimal] {
            let (module, done) = bring_up(name, strategy);
            assert!(done.dynamic_pamt && module.dynamic_pamt(), "{name}");
            assert_eq!(module.state(), SysState::SysReady);
            assert!(module.tdmrs().iter().all(|t| t.is_done()), "{name}");
            // 16 MiB of TDMR per TDH.SYS.TDMR.INIT with Dynamic PAMT.
            assert_eq!(
                done.seamcalls.get(leaf::TDH_SYS_TDMR_INIT),
                done.plan.covered_bytes() / (16 * MIB),
                "{name}"
            );
            // The 4K level is the bitmap: 1 bit per 4 KiB page = 32 KiB per GiB of TDMR.
            for t in done.plan.tdmrs() {
                let bitmap = t.pamt(tdmr::addr::PageSize::Size4K).size();
                assert_eq!(bitmap, (t.size() / GIB * 32 * 1024).next_multiple_of(4096));
            }
            if name == "spr-1t.log" {
                // Linux's Dynamic PAMT series on this machine: 40980 KB instead of 4202516 KB.
                assert_eq!(done.pamt_bytes() / 1024, 40_980);
            }

            // A few pages in a few ranges: first get adds, last put removes.
            let dpamt = DynamicPamt::for_plan(&module, &done.plan).unwrap();
            let window = free_window(&done, 8 * MIB, 0);
            let mut pool = Pool(pairs_at(free_window(&done, MIB, 64 * MIB), 8));
            let pages: Vec<u64> = (0..4)
                .flat_map(|r| [0, 0x1000, 0x1f_f000].map(|o| window + r * TWO_MIB + o))
                .collect();
            for &pa in &pages {
                dpamt.get(pa >> 12, &mut pool).unwrap();
                module.mark_in_use(pa).unwrap();
            }
            assert_eq!(module.pamt_pair_count(), 4, "{name}");
            for &pa in &pages {
                assert!(module.mark_free(pa));
                dpamt.put(pa >> 12, &mut pool).unwrap();
            }
            assert_eq!(module.pamt_pair_count(), 0, "{name}");
            assert_eq!(pool.0.len(), 8, "{name}: every pair back");
            let c = module.log();
            assert_eq!(c.counts().get(leaf::TDH_PHYMEM_PAMT_ADD), 4);
            assert_eq!(c.counts().get(leaf::TDH_PHYMEM_PAMT_REMOVE), 4);
        }
    }
}

/// A page cannot be used before its range is backed, nor can the range be emptied while a
/// page is in use: the manager's get/put order is what makes the module accept the calls.
#[test]
fn the_module_enforces_what_the_manager_orders() {
    let (module, done) = bring_up("icx-2s-256g.log", Strategy::Optimal);
    let dpamt = DynamicPamt::for_plan(&module, &done.plan).unwrap();
    let pa = free_window(&done, TWO_MIB, 0) + 0x4000;
    let mut pool = Pool(pairs_at(free_window(&done, MIB, 64 * MIB), 1));
    assert_eq!(
        module.mark_in_use(pa).unwrap_err().raw(),
        tdmr::tdx::status::TDX_MISSING_PAMT_PAGE_PAIR
    );
    assert_eq!(dpamt.get(pa >> 12, &mut pool).unwrap(), Get::Added);
    module.mark_in_use(pa).unwrap();
    // A put while the page is still in use: the module refuses, the manager rolls back.
    let e = dpamt.put(pa >> 12, &mut pool).unwrap_err();
    assert!(e.to_string().contains("TDX_PAMT_PAGE_NOT_EMPTY"), "{e}");
    assert!(module.mark_free(pa));
    assert_eq!(
        dpamt.put(pa >> 12, &mut pool).unwrap(),
        Put::Removed { unreturned: None }
    );
    assert_eq!(pool.0.len(), 1);
}

/// Threads create and destroy 4 KiB mappings on shared 2 MiB ranges through one manager and
/// one mock module (needs `std`: the mock is shared between threads).
#[cfg(feature = "std")]
#[test]
fn many_mappings_come_and_go_and_every_pair_is_returned() {
    use std::sync::Mutex;

    const THREADS: u64 = 4;
    const RANGES: u64 = 32;
    const OPS: usize = 20_000;
    const PAIRS: u64 = RANGES + 4 * THREADS;

    /// The shared allocator, behind a mutex like the kernel's page allocator lock.
    struct Shared<'a>(&'a Mutex<Vec<PamtPagePair>>);
    // SAFETY: as for `Pool`: simulated memory nothing else uses.
    unsafe impl PairSource for Shared<'_> {
        fn take_pair(&mut self) -> Option<PamtPagePair> {
            self.0.lock().unwrap().pop()
        }
        fn return_pair(&mut self, p: ReturnedPair) -> Result<(), ReturnedPair> {
            self.0.lock().unwrap().push(p.pair());
            Ok(())
        }
    }

    let (module, done) = bring_up("spr-1t.log", Strategy::Optimal);
    let dpamt = DynamicPamt::for_plan(&module, &done.plan).unwrap();
    let window = free_window(&done, RANGES * TWO_MIB, 4 * GIB);
    let pool_base = free_window(&done, 2 * PAIRS * 4096, 16 * GIB);
    let allocator = Mutex::new(pairs_at(pool_base, PAIRS));
    let calls_before = module.log().counts().clone();

    let (added, removed): (u64, u64) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (dpamt, module, allocator) = (&dpamt, &module, &allocator);
                s.spawn(move || {
                    // Each thread maps its own pages (page index = t mod THREADS) of the
                    // shared ranges, so ranges are contended but pages are not.
                    let mut cache = PairCache::new(4);
                    let mut mapped: Vec<u64> = Vec::new();
                    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (t + 1);
                    let (mut added, mut removed) = (0u64, 0u64);
                    let mut next = || {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        rng
                    };
                    for op in 0..OPS + 64 {
                        let create = op < OPS && (mapped.len() < 8 || next() % 2 == 0);
                        if create && mapped.len() < 64 {
                            let page = next() % (RANGES * 512 / THREADS) * THREADS + t;
                            let pa = window + page * 4096;
                            if mapped.contains(&pa) {
                                continue;
                            }
                            // Top up where allocating is allowed, then get from the cache.
                            cache.top_up(&mut Shared(allocator));
                            if dpamt.get(pa >> 12, &mut cache).unwrap() == Get::Added {
                                added += 1;
                            }
                            module.mark_in_use(pa).unwrap();
                            mapped.push(pa);
                        } else if let Some(pa) = mapped.pop() {
                            assert!(module.mark_free(pa));
                            match dpamt.put(pa >> 12, &mut cache).unwrap() {
                                Put::StillBacked => {}
                                Put::Removed { unreturned } => {
                                    removed += 1;
                                    if let Some(p) = unreturned {
                                        allocator.lock().unwrap().push(p.pair());
                                    }
                                }
                            }
                        }
                    }
                    assert!(mapped.is_empty());
                    cache.drain_into(&mut Shared(allocator));
                    assert!(cache.is_empty());
                    (added, removed)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |(a, r), (x, y)| (a + x, r + y))
    });

    // Every pair is back with the allocator; the module and the manager hold nothing.
    let mut back = allocator.into_inner().unwrap();
    back.sort();
    let mut expected = pairs_at(pool_base, PAIRS);
    expected.sort();
    assert_eq!(back, expected);
    assert_eq!(module.pamt_pair_count(), 0);
    assert_eq!(module.pages_in_use(), 0);
    assert_eq!(dpamt.busy_ranges(), 0);

    // The module saw exactly the ADDs and REMOVEs the manager reported, one per transition.
    let counts = module.log().counts().clone();
    let adds = counts.get(leaf::TDH_PHYMEM_PAMT_ADD) - calls_before.get(leaf::TDH_PHYMEM_PAMT_ADD);
    let removes =
        counts.get(leaf::TDH_PHYMEM_PAMT_REMOVE) - calls_before.get(leaf::TDH_PHYMEM_PAMT_REMOVE);
    assert_eq!((adds, removes), (added, removed));
    assert_eq!(adds, removes);
    // Ranges went through many 0 -> 1 -> 0 cycles.
    assert!(adds > RANGES, "only {adds} ADDs");
}
