//! TDX bring-up: the mock module in work mode (each TDH.SYS.TDMR.INIT writes its chunk's PAMT
//! entries) bringing up a 64 GiB map on 1 CPU — Linux's design: one CPU issues every
//! TDH.SYS.TDMR.INIT, over Linux's own layout — and on 2 CPUs (`LpThreads`, TDMRs shaped for 2
//! with `Planner::with_init_cpus`), in the same run; then the modelled wall time of
//! TDH.SYS.TDMR.INIT for the 16-node 12 TiB fixture at the published 2.6 s per TiB, on 1, 16
//! and 64 CPUs, with and without shaping, printed as a table (it is arithmetic, not a
//! measurement), and the cost of the shaping pass itself.
//!
//! Two groups: `bringup`, the module's PAMT memory resident before bring-up (as a kernel's is),
//! and `bringup_first_touch`, the same over freshly allocated memory whose first-touch page
//! faults the calls take. Each sample builds its module untimed and drops it untimed. Beside
//! them `bringup_ceiling`: the same PAMT_4K writes with no mock, on one and on two threads —
//! what two CPUs of the machine can gain at all.
//!
//! `cargo bench --features mock,std --bench bringup`, then
//! `python3 scripts/bench-ratios.py bringup linux_1cpu ours_1cpu ours_2cpus` (and the same for
//! `bringup_first_touch`),
//! `python3 scripts/bench-ratios.py bringup_ceiling writes_1thread writes_2threads` and
//! `python3 scripts/bench-ratios.py bringup_plan plain shaped_64`.

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use tdmr::init::{Bringup, Cpus};
use tdmr::layout::{Planner, Strategy};
use tdmr::memmap::{Cmr, MemoryMap, MemoryRegion, parse_kernel_log};
use tdmr::mock::{LpThreads, MockModule, Platform};
use tdmr::readiness::InitEstimate;

const GIB: u64 = 1 << 30;

/// 64 GiB on two nodes (32 GiB each, above 4 GiB) plus the low 2 GiB.
fn map_64g() -> (MemoryMap, Vec<Cmr>) {
    let regions = vec![
        MemoryRegion::new(0x10_0000, 2 * GIB - 0x10_0000 - (64 << 20), 0),
        MemoryRegion::new(4 * GIB, 32 * GIB - (64 << 20), 0),
        MemoryRegion::new(36 * GIB, 32 * GIB - (64 << 20), 1),
    ];
    let cmrs = regions.iter().map(|r| Cmr::new(r.base, r.size)).collect();
    (MemoryMap::new(regions).unwrap(), cmrs)
}

/// A fresh module for one sample (not timed: a host's module and its memory exist before
/// bring-up starts). `resident`: its PAMT memory already mapped, as a kernel's is
/// (`MockModule::with_resident_pamt_memory`); otherwise the calls take the first-touch page
/// faults of freshly allocated memory.
fn module(cmrs: &[Cmr], cpus: u32, resident: bool) -> MockModule {
    let p = Platform::new(cmrs).unwrap().with_topology(cpus, 1).unwrap();
    let m = MockModule::new(p);
    if resident {
        m.with_resident_pamt_memory()
    } else {
        m.with_tdmr_init_work(true)
    }
}

/// TDH.SYS.INIT to the last TDH.SYS.TDMR.INIT (timed). The module is handed back so that its
/// teardown — freeing the PAMT images, which no real module ever does — falls outside the
/// sample (`iter_batched` drops routine outputs untimed).
fn bring_up(module: MockModule, memory: &MemoryMap, cpus: u32, planner: Planner) -> MockModule {
    let threads = LpThreads::new(&module);
    let done = Bringup::new(
        &module,
        &threads,
        &module,
        module.platform().private_keyids(),
    )
    .with_planner(planner)
    .run(memory)
    .unwrap();
    assert_eq!(module.lp_conflicts(), 0);
    assert_eq!(threads.cpus().len(), cpus as usize);
    black_box(done);
    module
}

fn work_mode(c: &mut Criterion) {
    let (memory, cmrs) = map_64g();
    for (group, resident) in [("bringup", true), ("bringup_first_touch", false)] {
        let mut g = c.benchmark_group(group);
        g.sample_size(10);
        let cases = [
            (
                "linux_1cpu",
                1,
                Planner::new().with_strategy(Strategy::Linux),
            ),
            ("ours_1cpu", 1, Planner::new()),
            ("ours_2cpus", 2, Planner::new().with_init_cpus(2)),
        ];
        for (name, cpus, planner) in cases {
            g.bench_with_input(BenchmarkId::new(name, "64g"), &(), |b, _| {
                b.iter_batched(
                    || module(&cmrs, cpus, resident),
                    |m| bring_up(m, &memory, cpus, planner),
                    BatchSize::PerIteration,
                )
            });
        }
        g.finish();
    }
}

/// The machine's ceiling for the same work without the mock: the PAMT_4K writes of a 66 GiB
/// bring-up (two words per 4 KiB page, 66 GiB-blocks of resident memory) done by one thread,
/// or by two OS threads (started per sample, as `LpThreads` starts its LPs) taking half the
/// blocks each. What two threads gain here bounds what two LPs can gain in `bringup`.
fn ceiling(c: &mut Criterion) {
    const GIBS: usize = 66;
    const WORDS: usize = 2 * (1 << 18);
    fn resident() -> Vec<Vec<u64>> {
        (0..GIBS)
            .map(|_| {
                let mut b = vec![0u64; WORDS];
                for w in b.iter_mut().step_by(512) {
                    *w = black_box(0);
                }
                b
            })
            .collect()
    }
    fn write(blocks: &mut [Vec<u64>]) {
        for b in blocks {
            for e in b.chunks_exact_mut(2) {
                e[0] = 0;
                e[1] = 1 << 63;
            }
            black_box(&b);
        }
    }
    let mut g = c.benchmark_group("bringup_ceiling");
    g.sample_size(10);
    g.bench_with_input(BenchmarkId::new("writes_1thread", "64g"), &(), |b, _| {
        b.iter_batched(
            resident,
            |mut blocks| {
                write(&mut blocks);
                blocks
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_with_input(BenchmarkId::new("writes_2threads", "64g"), &(), |b, _| {
        b.iter_batched(
            resident,
            |mut blocks| {
                let (lo, hi) = blocks.split_at_mut(GIBS / 2);
                std::thread::scope(|s| {
                    s.spawn(|| write(lo));
                    s.spawn(|| write(hi));
                });
                blocks
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn twelve_tib() -> tdmr::memmap::ParsedLog {
    parse_kernel_log(include_str!("../tests/fixtures/hp-16s-12t.log")).unwrap()
}

fn modelled(c: &mut Criterion) {
    let input = twelve_tib();
    let (memory, cmrs) = (input.memory(), input.cmrs());
    let linux = Planner::new()
        .with_strategy(Strategy::Linux)
        .plan(memory, cmrs)
        .unwrap();
    let one = Planner::new().plan(memory, cmrs).unwrap();
    println!(
        "\nmodelled TDH.SYS.TDMR.INIT wall time, hp-16s-12t.log (12 TiB, 16 nodes), 2.6 s/TiB:"
    );
    println!(
        "| CPUs | Linux (serial) | spread, no shaping | spread, shaped | shaped TDMRs | extra PAMT | serial / shaped |"
    );
    println!("|---|---|---|---|---|---|---|");
    for cpus in [1u32, 16, 64] {
        let plain = InitEstimate::new(&one, Some(&linux), None, cpus);
        let split = Planner::new()
            .with_init_cpus(cpus)
            .plan(memory, cmrs)
            .unwrap();
        let shaped = InitEstimate::new(&split, Some(&linux), Some(&one), cpus);
        let extra = shaped.split.map_or(0, |s| s.extra_pamt_bytes);
        println!(
            "| {cpus} | {} ms | {} ms | {} ms | {} | {} KiB | {:.1}× |",
            plain.linux_serial_ms,
            plain.tdmr_ms,
            shaped.tdmr_ms,
            shaped.tdmrs,
            extra / 1024,
            plain.linux_serial_ms as f64 / shaped.tdmr_ms.max(1) as f64
        );
    }
    let mut g = c.benchmark_group("bringup_plan");
    g.sample_size(20);
    g.bench_with_input(BenchmarkId::new("plain", "12t"), &(), |b, _| {
        b.iter(|| black_box(Planner::new().plan(memory, cmrs).unwrap()))
    });
    g.bench_with_input(BenchmarkId::new("shaped_64", "12t"), &(), |b, _| {
        b.iter(|| {
            black_box(
                Planner::new()
                    .with_init_cpus(64)
                    .plan(memory, cmrs)
                    .unwrap(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, work_mode, ceiling, modelled);
criterion_main!(benches);
