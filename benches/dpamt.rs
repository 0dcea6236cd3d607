//! Dynamic PAMT get/put on 1 and 2 threads, over distinct and over shared 2 MiB ranges: the
//! lock-free manager (`dpamt::DynamicPamt`) against Linux's final design as queued for 7.4
//! (`linux` below), in the same run; and, printed before the timings, the refcount memory of
//! both for the fixtures and for a 256 GiB map whose highest page sits near the top of the
//! address space.
//!
//! `cargo bench --bench dpamt`, then
//! `python3 scripts/bench-ratios.py dpamt linux lockfree bare_word`.
//!
//! Linux's design (tdx-2026.md §3), rewritten from its description: one `atomic_t` per 2 MiB
//! of physical address space from 0 to the highest page, in one allocation; `get` is
//! `atomic_inc_not_zero` — lock-free while the range is backed — else it takes a page pair
//! from the allocator *outside* the lock, takes the one global spinlock, re-checks (another
//! CPU may have added the pair meanwhile: then it increments and gives the spare pair back),
//! else PAMT.ADD and sets the count to 1; `put` is `atomic_dec_and_lock`: lock-free unless the
//! count would reach 0, and only that 1 → 0 transition takes the lock and calls PAMT.REMOVE.
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
    /// What the baselines do with a removed or spare pair: give it back to the allocator (a
    /// no-op).
    #[inline]
    fn give_back(&mut self, _: PamtPagePair) {}
}

/// Linux's final design (see the file's documentation): a refcount per 2 MiB of address space
/// from 0 to the highest page, `atomic_inc_not_zero` / `atomic_dec_and_lock` fast paths, one
/// global spinlock only for the 0 ↔ 1 transitions, the page pair taken outside the lock.
struct LinuxPamt<S> {
    seamcall: S,
    lock: AtomicBool,
    counts: Box<[AtomicU32]>,
}

/// `atomic_inc_not_zero`: increments unless the count is 0; whether it did.
#[inline]
fn inc_not_zero(count: &AtomicU32) -> bool {
    let mut v = count.load(Ordering::Relaxed);
    while v != 0 {
        match count.compare_exchange_weak(v, v + 1, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(now) => v = now,
        }
    }
    false
}

/// `atomic_add_unless(count, -1, 1)`: decrements unless the count is 1; whether it did.
#[inline]
fn dec_unless_one(count: &AtomicU32) -> bool {
    let mut v = count.load(Ordering::Relaxed);
    while v != 1 {
        match count.compare_exchange_weak(v, v - 1, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(now) => v = now,
        }
    }
    false
}

impl<S: Seamcall> LinuxPamt<S> {
    /// Counters for `[0, max_pa)`: one per 2 MiB.
    fn new(seamcall: S, max_pa: u64) -> Self {
        LinuxPamt {
            seamcall,
            lock: AtomicBool::new(false),
            counts: (0..max_pa.div_ceil(1 << 21))
                .map(|_| AtomicU32::new(0))
                .collect(),
        }
    }

    /// The one global spinlock.
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
        if inc_not_zero(count) {
            return;
        }
        // The pair is taken before the lock (allocation may sleep in the kernel).
        let p = pairs.take_pair().expect("endless");
        let spare = self.with_lock(|| {
            if count.load(Ordering::Relaxed) != 0 {
                // Someone added it meanwhile: just count, give the pair back.
                count.fetch_add(1, Ordering::Relaxed);
                return Some(p);
            }
            let regs = Regs {
                rcx: range << 21 | 1,
                rdx: p.page0(),
                r8: p.page1(),
                ..Regs::ZERO
            };
            let out = self.seamcall.seamcall(leaf::TDH_PHYMEM_PAMT_ADD, &regs);
            assert!(out.status.is_success());
            count.store(1, Ordering::Release);
            None
        });
        if let Some(p) = spare {
            pairs.give_back(p);
        }
    }

    fn put(&self, pfn: u64, pairs: &mut Endless) {
        let range = pfn >> 9;
        let count = &self.counts[range as usize];
        // atomic_dec_and_lock: only 1 -> 0 takes the lock.
        if dec_unless_one(count) {
            return;
        }
        let removed = self.with_lock(|| {
            if count.fetch_sub(1, Ordering::Relaxed) != 1 {
                return None;
            }
            let regs = Regs {
                rcx: range << 21 | 1,
                ..Regs::ZERO
            };
            let out = self.seamcall.seamcall(leaf::TDH_PHYMEM_PAMT_REMOVE, &regs);
            assert!(out.status.is_success());
            Some(PamtPagePair::new(out.regs.rdx, out.regs.r8).expect("a pair"))
        });
        if let Some(p) = removed {
            pairs.give_back(p);
        }
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

impl Manager for LinuxPamt<NoopModule> {
    #[inline]
    fn get(&self, pfn: u64, pairs: &mut Endless) {
        LinuxPamt::get(self, pfn, pairs)
    }
    #[inline]
    fn put(&self, pfn: u64, pairs: &mut Endless) {
        LinuxPamt::put(self, pfn, pairs)
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

/// Merged runs of `memory` rounded out to 2 MiB: the lock-free manager's span table entries.
fn spans(memory: &[PhysRange]) -> usize {
    let mut runs: Vec<(u64, u64)> = memory
        .iter()
        .map(|r| (r.start() >> 21, r.end().div_ceil(1 << 21)))
        .collect();
    runs.sort_unstable();
    let mut n = 0;
    let mut end = None;
    for (s, e) in runs {
        match end {
            Some(x) if s <= x => end = Some(x.max(e)),
            _ => {
                n += 1;
                end = Some(e);
            }
        }
    }
    n
}

fn human(bytes: u64) -> String {
    const K: u64 = 1024;
    match bytes {
        b if b >= K * K * K => format!("{:.2} GiB", b as f64 / (K * K * K) as f64),
        b if b >= K * K => format!("{:.2} MiB", b as f64 / (K * K) as f64),
        b => format!("{:.1} KiB", b as f64 / K as f64),
    }
}

/// Refcount memory, Linux's design against the lock-free manager, printed as a Markdown table:
/// each fixture's TDX memory, and 256 GiB whose highest page sits near the top of a 52-bit and
/// of a 48-bit address space (Linux enables Dynamic PAMT only with at most 48 physical address
/// bits). The manager's figure is its counters plus its span table (24 bytes per run).
fn refcount_memory(limits: &TdxLimits) {
    const G: u64 = 1 << 30;
    let mut rows: Vec<(String, Vec<PhysRange>)> = Vec::new();
    let fixtures: [(&str, &str); 7] = [
        (
            "emr-4s-256g",
            include_str!("../tests/fixtures/emr-4s-256g.log"),
        ),
        ("host-2t", include_str!("../tests/fixtures/host-2t.log")),
        (
            "hp-16s-12t",
            include_str!("../tests/fixtures/hp-16s-12t.log"),
        ),
        (
            "icx-2s-256g",
            include_str!("../tests/fixtures/icx-2s-256g.log"),
        ),
        ("spr-1t", include_str!("../tests/fixtures/spr-1t.log")),
        ("spr-512g", include_str!("../tests/fixtures/spr-512g.log")),
        ("spr-tdx10", include_str!("../tests/fixtures/spr-tdx10.log")),
    ];
    for (name, log) in fixtures {
        let input = tdmr::memmap::parse_kernel_log(log).expect("fixture");
        let memory = input.memory().regions().iter().map(|r| r.range()).collect();
        rows.push((name.to_owned(), memory));
    }
    for bits in [52u32, 48] {
        let top = 1u64 << bits;
        let memory = vec![
            PhysRange::new(4 * G, 259 * G).expect("range"),
            PhysRange::new(top - G, top).expect("range"),
        ];
        rows.push((format!("256 GiB, top page at 2^{bits}"), memory));
    }
    println!(
        "| map | TDX memory | highest page | Linux (4 B per 2 MiB of [0, max_pfn)) | lock-free manager | Linux / manager |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, memory) in rows {
        let total: u64 = memory.iter().map(|r| r.size()).sum();
        let max_pa = memory.iter().map(|r| r.end()).max().unwrap_or(0);
        let linux = max_pa.div_ceil(1 << 21) * 4;
        let m = DynamicPamt::new(NoopModule, limits, memory.iter().copied()).expect("manager");
        let ours = m.counter_bytes() as u64 + 24 * spans(&memory) as u64;
        let ratio = linux as f64 / ours as f64;
        let ratio = if ratio < 10.0 {
            format!("{ratio:.2}×")
        } else {
            format!("{ratio:.0}×")
        };
        println!(
            "| {name} | {} | {:#x} | {} | {} | {ratio} |",
            human(total),
            max_pa - 4096,
            human(linux),
            human(ours),
        );
    }
}

fn bench(c: &mut Criterion) {
    let limits = TdxLimits::default()
        .with_dynamic_pamt(1)
        .expect("one bitmap bit per page");
    refcount_memory(&limits);
    let memory = [PhysRange::new(0, MEMORY).expect("range")];
    let lockfree = DynamicPamt::new(NoopModule, &limits, memory).expect("manager");
    // Counters from 0 to the highest page of the benchmark's memory, as Linux sizes them.
    let linux = LinuxPamt::new(NoopModule, MEMORY);
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
            g.bench_function(BenchmarkId::new("linux", &input), |b| {
                b.iter_custom(|iters| workload(&linux, hot, distinct, threads, iters))
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
