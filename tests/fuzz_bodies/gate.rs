//! Body of the `gate` fuzz target, shared with `cargo test` (tests/fuzz_seeds.rs), which
//! replays `tests/seeds/gate/*` and a batch of pseudo-random inputs.
//!
//! A random sequence of gate operations, one at a time, holding admission tokens, CPU-online
//! tokens and the initialization ticket across operations (so any interleaving of starts and
//! ends is reachable). A model written here from the rules predicts every answer and every
//! counter; the frozen-memory answers come from a point-wise reference, not from the gate's
//! own computation. Any difference, or any panic in the gate, is a finding.

use std::sync::OnceLock;

use arbitrary::Unstructured;
use tdmr::addr::{PageSize, PhysRange};
use tdmr::hotplug_gate::{
    AdmissionRule, AdmitError, BeginInitError, CpuOfflineError, CpuOnline, CpuOnlineError,
    GateConfig, HotplugGate, InitTicket, KeyIdError, MemoryAdmission, ModuleState, PreInitPolicy,
    PublishError,
};
use tdmr::layout::{HolePolicy, Plan, Planner};
use tdmr::memmap::parse_kernel_log;
use tdmr::memmap::{Cmrs, MemoryMap, MemoryRegion};

const FIXTURES: [&str; 5] = [
    include_str!("../fixtures/emr-4s-256g.log"),
    include_str!("../fixtures/host-2t.log"),
    include_str!("../fixtures/icx-2s-256g.log"),
    include_str!("../fixtures/spr-1t.log"),
    include_str!("../fixtures/spr-tdx10.log"),
];

/// A fixture's memory, CMRs, and the addresses where the rules may change.
struct Fixture {
    memory: MemoryMap,
    cmrs: Cmrs,
    points: Vec<u64>,
}

fn fixtures() -> &'static [Fixture] {
    static F: OnceLock<Vec<Fixture>> = OnceLock::new();
    F.get_or_init(|| {
        FIXTURES
            .iter()
            .map(|log| {
                let (memory, cmrs) = parse_kernel_log(log).expect("fixture parses").into_parts();
                let mut points = Vec::new();
                if let Some(plan) = plan(&memory, &cmrs) {
                    points.extend(boundaries(&plan, &memory));
                }
                for c in cmrs.listed() {
                    points.extend([c.base, c.base + c.size]);
                }
                points.sort_unstable();
                points.dedup();
                Fixture {
                    memory,
                    cmrs,
                    points,
                }
            })
            .collect()
    })
}

fn plan(memory: &MemoryMap, cmrs: &Cmrs) -> Option<Plan> {
    Planner::new()
        .plan(memory, cmrs)
        .or_else(|_| {
            Planner::new()
                .with_holes(HolePolicy::Cmr)
                .plan(memory, cmrs)
        })
        .ok()
}

fn boundaries(plan: &Plan, memory: &MemoryMap) -> Vec<u64> {
    let mut v = Vec::new();
    for t in plan.tdmrs() {
        v.extend([t.base(), t.end()]);
        for i in 0..t.reserved().len() {
            if let Some(a) = t.reserved_range(i) {
                v.extend([a.start(), a.end()]);
            }
        }
        for l in PageSize::ALL {
            v.extend([t.pamt(l).start(), t.pamt(l).end()]);
        }
    }
    for m in memory.regions() {
        v.extend([m.base, m.end()]);
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// TDX memory after init, byte by byte from the definition.
fn frozen_byte(plan: &Plan, memory: &MemoryMap, pa: u64) -> bool {
    let tdmr_space = plan.tdmrs().iter().any(|t| {
        t.range().contains(pa)
            && !(0..t.reserved().len()).any(|i| t.reserved_range(i).is_some_and(|a| a.contains(pa)))
    });
    let in_memory = memory.regions().iter().any(|m| m.range().contains(pa));
    let in_pamt = plan
        .tdmrs()
        .iter()
        .any(|t| PageSize::ALL.iter().any(|&l| t.pamt(l).contains(pa)));
    tdmr_space && in_memory && !in_pamt
}

fn convertible_byte(cmrs: &Cmrs, pa: u64) -> bool {
    cmrs.listed()
        .iter()
        .any(|c| c.base <= pa && pa - c.base < c.size)
}

/// The first maximal part of `range` whose bytes fail `good`, given every address where `good`
/// may change (`cuts`). `None` when every byte passes.
fn first_bad(range: PhysRange, cuts: &[u64], good: impl Fn(u64) -> bool) -> Option<PhysRange> {
    let mut pts: Vec<u64> = cuts
        .iter()
        .copied()
        .filter(|&b| range.start() < b && b < range.end())
        .collect();
    pts.insert(0, range.start());
    pts.push(range.end());
    let mut bad_start = None;
    for w in pts.windows(2) {
        match (bad_start, good(w[0])) {
            (None, false) => bad_start = Some(w[0]),
            (Some(s), true) => return PhysRange::new(s, w[0]).ok(),
            _ => {}
        }
    }
    bad_start.and_then(|s| PhysRange::new(s, range.end()).ok())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Slot {
    Offline,
    Moving,
    Online(u32),
}

struct Model {
    state: ModuleState,
    in_flight: u32,
    keyids: u32,
    slots: Vec<Slot>,
    counts: Vec<u32>,
    added: Vec<PhysRange>,
    /// What was published: memory, plan, cut points; `None` inside when the snapshot overflowed.
    published: Option<Option<(MemoryMap, Plan, Vec<u64>)>>,
}

impl Model {
    fn first_empty_package(&self) -> Option<u32> {
        self.counts.iter().position(|&c| c == 0).map(|p| p as u32)
    }
}

fn range(u: &mut Unstructured<'_>, fx: &Fixture) -> arbitrary::Result<PhysRange> {
    Ok(match u.int_in_range(0..=7u8)? {
        0 => {
            // Anything, including empty and misaligned ranges.
            let (a, b): (u64, u64) = (u.arbitrary()?, u.arbitrary()?);
            PhysRange::new(a.min(b), a.max(b)).unwrap_or_default()
        }
        _ => {
            let p = *u.choose(&fx.points)?;
            let size = 0x1000u64 << u.int_in_range(0..=20u32)?;
            let start = match u.int_in_range(0..=2u8)? {
                0 => p,
                1 => p.saturating_sub(size),
                _ => p.saturating_sub(size / 2) & !0xfff,
            };
            PhysRange::new(start, start.saturating_add(size)).unwrap_or_default()
        }
    })
}

/// The kernel's map: the fixture's memory plus admitted additions, merged (node 0 for new).
fn kernel_map(base: &MemoryMap, added: &[PhysRange]) -> Option<MemoryMap> {
    let mut all: Vec<(PhysRange, u32)> =
        base.regions().iter().map(|r| (r.range(), r.node)).collect();
    all.extend(added.iter().map(|r| (*r, 0)));
    all.sort_unstable_by_key(|(r, _)| *r);
    let mut merged: Vec<(PhysRange, u32)> = Vec::new();
    for (r, n) in all {
        match merged.last_mut() {
            Some((last, _)) if r.start() <= last.end() => {
                *last = PhysRange::new(last.start(), last.end().max(r.end())).ok()?
            }
            _ => merged.push((r, n)),
        }
    }
    MemoryMap::new(
        merged
            .iter()
            .map(|(r, n)| MemoryRegion::new(r.start(), r.size(), *n))
            .collect(),
    )
    .ok()
}

/// Runs one input. Panics on any disagreement with the model.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let _ = run_inner(&mut u);
}

fn run_inner(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let fx = u.choose(fixtures())?;
    let cpus: u32 = u.int_in_range(1..=8)?;
    let packages: u32 = u.int_in_range(1..=cpus.min(4))?;
    let policy = if u.ratio(1, 5)? {
        PreInitPolicy::AnyMemory
    } else {
        PreInitPolicy::Convertible
    };
    let capacity = *u.choose(&[0usize, 1, 3, 64, 2048])?;
    let words = *u.choose(&[0usize, 1, 512])?;
    let config = GateConfig::new(cpus, packages)
        .with_pre_init(policy)
        .with_snapshot_capacity(capacity)
        .with_section_bitmap_words(words);
    let gate = HotplugGate::new(fx.cmrs.clone(), config).expect("valid topology");
    let mut m = Model {
        state: ModuleState::Uninitialized,
        in_flight: 0,
        keyids: 0,
        slots: vec![Slot::Offline; cpus as usize],
        counts: vec![0; packages as usize],
        added: Vec::new(),
        published: None,
    };
    let mut mem_tokens: Vec<MemoryAdmission<'_>> = Vec::new();
    let mut cpu_tokens: Vec<CpuOnline<'_>> = Vec::new();
    let mut ticket: Option<InitTicket<'_>> = None;
    let cmr_cuts: Vec<u64> = fx
        .cmrs
        .listed()
        .iter()
        .flat_map(|c| [c.base, c.base + c.size])
        .collect();

    for _ in 0..u.int_in_range(1..=200u32)? {
        match u.int_in_range(0..=10u8)? {
            0 | 1 => {
                let r = range(u, fx)?;
                let got = gate.admit_memory(r);
                if r.is_empty() {
                    assert_eq!(got.err(), Some(AdmitError::Empty { at: r.start() }));
                } else if r.start() % 0x1000 != 0 || r.end() % 0x1000 != 0 {
                    assert_eq!(got.err(), Some(AdmitError::Misaligned { range: r }));
                } else {
                    match m.state {
                        ModuleState::Initializing => assert_eq!(got.err(), Some(AdmitError::Busy)),
                        ModuleState::Initialized => {
                            let bad = match m.published.as_ref().expect("published") {
                                Some((mem, plan, cuts)) => {
                                    first_bad(r, cuts, |pa| frozen_byte(plan, mem, pa))
                                }
                                None => Some(r),
                            };
                            match (got, bad) {
                                (Ok(tok), None) => {
                                    assert_eq!(tok.rule(), AdmissionRule::TdxMemory)
                                }
                                (Err(e), Some(outside)) => {
                                    assert_eq!(e, AdmitError::NotTdxMemory { range: r, outside })
                                }
                                (got, bad) => panic!("{r}: {:?} vs {bad:?}", got.map(|t| t.rule())),
                            }
                        }
                        ModuleState::Uninitialized | ModuleState::Failed => {
                            let bad = match policy {
                                PreInitPolicy::AnyMemory => None,
                                PreInitPolicy::Convertible => {
                                    first_bad(r, &cmr_cuts, |pa| convertible_byte(&fx.cmrs, pa))
                                }
                            };
                            match (got, bad) {
                                (Ok(tok), None) => {
                                    let want = match policy {
                                        PreInitPolicy::AnyMemory => AdmissionRule::AnyMemory,
                                        PreInitPolicy::Convertible => AdmissionRule::Convertible,
                                    };
                                    assert_eq!(tok.rule(), want);
                                    assert_eq!(tok.range(), r);
                                    m.in_flight += 1;
                                    m.added.push(r);
                                    mem_tokens.push(tok);
                                }
                                (Err(e), Some(outside)) => {
                                    assert_eq!(e, AdmitError::NotConvertible { range: r, outside })
                                }
                                (got, bad) => panic!("{r}: {:?} vs {bad:?}", got.map(|t| t.rule())),
                            }
                        }
                    }
                }
            }
            2 => {
                if !mem_tokens.is_empty() {
                    let i = u.choose_index(mem_tokens.len())?;
                    let tok = mem_tokens.swap_remove(i);
                    if tok.rule().is_pre_init() {
                        m.in_flight -= 1;
                    }
                    if u.arbitrary()? {
                        tok.finish();
                    }
                }
            }
            3 => {
                let cpu = u.int_in_range(0..=cpus)?;
                let pkg = u.int_in_range(0..=packages)?;
                let got = gate.cpu_online(cpu, pkg);
                let want: Result<bool, CpuOnlineError> = if cpu >= cpus {
                    Err(CpuOnlineError::NoSuchCpu { cpu, cpus })
                } else if pkg >= packages {
                    Err(CpuOnlineError::NoSuchPackage {
                        package: pkg,
                        packages,
                    })
                } else {
                    match (m.slots[cpu as usize], m.state) {
                        (Slot::Moving, _) => Err(CpuOnlineError::CpuBusy { cpu }),
                        (Slot::Online(p), _) => {
                            Err(CpuOnlineError::AlreadyOnline { cpu, package: p })
                        }
                        (Slot::Offline, ModuleState::Initializing) => Err(CpuOnlineError::Busy),
                        (Slot::Offline, ModuleState::Initialized) => Ok(true),
                        (Slot::Offline, _) => Ok(false),
                    }
                };
                match (got, want) {
                    (Ok(tok), Ok(lp)) => {
                        assert_eq!(tok.lp_init_required(), lp);
                        assert_eq!((tok.cpu(), tok.package()), (cpu, pkg));
                        m.slots[cpu as usize] = Slot::Moving;
                        if !lp {
                            m.in_flight += 1;
                        }
                        cpu_tokens.push(tok);
                    }
                    (Err(e), Err(w)) => assert_eq!(e, w),
                    (got, want) => panic!("online {cpu}/{pkg}: {:?} vs {want:?}", got.err()),
                }
            }
            4 => {
                if !cpu_tokens.is_empty() {
                    let i = u.choose_index(cpu_tokens.len())?;
                    let tok = cpu_tokens.swap_remove(i);
                    let (cpu, pkg) = (tok.cpu() as usize, tok.package());
                    if !tok.lp_init_required() {
                        m.in_flight -= 1;
                    }
                    if u.arbitrary()? {
                        tok.finish();
                        m.slots[cpu] = Slot::Online(pkg);
                        m.counts[pkg as usize] += 1;
                    } else {
                        drop(tok);
                        m.slots[cpu] = Slot::Offline;
                    }
                }
            }
            5 => {
                let cpu = u.int_in_range(0..=cpus)?;
                let pkg = u.int_in_range(0..=packages)?;
                let got = gate.cpu_offline(cpu, pkg);
                let want = if cpu >= cpus {
                    Err(CpuOfflineError::NoSuchCpu { cpu, cpus })
                } else if pkg >= packages {
                    Err(CpuOfflineError::NoSuchPackage {
                        package: pkg,
                        packages,
                    })
                } else {
                    match m.slots[cpu as usize] {
                        Slot::Offline => Err(CpuOfflineError::NotOnline { cpu }),
                        Slot::Moving => Err(CpuOfflineError::CpuBusy { cpu }),
                        Slot::Online(p) if p != pkg => Err(CpuOfflineError::WrongPackage {
                            cpu,
                            package: pkg,
                            online_in: p,
                        }),
                        Slot::Online(_) if m.counts[pkg as usize] >= 2 => Ok(()),
                        Slot::Online(_) if m.state == ModuleState::Initializing => {
                            Err(CpuOfflineError::Busy { cpu, package: pkg })
                        }
                        Slot::Online(_) if m.keyids > 0 => Err(CpuOfflineError::GuestKeyIdsInUse {
                            cpu,
                            package: pkg,
                            guest_keyids: m.keyids,
                        }),
                        Slot::Online(_) => Ok(()),
                    }
                };
                assert_eq!(got, want, "offline {cpu}/{pkg}");
                if got.is_ok() {
                    m.slots[cpu as usize] = Slot::Offline;
                    m.counts[pkg as usize] -= 1;
                }
            }
            6 => {
                let got = gate.begin_init();
                let want = match m.state {
                    ModuleState::Initializing => Err(BeginInitError::InProgress),
                    ModuleState::Initialized => Err(BeginInitError::AlreadyInitialized),
                    _ if m.in_flight > 0 => Err(BeginInitError::Busy {
                        in_flight: m.in_flight,
                    }),
                    _ => match m.first_empty_package() {
                        Some(package) => Err(BeginInitError::PackageOffline { package }),
                        None => Ok(()),
                    },
                };
                match (got, want) {
                    (Ok(t), Ok(())) => {
                        m.state = ModuleState::Initializing;
                        ticket = Some(t);
                    }
                    (Err(e), Err(w)) => assert_eq!(e, w),
                    (got, want) => panic!("begin_init: {:?} vs {want:?}", got.err()),
                }
            }
            7 => {
                if let Some(t) = ticket.take() {
                    let planned = kernel_map(&fx.memory, &m.added)
                        .and_then(|mem| plan(&mem, &fx.cmrs).map(|p| (mem, p)));
                    match planned {
                        Some((mem, plan)) => {
                            let cuts = boundaries(&plan, &mem);
                            let got = t.publish(&plan, &mem);
                            m.state = ModuleState::Initialized;
                            match got {
                                Ok(n) => {
                                    assert!(n <= capacity);
                                    m.published = Some(Some((mem, plan, cuts)));
                                }
                                Err(PublishError::SnapshotTooLarge {
                                    ranges,
                                    capacity: c,
                                }) => {
                                    assert_eq!(c, capacity);
                                    assert!(ranges > capacity);
                                    assert_eq!(gate.frozen_memory().count(), 0);
                                    m.published = Some(None);
                                }
                                Err(e) => panic!("publish: {e}"),
                            }
                        }
                        None => {
                            t.fail();
                            m.state = ModuleState::Failed;
                        }
                    }
                }
            }
            8 => {
                if let Some(t) = ticket.take() {
                    if u.arbitrary()? {
                        t.fail();
                    } else {
                        drop(t);
                    }
                    m.state = ModuleState::Failed;
                }
            }
            9 => {
                let got = gate.acquire_guest_keyid();
                let want = if m.state != ModuleState::Initialized {
                    Err(KeyIdError::NotInitialized { state: m.state })
                } else {
                    match m.first_empty_package() {
                        Some(package) => Err(KeyIdError::PackageOffline { package }),
                        None => Ok(()),
                    }
                };
                assert_eq!(got, want, "acquire KeyID");
                if got.is_ok() {
                    m.keyids += 1;
                }
            }
            _ => {
                let got = gate.release_guest_keyid();
                if m.keyids == 0 {
                    assert_eq!(got, Err(KeyIdError::NoneInUse));
                } else {
                    assert_eq!(got, Ok(()));
                    m.keyids -= 1;
                }
            }
        }
        // The gate's books match the model after every operation.
        assert_eq!(gate.state(), m.state);
        assert_eq!(gate.in_flight(), m.in_flight);
        assert_eq!(gate.guest_keyids(), m.keyids);
        for (p, &c) in m.counts.iter().enumerate() {
            assert_eq!(gate.online_cpus(p as u32), Some(c));
        }
        for (cpu, s) in m.slots.iter().enumerate() {
            let want = match s {
                Slot::Online(p) => Some(*p),
                _ => None,
            };
            assert_eq!(gate.cpu_package(cpu as u32), want);
        }
    }
    Ok(())
}
