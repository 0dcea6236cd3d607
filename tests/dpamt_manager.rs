//! `pamt::dynamic::DynamicPamt` against a scripted backend: the registers of the PAMT leaves,
//! the outcome of each get/put, roll-back of failed ADD/REMOVE, and every error.

use std::cell::RefCell;
use std::collections::VecDeque;

use tdmr::addr::PhysRange;
use tdmr::dpamt::{
    DynamicPamt, DynamicPamtError, DynamicPamtSetupError, Get, PairCache, PairSource, PamtPagePair,
    PamtPagePairError, Put, RangeState, ReturnedPair,
};
use tdmr::seamcall::Seamcall;
use tdmr::sysinfo::TdxLimits;
use tdmr::tdx::leaf::{self, Leaf};
use tdmr::tdx::status::Status;
use tdmr::tdx::status::{TDX_OPERAND_BUSY, TDX_PAMT_PAGE_NOT_EMPTY};
use tdmr::tdx::{Output, Regs};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Records calls; answers ADD with success and REMOVE with the pair of the last ADD on that
/// range, unless a scripted status is queued.
#[derive(Default)]
struct Scripted {
    calls: RefCell<Vec<(Leaf, Regs)>>,
    failures: RefCell<VecDeque<u64>>,
    pairs: RefCell<Vec<(u64, u64, u64)>>,
    bad_remove_output: RefCell<bool>,
}

impl Seamcall for Scripted {
    fn seamcall(&self, l: Leaf, regs: &Regs) -> Output {
        self.calls.borrow_mut().push((l, *regs));
        if let Some(raw) = self.failures.borrow_mut().pop_front() {
            return Output::new(Status::new(raw), *regs);
        }
        let mut pairs = self.pairs.borrow_mut();
        let mut out = *regs;
        if l == leaf::TDH_PHYMEM_PAMT_ADD {
            pairs.push((regs.rcx, regs.rdx, regs.r8));
        } else if l == leaf::TDH_PHYMEM_PAMT_REMOVE {
            let i = pairs.iter().position(|p| p.0 == regs.rcx).unwrap();
            let (_, a, b) = pairs.swap_remove(i);
            (out.rdx, out.r8) = if *self.bad_remove_output.borrow() {
                (a + 1, b)
            } else {
                (a, b)
            };
        }
        Output::new(Status::SUCCESS, out)
    }
}

fn limits() -> TdxLimits {
    TdxLimits::default().with_dynamic_pamt(1).unwrap()
}

fn r(start: u64, end: u64) -> PhysRange {
    PhysRange::new(start, end).unwrap()
}

fn pair(i: u64) -> PamtPagePair {
    PamtPagePair::new(0x10_0000_0000 + i * 0x2000, 0x10_0000_1000 + i * 0x2000).unwrap()
}

/// Hands out the pairs it holds, last first, and takes any back.
struct Pairs(Vec<PamtPagePair>);

// SAFETY: the backend is scripted: no module writes the pages these addresses name.
unsafe impl PairSource for Pairs {
    fn take_pair(&mut self) -> Option<PamtPagePair> {
        self.0.pop()
    }
    fn return_pair(&mut self, p: ReturnedPair) -> Result<(), ReturnedPair> {
        self.0.push(p.pair());
        Ok(())
    }
}

/// A cache holding pairs `0, ..., n - 1` (pair `n - 1` on top), with room for four more.
fn cache(n: u64) -> PairCache {
    let mut c = PairCache::new(n as usize + 4);
    c.top_up(&mut Pairs((0..n).rev().map(pair).collect()));
    c
}

/// Memory [1 GiB, 1 GiB + 8 MiB) and [4 GiB, 4 GiB + 2 MiB).
fn manager(backend: &Scripted) -> DynamicPamt<&Scripted> {
    DynamicPamt::new(
        backend,
        &limits(),
        [r(GIB, GIB + 8 * MIB), r(4 * GIB, 4 * GIB + 2 * MIB)],
    )
    .unwrap()
}

fn pfn(pa: u64) -> u64 {
    pa >> 12
}

#[test]
fn setup_needs_dynamic_pamt_and_two_pages_per_range() {
    let b = Scripted::default();
    let mem = [r(0, GIB)];
    assert_eq!(
        DynamicPamt::new(&b, &TdxLimits::default(), mem).unwrap_err(),
        DynamicPamtSetupError::NotEnabled
    );
    let wide = limits().with_pamt_entry_size(32).unwrap();
    assert_eq!(
        DynamicPamt::new(&b, &wide, mem).unwrap_err(),
        DynamicPamtSetupError::PairGeometry { entry_size: 32 }
    );
    let beyond = r((1 << 52) - 4096, (1 << 52) + 4096);
    assert_eq!(
        DynamicPamt::new(&b, &limits(), [beyond]).unwrap_err(),
        DynamicPamtSetupError::BeyondMaxPa { range: beyond }
    );
}

#[test]
fn counters_cost_4_bytes_per_2_mib_of_memory() {
    let b = Scripted::default();
    let m = manager(&b);
    assert_eq!(m.ranges(), 5);
    assert_eq!(m.counter_bytes(), 20);
    // 1 TiB of memory far apart in the address space: 512 Ki counters, 2 MiB.
    let m = DynamicPamt::new(
        &b,
        &limits(),
        [r(0, 512 * GIB), r((1 << 52) - 512 * GIB, 1 << 52)],
    )
    .unwrap();
    assert_eq!(m.counter_bytes(), 2 * MIB as usize);
}

#[test]
fn first_get_adds_last_put_removes_with_the_leaf_registers() {
    let b = Scripted::default();
    let m = manager(&b);
    let mut c = cache(2);
    let page = GIB + 2 * MIB + 0x7000;
    assert_eq!(m.range_state(pfn(page)), Some(RangeState::Free));
    assert_eq!(m.get(pfn(page), &mut c).unwrap(), Get::Added);
    // Another page of the same 2 MiB range, then the same page again: no SEAMCALL.
    assert_eq!(m.get(pfn(page) + 1, &mut c).unwrap(), Get::AlreadyBacked);
    assert_eq!(m.get(pfn(page), &mut c).unwrap(), Get::AlreadyBacked);
    assert_eq!(m.range_state(pfn(page)), Some(RangeState::Held(3)));
    assert_eq!(c.len(), 1);
    {
        let calls = b.calls.borrow();
        assert_eq!(calls.len(), 1);
        let (l, regs) = calls[0];
        // The cache hands out the pair returned last: pair(1).
        let p = pair(1);
        assert_eq!(l, leaf::TDH_PHYMEM_PAMT_ADD);
        assert_eq!(
            (regs.rcx, regs.rdx, regs.r8),
            ((GIB + 2 * MIB) | 1, p.page0(), p.page1())
        );
    }
    assert_eq!(m.put(pfn(page), &mut c).unwrap(), Put::StillBacked);
    assert_eq!(m.put(pfn(page), &mut c).unwrap(), Put::StillBacked);
    assert_eq!(
        m.put(pfn(page) + 1, &mut c).unwrap(),
        Put::Removed { unreturned: None }
    );
    assert_eq!(c.len(), 2);
    let calls = b.calls.borrow();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].0, leaf::TDH_PHYMEM_PAMT_REMOVE);
    assert_eq!(calls[1].1.rcx, (GIB + 2 * MIB) | 1);
    assert_eq!(m.busy_ranges(), 0);
}

#[test]
fn each_range_has_its_own_pair() {
    let b = Scripted::default();
    let m = manager(&b);
    let mut c = cache(5);
    for i in 0..4 {
        assert_eq!(m.get(pfn(GIB + i * 2 * MIB), &mut c).unwrap(), Get::Added);
    }
    assert_eq!(m.get(pfn(4 * GIB + MIB), &mut c).unwrap(), Get::Added);
    assert_eq!(m.busy_ranges(), 5);
    assert!(c.is_empty());
    let rcx: Vec<u64> = b.calls.borrow().iter().map(|c| c.1.rcx & !1).collect();
    assert_eq!(
        rcx,
        [GIB, GIB + 2 * MIB, GIB + 4 * MIB, GIB + 6 * MIB, 4 * GIB]
    );
}

#[test]
fn pages_outside_the_memory_are_refused() {
    let b = Scripted::default();
    let m = manager(&b);
    let mut c = cache(1);
    for pa in [
        0,
        GIB - 4096,
        GIB + 8 * MIB,
        2 * GIB,
        4 * GIB + 2 * MIB,
        u64::MAX,
    ] {
        let p = pa >> 12;
        assert_eq!(
            m.get(p, &mut c),
            Err(DynamicPamtError::NotTdxMemory { pfn: p })
        );
        assert_eq!(
            m.put(p, &mut c),
            Err(DynamicPamtError::NotTdxMemory { pfn: p })
        );
        assert_eq!(m.range_state(p), None);
    }
    assert!(b.calls.borrow().is_empty());
}

#[test]
fn put_without_get_is_not_held() {
    let b = Scripted::default();
    let m = manager(&b);
    let mut c = cache(1);
    assert_eq!(
        m.put(pfn(GIB), &mut c),
        Err(DynamicPamtError::NotHeld { pfn: pfn(GIB) })
    );
    m.get(pfn(GIB), &mut c).unwrap();
    m.put(pfn(GIB), &mut c).unwrap();
    assert_eq!(
        m.put(pfn(GIB), &mut c),
        Err(DynamicPamtError::NotHeld { pfn: pfn(GIB) })
    );
}

#[test]
fn an_empty_source_leaves_the_range_free() {
    let b = Scripted::default();
    let m = manager(&b);
    let mut empty = PairCache::new(1);
    assert_eq!(
        m.get(pfn(GIB + 0x3000), &mut empty),
        Err(DynamicPamtError::NoPagePair { range: GIB })
    );
    assert_eq!(m.range_state(pfn(GIB)), Some(RangeState::Free));
    assert!(b.calls.borrow().is_empty());
    // A held range needs no pair.
    let mut c = cache(1);
    m.get(pfn(GIB), &mut c).unwrap();
    assert_eq!(
        m.get(pfn(GIB + 0x3000), &mut empty).unwrap(),
        Get::AlreadyBacked
    );
}

#[test]
fn a_failed_add_is_rolled_back_and_keeps_the_raw_status() {
    let b = Scripted::default();
    let m = manager(&b);
    let mut c = cache(1);
    let busy = TDX_OPERAND_BUSY | 1;
    b.failures.borrow_mut().push_back(busy);
    let e = m.get(pfn(GIB), &mut c).unwrap_err();
    assert_eq!(
        e,
        DynamicPamtError::Seamcall {
            leaf: leaf::TDH_PHYMEM_PAMT_ADD,
            range: GIB,
            status: Status::new(busy),
            unreturned: None,
        }
    );
    assert!(e.to_string().contains("TDX_OPERAND_BUSY"), "{e}");
    // The pair is back in the cache and the range is free: a retry adds.
    assert_eq!(
        (c.len(), m.range_state(pfn(GIB))),
        (1, Some(RangeState::Free))
    );
    assert_eq!(m.get(pfn(GIB), &mut c).unwrap(), Get::Added);
    assert_eq!(b.calls.borrow().len(), 2);
}

#[test]
fn a_failed_add_whose_pair_cannot_go_back_hands_it_to_the_caller() {
    /// Gives one pair and takes nothing back.
    struct OneShot(Option<PamtPagePair>);
    // SAFETY: scripted backend, as for `Pairs`.
    unsafe impl PairSource for OneShot {
        fn take_pair(&mut self) -> Option<PamtPagePair> {
            self.0.take()
        }
        fn return_pair(&mut self, p: ReturnedPair) -> Result<(), ReturnedPair> {
            Err(p)
        }
    }
    let b = Scripted::default();
    let m = manager(&b);
    b.failures.borrow_mut().push_back(TDX_OPERAND_BUSY | 1);
    let e = m.get(pfn(GIB), &mut OneShot(Some(pair(7)))).unwrap_err();
    assert!(matches!(
        e,
        DynamicPamtError::Seamcall { unreturned: Some(p), .. } if p.pair() == pair(7)
    ));
}

#[test]
fn a_failed_remove_keeps_the_range_held() {
    let b = Scripted::default();
    let m = manager(&b);
    let mut c = cache(1);
    m.get(pfn(GIB), &mut c).unwrap();
    b.failures.borrow_mut().push_back(TDX_PAMT_PAGE_NOT_EMPTY);
    let e = m.put(pfn(GIB), &mut c).unwrap_err();
    assert_eq!(
        e,
        DynamicPamtError::Seamcall {
            leaf: leaf::TDH_PHYMEM_PAMT_REMOVE,
            range: GIB,
            status: Status::new(TDX_PAMT_PAGE_NOT_EMPTY),
            unreturned: None,
        }
    );
    assert_eq!(m.range_state(pfn(GIB)), Some(RangeState::Held(1)));
    assert_eq!(
        m.put(pfn(GIB), &mut c).unwrap(),
        Put::Removed { unreturned: None }
    );
    assert_eq!(c.len(), 1);
}

#[test]
fn a_full_cache_hands_the_removed_pair_to_the_caller() {
    let b = Scripted::default();
    let m = manager(&b);
    let mut giver = cache(1);
    m.get(pfn(GIB), &mut giver).unwrap();
    let mut full = PairCache::new(1);
    full.top_up(&mut Pairs(vec![pair(9)]));
    assert!(matches!(
        m.put(pfn(GIB), &mut full).unwrap(),
        Put::Removed {
            unreturned: Some(p)
        } if p.pair() == pair(0)
    ));
}

#[test]
fn a_remove_that_returns_no_pair_is_reported() {
    let b = Scripted::default();
    let m = manager(&b);
    let mut c = cache(1);
    m.get(pfn(GIB), &mut c).unwrap();
    *b.bad_remove_output.borrow_mut() = true;
    let p = pair(0);
    assert_eq!(
        m.put(pfn(GIB), &mut c),
        Err(DynamicPamtError::BadRemoveOutput {
            range: GIB,
            rdx: p.page0() + 1,
            r8: p.page1()
        })
    );
    assert_eq!(m.range_state(pfn(GIB)), Some(RangeState::Free));
}

#[test]
fn page_pairs_are_checked() {
    assert_eq!(
        PamtPagePair::new(0x1001, 0x2000),
        Err(PamtPagePairError::Misaligned { pa: 0x1001 })
    );
    assert_eq!(
        PamtPagePair::new(0x1000, 1 << 52),
        Err(PamtPagePairError::BeyondMaxPa { pa: 1 << 52 })
    );
    assert_eq!(
        PamtPagePair::new(0x1000, 0x1000),
        Err(PamtPagePairError::SamePage { pa: 0x1000 })
    );
}

#[test]
fn cache_tops_up_and_drains_without_growing() {
    let mut source = cache(10);
    let mut c = PairCache::new(3);
    assert_eq!(c.top_up(&mut source), 3);
    assert_eq!((c.len(), source.len()), (3, 7));
    assert_eq!(c.top_up(&mut source), 0);
    let mut small = PairCache::new(2);
    assert_eq!(c.drain_into(&mut small), 2);
    assert_eq!((c.len(), small.len()), (1, 2));
    assert_eq!(c.capacity(), 3);
}
