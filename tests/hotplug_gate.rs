//! The hotplug gate's rules, one thread at a time (see `loom_gate.rs` and `gate_stress.rs` for
//! the concurrent proofs).

#[path = "gate_common/mod.rs"]
mod common;

use common::{
    FIXTURES, PairModule, Pairs, Rng, boundaries, candidates, convertible, first_pamt_hit,
    frozen_range, planned, r,
};
use tdmr::addr::{PageSize, PhysRange, SZ_1G, SZ_2M};
use tdmr::dpamt::{DynamicPamt, DynamicPamtError, Get, Put};
use tdmr::hotplug_gate::{
    AdmissionRule, AdmitError, BeginInitError, BeginUpdateError, CpuOfflineError, CpuOnlineError,
    GateConfig, GateConfigError, HotplugGate, KeyIdError, MetadataHolder, ModuleState,
    PreInitPolicy, PublishError, RemovalRule, RemoveError, frozen_tdx_memory, tdx_metadata,
};
use tdmr::layout::{Planner, Strategy};
use tdmr::memmap::{Cmr, Cmrs, MemoryMap, MemoryRegion};
use tdmr::sysinfo::TdxLimits;

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
    assert_eq!(gate.state(), ModuleState::Failed);
    assert!(gate.init_pending(), "initialization stays pending");
    // Pending: a CPU of package 0 (which has one) is refused, one of package 1 is what
    // initialization needs.
    assert_eq!(
        gate.cpu_offline(0, 0).unwrap_err(),
        CpuOfflineError::Busy { cpu: 0, package: 0 },
        "the last CPU of a package stays while pending"
    );
    assert_eq!(gate.cpu_online(1, 0).unwrap_err(), CpuOnlineError::Busy);
    let t = gate.cpu_online(3, 1).unwrap();
    assert_eq!(
        gate.begin_init().unwrap_err(),
        BeginInitError::Busy { in_flight: 1 },
        "an online in flight holds init off"
    );
    t.finish();
    assert!(gate.begin_init().is_ok());
    assert!(!gate.init_pending());
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
    // In flight until it ends, so that a runtime update waits for it; a guest KeyID waits too.
    assert_eq!(gate.in_flight(), 1);
    assert_eq!(gate.acquire_guest_keyid().unwrap_err(), KeyIdError::Busy);
    t.finish();
    assert_eq!(gate.in_flight(), 0);

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

#[test]
fn removals_before_init_are_in_flight_and_refused_while_init_is_pending_or_running() {
    let gate = gate_online(&two_cmrs(), 2, 1);
    // Any memory may leave before initialization, convertible or not.
    let far = gate.admit_removal(r(100 * SZ_1G, 101 * SZ_1G)).unwrap();
    assert_eq!(far.rule(), RemovalRule::BeforeInit);
    assert!(far.rule().is_pre_init());
    let near = gate
        .admit_removal(r(4 * SZ_1G, 4 * SZ_1G + 0x1000))
        .unwrap();
    let add = gate.admit_memory(r(5 * SZ_1G, 6 * SZ_1G)).unwrap();
    assert_eq!(gate.in_flight(), 3);
    assert_eq!(
        gate.begin_init().unwrap_err(),
        BeginInitError::Busy { in_flight: 3 }
    );
    // Pending: nothing new starts, what is in flight drains.
    assert!(gate.init_pending());
    assert_eq!(
        gate.admit_removal(r(4 * SZ_1G, 5 * SZ_1G)).unwrap_err(),
        RemoveError::Busy
    );
    assert_eq!(
        gate.admit_memory(r(4 * SZ_1G, 5 * SZ_1G)).unwrap_err(),
        AdmitError::Busy
    );
    assert_eq!(
        gate.cpu_offline(1, 0),
        Ok(()),
        "a CPU that is not its package's last may still go"
    );
    assert_eq!(
        gate.cpu_offline(0, 0).unwrap_err(),
        CpuOfflineError::Busy { cpu: 0, package: 0 }
    );
    assert_eq!(gate.cpu_online(1, 0).unwrap_err(), CpuOnlineError::Busy);
    drop(far);
    assert_eq!(
        gate.begin_init().unwrap_err(),
        BeginInitError::Busy { in_flight: 2 }
    );
    near.finish();
    add.finish();
    let ticket = gate.begin_init().unwrap();
    assert!(!gate.init_pending());
    assert_eq!(
        gate.admit_removal(r(4 * SZ_1G, 5 * SZ_1G)).unwrap_err(),
        RemoveError::Busy
    );
    assert!(RemoveError::Busy.is_retryable());
    ticket.fail();
    // Failed: removals are admitted again, in flight.
    let t = gate.admit_removal(r(4 * SZ_1G, 5 * SZ_1G)).unwrap();
    assert_eq!((t.rule(), gate.in_flight()), (RemovalRule::BeforeInit, 1));
    drop(t);
    assert_eq!(gate.in_flight(), 0);
    assert_eq!(
        gate.admit_removal(r(0x5000, 0x5000)).unwrap_err(),
        RemoveError::Empty { at: 0x5000 }
    );
    assert_eq!(
        gate.admit_removal(r(0x800, 0x2000)).unwrap_err(),
        RemoveError::Misaligned {
            range: r(0x800, 0x2000)
        }
    );
}

#[test]
fn cancel_init_withdraws_a_pending_initialization() {
    let gate = gate_online(&two_cmrs(), 1, 1);
    assert!(!gate.cancel_init(), "nothing pending");
    let add = gate.admit_memory(r(4 * SZ_1G, 5 * SZ_1G)).unwrap();
    assert!(gate.begin_init().is_err());
    assert!(gate.cancel_init());
    assert!(!gate.init_pending());
    // Hotplug is admitted again, and initialization asked for again waits as before.
    gate.admit_removal(r(4 * SZ_1G, 5 * SZ_1G))
        .unwrap()
        .finish();
    add.finish();
    let ticket = gate.begin_init().unwrap();
    assert!(
        !gate.cancel_init(),
        "an initialization in progress is not pending"
    );
    assert_eq!(gate.state(), ModuleState::Initializing);
    drop(ticket);
}

#[test]
fn after_init_removing_a_pamt_block_is_refused_naming_the_tdmr_and_tdx_memory_comes_back() {
    let mut refused_blocks = 0;
    let mut admitted_tdx = 0;
    for (name, log) in FIXTURES {
        let (memory, cmrs, plan) = planned(log);
        let gate = HotplugGate::new(cmrs.clone(), GateConfig::new(0, 0)).unwrap();
        assert_eq!(
            gate.tdx_metadata().count(),
            0,
            "{name}: nothing before init"
        );
        gate.begin_init().unwrap().publish(&plan, &memory).unwrap();
        assert_eq!(gate.tdx_metadata().collect::<Vec<_>>(), tdx_metadata(&plan));

        // Every PAMT block, and the 128 MiB memory block around its first byte, is refused
        // with its TDMR and level named and exactly the bytes it shares with the range.
        for (i, t) in plan.tdmrs().iter().enumerate() {
            for level in PageSize::ALL {
                let pamt = t.pamt(level);
                if pamt.is_empty() {
                    continue;
                }
                let mem_block = r(
                    pamt.start() & !0x7ff_ffff,
                    (pamt.start() & !0x7ff_ffff) + 0x800_0000,
                );
                for q in [pamt, mem_block, r(pamt.end() - 0x1000, pamt.end())] {
                    let (hit, tdmr, lvl) = first_pamt_hit(&plan, q).unwrap();
                    let err = gate.admit_removal(q).unwrap_err();
                    assert_eq!(
                        err,
                        RemoveError::HoldsTdxMetadata {
                            range: q,
                            overlap: hit.intersect(q).unwrap(),
                            holder: MetadataHolder::Pamt { tdmr, level: lvl },
                        },
                        "{name}: {q}"
                    );
                    assert!(!err.is_retryable());
                    assert!(
                        err.to_string().contains(&format!("of TDMR {tdmr}")),
                        "{err}"
                    );
                }
                assert_eq!(
                    gate.admit_removal(pamt).unwrap_err(),
                    RemoveError::HoldsTdxMetadata {
                        range: pamt,
                        overlap: pamt,
                        holder: MetadataHolder::Pamt { tdmr: i, level },
                    }
                );
                refused_blocks += 1;
            }
        }

        // Random ranges around every boundary: refused iff they touch a PAMT block; the TDX
        // memory among the admitted ones is admitted again when it comes back.
        let bounds = boundaries(&plan, &memory);
        let mut rng = Rng(0xdead_beef ^ name.len() as u64);
        let (mut admitted, mut refused) = (0, 0);
        for c in candidates(&plan, &memory, &cmrs, &mut rng, 3000) {
            match (gate.admit_removal(c), first_pamt_hit(&plan, c)) {
                (Ok(tok), None) => {
                    assert_eq!(tok.rule(), RemovalRule::NoTdxMetadata);
                    tok.finish();
                    admitted += 1;
                    // Back online: the frozen-memory rule decides as before the removal.
                    let back = gate.admit_memory(c);
                    assert_eq!(
                        back.is_ok(),
                        frozen_range(&plan, &memory, &bounds, c),
                        "{c}"
                    );
                    if back.is_ok() {
                        admitted_tdx += 1;
                    }
                }
                (
                    Err(RemoveError::HoldsTdxMetadata {
                        overlap, holder, ..
                    }),
                    Some((b, t, l)),
                ) => {
                    assert_eq!(
                        (overlap, holder),
                        (
                            b.intersect(c).unwrap(),
                            MetadataHolder::Pamt { tdmr: t, level: l }
                        )
                    );
                    refused += 1;
                }
                (got, want) => panic!("{name}: {c}: {:?} vs {want:?}", got.map(|t| t.rule())),
            }
        }
        assert!(
            admitted > 100 && refused > 100,
            "{name}: {admitted} admitted, {refused} refused"
        );
    }
    assert!(
        refused_blocks >= 5 * 3 && admitted_tdx > 500,
        "{refused_blocks} {admitted_tdx}"
    );
}

#[test]
fn a_whole_package_cannot_be_hot_removed_while_guest_keyids_exist() {
    let (memory, cmrs, plan) = planned(FIXTURES[3].1);
    // 8 CPUs, 4 in each of 2 packages (CPU c in package c % 2).
    let gate = gate_online(&cmrs, 8, 2);
    gate.begin_init().unwrap().publish(&plan, &memory).unwrap();
    gate.acquire_guest_keyid().unwrap();
    // Taking package 1 away: its CPUs go offline one by one; the last one is refused.
    for cpu in [1, 3, 5] {
        gate.cpu_offline(cpu, 1).unwrap();
    }
    assert_eq!(
        gate.cpu_offline(7, 1).unwrap_err(),
        CpuOfflineError::GuestKeyIdsInUse {
            cpu: 7,
            package: 1,
            guest_keyids: 1
        }
    );
    assert_eq!(gate.online_cpus(1), Some(1));
    assert_eq!(gate.cpu_package(7), Some(1));
    // The package may come back, and go once no TD needs it.
    gate.cpu_online(5, 1).unwrap().finish();
    gate.cpu_offline(5, 1).unwrap();
    gate.release_guest_keyid().unwrap();
    gate.cpu_offline(7, 1).unwrap();
    assert_eq!(gate.online_cpus(1), Some(0));
    assert_eq!(
        gate.acquire_guest_keyid().unwrap_err(),
        KeyIdError::PackageOffline { package: 1 }
    );
}

/// The machine of the Dynamic PAMT tests: TDX memory [4G, 8G), one CMR, planned with Dynamic
/// PAMT; a gate with a range table, initialized; a manager sharing the table.
fn dynamic_machine() -> (MemoryMap, Cmrs, tdmr::layout::Plan) {
    let memory = MemoryMap::new(vec![MemoryRegion::new(4 * SZ_1G, 4 * SZ_1G, 0)]).unwrap();
    let cmrs = Cmrs::covering(&memory);
    let limits = TdxLimits::default().with_dynamic_pamt(1).unwrap();
    let plan = Planner::new()
        .with_limits(limits)
        .plan(&memory, &cmrs)
        .unwrap();
    (memory, cmrs, plan)
}

#[test]
fn added_dynamic_pamt_pairs_hold_their_memory_until_they_are_removed() {
    let (memory, cmrs, plan) = dynamic_machine();
    let gate = HotplugGate::new(cmrs, GateConfig::new(0, 0).with_dynamic_pamt(true)).unwrap();
    gate.begin_init().unwrap().publish(&plan, &memory).unwrap();
    let table = gate.range_table().unwrap();
    let at = 5 * SZ_1G + 0x1000; // the pairs' pages: [5G + 4K, 5G + 12K)
    let block = r(5 * SZ_1G, 5 * SZ_1G + 0x800_0000);

    // A table nobody counts in: the gate cannot know where pairs are.
    assert_eq!(
        gate.admit_removal(block).unwrap_err(),
        RemoveError::DynamicPamtUntracked { range: block }
    );
    let module = PairModule::new();
    let dpamt = DynamicPamt::for_plan_with_table(&module, &plan, table).unwrap();
    assert!(table.is_attached());
    assert_eq!(
        dpamt.range_table().map(|t| t.ranges()),
        Some(table.ranges())
    );
    gate.admit_removal(block).unwrap().finish();

    let mut pairs = Pairs::from(at, 2);
    let backed = [(4 * SZ_1G) >> 12, (6 * SZ_1G) >> 12];
    for pfn in backed {
        assert_eq!(dpamt.get(pfn, &mut pairs).unwrap(), Get::Added);
    }
    assert_eq!(table.pair_pages(block), 4);
    let two_m = r(5 * SZ_1G, 5 * SZ_1G + SZ_2M);
    let err = gate.admit_removal(block).unwrap_err();
    assert_eq!(
        err,
        RemoveError::HoldsTdxMetadata {
            range: block,
            overlap: two_m,
            holder: MetadataHolder::DynamicPamtPages {
                range: two_m,
                pages: 4
            },
        }
    );
    assert!(err.is_retryable(), "pairs go back when TDs let go");
    assert!(
        err.to_string()
            .contains("4 pages of added Dynamic PAMT pairs"),
        "{err}"
    );
    // A removal of part of that 2 MiB range is refused too (the count is per 2 MiB), the
    // memory next to it is not.
    assert!(
        gate.admit_removal(r(5 * SZ_1G + SZ_2M - 0x1000, 5 * SZ_1G + SZ_2M))
            .is_err()
    );
    gate.admit_removal(r(5 * SZ_1G + SZ_2M, 5 * SZ_1G + 0x800_0000))
        .unwrap()
        .finish();
    assert_eq!(gate.removals_in_flight(), 0);

    // While a removal is in flight, no pair is placed in its memory.
    let leaving = r(6 * SZ_1G, 6 * SZ_1G + 0x800_0000);
    let removal = gate.admit_removal(leaving).unwrap();
    assert_eq!(gate.removals_in_flight(), 1);
    let mut inside = Pairs::from(6 * SZ_1G + 0x10_0000, 1);
    assert_eq!(
        dpamt.get((7 * SZ_1G) >> 12, &mut inside),
        Err(DynamicPamtError::PairPageLeaving {
            pa: 6 * SZ_1G + 0x10_0000,
            unreturned: None
        })
    );
    assert_eq!(inside.0.len(), 1, "the pair went back to its source");
    assert_eq!(module.pairs(), 2, "no ADD was issued");
    removal.finish();
    assert_eq!(
        dpamt.get((7 * SZ_1G) >> 12, &mut inside).unwrap(),
        Get::Added
    );
    assert!(gate.admit_removal(leaving).is_err());

    // Pages outside the table (beyond the CMRs) cannot be counted: refused before the ADD.
    let mut outside = Pairs::from(100 * SZ_1G, 1);
    assert!(matches!(
        dpamt.get((7 * SZ_1G + SZ_2M) >> 12, &mut outside),
        Err(DynamicPamtError::PairPageUntracked { pa, unreturned: None }) if pa == 100 * SZ_1G
    ));

    // PAMT.REMOVE gives the pages back: the memory may go.
    for pfn in backed.into_iter().chain([(7 * SZ_1G) >> 12]) {
        assert_eq!(
            dpamt.put(pfn, &mut pairs).unwrap(),
            Put::Removed { unreturned: None }
        );
    }
    assert_eq!(table.pair_pages(r(4 * SZ_1G, 8 * SZ_1G)), 0);
    assert_eq!(module.owned_in(r(4 * SZ_1G, 8 * SZ_1G)), Vec::<u64>::new());
    gate.admit_removal(block).unwrap().finish();
    gate.admit_removal(leaving).unwrap().finish();
}

#[test]
fn dynamic_pamt_without_a_range_table_fails_closed() {
    let (memory, cmrs, plan) = dynamic_machine();
    let gate = HotplugGate::new(cmrs.clone(), GateConfig::new(0, 0)).unwrap();
    assert!(gate.range_table().is_none());
    gate.begin_init().unwrap().publish(&plan, &memory).unwrap();
    let q = r(5 * SZ_1G, 5 * SZ_1G + 0x800_0000);
    let err = gate.admit_removal(q).unwrap_err();
    assert_eq!(err, RemoveError::DynamicPamtUntracked { range: q });
    assert!(!err.is_retryable());
    // Static PAMT still names its block first.
    let pamt = plan.tdmrs()[0].pamt(PageSize::Size2M);
    assert!(matches!(
        gate.admit_removal(pamt),
        Err(RemoveError::HoldsTdxMetadata {
            holder: MetadataHolder::Pamt { tdmr: 0, .. },
            ..
        })
    ));
    // A manager outside the table's memory is refused.
    let other = HotplugGate::new(cmrs, GateConfig::new(0, 0).with_dynamic_pamt(true)).unwrap();
    let module = PairModule::new();
    let limits = plan.limits();
    assert_eq!(
        DynamicPamt::with_table(
            &module,
            limits,
            [r(9 * SZ_1G, 10 * SZ_1G)],
            other.range_table().unwrap()
        )
        .unwrap_err(),
        tdmr::dpamt::DynamicPamtSetupError::OutsideTable {
            range: r(9 * SZ_1G, 10 * SZ_1G)
        }
    );
}

#[test]
fn too_much_metadata_fails_closed() {
    let (memory, cmrs, plan) = planned(FIXTURES[3].1);
    let gate = HotplugGate::new(cmrs, GateConfig::new(0, 0).with_metadata_capacity(2)).unwrap();
    assert_eq!(gate.metadata_capacity(), 2);
    let blocks = tdx_metadata(&plan).len();
    assert_eq!(
        gate.begin_init().unwrap().publish(&plan, &memory),
        Err(PublishError::MetadataTooLarge {
            blocks,
            capacity: 2
        })
    );
    assert_eq!(gate.state(), ModuleState::Initialized);
    let q = r(4 * SZ_1G, 4 * SZ_1G + 0x1000);
    assert_eq!(
        gate.admit_removal(q).unwrap_err(),
        RemoveError::MetadataUnknown {
            range: q,
            blocks,
            capacity: 2
        }
    );
    // Additions are unaffected.
    assert!(gate.frozen_memory().count() > 0);
}

#[test]
fn removal_errors_display_the_offending_values() {
    let e = RemoveError::HoldsTdxMetadata {
        range: r(0x1000_0000, 0x1800_0000),
        overlap: r(0x1400_0000, 0x1800_0000),
        holder: MetadataHolder::Pamt {
            tdmr: 3,
            level: PageSize::Size4K,
        },
    };
    assert_eq!(
        e.to_string(),
        "memory range [0x10000000, 0x18000000) holds TDX metadata: [0x14000000, 0x18000000) \
         (64 MiB) is the PAMT_4K block of TDMR 3"
    );
    let e = RemoveError::DynamicPamtUntracked {
        range: PhysRange::new(0, 0x1000).unwrap(),
    };
    assert!(e.to_string().contains("[0x0, 0x1000)"));
}

#[test]
fn pair_pages_counted_in_a_range_keep_its_holders_and_transitions_exact() {
    use tdmr::dpamt::RangeState;
    let (memory, cmrs, plan) = dynamic_machine();
    let gate = HotplugGate::new(cmrs, GateConfig::new(0, 0).with_dynamic_pamt(true)).unwrap();
    gate.begin_init().unwrap().publish(&plan, &memory).unwrap();
    let table = gate.range_table().unwrap();
    let module = PairModule::new();
    let dpamt = DynamicPamt::for_plan_with_table(&module, &plan, table).unwrap();
    // The pair of the range at 5 GiB lies in that very range; the range at 5 GiB + 2 MiB is
    // backed by a pair whose pages lie at 5 GiB too.
    let own = r(5 * SZ_1G, 5 * SZ_1G + SZ_2M);
    let pfn = (5 * SZ_1G + 0x10_0000) >> 12;
    let next = (5 * SZ_1G + SZ_2M) >> 12;
    let mut pairs = Pairs::from(5 * SZ_1G, 2);
    assert_eq!(dpamt.get(pfn, &mut pairs).unwrap(), Get::Added);
    assert_eq!(dpamt.get(next, &mut pairs).unwrap(), Get::Added);
    assert_eq!(table.pair_pages(own), 4);
    assert_eq!(dpamt.range_state(pfn), Some(RangeState::Held(1)));
    assert_eq!(dpamt.get(pfn + 1, &mut pairs).unwrap(), Get::AlreadyBacked);
    assert_eq!(dpamt.range_state(pfn), Some(RangeState::Held(2)));
    assert_eq!(dpamt.busy_ranges(), 2);
    assert_eq!(dpamt.put(pfn + 1, &mut pairs).unwrap(), Put::StillBacked);
    assert_eq!(
        dpamt.put(pfn, &mut pairs).unwrap(),
        Put::Removed { unreturned: None }
    );
    // The range is free although pages of the other pair still lie in it.
    assert_eq!(dpamt.range_state(pfn), Some(RangeState::Free));
    assert_eq!(table.pair_pages(own), 2);
    assert!(gate.admit_removal(own).is_err());
    assert_eq!(
        dpamt.get(pfn, &mut pairs).unwrap(),
        Get::Added,
        "a free range adds again"
    );
    for p in [pfn, next] {
        dpamt.put(p, &mut pairs).unwrap();
    }
    assert_eq!((table.pair_pages(own), dpamt.busy_ranges()), (0, 0));
    gate.admit_removal(own).unwrap().finish();
}

/// The answer to an addition or a removal, without the token (which would hold the gate).
fn answers(
    gate: &HotplugGate,
    ranges: &[PhysRange],
) -> Vec<(Result<(), AdmitError>, Result<(), RemoveError>)> {
    ranges
        .iter()
        .map(|&range| {
            (
                gate.admit_memory(range).map(|t| t.finish()),
                gate.admit_removal(range).map(|t| t.finish()),
            )
        })
        .collect()
}

#[test]
fn a_runtime_update_answers_busy_and_ends_with_the_same_frozen_memory() {
    let mut checked = 0;
    for (name, log) in FIXTURES {
        let (memory, cmrs, plan) = planned(log);
        let gate = gate_online(&cmrs, 4, 2);
        assert_eq!(
            gate.begin_update().unwrap_err(),
            BeginUpdateError::NotInitialized {
                state: ModuleState::Uninitialized
            },
            "{name}"
        );
        gate.begin_init().unwrap().publish(&plan, &memory).unwrap();
        gate.acquire_guest_keyid().unwrap();
        let ranges = candidates(&plan, &memory, &cmrs, &mut Rng(0x5eed ^ checked), 400);
        let frozen: Vec<PhysRange> = gate.frozen_memory().collect();
        let owned: Vec<_> = gate.tdx_metadata().collect();
        let before = answers(&gate, &ranges);

        let update = gate.begin_update().unwrap();
        assert_eq!(gate.state(), ModuleState::Updating);
        assert_eq!(
            gate.begin_update().unwrap_err(),
            BeginUpdateError::InProgress
        );
        assert_eq!(
            gate.begin_init().unwrap_err(),
            BeginInitError::AlreadyInitialized
        );
        for &range in &ranges {
            assert_eq!(
                gate.admit_memory(range).unwrap_err(),
                AdmitError::Busy,
                "{name} {range}"
            );
            assert_eq!(
                gate.admit_removal(range).unwrap_err(),
                RemoveError::Busy,
                "{name} {range}"
            );
        }
        for cpu in 0..4 {
            let package = cpu % 2;
            assert_eq!(
                gate.cpu_offline(cpu, package).unwrap_err(),
                CpuOfflineError::Busy { cpu, package },
                "{name}: no CPU leaves the lock-step"
            );
        }
        assert_eq!(gate.acquire_guest_keyid().unwrap_err(), KeyIdError::Busy);
        // A TD that ends during the update gives its KeyID back.
        gate.release_guest_keyid().unwrap();
        // Frozen memory and the refusal set stay readable through the update.
        assert_eq!(gate.frozen_memory().collect::<Vec<_>>(), frozen, "{name}");
        assert_eq!(gate.tdx_metadata().collect::<Vec<_>>(), owned, "{name}");
        update.finish();

        assert_eq!(gate.state(), ModuleState::Initialized);
        assert_eq!(gate.frozen_memory().collect::<Vec<_>>(), frozen, "{name}");
        assert_eq!(gate.tdx_metadata().collect::<Vec<_>>(), owned, "{name}");
        assert_eq!(
            answers(&gate, &ranges),
            before,
            "{name}: the same answers after"
        );
        // Both kinds of answer were among them, so the comparison means something.
        assert!(before.iter().any(|(a, _)| a.is_ok()) && before.iter().any(|(a, _)| a.is_err()));
        assert!(before.iter().any(|(_, d)| d.is_ok()) && before.iter().any(|(_, d)| d.is_err()));
        gate.cpu_offline(3, 1).unwrap();
        gate.acquire_guest_keyid().unwrap();
        // A dropped ticket ends the update the same way.
        drop(gate.begin_update().unwrap());
        assert_eq!(gate.state(), ModuleState::Initialized);
        checked += 1;
    }
    assert_eq!(checked, FIXTURES.len() as u64);
}

#[test]
fn cpu_hotplug_in_flight_holds_an_update_off_and_cannot_starve_it() {
    let (memory, cmrs, plan) = planned(FIXTURES[0].1);
    let gate = gate_online(&cmrs, 4, 2); // CPUs 0, 2 in package 0; 1, 3 in package 1.
    gate.cpu_offline(3, 1).unwrap();
    gate.cpu_offline(2, 0).unwrap();
    gate.begin_init().unwrap().publish(&plan, &memory).unwrap();
    let frozen = gate.frozen_memory().next().unwrap();

    let online = gate.cpu_online(3, 1).unwrap();
    assert_eq!(
        gate.begin_update().unwrap_err(),
        BeginUpdateError::Busy { in_flight: 1 }
    );
    assert!(gate.update_pending() && !gate.init_pending());
    // Pending: new CPU hotplug is refused so what is in flight drains; memory is answered as
    // initialized; the count of what is in flight never grows.
    assert_eq!(gate.cpu_online(2, 0).unwrap_err(), CpuOnlineError::Busy);
    assert_eq!(
        gate.cpu_offline(0, 0).unwrap_err(),
        CpuOfflineError::Busy { cpu: 0, package: 0 }
    );
    assert_eq!(
        gate.admit_memory(frozen).unwrap().rule(),
        AdmissionRule::TdxMemory
    );
    assert_eq!(
        gate.begin_update().unwrap_err(),
        BeginUpdateError::Busy { in_flight: 1 }
    );
    online.finish();
    let update = gate.begin_update().unwrap();
    assert!(!gate.update_pending());
    drop(update);

    // Withdrawn: CPU hotplug is admitted again.
    let online = gate.cpu_online(2, 0).unwrap();
    assert!(online.lp_init_required());
    assert!(gate.begin_update().is_err());
    assert!(gate.cancel_update());
    assert!(!gate.cancel_update() && !gate.update_pending());
    gate.cpu_offline(0, 0).unwrap();
    online.finish();
    assert!(!gate.cancel_init(), "no initialization was pending");
    assert_eq!(gate.online_cpus(0), Some(1));
}
