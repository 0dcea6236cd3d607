//! loom models of the hotplug gate: every interleaving and every value a weak load may return.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test loom_gate`
//!
//! The models' own shared data (the kernel's memory map, the CPUs initialization saw) use
//! Relaxed atomics on purpose: the only ordering they get is the gate's. Memory that must not
//! be touched by two parties at once (a Dynamic PAMT page pair) is a loom `UnsafeCell`, so loom
//! itself proves the accesses ordered.
#![cfg(loom)]

#[path = "gate_common/mod.rs"]
mod common;

use common::{boundaries, frozen_range, r};
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use loom::thread;
use tdmr::addr::{PhysRange, SZ_1G, SZ_2M};
use tdmr::dpamt::{
    DynamicPamt, DynamicPamtError, Get, PairSource, PamtPagePair, Put, ReturnedPair,
};
use tdmr::hotplug_gate::{
    AdmissionRule, AdmitError, BeginInitError, BeginUpdateError, CpuOfflineError, CpuOnlineError,
    GateConfig, HotplugGate, KeyIdError, MetadataHolder, ModuleState, RemovalRule, RemoveError,
};
use tdmr::layout::{Plan, Planner, Strategy};
use tdmr::memmap::{Cmr, Cmrs, MemoryMap, MemoryRegion};
use tdmr::pamt::PamtModel;
use tdmr::seamcall::Seamcall;
use tdmr::sysinfo::TdxLimits;
use tdmr::tdx::leaf::{self, Leaf};
use tdmr::tdx::status::Status;
use tdmr::tdx::{Output, Regs};

/// The machine of the models: CMRs [4G, 7G) and [8G, 10G); TDX memory [4G, 6G) and [8G, 10G)
/// (PAMTs land at the top of [8G, 10G)); `HOT` = [6G, 6G + 128M) is convertible memory that
/// may be hot-added before initialization; `BLOCK` = [5G, 5G + 128M) is TDX memory that may
/// be removed.
struct Machine {
    cmrs: Cmrs,
    without_hot: (MemoryMap, Plan),
    with_hot: (MemoryMap, Plan),
    without_block: (MemoryMap, Plan),
}

const HOT: (u64, u64) = (6 * SZ_1G, 6 * SZ_1G + 0x800_0000);
const BLOCK: (u64, u64) = (5 * SZ_1G, 5 * SZ_1G + 0x800_0000);

fn hot() -> PhysRange {
    r(HOT.0, HOT.1)
}

fn block() -> PhysRange {
    r(BLOCK.0, BLOCK.1)
}

fn machine() -> Machine {
    let cmrs = Cmrs::new(vec![
        Cmr::new(4 * SZ_1G, 3 * SZ_1G),
        Cmr::new(8 * SZ_1G, 2 * SZ_1G),
    ])
    .unwrap();
    let plan = |regions: Vec<MemoryRegion>| {
        let memory = MemoryMap::new(regions).unwrap();
        // Linux's TDMRs with PAMTs from the top of memory: every PAMT at the top of
        // [8G, 10G), out of `HOT`, `BLOCK` and [4G, 5G), as the models assume; the premise
        // checks below say if that stops being so.
        let plan = Planner::new()
            .with_strategy(Strategy::Linux)
            .with_pamt_model(PamtModel::TopDown)
            .plan(&memory, &cmrs)
            .unwrap();
        (memory, plan)
    };
    let without_hot = plan(vec![
        MemoryRegion::new(4 * SZ_1G, 2 * SZ_1G, 0),
        MemoryRegion::new(8 * SZ_1G, 2 * SZ_1G, 0),
    ]);
    let with_hot = plan(vec![
        MemoryRegion::new(4 * SZ_1G, 2 * SZ_1G, 0),
        MemoryRegion::new(HOT.0, HOT.1 - HOT.0, 0),
        MemoryRegion::new(8 * SZ_1G, 2 * SZ_1G, 0),
    ]);
    let without_block = plan(vec![
        MemoryRegion::new(4 * SZ_1G, BLOCK.0 - 4 * SZ_1G, 0),
        MemoryRegion::new(BLOCK.1, 6 * SZ_1G - BLOCK.1, 0),
        MemoryRegion::new(8 * SZ_1G, 2 * SZ_1G, 0),
    ]);

    // The premise of the models, checked by the independent reference.
    let frozen = |(m, p): &(MemoryMap, Plan), range| frozen_range(p, m, &boundaries(p, m), range);
    assert!(frozen(&with_hot, hot()));
    assert!(!frozen(&without_hot, hot()));
    assert!(frozen(&without_hot, r(4 * SZ_1G, 5 * SZ_1G)));
    assert!(frozen(&without_hot, block()) && !frozen(&without_block, block()));
    for (_, p) in [&without_hot, &with_hot, &without_block] {
        assert!(p.tdmrs().len() * 3 <= 12, "the models' metadata capacity");
        assert!(p.pamt_ranges().iter().all(|b| !b.overlaps(block())));
    }
    Machine {
        cmrs,
        without_hot,
        with_hot,
        without_block,
    }
}

/// The small machine of the Dynamic PAMT model (few atomics: loom explores every access):
/// one CMR and TDX memory [4G, 4G + 16M), planned with Dynamic PAMT; `PAIR_AT` = the 2 MiB
/// range at 4G + 4M holds the pair's pages and is removed; the pair backs the range at 4G.
struct SmallMachine {
    cmrs: Cmrs,
    memory: MemoryMap,
    plan: Plan,
}

const PAIR_AT: u64 = 4 * SZ_1G + 0x40_0000;

fn small_machine() -> SmallMachine {
    let cmrs = Cmrs::new(vec![Cmr::new(4 * SZ_1G, 0x100_0000)]).unwrap();
    let memory = MemoryMap::new(vec![MemoryRegion::new(4 * SZ_1G, 0x100_0000, 0)]).unwrap();
    let limits = TdxLimits::default().with_dynamic_pamt(1).unwrap();
    let plan = Planner::new()
        .with_limits(limits)
        .plan(&memory, &cmrs)
        .unwrap();
    let pair_range = r(PAIR_AT, PAIR_AT + SZ_2M);
    assert!(plan.pamt_ranges().iter().all(|b| !b.overlaps(pair_range)));
    assert!(plan.pamt_ranges().iter().all(|b| !b.contains(4 * SZ_1G)));
    SmallMachine { cmrs, memory, plan }
}

/// A gate with `cpus` CPUs in one package, all online.
fn gate(m: &Machine, cpus: u32) -> Arc<HotplugGate> {
    let gate = HotplugGate::new(
        m.cmrs.clone(),
        GateConfig::new(cpus, 1)
            .with_snapshot_capacity(4)
            .with_section_bitmap_words(1)
            .with_metadata_capacity(12),
    )
    .unwrap();
    for cpu in 0..cpus {
        gate.cpu_online(cpu, 0).unwrap().finish();
    }
    Arc::new(gate)
}

/// Hot-add racing `begin_init`: an addition admitted under the pre-initialization rule is never
/// still in flight when initialization reads the memory map, and whatever is admitted after
/// `publish` is TDX memory of the published plan.
#[test]
fn hot_add_racing_begin_init() {
    let m = std::sync::Arc::new(machine());
    loom::model(move || {
        let gate = gate(&m, 1);
        let in_kernel_map = Arc::new(AtomicBool::new(false));

        let adder = {
            let (gate, map) = (gate.clone(), in_kernel_map.clone());
            thread::spawn(move || match gate.admit_memory(hot()) {
                Ok(tok) => {
                    if tok.rule().is_pre_init() {
                        map.store(true, Relaxed); // add_memory() into the kernel's map
                    }
                    let rule = tok.rule();
                    tok.finish();
                    Some(rule)
                }
                Err(AdmitError::Busy | AdmitError::NotTdxMemory { .. }) => None,
                Err(e) => panic!("unexpected refusal {e}"),
            })
        };

        let initializer = {
            let (gate, map, m) = (gate.clone(), in_kernel_map.clone(), m.clone());
            thread::spawn(move || match gate.begin_init() {
                Ok(ticket) => {
                    // Read the kernel's memory map, plan, configure, publish.
                    let saw_hot = map.load(Relaxed);
                    let (memory, plan) = if saw_hot { &m.with_hot } else { &m.without_hot };
                    ticket.publish(plan, memory).unwrap();
                    Some(saw_hot)
                }
                Err(BeginInitError::Busy { .. }) => None,
                Err(e) => panic!("unexpected {e}"),
            })
        };

        let added = adder.join().unwrap();
        let init = initializer.join().unwrap();
        if let (Some(rule), Some(saw_hot)) = (added, init) {
            match rule {
                AdmissionRule::Convertible => assert!(
                    saw_hot,
                    "an addition admitted before init was still in flight when init read the map"
                ),
                AdmissionRule::TdxMemory => assert!(
                    saw_hot,
                    "admitted after publish memory that is not TDX memory of the plan"
                ),
                AdmissionRule::AnyMemory => unreachable!(),
            }
        }
    });
}

/// `publish` racing admissions: once a reader sees the initialized state it sees the whole
/// snapshot, so TDX memory of the plan is admitted and nothing else is.
#[test]
fn publish_racing_admissions() {
    let m = std::sync::Arc::new(machine());
    loom::model(move || {
        let gate = gate(&m, 1);
        let ticket_gate = gate.clone();
        let m2 = m.clone();
        let initializer = thread::spawn(move || {
            let ticket = ticket_gate.begin_init();
            if let Ok(ticket) = ticket {
                let (memory, plan) = &m2.without_hot;
                ticket.publish(plan, memory).unwrap();
            }
        });
        let check = |range: PhysRange, tdx_memory: bool| {
            let gate = gate.clone();
            thread::spawn(move || match gate.admit_memory(range) {
                Ok(tok) if tok.rule() == AdmissionRule::TdxMemory => {
                    assert!(tdx_memory, "{range} admitted after publish")
                }
                Ok(tok) => assert_eq!(tok.rule(), AdmissionRule::Convertible),
                Err(AdmitError::Busy) => {}
                Err(AdmitError::NotTdxMemory { .. }) => {
                    assert!(!tdx_memory, "{range} refused after publish")
                }
                Err(e) => panic!("unexpected {e}"),
            })
        };
        let a = check(r(4 * SZ_1G, 5 * SZ_1G), true);
        let b = check(hot(), false);
        initializer.join().unwrap();
        a.join().unwrap();
        b.join().unwrap();
    });
}

/// The last CPU of a package going offline racing `begin_init`: while initialization is in
/// progress (the ticket is held until the offline has returned) the offline never succeeds.
#[test]
fn last_cpu_offline_racing_begin_init() {
    let m = std::sync::Arc::new(machine());
    loom::model(move || {
        let gate = gate(&m, 1);
        let g = gate.clone();
        let offline = thread::spawn(move || match g.cpu_offline(0, 0) {
            Ok(()) => true,
            Err(CpuOfflineError::Busy { .. }) => false,
            Err(e) => panic!("unexpected {e}"),
        });
        match gate.begin_init() {
            Ok(ticket) => {
                // KEY.CONFIG on every package would run here.
                assert_eq!(gate.online_cpus(0), Some(1));
                let went_offline = offline.join().unwrap();
                assert!(
                    !went_offline,
                    "the last CPU of package 0 went offline during init"
                );
                assert_eq!(gate.online_cpus(0), Some(1));
                ticket.fail();
            }
            Err(BeginInitError::PackageOffline { package: 0 } | BeginInitError::Busy { .. }) => {
                // Refused only because the offline was under way or done.
                let _ = offline.join().unwrap();
            }
            Err(e) => panic!("unexpected {e}"),
        }
    });
}

/// Two CPUs of one package going offline together while initialization begins: the package
/// keeps a CPU through initialization.
#[test]
fn two_offlines_racing_begin_init() {
    let m = std::sync::Arc::new(machine());
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(move || {
        let gate = gate(&m, 2);
        let offline = |cpu| {
            let g = gate.clone();
            thread::spawn(move || match g.cpu_offline(cpu, 0) {
                Ok(()) => true,
                Err(CpuOfflineError::Busy { .. }) => false,
                Err(e) => panic!("unexpected {e}"),
            })
        };
        let (a, b) = (offline(0), offline(1));
        let ticket = gate.begin_init();
        if ticket.is_ok() {
            assert!(gate.online_cpus(0).unwrap() >= 1);
        }
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        if ticket.is_ok() {
            assert!(!(a && b), "package 0 lost its last CPU during init");
            assert!(gate.online_cpus(0).unwrap() >= 1);
        }
        drop(ticket);
        assert_eq!(gate.online_cpus(0), Some(2 - a as u32 - b as u32));
    });
}

/// A CPU coming online racing `begin_init`: when initialization begins, every CPU that came
/// online without TDH.SYS.LP.INIT is online in the view initialization takes.
#[test]
fn cpu_online_racing_begin_init() {
    let m = std::sync::Arc::new(machine());
    loom::model(move || {
        let gate = {
            let g = HotplugGate::new(
                m.cmrs.clone(),
                GateConfig::new(2, 1)
                    .with_snapshot_capacity(4)
                    .with_section_bitmap_words(1)
                    .with_metadata_capacity(12),
            )
            .unwrap();
            g.cpu_online(0, 0).unwrap().finish();
            Arc::new(g)
        };
        let cpu1_up = Arc::new(AtomicBool::new(false));
        let (g, up) = (gate.clone(), cpu1_up.clone());
        let onliner = thread::spawn(move || match g.cpu_online(1, 0) {
            Ok(tok) => {
                let needs_lp_init = tok.lp_init_required();
                up.store(true, Relaxed); // the kernel's online mask
                tok.finish();
                Some(needs_lp_init)
            }
            Err(_) => None,
        });
        let (g, up, m) = (gate.clone(), cpu1_up.clone(), m.clone());
        let init = thread::spawn(move || match g.begin_init() {
            Ok(ticket) => {
                let lp_inited_cpu1 = up.load(Relaxed); // LP.INIT on every online CPU
                let (memory, plan) = &m.without_hot;
                ticket.publish(plan, memory).unwrap();
                Some(lp_inited_cpu1)
            }
            Err(_) => None,
        });
        if let (Some(needs_lp_init), Some(lp_inited)) =
            (onliner.join().unwrap(), init.join().unwrap())
        {
            assert!(
                needs_lp_init || lp_inited,
                "CPU 1 came up without TDH.SYS.LP.INIT"
            );
        }
    });
}

/// A CPU coming online after initialization racing a runtime module update: the CPU's
/// TDH.SYS.LP.INIT never runs while the update (SHUTDOWN to UPDATE) does. The module's state
/// is a loom `UnsafeCell` both write, so loom itself proves the two never overlap; the CPU is
/// either up before the update begins (and the update's lock-step includes it) or after it
/// ends (LP.INIT against the new module).
#[test]
fn cpu_online_racing_begin_update() {
    let m = std::sync::Arc::new(machine());
    loom::model(move || {
        let gate = {
            let g = HotplugGate::new(
                m.cmrs.clone(),
                GateConfig::new(2, 1)
                    .with_snapshot_capacity(4)
                    .with_section_bitmap_words(1)
                    .with_metadata_capacity(12),
            )
            .unwrap();
            g.cpu_online(0, 0).unwrap().finish();
            let (memory, plan) = &m.without_hot;
            g.begin_init().unwrap().publish(plan, memory).unwrap();
            Arc::new(g)
        };
        // What the module last did: 1 = LP.INIT on CPU 1, 2 = SHUTDOWN, 3 = UPDATE.
        let module = Arc::new(UnsafeCell::new(0u32));
        let (g, md) = (gate.clone(), module.clone());
        let onliner = thread::spawn(move || match g.cpu_online(1, 0) {
            Ok(tok) => {
                assert!(tok.lp_init_required());
                md.with_mut(|v| unsafe { *v = 1 });
                tok.finish();
                true
            }
            Err(CpuOnlineError::Busy) => false,
            Err(e) => panic!("unexpected {e}"),
        });
        let (g, md) = (gate.clone(), module.clone());
        let updater = thread::spawn(move || {
            // Retry as a kernel would: the update is pending after the first refusal, so
            // at most one more call is needed once the online in flight has finished.
            for _ in 0..3 {
                match g.begin_update() {
                    Ok(ticket) => {
                        md.with_mut(|v| unsafe { *v = 2 });
                        md.with_mut(|v| unsafe { *v = 3 });
                        ticket.finish();
                        return true;
                    }
                    Err(BeginUpdateError::Busy { in_flight }) => {
                        assert_eq!(in_flight, 1);
                        thread::yield_now();
                    }
                    Err(e) => panic!("unexpected {e}"),
                }
            }
            g.cancel_update();
            false
        });
        let (online, updated) = (onliner.join().unwrap(), updater.join().unwrap());
        assert!(online || updated, "one of them gets through");
        assert_eq!(gate.state(), ModuleState::Initialized);
        assert!(!gate.update_pending());
    });
}

/// A guest KeyID racing the last CPU of a package going offline: never both succeed.
#[test]
fn guest_keyid_racing_last_cpu_offline() {
    let m = std::sync::Arc::new(machine());
    loom::model(move || {
        let gate = gate(&m, 1);
        let (memory, plan) = &m.without_hot;
        gate.begin_init().unwrap().publish(plan, memory).unwrap();
        let g = gate.clone();
        let keyid = thread::spawn(move || match g.acquire_guest_keyid() {
            Ok(()) => true,
            Err(KeyIdError::Busy | KeyIdError::PackageOffline { .. }) => false,
            Err(e) => panic!("unexpected {e}"),
        });
        let g = gate.clone();
        let offline = thread::spawn(move || match g.cpu_offline(0, 0) {
            Ok(()) => true,
            Err(CpuOfflineError::GuestKeyIdsInUse { .. }) => false,
            Err(e) => panic!("unexpected {e}"),
        });
        let (k, o) = (keyid.join().unwrap(), offline.join().unwrap());
        assert!(!(k && o));
        assert!(
            k || o,
            "one of them succeeds: neither can be refused by the other alone"
        );
    });
}

/// A memory removal racing `begin_init`: a removal admitted under the pre-initialization rule
/// is never still leaving when initialization reads the memory map (the map it reads no longer
/// holds the memory), and one admitted after `publish` is admitted by the post-init rule.
#[test]
fn removal_racing_begin_init() {
    let m = std::sync::Arc::new(machine());
    loom::model(move || {
        let gate = gate(&m, 1);
        let in_kernel_map = Arc::new(AtomicBool::new(true));

        let remover = {
            let (gate, map) = (gate.clone(), in_kernel_map.clone());
            thread::spawn(move || match gate.admit_removal(block()) {
                Ok(tok) => {
                    let rule = tok.rule();
                    map.store(false, Relaxed); // offline_pages(): out of the kernel's map
                    tok.finish();
                    Some(rule)
                }
                Err(RemoveError::Busy) => None,
                Err(e) => panic!("unexpected refusal {e}"),
            })
        };

        let initializer = {
            let (gate, map, m) = (gate.clone(), in_kernel_map.clone(), m.clone());
            thread::spawn(move || match gate.begin_init() {
                Ok(ticket) => {
                    let saw_block = map.load(Relaxed);
                    let (memory, plan) = if saw_block {
                        &m.without_hot
                    } else {
                        &m.without_block
                    };
                    ticket.publish(plan, memory).unwrap();
                    Some(saw_block)
                }
                Err(BeginInitError::Busy { .. }) => None,
                Err(e) => panic!("unexpected {e}"),
            })
        };

        let removed = remover.join().unwrap();
        let init = initializer.join().unwrap();
        if let (Some(RemovalRule::BeforeInit), Some(saw_block)) = (removed, init) {
            assert!(
                !saw_block,
                "a removal admitted before init was still leaving when init read the map"
            );
        }
    });
}

/// The TDX module of the Dynamic PAMT model: its PAMT.ADD writes the pair's pages (the module
/// zeroes them through its KeyID), PAMT.REMOVE hands them back. The pages are a plain loom
/// cell: if anybody else touched them while the pair is added, loom would find the race.
struct PairModule {
    pages: UnsafeCell<u64>,
    pair: [AtomicU32; 2],
}

#[derive(Clone)]
struct PairBackend(Arc<PairModule>);

impl Seamcall for PairBackend {
    fn seamcall(&self, l: Leaf, regs: &Regs) -> Output {
        let m = &self.0;
        let mut out = *regs;
        if l == leaf::TDH_PHYMEM_PAMT_ADD {
            // SAFETY: loom fails the model if another access to the cell is concurrent.
            m.pages.with_mut(|p| unsafe { *p = 0 });
            m.pair[0].store((regs.rdx >> 12) as u32, Relaxed);
            m.pair[1].store((regs.r8 >> 12) as u32, Relaxed);
        } else if l == leaf::TDH_PHYMEM_PAMT_REMOVE {
            // SAFETY: as above.
            m.pages.with_mut(|p| unsafe { *p = 1 });
            out.rdx = u64::from(m.pair[0].load(Relaxed)) << 12;
            out.r8 = u64::from(m.pair[1].load(Relaxed)) << 12;
        } else {
            panic!("unexpected leaf {l}");
        }
        Output::new(Status::SUCCESS, out)
    }
}

/// Hands out one pair, takes it back.
struct OnePair(Option<PamtPagePair>);

// SAFETY: the model's module writes only its own cell; the addresses are labels.
unsafe impl PairSource for OnePair {
    fn take_pair(&mut self) -> Option<PamtPagePair> {
        self.0.take()
    }
    fn return_pair(&mut self, p: ReturnedPair) -> Result<(), ReturnedPair> {
        self.0 = Some(p.pair());
        Ok(())
    }
}

/// A memory removal racing TDH.PHYMEM.PAMT.ADD of a pair whose pages lie in the memory being
/// removed: the removal is never admitted while the pair is added. The kernel writes the
/// removed memory once the removal is admitted (it is gone after); the module writes the
/// pages on ADD and REMOVE; loom proves those writes never concurrent.
#[test]
fn removal_racing_dynamic_pamt_add_of_a_pair_inside_it() {
    let m = std::sync::Arc::new(small_machine());
    loom::model(move || {
        let gate = Arc::new(
            HotplugGate::new(
                m.cmrs.clone(),
                GateConfig::new(0, 0)
                    .with_snapshot_capacity(4)
                    .with_section_bitmap_words(1)
                    .with_metadata_capacity(3)
                    .with_dynamic_pamt(true),
            )
            .unwrap(),
        );
        let (memory, plan) = (&m.memory, &m.plan);
        gate.begin_init().unwrap().publish(plan, memory).unwrap();
        let module = Arc::new(PairModule {
            pages: UnsafeCell::new(1),
            pair: [AtomicU32::new(0), AtomicU32::new(0)],
        });
        let table = gate.range_table().unwrap();
        let dpamt = Arc::new(
            DynamicPamt::for_plan_with_table(PairBackend(module.clone()), plan, table).unwrap(),
        );
        // The pair's pages lie in the 2 MiB range removed; the range it backs is 4 GiB.
        let pair = PamtPagePair::new(PAIR_AT, PAIR_AT + 0x1000).unwrap();
        let gone = r(PAIR_AT, PAIR_AT + SZ_2M);
        let backed = (4 * SZ_1G) >> 12;

        let adder = {
            let dpamt = dpamt.clone();
            thread::spawn(move || {
                let mut source = OnePair(Some(pair));
                match dpamt.get(backed, &mut source) {
                    Ok(Get::Added) => {
                        let put = dpamt.put(backed, &mut source).unwrap();
                        assert_eq!(put, Put::Removed { unreturned: None });
                        true
                    }
                    Err(DynamicPamtError::PairPageLeaving {
                        pa,
                        unreturned: None,
                    }) => {
                        assert!(pa == pair.page0() || pa == pair.page1());
                        false
                    }
                    other => panic!("unexpected {other:?}"),
                }
            })
        };
        let remover = {
            let (gate, module) = (gate.clone(), module.clone());
            thread::spawn(move || match gate.admit_removal(gone) {
                Ok(tok) => {
                    assert_eq!(tok.rule(), RemovalRule::NoTdxMetadata);
                    // SAFETY: loom fails the model if the module's access is concurrent.
                    module.pages.with_mut(|p| unsafe { *p = 2 }); // the memory goes away
                    tok.finish();
                    true
                }
                Err(RemoveError::HoldsTdxMetadata {
                    holder: MetadataHolder::DynamicPamtPages { range, pages },
                    overlap,
                    ..
                }) => {
                    // One page or both: the pair's pages are counted one after the other.
                    assert_eq!((range, overlap), (gone, gone));
                    assert!((1..=2).contains(&pages));
                    false
                }
                Err(e) => panic!("unexpected {e}"),
            })
        };
        // In a true race both may be refused (each saw the other's mark); never both admitted
        // at once, which the cell proves. One after the other, both go ahead.
        let _ = (adder.join().unwrap(), remover.join().unwrap());
        // Everything is back: no pair page counted, no removal marking the table.
        assert_eq!(table.pair_pages(gone), 0);
        assert_eq!((dpamt.busy_ranges(), gate.removals_in_flight()), (0, 0));
        gate.admit_removal(gone).unwrap().finish();
    });
}

/// Initialization is never starved: once `begin_init` has marked it pending, additions,
/// removals and CPU onlines into a package with a CPU are refused, so the operations in flight
/// only drain. The initializer waits for each of them to leave (it can do nothing else) and
/// calls `begin_init` once per departure: it succeeds after at most as many calls as were in
/// flight when it marked pending, whatever the other threads keep trying.
#[test]
fn begin_init_is_not_starved_by_a_stream_of_hotplug() {
    let m = std::sync::Arc::new(machine());
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(move || {
        let gate = gate(&m, 2);
        let stream = |t: u32| {
            let gate = gate.clone();
            thread::spawn(move || {
                for _ in 0..2 {
                    if t == 0 {
                        match gate.admit_memory(hot()) {
                            Ok(tok) => tok.finish(),
                            Err(AdmitError::Busy) => {}
                            Err(e) => panic!("unexpected {e}"),
                        }
                        match gate.admit_removal(block()) {
                            Ok(tok) => tok.finish(),
                            Err(RemoveError::Busy) => {}
                            Err(e) => panic!("unexpected {e}"),
                        }
                    } else {
                        // CPU 1 of package 0 goes and comes back (CPU 0 stays: never the last).
                        match gate.cpu_offline(1, 0) {
                            Ok(()) | Err(CpuOfflineError::NotOnline { .. }) => {}
                            Err(e) => panic!("unexpected {e}"),
                        }
                        match gate.cpu_online(1, 0) {
                            Ok(tok) => tok.finish(),
                            Err(CpuOnlineError::Busy | CpuOnlineError::AlreadyOnline { .. }) => {}
                            Err(e) => panic!("unexpected {e}"),
                        }
                    }
                }
            })
        };
        let workers = [stream(0), stream(1)];

        // The first call marks initialization pending.
        let mut calls = 1;
        let (marked_with, mut last) = match gate.begin_init() {
            Ok(t) => {
                drop(t);
                (0, 0)
            }
            Err(BeginInitError::Busy { in_flight }) => (in_flight, in_flight),
            Err(e) => panic!("unexpected {e}"),
        };
        if last > 0 {
            loop {
                // Wait for one of the operations in flight to leave.
                while gate.in_flight() >= last {
                    thread::yield_now();
                }
                calls += 1;
                match gate.begin_init() {
                    Ok(t) => {
                        drop(t);
                        break;
                    }
                    Err(BeginInitError::Busy { in_flight }) => {
                        assert!(in_flight < last, "in flight grew while pending");
                        last = in_flight;
                    }
                    Err(e) => panic!("unexpected {e}"),
                }
            }
        }
        assert!(
            calls <= marked_with + 1,
            "{calls} calls with {marked_with} in flight when pending was marked"
        );
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(gate.in_flight(), 0);
    });
}
