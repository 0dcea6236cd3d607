//! The hotplug gate's rules, one thread at a time (see `loom_gate.rs` and `gate_stress.rs` for
//! the concurrent proofs).

#[path = "gate_common/mod.rs"]
mod common;

use common::{FIXTURES, Rng, boundaries, candidates, convertible, frozen_range, planned, r};
use tdmr::addr::{PageSize, SZ_1G};
use tdmr::hotplug_gate::{
    AdmissionRule, AdmitError, BeginInitError, CpuOfflineError, CpuOnlineError, GateConfig,
    GateConfigError, HotplugGate, KeyIdError, ModuleState, PreInitPolicy, PublishError,
    frozen_tdx_memory,
};
use tdmr::layout::{Planner, Strategy};
use tdmr::memmap::{Cmr, Cmrs, MemoryMap, MemoryRegion};

/// A gate with `cpus` CPUs round-robin over `packages` packages, all online.
fn gate_online(cmrs: &Cmrs, cpus: u32, packages: u32) -> HotplugGate {
    let gate = HotplugGate::new(cmrs.clone(), GateConfig::new(cpus, packages)).unwrap();
    for cpu in 0..cpus {
        gate.cpu_online(cpu, cpu % packages).unwrap().finish();
    }
    gate
}

fn two_cmrs() -> Cmrs {
    // [1M, 2G) and [4G, 8G) abutting [8G, 12G).
    Cmrs::new(vec![
        Cmr::new(0x10_0000, 0x8000_0000 - 0x10_0000),
        Cmr::new(4 * SZ_1G, 4 * SZ_1G),
        Cmr::new(8 * SZ_1G, 4 * SZ_1G),
    ])
    .unwrap()
}

#[test]
fn before_init_memory_must_be_convertible_and_refusals_name_the_part_outside() {
    let gate = gate_online(&two_cmrs(), 1, 1);
    let inside = r(5 * SZ_1G, 6 * SZ_1G);
    let tok = gate.admit_memory(inside).unwrap();
    assert_eq!(tok.rule(), AdmissionRule::Convertible);
    assert_eq!(tok.range(), inside);
    assert_eq!(gate.in_flight(), 1);
    tok.finish();
    assert_eq!(gate.in_flight(), 0);

    // Abutting CMRs are one convertible range.
    let across = r(7 * SZ_1G, 9 * SZ_1G);
    gate.admit_memory(across).unwrap().finish();

    assert_eq!(
        gate.admit_memory(r(SZ_1G, 5 * SZ_1G)).unwrap_err(),
        AdmitError::NotConvertible {
            range: r(SZ_1G, 5 * SZ_1G),
            outside: r(0x8000_0000, 4 * SZ_1G),
        }
    );
    assert_eq!(
        gate.admit_memory(r(11 * SZ_1G, 13 * SZ_1G)).unwrap_err(),
        AdmitError::NotConvertible {
            range: r(11 * SZ_1G, 13 * SZ_1G),
            outside: r(12 * SZ_1G, 13 * SZ_1G),
        }
    );
    assert_eq!(
        gate.admit_memory(r(0, 0x20_0000)).unwrap_err(),
        AdmitError::NotConvertible {
            range: r(0, 0x20_0000),
            outside: r(0, 0x10_0000),
        }
    );
    assert_eq!(gate.in_flight(), 0);
}

#[test]
fn any_memory_policy_admits_what_the_cmrs_do_not_hold() {
    let cfg = GateConfig::new(1, 1).with_pre_init(PreInitPolicy::AnyMemory);
    let gate = HotplugGate::new(two_cmrs(), cfg).unwrap();
    let tok = gate.admit_memory(r(100 * SZ_1G, 101 * SZ_1G)).unwrap();
    assert_eq!(tok.rule(), AdmissionRule::AnyMemory);
    assert_eq!(gate.pre_init(), PreInitPolicy::AnyMemory);
}

#[test]
fn empty_and_misaligned_ranges_are_refused() {
    let gate = gate_online(&two_cmrs(), 1, 1);
    assert_eq!(
        gate.admit_memory(r(0x5000, 0x5000)).unwrap_err(),
        AdmitError::Empty { at: 0x5000 }
    );
    assert_eq!(
        gate.admit_memory(r(4 * SZ_1G + 0x800, 4 * SZ_1G + 0x2000))
            .unwrap_err(),
        AdmitError::Misaligned {
            range: r(4 * SZ_1G + 0x800, 4 * SZ_1G + 0x2000)
        }
    );
}

#[test]
fn additions_in_flight_hold_off_initialization_and_initialization_refuses_hotplug() {
    let gate = gate_online(&two_cmrs(), 2, 1);
    let a = gate.admit_memory(r(4 * SZ_1G, 5 * SZ_1G)).unwrap();
    let b = gate.admit_memory(r(5 * SZ_1G, 6 * SZ_1G)).unwrap();
    assert_eq!(
        gate.begin_init().unwrap_err(),
        BeginInitError::Busy { in_flight: 2 }
    );
    assert!(gate.begin_init().unwrap_err().is_retryable());
    drop(a);
    assert_eq!(
        gate.begin_init().unwrap_err(),
        BeginInitError::Busy { in_flight: 1 }
    );
    b.finish();
    let ticket = gate.begin_init().unwrap();
    assert_eq!(gate.state(), ModuleState::Initializing);
    assert_eq!(gate.begin_init().unwrap_err(), BeginInitError::InProgress);
    assert_eq!(
        gate.admit_memory(r(4 * SZ_1G, 5 * SZ_1G)).unwrap_err(),
        AdmitError::Busy
    );
    assert!(
        gate.admit_memory(r(4 * SZ_1G, 5 * SZ_1G))
            .unwrap_err()
            .is_retryable()
    );
    // Not even memory outside the CMRs gets a different answer while initializing.
    assert_eq!(
        gate.admit_memory(r(100 * SZ_1G, 101 * SZ_1G)).unwrap_err(),
        AdmitError::Busy
    );
    ticket.fail();
    assert_eq!(gate.state(), ModuleState::Failed);
    // Failed: the CMR rule applies again and initialization may be retried.
    assert_eq!(
        gate.admit_memory(r(4 * SZ_1G, 5 * SZ_1G)).unwrap().rule(),
        AdmissionRule::Convertible
    );
    let ticket = gate.begin_init().unwrap();
    drop(ticket);
    assert_eq!(gate.state(), ModuleState::Failed, "a dropped ticket fails");
}

#[test]
fn cpu_rules_during_initialization() {
    let gate = HotplugGate::new(two_cmrs(), GateConfig::new(4, 2)).unwrap();
    // CPUs 0, 1 in package 0; CPU 2 in package 1; CPU 3 offline.
    for (cpu, pkg) in [(0, 0), (1, 0), (2, 1)] {
        let t = gate.cpu_online(cpu, pkg).unwrap();
        assert!(
            !t.lp_init_required(),
            "init runs LP.INIT on CPUs online before it"
        );
        t.finish();
    }
    let ticket = gate.begin_init().unwrap();
    assert_eq!(gate.cpu_online(3, 1).unwrap_err(), CpuOnlineError::Busy);
    assert_eq!(
        gate.cpu_package(3),
        None,
        "a refused online leaves the CPU offline"
    );
    // Last CPU of package 1: refused. A CPU of package 0 with another beside it: allowed.
    assert_eq!(
        gate.cpu_offline(2, 1).unwrap_err(),
        CpuOfflineError::Busy { cpu: 2, package: 1 }
    );
    assert_eq!(gate.cpu_package(2), Some(1));
    gate.cpu_offline(1, 0).unwrap();
    assert_eq!(
        gate.cpu_offline(0, 0).unwrap_err(),
        CpuOfflineError::Busy { cpu: 0, package: 0 }
    );
    assert_eq!(
        (gate.online_cpus(0), gate.online_cpus(1)),
        (Some(1), Some(1))
    );
    ticket.fail();
    // After a failed init the last CPU may go.
    gate.cpu_offline(2, 1).unwrap();
    assert_eq!(
        gate.begin_init().unwrap_err(),
        BeginInitError::PackageOffline { package: 1 }
    );
    assert_eq!(
        gate.state(),
        ModuleState::Failed,
        "a refused begin_init changes nothing"
    );
    let t = gate.cpu_online(3, 1).unwrap();
    assert_eq!(
        gate.begin_init().unwrap_err(),
        BeginInitError::Busy { in_flight: 1 },
        "an online in flight holds init off"
    );
    t.finish();
    assert!(gate.begin_init().is_ok());
}

#[test]
fn cpus_onlined_after_init_need_lp_init_and_guest_keyids_pin_the_last_cpu() {
    let (memory, cmrs, plan) = planned(FIXTURES[3].1);
    let gate = gate_online(&cmrs, 3, 2); // CPUs 0, 2 in package 0; CPU 1 in package 1.
    assert_eq!(
        gate.acquire_guest_keyid().unwrap_err(),
        KeyIdError::NotInitialized {
            state: ModuleState::Uninitialized
        }
    );
    gate.begin_init().unwrap().publish(&plan, &memory).unwrap();
    assert_eq!(
        gate.begin_init().unwrap_err(),
        BeginInitError::AlreadyInitialized
    );

    gate.cpu_offline(2, 0).unwrap();
    let t = gate.cpu_online(2, 0).unwrap();
    assert!(t.lp_init_required());
    assert_eq!(gate.in_flight(), 0, "onlines after init exclude nothing");
    t.finish();

    gate.acquire_guest_keyid().unwrap();
    gate.acquire_guest_keyid().unwrap();
    assert_eq!(gate.guest_keyids(), 2);
    assert_eq!(
        gate.cpu_offline(1, 1).unwrap_err(),
        CpuOfflineError::GuestKeyIdsInUse {
            cpu: 1,
            package: 1,
            guest_keyids: 2
        }
    );
    gate.cpu_offline(2, 0).unwrap(); // not the last of package 0
    gate.release_guest_keyid().unwrap();
    gate.release_guest_keyid().unwrap();
    assert_eq!(
        gate.release_guest_keyid().unwrap_err(),
        KeyIdError::NoneInUse
    );
    gate.cpu_offline(1, 1).unwrap();
    assert_eq!(
        gate.acquire_guest_keyid().unwrap_err(),
        KeyIdError::PackageOffline { package: 1 }
    );
    assert_eq!(gate.guest_keyids(), 0, "a refused acquisition is undone");
}

#[test]
fn cpu_bookkeeping_errors_name_the_cpu() {
    let gate = HotplugGate::new(two_cmrs(), GateConfig::new(2, 2)).unwrap();
    assert_eq!(
        gate.cpu_online(2, 0).unwrap_err(),
        CpuOnlineError::NoSuchCpu { cpu: 2, cpus: 2 }
    );
    assert_eq!(
        gate.cpu_online(0, 2).unwrap_err(),
        CpuOnlineError::NoSuchPackage {
            package: 2,
            packages: 2
        }
    );
    let t = gate.cpu_online(0, 1).unwrap();
    assert_eq!(
        gate.cpu_online(0, 1).unwrap_err(),
        CpuOnlineError::CpuBusy { cpu: 0 }
    );
    assert_eq!(
        gate.cpu_offline(0, 1).unwrap_err(),
        CpuOfflineError::CpuBusy { cpu: 0 }
    );
    t.finish();
    assert_eq!(
        gate.cpu_online(0, 0).unwrap_err(),
        CpuOnlineError::AlreadyOnline { cpu: 0, package: 1 }
    );
    assert_eq!(
        gate.cpu_offline(0, 0).unwrap_err(),
        CpuOfflineError::WrongPackage {
            cpu: 0,
            package: 0,
            online_in: 1
        }
    );
    assert_eq!(
        gate.cpu_offline(1, 0).unwrap_err(),
        CpuOfflineError::NotOnline { cpu: 1 }
    );
    assert_eq!(
        gate.cpu_offline(5, 0).unwrap_err(),
        CpuOfflineError::NoSuchCpu { cpu: 5, cpus: 2 }
    );
    // An abandoned online leaves the CPU offline and uncounted.
    drop(gate.cpu_online(1, 0).unwrap());
    assert_eq!((gate.cpu_package(1), gate.online_cpus(0)), (None, Some(0)));
    assert_eq!(gate.in_flight(), 0);

    for (cpus, packages) in [(0, 1), (1, 0), (1, 2), (u32::MAX, u32::MAX)] {
        assert_eq!(
            HotplugGate::new(two_cmrs(), GateConfig::new(cpus, packages)).unwrap_err(),
            GateConfigError::Topology { cpus, packages }
        );
    }
    // No CPU tracking at all is allowed: begin_init then checks no package.
    let memory_only = HotplugGate::new(two_cmrs(), GateConfig::new(0, 0)).unwrap();
    assert!(memory_only.begin_init().is_ok());
}

#[test]
fn frozen_memory_matches_its_definition_on_every_fixture() {
    for (name, log) in FIXTURES {
        let (memory, cmrs, plan) = planned(log);
        let frozen = frozen_tdx_memory(&plan, &memory);
        assert!(!frozen.is_empty(), "{name}");
        for w in frozen.windows(2) {
            assert!(
                w[0].end() < w[1].start(),
                "{name}: sorted, disjoint, not abutting"
            );
        }
        let bounds = boundaries(&plan, &memory);
        for f in &frozen {
            assert!(
                frozen_range(&plan, &memory, &bounds, *f),
                "{name}: {f} is frozen"
            );
            // The bytes just outside each piece are not.
            if f.start() > 0 {
                assert!(!frozen_range(
                    &plan,
                    &memory,
                    &bounds,
                    r(f.start() - 1, f.start())
                ));
            }
            assert!(!frozen_range(
                &plan,
                &memory,
                &bounds,
                r(f.end(), f.end() + 1)
            ));
        }

        // Without the section bitmap, with a coarse one, with the default one.
        for words in [0, 1, 512] {
            let config = GateConfig::new(0, 0).with_section_bitmap_words(words);
            let gate = HotplugGate::new(cmrs.clone(), config).unwrap();
            let n = gate.begin_init().unwrap().publish(&plan, &memory).unwrap();
            assert_eq!(n, frozen.len(), "{name}");
            assert_eq!(gate.frozen_memory().collect::<Vec<_>>(), frozen, "{name}");

            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
            let mut admitted = 0;
            for c in candidates(&plan, &memory, &cmrs, &mut rng, 4000) {
                let want = frozen_range(&plan, &memory, &bounds, c);
                match gate.admit_memory(c) {
                    Ok(tok) => {
                        assert!(want, "{name}: admitted {c}");
                        assert_eq!(tok.rule(), AdmissionRule::TdxMemory);
                        admitted += 1;
                    }
                    Err(AdmitError::NotTdxMemory { range, outside }) => {
                        assert!(!want, "{name}: refused {c}");
                        assert_eq!(range, c);
                        assert!(c.contains_range(outside) && !outside.is_empty());
                        // The named part is wholly outside, and starts where coverage stops.
                        assert!(!frozen_range(
                            &plan,
                            &memory,
                            &bounds,
                            r(outside.start(), outside.start() + 1)
                        ));
                        assert!(
                            outside.start() == c.start()
                                || frozen_range(
                                    &plan,
                                    &memory,
                                    &bounds,
                                    r(c.start(), outside.start())
                                )
                        );
                    }
                    Err(e) => panic!("{name}: {c}: unexpected {e}"),
                }
            }
            assert!(
                admitted > 100,
                "{name}: the candidates exercise both answers ({admitted})"
            );
        }
        let mut rng = Rng(0x51ed_2701);
        // Pre-init answers were the CMRs' (checked on a fresh gate).
        let fresh = gate_online(&cmrs, 1, 1);
        for c in candidates(&plan, &memory, &cmrs, &mut rng, 1000) {
            assert_eq!(
                fresh.admit_memory(c).is_ok(),
                convertible(&cmrs, c),
                "{name}: {c}"
            );
        }
    }
}

#[test]
fn a_range_spanning_abutting_regions_and_tdmrs_is_admitted() {
    // Node 0: [4G, 6G) and [6G, 8G) as two regions; the Linux strategy plans one TDMR per
    // region and, with the top-down allocator model, puts both PAMTs at the top of [6G, 8G).
    let memory = MemoryMap::new(vec![
        MemoryRegion::new(4 * SZ_1G, 2 * SZ_1G, 0),
        MemoryRegion::new(6 * SZ_1G, 2 * SZ_1G, 0),
    ])
    .unwrap();
    let cmrs = Cmrs::covering(&memory);
    let plan = Planner::new()
        .with_strategy(Strategy::Linux)
        .with_pamt_model(tdmr::pamt::PamtModel::TopDown)
        .plan(&memory, &cmrs)
        .unwrap();
    assert_eq!(plan.tdmrs().len(), 2);
    let gate = gate_online(&cmrs, 1, 1);
    gate.begin_init().unwrap().publish(&plan, &memory).unwrap();
    // Linux's single-entry rule refuses this; the gate admits it.
    assert!(gate.admit_memory(r(5 * SZ_1G, 7 * SZ_1G)).is_ok());
    let pamt = plan.tdmrs()[0].pamt(PageSize::Size4K);
    assert_eq!(
        gate.admit_memory(r(7 * SZ_1G, 8 * SZ_1G)).unwrap_err(),
        AdmitError::NotTdxMemory {
            range: r(7 * SZ_1G, 8 * SZ_1G),
            outside: r(
                plan.tdmrs()
                    .iter()
                    .map(|t| t.pamt(PageSize::Size4K).start())
                    .min()
                    .unwrap(),
                8 * SZ_1G
            ),
        }
    );
    assert!(pamt.end() <= 8 * SZ_1G);
}

#[test]
fn too_large_a_snapshot_fails_closed() {
    let (memory, cmrs, plan) = planned(FIXTURES[3].1);
    let gate = HotplugGate::new(cmrs, GateConfig::new(0, 0).with_snapshot_capacity(1)).unwrap();
    let err = gate
        .begin_init()
        .unwrap()
        .publish(&plan, &memory)
        .unwrap_err();
    assert_eq!(
        err,
        PublishError::SnapshotTooLarge {
            ranges: frozen_tdx_memory(&plan, &memory).len(),
            capacity: 1
        }
    );
    assert_eq!(gate.state(), ModuleState::Initialized);
    assert_eq!(gate.frozen_memory().count(), 0);
    let tdx = memory.regions()[1].range();
    let block = r(tdx.start(), tdx.start() + 0x800_0000);
    assert!(matches!(
        gate.admit_memory(block),
        Err(AdmitError::NotTdxMemory { .. })
    ));
}

#[test]
fn errors_display_the_offending_values() {
    let e = AdmitError::NotConvertible {
        range: r(0x1000, 0x3000),
        outside: r(0x2000, 0x3000),
    };
    assert_eq!(
        e.to_string(),
        "memory range [0x1000, 0x3000) is not convertible: [0x2000, 0x3000) lies outside every CMR"
    );
    let e = CpuOfflineError::GuestKeyIdsInUse {
        cpu: 7,
        package: 1,
        guest_keyids: 3,
    };
    assert!(e.to_string().contains("CPU 7") && e.to_string().contains("3 guest KeyIDs"));
    let e: Box<dyn std::error::Error> = Box::new(BeginInitError::PackageOffline { package: 2 });
    assert!(e.to_string().contains("package 2"));
}

#[test]
fn pamt_blocks_are_never_frozen_memory_even_outside_reserved_areas() {
    use tdmr::layout::{
        HolePolicy, Plan, ReservedArea, ReservedAreas, ReservedKind, Strategy, Tdmr,
    };
    use tdmr::sysinfo::TdxLimits;
    // A hand-made plan the planner would never produce: the PAMT blocks of the first TDMR sit
    // in non-reserved space of both TDMRs, and the second TDMR reserves a hole.
    let memory = MemoryMap::new(vec![MemoryRegion::new(0, 4 * SZ_1G, 0)]).unwrap();
    let mut hole = ReservedAreas::new();
    hole.push(ReservedArea {
        offset: 0x1000_0000,
        size: 0x1000_0000,
        kind: ReservedKind::Hole,
    });
    let pamt = [
        r(SZ_1G - 0x2000, SZ_1G + 0x1000),
        r(SZ_1G + 0x1000, SZ_1G + 0x2000),
        r(3 * SZ_1G, 3 * SZ_1G + 0x1000),
    ];
    let tdmrs = vec![
        Tdmr::new(r(0, SZ_1G), 0, ReservedAreas::new(), pamt),
        Tdmr::new(r(SZ_1G, 2 * SZ_1G), 0, hole, [r(0, 0); 3]),
    ];
    let plan = Plan::from_parts(
        Strategy::Linux,
        HolePolicy::Memory,
        TdxLimits::default(),
        tdmrs,
        vec![],
    );
    let frozen = frozen_tdx_memory(&plan, &memory);
    assert_eq!(
        frozen,
        vec![
            r(0, SZ_1G - 0x2000),
            r(SZ_1G + 0x2000, SZ_1G + 0x1000_0000),
            r(SZ_1G + 0x2000_0000, 2 * SZ_1G),
        ]
    );
    let bounds = boundaries(&plan, &memory);
    for f in &frozen {
        assert!(frozen_range(&plan, &memory, &bounds, *f));
    }
}
