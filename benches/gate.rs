//! Admissions per second on the initialized path, 1 and 2 threads: the hotplug gate against
//! Linux's design (a mutex-guarded walk of the TDX memory list), measured in the same run; and
//! the removal check next to the addition check (Linux checks no removal, so there is no
//! baseline for it).
//!
//! `cargo bench --bench gate`
//!
//! Input: `tests/fixtures/emr-4s-256g.log`, planned with CMR-based holes: 20 frozen ranges
//! for the gate to search, 20 entries in the Linux list. Queries: 1024 memory blocks of 128 MiB, half inside TDX memory,
//! half anywhere below the top of the CMRs. One iteration is one admission on every thread.
//! `gate` is the default gate (section bitmap fast path, then the search); `gate_search_only`
//! has no section bitmap; `mutex_list` is the baseline, Linux's design (a linked list walked
//! under a mutex); `mutex_vec` is the same walk over a vector, kinder to the baseline.
//! `gate_removal` is `admit_removal` of the same queries (the binary search of the refusal set,
//! 15 PAMT blocks); `gate_removal_dpamt` the same on a gate whose plan uses Dynamic PAMT, with
//! the manager attached to its range table and no pair added: each removal also marks and
//! unmarks the 64 words of its 2 MiB ranges (one `fetch_add` and one `fetch_sub` each, plus the
//! read-only pass).

use std::collections::LinkedList;
use std::hint::black_box;
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tdmr::addr::PhysRange;
use tdmr::dpamt::DynamicPamt;
use tdmr::hotplug_gate::{GateConfig, HotplugGate};
use tdmr::layout::{HolePolicy, Planner};
use tdmr::memmap::parse_kernel_log;
use tdmr::seamcall::Seamcall;
use tdmr::sysinfo::TdxLimits;
use tdmr::tdx::leaf::Leaf;
use tdmr::tdx::status::Status;
use tdmr::tdx::{Output, Regs};

/// The manager's backend: never called (no pair is added in the benchmark).
struct NoModule;

impl Seamcall for NoModule {
    fn seamcall(&self, _: Leaf, regs: &Regs) -> Output {
        Output::new(Status::SUCCESS, *regs)
    }
}

const LOG: &str = include_str!("../tests/fixtures/emr-4s-256g.log");
const BLOCK: u64 = 128 << 20;

/// Linux's check: the TDX memory list (a linked list, `list_for_each_entry`) walked under a
/// mutex, admitted iff one entry holds the range.
struct MutexList(Mutex<LinkedList<(u64, u64)>>);

impl MutexList {
    fn admits(&self, r: PhysRange) -> bool {
        let list = self.0.lock().unwrap_or_else(|e| e.into_inner());
        list.iter()
            .any(|&(start, end)| r.start() >= start && r.end() <= end)
    }
}

/// The same walk over a contiguous vector: kinder to the baseline than Linux's list.
struct MutexVec(Mutex<Vec<(u64, u64)>>);

impl MutexVec {
    fn admits(&self, r: PhysRange) -> bool {
        let list = self.0.lock().unwrap_or_else(|e| e.into_inner());
        list.iter()
            .any(|&(start, end)| r.start() >= start && r.end() <= end)
    }
}

/// Runs `op` over the queries on `threads` threads, `iters` times each, all starting together;
/// returns the wall time until the last finishes.
/// Generic over the operation, so each bench inlines its check rather than timing an
/// indirect call.
fn parallel<F: Fn(PhysRange) -> bool + Sync>(
    threads: usize,
    iters: u64,
    queries: &[PhysRange],
    op: &F,
) -> Duration {
    let barrier = Barrier::new(threads);
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, op) = (&barrier, op);
                s.spawn(move || {
                    let mut i = t * 397;
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        i = (i + 1) & (queries.len() - 1);
                        black_box(op(black_box(queries[i])));
                    }
                    start.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .max()
            .unwrap_or_default()
    })
}

fn admission(c: &mut Criterion) {
    let (memory, cmrs) = parse_kernel_log(LOG).expect("fixture parses").into_parts();
    let plan = Planner::new()
        .with_holes(HolePolicy::Cmr)
        .plan(&memory, &cmrs)
        .expect("fixture plans with CMR-based holes");
    let initialized = |config: GateConfig| {
        let gate = HotplugGate::new(cmrs.clone(), config).expect("gate");
        let frozen = gate
            .begin_init()
            .expect("init begins")
            .publish(&plan, &memory)
            .expect("publish");
        (gate, frozen)
    };
    let (gate, frozen) = initialized(GateConfig::new(0, 0));
    let (search_only, _) = initialized(GateConfig::new(0, 0).with_section_bitmap_words(0));
    // The same machine planned with Dynamic PAMT, the manager sharing the gate's range table.
    let dpamt_plan = Planner::new()
        .with_holes(HolePolicy::Cmr)
        .with_limits(TdxLimits::default().with_dynamic_pamt(1).expect("1 bit"))
        .plan(&memory, &cmrs)
        .expect("fixture plans with Dynamic PAMT");
    let dpamt_gate = HotplugGate::new(cmrs.clone(), GateConfig::new(0, 0).with_dynamic_pamt(true))
        .expect("gate");
    dpamt_gate
        .begin_init()
        .expect("init begins")
        .publish(&dpamt_plan, &memory)
        .expect("publish");
    let table = dpamt_gate.range_table().expect("a range table");
    let _dpamt = DynamicPamt::for_plan_with_table(NoModule, &dpamt_plan, table).expect("manager");
    let list = MutexList(Mutex::new(
        memory.regions().iter().map(|r| (r.base, r.end())).collect(),
    ));
    let vec = MutexVec(Mutex::new(
        memory.regions().iter().map(|r| (r.base, r.end())).collect(),
    ));

    // Deterministic queries (xorshift).
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let top = cmrs.merged().last().map_or(0, |r| r.end());
    let regions = memory.regions();
    let queries: Vec<PhysRange> = (0..1024)
        .map(|i| {
            let start = if i % 2 == 0 {
                let r = regions[(next() % regions.len() as u64) as usize];
                let blocks = (r.size / BLOCK).max(1);
                r.base + (next() % blocks) * BLOCK
            } else {
                (next() % (top / BLOCK)) * BLOCK
            };
            PhysRange::new(start, start + BLOCK).expect("query")
        })
        .collect();
    let admitted_gate = queries
        .iter()
        .filter(|q| gate.admit_memory(**q).is_ok())
        .count();
    let admitted_list = queries.iter().filter(|q| list.admits(**q)).count();
    let removable = queries
        .iter()
        .filter(|q| gate.admit_removal(**q).is_ok())
        .count();
    let removable_dpamt = queries
        .iter()
        .filter(|q| dpamt_gate.admit_removal(**q).is_ok())
        .count();
    eprintln!(
        "gate: {frozen} frozen ranges, {} metadata blocks; Linux list: {} entries; queries admitted: gate {admitted_gate}, list {admitted_list} of {}; removals admitted: {removable} (Dynamic PAMT: {removable_dpamt})",
        gate.tdx_metadata().count(),
        memory.len(),
        queries.len()
    );

    let mut group = c.benchmark_group("admission");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for threads in [1usize, 2] {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_with_input(BenchmarkId::new("gate", threads), &threads, |b, &t| {
            b.iter_custom(|iters| parallel(t, iters, &queries, &|q| gate.admit_memory(q).is_ok()))
        });
        group.bench_with_input(
            BenchmarkId::new("gate_search_only", threads),
            &threads,
            |b, &t| {
                b.iter_custom(|iters| {
                    parallel(t, iters, &queries, &|q| search_only.admit_memory(q).is_ok())
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("mutex_list", threads),
            &threads,
            |b, &t| b.iter_custom(|iters| parallel(t, iters, &queries, &|q| list.admits(q))),
        );
        group.bench_with_input(BenchmarkId::new("mutex_vec", threads), &threads, |b, &t| {
            b.iter_custom(|iters| parallel(t, iters, &queries, &|q| vec.admits(q)))
        });
        group.bench_with_input(
            BenchmarkId::new("gate_removal", threads),
            &threads,
            |b, &t| {
                b.iter_custom(|iters| {
                    parallel(t, iters, &queries, &|q| gate.admit_removal(q).is_ok())
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("gate_removal_dpamt", threads),
            &threads,
            |b, &t| {
                b.iter_custom(|iters| {
                    parallel(t, iters, &queries, &|q| dpamt_gate.admit_removal(q).is_ok())
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, admission);
criterion_main!(benches);
