//! loom models of `pamt::dynamic::DynamicPamt`: every interleaving (up to loom's preemption
//! bound) of gets and puts racing on one 2 MiB range, checked against a model TDX module that
//! asserts the module's side of the contract:
//!
//! - PAMT.ADD only on a range without a pair (never twice per 0 → 1);
//! - PAMT.REMOVE only on a range with a pair, and only while no caller holds the range;
//! - after `get` returns, the range has its pair until the matching `put`;
//! - at the end, ADDs = REMOVEs = the `Get::Added` outcomes, every pair is back in a cache.
//!
//! The model keeps each range's PAMT entry in a plain (loom) `UnsafeCell`, not an atomic: loom
//! then also proves that the manager's Acquire/Release ordering alone makes every PAMT.ADD
//! happen before the uses and the PAMT.REMOVE of the range, with no help from the module's
//! own locking.
//!
//! Models have two threads besides main (with three, the waiters' spin loops exceed loom's
//! branch limit); each pair of racing operations is covered.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test loom_dpamt`
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::thread;

use tdmr::addr::PhysRange;
use tdmr::dpamt::{DynamicPamt, Get, PairCache, PairSource, PamtPagePair, Put, ReturnedPair};
use tdmr::seamcall::Seamcall;
use tdmr::sysinfo::TdxLimits;
use tdmr::tdx::leaf::{self, Leaf};
use tdmr::tdx::status::Status;
use tdmr::tdx::{Output, Regs};

const RANGE: u64 = 0x4000_0000;
const OTHER: u64 = RANGE + 0x20_0000;

/// The module's PAMT state for two ranges, with the contract asserted on every call.
#[derive(Default)]
struct Module {
    /// Per range (0 = RANGE, 1 = OTHER): its pair, if it has one. Not atomic on purpose.
    entry: [UnsafeCell<Option<(u64, u64)>>; 2],
    /// Callers between a returned `get` and their `put`, per range.
    users: [AtomicUsize; 2],
    adds: AtomicUsize,
    removes: AtomicUsize,
}

/// The range index of an address.
fn which(pa: u64) -> usize {
    match pa & !0x1F_FFFF {
        RANGE => 0,
        OTHER => 1,
        other => panic!("PAMT leaf on unexpected range {other:#x}"),
    }
}

impl Module {
    /// Whether range `i` has a pair (a read of the entry: loom checks it is ordered after the
    /// ADD that wrote it).
    fn backed(&self, i: usize) -> bool {
        // SAFETY: loom fails the model if a write to the cell is concurrent with this read.
        self.entry[i].with(|e| unsafe { &*e }.is_some())
    }
}

#[derive(Clone)]
struct Backend(Arc<Module>);

impl Seamcall for Backend {
    fn seamcall(&self, l: Leaf, regs: &Regs) -> Output {
        let m = &self.0;
        let i = which(regs.rcx);
        assert_eq!(
            regs.rcx & 0x1F_FFFF,
            1,
            "RCX = 2 MiB-aligned range | level 1"
        );
        let mut out = *regs;
        if l == leaf::TDH_PHYMEM_PAMT_ADD {
            m.entry[i].with_mut(|e| {
                // SAFETY: loom checks that no other access to this cell is concurrent with
                // this one (it fails the model otherwise), which is the claim under test.
                let e = unsafe { &mut *e };
                assert!(e.is_none(), "PAMT.ADD on a backed range");
                *e = Some((regs.rdx, regs.r8));
            });
            m.adds.fetch_add(1, SeqCst);
        } else if l == leaf::TDH_PHYMEM_PAMT_REMOVE {
            assert_eq!(m.users[i].load(SeqCst), 0, "PAMT.REMOVE while held");
            let pair = m.entry[i].with_mut(|e| {
                // SAFETY: as above; loom fails the model on a concurrent access.
                unsafe { &mut *e }.take()
            });
            let (a, b) = pair.expect("PAMT.REMOVE without a pair");
            (out.rdx, out.r8) = (a, b);
            m.removes.fetch_add(1, SeqCst);
        } else {
            panic!("unexpected leaf {l}");
        }
        Output::new(Status::SUCCESS, out)
    }
}

type Manager = DynamicPamt<Backend>;

fn setup() -> (Arc<Module>, Arc<Manager>) {
    let module = Arc::new(Module::default());
    let limits = TdxLimits::default().with_dynamic_pamt(1).unwrap();
    let memory = [PhysRange::new(RANGE, OTHER + 0x20_0000).unwrap()];
    let m = DynamicPamt::new(Backend(module.clone()), &limits, memory).unwrap();
    (module, Arc::new(m))
}

/// Hands out one pair.
struct Once(Option<PamtPagePair>);

// SAFETY: the modelled module writes nothing; the addresses are labels.
unsafe impl PairSource for Once {
    fn take_pair(&mut self) -> Option<PamtPagePair> {
        self.0.take()
    }
    fn return_pair(&mut self, p: ReturnedPair) -> Result<(), ReturnedPair> {
        Err(p)
    }
}

/// A cache holding pair number `i` (distinct pages per pair), with room for one more.
fn cache(i: u64) -> PairCache {
    let mut c = PairCache::new(3);
    let base = 0x1_0000_0000 + i * 0x2000;
    let pair = PamtPagePair::new(base, base + 0x1000).unwrap();
    c.top_up(&mut Once(Some(pair)));
    c
}

/// `get`, use (checking the range is backed), `put`; returns whether the get added and the put
/// removed.
fn use_once(m: &Manager, module: &Module, pa: u64, pairs: &mut PairCache) -> (bool, bool) {
    let i = which(pa);
    let added = m.get(pa >> 12, pairs).unwrap() == Get::Added;
    module.users[i].fetch_add(1, SeqCst);
    assert!(module.backed(i), "range used without a pair");
    module.users[i].fetch_sub(1, SeqCst);
    let removed = matches!(
        m.put(pa >> 12, pairs).unwrap(),
        Put::Removed { unreturned: None }
    );
    (added, removed)
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(6);
    }
    b.check(f);
}

/// Checks the end state: every transition paired, outcomes match the module's counts, all
/// pairs back.
fn check_end(module: &Module, m: &Manager, added: usize, removed: usize, caches: &[PairCache]) {
    let adds = module.adds.load(SeqCst);
    assert_eq!(adds, added, "ADDs issued vs Get::Added outcomes");
    assert_eq!(
        module.removes.load(SeqCst),
        removed,
        "REMOVEs vs Put::Removed"
    );
    assert_eq!(adds, removed, "every ADD undone");
    assert!(!module.backed(0) && !module.backed(1));
    assert_eq!(m.busy_ranges(), 0);
    let pairs: usize = caches.iter().map(PairCache::len).sum();
    assert_eq!(pairs, caches.len(), "every pair back in a cache");
}

#[test]
fn two_callers_get_and_put_one_range() {
    model(|| {
        let (module, m) = setup();
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let (module, m) = (module.clone(), m.clone());
                thread::spawn(move || {
                    let mut c = cache(t);
                    let r = use_once(&m, &module, RANGE + t * 0x1000, &mut c);
                    (r, c)
                })
            })
            .collect();
        let mut added = 0;
        let mut removed = 0;
        let mut caches = Vec::new();
        for h in handles {
            let ((a, r), c) = h.join().unwrap();
            added += usize::from(a);
            removed += usize::from(r);
            caches.push(c);
        }
        // Either both overlapped (one ADD, one REMOVE) or ran one after the other (two each).
        assert!((1..=2).contains(&added));
        check_end(&module, &m, added, removed, &caches);
    });
}

#[test]
fn a_get_racing_the_last_put_waits_for_remove_then_adds() {
    model(|| {
        let (module, m) = setup();
        // The main thread holds the range; a second caller gets it while main puts.
        let mut main_cache = cache(0);
        assert_eq!(m.get(RANGE >> 12, &mut main_cache).unwrap(), Get::Added);
        let t = {
            let (module, m) = (module.clone(), m.clone());
            thread::spawn(move || {
                let mut c = cache(1);
                let r = use_once(&m, &module, RANGE + 0x5000, &mut c);
                (r, c)
            })
        };
        let removed_by_main = matches!(
            m.put(RANGE >> 12, &mut main_cache).unwrap(),
            Put::Removed { .. }
        );
        let ((a, r), c) = t.join().unwrap();
        // The other caller can only add once main's put took the range to 0 and removed it.
        assert!(!a || removed_by_main, "ADD while main still held the range");
        let added = 1 + usize::from(a);
        let removed = usize::from(removed_by_main) + usize::from(r);
        check_end(&module, &m, added, removed, &[main_cache, c]);
    });
}

#[test]
fn concurrent_first_gets_add_once() {
    model(|| {
        let (module, m) = setup();
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let (module, m) = (module.clone(), m.clone());
                thread::spawn(move || {
                    let mut c = cache(t);
                    let g = m.get((RANGE >> 12) + t, &mut c).unwrap();
                    assert!(module.backed(0));
                    (g, c)
                })
            })
            .collect();
        let mut caches = Vec::new();
        let mut added = 0;
        for h in handles {
            let (g, c) = h.join().unwrap();
            added += usize::from(g == Get::Added);
            caches.push(c);
        }
        assert_eq!(added, 1, "exactly one ADD for the 0 -> 1 transition");
        assert_eq!(module.adds.load(SeqCst), 1);
        let mut removed = 0;
        for t in 0..2 {
            let p = m.put((RANGE >> 12) + t, &mut caches[0]).unwrap();
            removed += usize::from(matches!(p, Put::Removed { .. }));
        }
        assert_eq!(removed, 1);
        check_end(&module, &m, 1, 1, &caches);
    });
}

#[test]
fn concurrent_last_puts_remove_once() {
    model(|| {
        let (module, m) = setup();
        let mut c0 = cache(0);
        m.get(RANGE >> 12, &mut c0).unwrap();
        m.get((RANGE >> 12) + 1, &mut c0).unwrap();
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let m = m.clone();
                thread::spawn(move || {
                    let mut c = PairCache::new(2);
                    let p = m.put((RANGE >> 12) + t, &mut c).unwrap();
                    (matches!(p, Put::Removed { .. }), c)
                })
            })
            .collect();
        let mut removed = 0;
        let mut pairs = c0.len();
        for h in handles {
            let (r, c) = h.join().unwrap();
            removed += usize::from(r);
            pairs += c.len();
        }
        assert_eq!(removed, 1, "exactly one REMOVE for the 1 -> 0 transition");
        assert_eq!(pairs, 1);
        assert_eq!(
            (module.adds.load(SeqCst), module.removes.load(SeqCst)),
            (1, 1)
        );
        assert_eq!(m.busy_ranges(), 0);
    });
}

#[test]
fn different_ranges_do_not_interact() {
    model(|| {
        let (module, m) = setup();
        let handles: Vec<_> = [RANGE, OTHER]
            .into_iter()
            .enumerate()
            .map(|(t, pa)| {
                let (module, m) = (module.clone(), m.clone());
                thread::spawn(move || {
                    let mut c = cache(t as u64);
                    let r = use_once(&m, &module, pa, &mut c);
                    // Alone on its range: always the first get and the last put.
                    assert_eq!(r, (true, true));
                    c
                })
            })
            .collect();
        let caches: Vec<PairCache> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        check_end(&module, &m, 2, 2, &caches);
    });
}
