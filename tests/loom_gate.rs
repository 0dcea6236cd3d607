//! loom models of the hotplug gate: every interleaving and every value a weak load may return.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test loom_gate`
//!
//! The models' own shared data (the kernel's memory map, the CPUs initialization saw) use
//! Relaxed atomics on purpose: the only ordering they get is the gate's.
#![cfg(loom)]

#[path = "gate_common/mod.rs"]
mod common;

use common::{boundaries, frozen_range, r};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering::Relaxed};
use loom::thread;
use tdmr::addr::{PhysRange, SZ_1G};
use tdmr::hotplug_gate::{
    AdmissionRule, AdmitError, BeginInitError, CpuOfflineError, GateConfig, HotplugGate, KeyIdError,
};
use tdmr::layout::{Plan, Planner};
use tdmr::memmap::{Cmr, Cmrs, MemoryMap, MemoryRegion};

/// The machine of the models: CMRs [4G, 7G) and [8G, 10G); TDX memory [4G, 6G) and [8G, 10G)
/// (PAMTs land at the top of [8G, 10G)); `HOT` = [6G, 6G + 128M) is convertible memory that
/// may be hot-added before initialization.
struct Machine {
    cmrs: Cmrs,
    without_hot: (MemoryMap, Plan),
    with_hot: (MemoryMap, Plan),
}

const HOT: (u64, u64) = (6 * SZ_1G, 6 * SZ_1G + 0x800_0000);

fn hot() -> PhysRange {
    r(HOT.0, HOT.1)
}

fn machine() -> Machine {
    let cmrs = Cmrs::new(vec![
        Cmr::new(4 * SZ_1G, 3 * SZ_1G),
        Cmr::new(8 * SZ_1G, 2 * SZ_1G),
    ])
    .unwrap();
    let plan = |regions: Vec<MemoryRegion>| {
        let memory = MemoryMap::new(regions).unwrap();
        let plan = Planner::new().plan(&memory, &cmrs).unwrap();
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
    // The premise of the models, checked by the independent reference.
    let frozen = |(m, p): &(MemoryMap, Plan), range| frozen_range(p, m, &boundaries(p, m), range);
    assert!(frozen(&with_hot, hot()));
    assert!(!frozen(&without_hot, hot()));
    assert!(frozen(&without_hot, r(4 * SZ_1G, 5 * SZ_1G)));
    Machine {
        cmrs,
        without_hot,
        with_hot,
    }
}

/// A gate with `cpus` CPUs in one package, all online.
fn gate(m: &Machine, cpus: u32) -> Arc<HotplugGate> {
    let gate = HotplugGate::new(
        m.cmrs.clone(),
        GateConfig::new(cpus, 1)
            .with_snapshot_capacity(4)
            .with_section_bitmap_words(1),
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
                    .with_section_bitmap_words(1),
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
