//! Planning time on terabyte memory maps: the optimal strategy against a one-pass scan of the
//! regions and against the Linux strategy, in the same run; and the cost of building the map
//! (validation plus the window summary planners use), for context.
//!
//! `cargo bench --bench plan`. The Linux strategy runs with its limits raised to 65535 TDMRs and
//! reserved areas so that it does all its work (with the module's 64/16 it stops early at
//! "TDMRs exhausted" on every map here).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use tdmr::layout::{Planner, Strategy};
use tdmr::memmap::{Cmrs, MemoryMap};
use tdmr::sysinfo::TdxLimits;

#[path = "support/synth.rs"]
mod synth;

/// The baseline: one pass over the region slice (what any planner must at least read).
fn scan(memory: &MemoryMap) -> (u64, u64) {
    let mut bytes = 0u64;
    let mut windows = 0u64;
    let mut last = u64::MAX;
    for r in memory.regions() {
        bytes += r.size;
        let w = (r.end() - 1) >> 30;
        windows += u64::from(w != last);
        last = w;
    }
    (bytes, windows)
}

fn maps() -> Vec<(&'static str, MemoryMap, Cmrs)> {
    [
        (
            "1TiB_100",
            synth::Spec {
                tib: 1,
                regions: 100,
                nodes: 2,
                seed: 1,
            },
        ),
        (
            "16TiB_100k",
            synth::Spec {
                tib: 16,
                regions: 100_000,
                nodes: 16,
                seed: 16,
            },
        ),
        (
            "64TiB_1M",
            synth::Spec {
                tib: 64,
                regions: 1_000_000,
                nodes: 30,
                seed: 64,
            },
        ),
    ]
    .into_iter()
    .map(|(name, spec)| {
        let (m, c) = synth::generate(spec);
        (name, m, c)
    })
    .collect()
}

fn bench(c: &mut Criterion) {
    let relaxed = TdxLimits::new(u16::MAX, u16::MAX, [16; 3]).expect("valid limits");
    let mut g = c.benchmark_group("plan");
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    for (name, memory, cmrs) in maps() {
        g.bench_with_input(BenchmarkId::new("scan", name), &memory, |b, m| {
            b.iter(|| black_box(scan(black_box(m))))
        });
        g.bench_with_input(BenchmarkId::new("optimal", name), &memory, |b, m| {
            b.iter(|| {
                Planner::new()
                    .plan(black_box(m), &cmrs)
                    .expect("optimal plans the synthetic map")
            })
        });
        // Building (validating and summarising) the map: a linear pass the planner relies on.
        g.bench_with_input(BenchmarkId::new("build_map", name), &memory, |b, m| {
            b.iter_batched(
                || m.regions().to_vec(),
                |regions| MemoryMap::new(regions).expect("valid map"),
                BatchSize::LargeInput,
            )
        });
        g.bench_with_input(BenchmarkId::new("linux", name), &memory, |b, m| {
            b.iter(|| {
                Planner::new()
                    .with_strategy(Strategy::Linux)
                    .with_limits(relaxed)
                    .plan(black_box(m), &cmrs)
                    .expect("linux plans the synthetic map with relaxed limits")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
