//! Dynamic PAMT get/put on 1 and 2 threads, over distinct and over shared 2 MiB ranges: the
//! lock-free manager (`pamt::dynamic::DynamicPamt`) against Linux's design (one global
//! spinlock serialising every get and put, a refcount per 2 MiB), in the same run.
//!
//! `cargo bench --bench dpamt`, then
//! `python3 scripts/bench-ratios.py dpamt spinlock lockfree bare_word`.
//!
//! Both managers issue their SEAMCALLs to a backend that does nothing but answer success
//! (REMOVE returns a fixed pair): the mock module serialises every call behind its own mutex,
//! which would measure the mock, not the managers. Workloads, per thread and iteration:
//!
//! - `hot`: `get` + `put` of a page in a range another holder keeps backed (count 1 → 2 → 1,
//!   no SEAMCALL): the common case, many 4 KiB pages per 2 MiB range;
//! - `cycle`: `get` + `put` of a range nobody else holds (0 → 1 → 0: PAMT.ADD and
//!   PAMT.REMOVE to the no-op backend each time).
//!
//! `distinct`: each thread works in its own range, 128 MiB from the next thread's (so on
//! another cache line); `shared`: all threads work in one range. Times are wall time for all
//! threads to finish `iters` iterations each, measured from a common start (thread spawning
//! excluded); criterion's throughput counts one element per thread per iteration.

use std::hint::black_box;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tdmr::addr::PhysRange;
use tdmr::dpamt::{DynamicPamt, PairSource, PamtPagePair, ReturnedPair};
use tdmr::seamcall::Seamcall;
use tdmr::sysinfo::TdxLimits;
use tdmr::tdx::leaf::{self, Leaf};
use tdmr::tdx::status::Status;
use tdmr::tdx::{Output, Regs};

/// Answers every PAMT leaf with success; REMOVE returns a fixed pair.
#[derive(Clone, Copy)]
struct NoopModule;

impl Seamcall for NoopModule {
    #[inline]
    fn seamcall(&self, l: Leaf, regs: &Regs) -> Output {
        let mut out = *regs;
        if l == leaf::TDH_PHYMEM_PAMT_REMOVE {
            (out.rdx, out.r8) = (0x1000, 0x2000);
        }
        Output::new(Status::SUCCESS, out)
    }
}

/// A pair source that never runs dry and takes every pair back (pairs move between threads in
/// shared-range runs; a bounded per-thread cache could run dry there).
struct Endless;

const PAIR: PamtPagePair = match PamtPagePair::new(0x1000, 0x2000) {
    Ok(p) => p,
    Err(_) => panic!("a valid pair"),
};

// SAFETY: the benchmark's module is a stub that writes nothing; PAIR is a label.
unsafe impl PairSource for Endless {
    #[inline]
    fn take_pair(&mut self) -> Option<PamtPagePair> {
        Some(PAIR)
    }
    #[inline]
    fn return_pair(&mut self, _: ReturnedPair) -> Result<(), ReturnedPair> {
        Ok(())
    }
}

impl Endless {
    /// What the baselines do with a removed pair: give it back to the allocator (a no-op).
    #[inline]
    fn give_back(&mut self, _: PamtPagePair) {}
}

/// Linux's design: a refcount per 2 MiB range, every get and put under one global spinlock
/// (ADD on 0 → 1 and REMOVE on 1 → 0 inside it). Favoured here: it indexes ranges by plain
/// subtraction and takes a pair only when it adds (Linux takes one before every get).
struct SpinlockPamt<S> {
    seamcall: S,
    lock: AtomicBool,
    counts: Box<[AtomicU32]>,
}

impl<S: Seamcall> SpinlockPamt<S> {
    fn new(seamcall: S, ranges: usize) -> Self {
        SpinlockPamt {
            seamcall,
            lock: AtomicBool::new(false),
            counts: (0..ranges).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    fn with_lock<R>(&self, f: impl FnOnce() -> R) -> R {
        while self
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.lock.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        }
        let r = f();
        self.lock.store(false, Ordering::Release);
        r
    }

    fn get(&self, pfn: u64, pairs: &mut Endless) {
        let range = pfn >> 9;
        let count = &self.counts[range as usize];
        self.with_lock(|| {
            if count.load(Ordering::Relaxed) == 0 {
                let p = pairs.take_pair().expect("endless");
                let regs = Regs {
                    rcx: range << 21 | 1,
                    rdx: p.page0(),
                    r8: p.page1(),
                    ..Regs::ZERO
                };
                let out = self.seamcall.seamcall(leaf::TDH_PHYMEM_PAMT_ADD, &regs);
                assert!(out.status.is_success());
            }
            count.fetch_add(1, Ordering::Relaxed);
        });
    }

    fn put(&self, pfn: u64, pairs: &mut Endless) {
        let range = pfn >> 9;
        let count = &self.counts[range as usize];
        self.with_lock(|| {
            if count.load(Ordering::Relaxed) == 1 {
                let regs = Regs {
                    rcx: range << 21 | 1,
                    ..Regs::ZERO
                };
                let out = self.seamcall.seamcall(leaf::TDH_PHYMEM_PAMT_REMOVE, &regs);
                assert!(out.status.is_success());
                let p = PamtPagePair::new(out.regs.rdx, out.regs.r8).expect("a pair");
                pairs.give_back(p);
            }
            count.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// The machine's ceiling, for reading the scaling figures: per range one bare atomic word on
/// its own cache lines, get and put a load + CAS on it, no index, no state machine, no
/// SEAMCALL. On `distinct` runs no thread touches another's line, so its 2-thread scaling is
/// what these cores give to independent work at that moment.
struct BareWords {
    words: Box<[Padded]>,
}

#[repr(align(128))]
struct Padded(AtomicU32);

impl BareWords {
    fn word(&self, pfn: u64) -> &AtomicU32 {
        &self.words[(pfn / THREAD_STRIDE) as usize].0
    }

    fn step(&self, pfn: u64, up: bool) {
        let w = self.word(pfn);
        let mut v = w.load(Ordering::Acquire);
        loop {
            let n = if up { v + 1 } else { v - 1 };
            match w.compare_exchange_weak(v, n, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(now) => v = now,
            }
        }
    }
}

impl Manager for BareWords {
    #[inline]
    fn get(&self, pfn: u64, _: &mut Endless) {
        self.step(pfn, true)
    }
    #[inline]
    fn put(&self, pfn: u64, _: &mut Endless) {
        self.step(pfn, false)
    }
}

/// The managers behind one interface for the workloads.
trait Manager: Sync {
    fn get(&self, pfn: u64, pairs: &mut Endless);
    fn put(&self, pfn: u64, pairs: &mut Endless);
}

impl Manager for DynamicPamt<NoopModule> {
    #[inline]
    fn get(&self, pfn: u64, pairs: &mut Endless) {
        DynamicPamt::get(self, pfn, pairs).expect("get");
    }
    #[inline]
    fn put(&self, pfn: u64, pairs: &mut Endless) {
        DynamicPamt::put(self, pfn, pairs).expect("put");
    }
}

impl Manager for SpinlockPamt<NoopModule> {
    #[inline]
    fn get(&self, pfn: u64, pairs: &mut Endless) {
        SpinlockPamt::get(self, pfn, pairs)
    }
    #[inline]
    fn put(&self, pfn: u64, pairs: &mut Endless) {
        SpinlockPamt::put(self, pfn, pairs)
    }
}

/// 1 GiB of TDX memory from address 0: 512 ranges.
const MEMORY: u64 = 1 << 30;
/// Pages between two threads' ranges in `distinct` runs: 128 MiB.
const THREAD_STRIDE: u64 = (128 << 20) >> 12;
/// The range a `hot` run keeps backed is held from this page of it.
const HOLDER_PAGE: u64 = 511;

/// Runs `threads` threads doing `iters` get+put each on page `page(t)`; wall time from the
/// common start to the last thread's end.
fn run<M: Manager>(m: &M, threads: u64, iters: u64, page: impl Fn(u64) -> u64 + Sync) -> Duration {
    let barrier = Barrier::new(threads as usize);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, page) = (&barrier, &page);
                s.spawn(move || {
                    let mut pairs = Endless;
                    let pfn = page(t);
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        m.get(black_box(pfn), &mut pairs);
                        m.put(black_box(pfn), &mut pairs);
                    }
                    (start, Instant::now())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .collect()
    });
    let start = spans.iter().map(|s| s.0).min().expect("a thread");
    let end = spans.iter().map(|s| s.1).max().expect("a thread");
    end - start
}

/// The page thread `t` uses.
fn page(distinct: bool, t: u64) -> u64 {
    let base = if distinct { t * THREAD_STRIDE } else { 0 };
    base + t
}

fn workload<M: Manager>(m: &M, hot: bool, distinct: bool, threads: u64, iters: u64) -> Duration {
    let mut holder = Endless;
    let held: Vec<u64> = if hot {
        let ranges = if distinct { threads } else { 1 };
        (0..ranges)
            .map(|t| t * THREAD_STRIDE + HOLDER_PAGE)
            .collect()
    } else {
        Vec::new()
    };
    for &p in &held {
        m.get(p, &mut holder);
    }
    let d = run(m, threads, iters, |t| page(distinct, t));
    for &p in &held {
        m.put(p, &mut holder);
    }
    d
}

fn bench(c: &mut Criterion) {
    let limits = TdxLimits::default()
        .with_dynamic_pamt(1)
        .expect("one bitmap bit per page");
    let memory = [PhysRange::new(0, MEMORY).expect("range")];
    let lockfree = DynamicPamt::new(NoopModule, &limits, memory).expect("manager");
    let spinlock = SpinlockPamt::new(NoopModule, (MEMORY >> 21) as usize);
    let bare = BareWords {
        words: (0..(MEMORY >> 12) / THREAD_STRIDE)
            .map(|_| Padded(AtomicU32::new(0)))
            .collect(),
    };

    let mut g = c.benchmark_group("dpamt");
    g.sample_size(30);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    for (work, hot) in [("hot", true), ("cycle", false)] {
        for (threads, sharing) in [(1u64, "distinct"), (2, "distinct"), (2, "shared")] {
            let distinct = sharing == "distinct";
            let input = format!("{work}_{sharing}_{threads}t");
            g.throughput(Throughput::Elements(threads));
            g.bench_function(BenchmarkId::new("lockfree", &input), |b| {
                b.iter_custom(|iters| workload(&lockfree, hot, distinct, threads, iters))
            });
            g.bench_function(BenchmarkId::new("spinlock", &input), |b| {
                b.iter_custom(|iters| workload(&spinlock, hot, distinct, threads, iters))
            });
            if hot {
                g.bench_function(BenchmarkId::new("bare_word", &input), |b| {
                    b.iter_custom(|iters| workload(&bare, hot, distinct, threads, iters))
                });
            }
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
