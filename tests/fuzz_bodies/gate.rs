//! Body of the `gate` fuzz target, shared with `cargo test` (tests/fuzz_seeds.rs), which
//! replays `tests/seeds/gate/*` and a batch of pseudo-random inputs.
//!
//! A random sequence of gate operations, one at a time, holding addition and removal tokens,
//! CPU-online tokens and the initialization ticket across operations (so any interleaving of
//! starts and ends is reachable). A model written here from the rules predicts every answer and
//! every counter, pending initialization included; the frozen-memory answers come from a
//! point-wise reference and the removal refusals from the plan's PAMT blocks, not from the
//! gate's own computation. Any difference, or any panic in the gate, is a finding.

use std::sync::OnceLock;

use arbitrary::Unstructured;
use tdmr::addr::{PageSize, PhysRange, RangeSet};
use tdmr::hotplug_gate::{
    AdmissionRule, AdmitError, BeginInitError, BeginUpdateError, CpuOfflineError, CpuOnline,
    CpuOnlineError, GateConfig, HotplugGate, InitTicket, KeyIdError, MemoryAdmission,
    MemoryRemoval, MetadataHolder, ModuleState, PreInitPolicy, PublishError, RemovalRule,
    RemoveError, UpdateTicket,
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

/// What initialization published.
struct Published {
    memory: MemoryMap,
    plan: Plan,
    cuts: Vec<u64>,
    /// The frozen memory fit the snapshot.
    snapshot_ok: bool,
    /// The PAMT blocks fit the refusal set.
    metadata_ok: bool,
}

struct Model {
    state: ModuleState,
    pending: bool,
    in_flight: u32,
    keyids: u32,
    slots: Vec<Slot>,
    counts: Vec<u32>,
    /// Additions (true) and removals (false) admitted before initialization, in order.
    changes: Vec<(bool, PhysRange)>,
    published: Option<Published>,
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

/// The kernel's map: the fixture's memory with the admitted additions (node 0 for new memory)
/// and removals applied in order; `None` when nothing is left.
fn kernel_map(base: &MemoryMap, changes: &[(bool, PhysRange)]) -> Option<MemoryMap> {
    let mut map = base.clone();
    for &(add, r) in changes {
        map = if add {
            map.with_added(&[MemoryRegion::new(r.start(), r.size(), 0)])
        } else {
            map.without(&RangeSet::from_ranges([r]))
        }
        .ok()?;
    }
    Some(map)
}

/// The first PAMT block (lowest start) `r` overlaps: what a removal after init is refused for.
fn first_pamt_hit(plan: &Plan, r: PhysRange) -> Option<(PhysRange, MetadataHolder)> {
    plan.tdmrs()
        .iter()
        .enumerate()
        .flat_map(|(tdmr, t)| {
            PageSize::ALL
                .into_iter()
                .map(move |level| (t.pamt(level), MetadataHolder::Pamt { tdmr, level }))
        })
        .filter(|(b, _)| b.overlaps(r))
        .min_by_key(|(b, _)| (b.start(), b.end()))
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
    let metadata_capacity = *u.choose(&[256usize, 256, 256, 2])?;
    let config = GateConfig::new(cpus, packages)
        .with_pre_init(policy)
        .with_snapshot_capacity(capacity)
        .with_section_bitmap_words(words)
        .with_metadata_capacity(metadata_capacity);
    let gate = HotplugGate::new(fx.cmrs.clone(), config).expect("valid topology");
    let mut m = Model {
        state: ModuleState::Uninitialized,
        pending: false,
        in_flight: 0,
        keyids: 0,
        slots: vec![Slot::Offline; cpus as usize],
        counts: vec![0; packages as usize],
        changes: Vec::new(),
        published: None,
    };
    let mut mem_tokens: Vec<MemoryAdmission<'_>> = Vec::new();
    let mut removal_tokens: Vec<MemoryRemoval<'_>> = Vec::new();
    let mut cpu_tokens: Vec<CpuOnline<'_>> = Vec::new();
    let mut ticket: Option<InitTicket<'_>> = None;
    let mut update: Option<UpdateTicket<'_>> = None;
    let mut frozen_at_update: Vec<PhysRange> = Vec::new();
    let mut metadata_at_update = 0usize;
    let cmr_cuts: Vec<u64> = fx
        .cmrs
        .listed()
        .iter()
        .flat_map(|c| [c.base, c.base + c.size])
        .collect();

    for _ in 0..u.int_in_range(1..=200u32)? {
        match u.int_in_range(0..=16u8)? {
            0 | 1 => {
                let r = range(u, fx)?;
                let got = gate.admit_memory(r);
                if r.is_empty() {
                    assert_eq!(got.err(), Some(AdmitError::Empty { at: r.start() }));
                } else if r.start() % 0x1000 != 0 || r.end() % 0x1000 != 0 {
                    assert_eq!(got.err(), Some(AdmitError::Misaligned { range: r }));
                } else {
                    match m.state {
                        ModuleState::Initializing | ModuleState::Updating => {
                            assert_eq!(got.err(), Some(AdmitError::Busy))
                        }
                        // Initialized with an update pending admits as initialized.
                        ModuleState::Initialized => {
                            let p = m.published.as_ref().expect("published");
                            let bad = if p.snapshot_ok {
                                first_bad(r, &p.cuts, |pa| frozen_byte(&p.plan, &p.memory, pa))
                            } else {
                                Some(r)
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
                        _ if m.pending => assert_eq!(got.err(), Some(AdmitError::Busy)),
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
                                    m.changes.push((true, r));
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
                        (Slot::Offline, ModuleState::Initializing | ModuleState::Updating) => {
                            Err(CpuOnlineError::Busy)
                        }
                        // An update is pending: CPU hotplug drains.
                        (Slot::Offline, ModuleState::Initialized) if m.pending => {
                            Err(CpuOnlineError::Busy)
                        }
                        (Slot::Offline, ModuleState::Initialized) => Ok(true),
                        // Pending: only into a package without an online CPU.
                        (Slot::Offline, _) if m.pending && m.counts[pkg as usize] > 0 => {
                            Err(CpuOnlineError::Busy)
                        }
                        (Slot::Offline, _) => Ok(false),
                    }
                };
                match (got, want) {
                    (Ok(tok), Ok(lp)) => {
                        assert_eq!(tok.lp_init_required(), lp);
                        assert_eq!((tok.cpu(), tok.package()), (cpu, pkg));
                        m.slots[cpu as usize] = Slot::Moving;
                        // Every online is in flight until it ends.
                        m.in_flight += 1;
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
                    m.in_flight -= 1;
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
                        // An update pending or running: no CPU leaves.
                        Slot::Online(_)
                            if m.state == ModuleState::Updating
                                || (m.state == ModuleState::Initialized && m.pending) =>
                        {
                            Err(CpuOfflineError::Busy { cpu, package: pkg })
                        }
                        Slot::Online(_) if m.counts[pkg as usize] >= 2 => Ok(()),
                        Slot::Online(_) if m.state == ModuleState::Initializing || m.pending => {
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
                // Half the time the initializer first waits for everything in flight and
                // brings a CPU up in each package without one (as a kernel would), so that
                // sequences get through initialization and reach the post-init rules.
                if u.arbitrary()? {
                    for tok in mem_tokens.drain(..) {
                        if tok.rule().is_pre_init() {
                            m.in_flight -= 1;
                        }
                    }
                    for tok in removal_tokens.drain(..) {
                        if tok.rule().is_pre_init() {
                            m.in_flight -= 1;
                        }
                    }
                    for tok in cpu_tokens.drain(..) {
                        let (cpu, pkg) = (tok.cpu() as usize, tok.package());
                        m.in_flight -= 1;
                        tok.finish();
                        m.slots[cpu] = Slot::Online(pkg);
                        m.counts[pkg as usize] += 1;
                    }
                    let before_init =
                        matches!(m.state, ModuleState::Uninitialized | ModuleState::Failed);
                    for pkg in (0..packages).filter(|_| before_init) {
                        let idle = (0..cpus).find(|&c| m.slots[c as usize] == Slot::Offline);
                        if let (0, Some(cpu)) = (m.counts[pkg as usize], idle) {
                            let tok = gate
                                .cpu_online(cpu, pkg)
                                .expect("a CPU for an empty package");
                            assert!(!tok.lp_init_required());
                            tok.finish();
                            m.slots[cpu as usize] = Slot::Online(pkg);
                            m.counts[pkg as usize] += 1;
                        }
                    }
                }
                let got = gate.begin_init();
                let want = match m.state {
                    ModuleState::Initializing => Err(BeginInitError::InProgress),
                    ModuleState::Initialized | ModuleState::Updating => {
                        Err(BeginInitError::AlreadyInitialized)
                    }
                    _ => {
                        // Pending from now on, whatever the answer.
                        m.pending = true;
                        if m.in_flight > 0 {
                            Err(BeginInitError::Busy {
                                in_flight: m.in_flight,
                            })
                        } else {
                            match m.first_empty_package() {
                                Some(package) => Err(BeginInitError::PackageOffline { package }),
                                None => Ok(()),
                            }
                        }
                    }
                };
                match (got, want) {
                    (Ok(t), Ok(())) => {
                        m.state = ModuleState::Initializing;
                        m.pending = false;
                        ticket = Some(t);
                    }
                    (Err(e), Err(w)) => assert_eq!(e, w),
                    (got, want) => panic!("begin_init: {:?} vs {want:?}", got.err()),
                }
            }
            7 => {
                if let Some(t) = ticket.take() {
                    let planned = kernel_map(&fx.memory, &m.changes)
                        .and_then(|mem| plan(&mem, &fx.cmrs).map(|p| (mem, p)));
                    match planned {
                        Some((mem, plan)) => {
                            let cuts = boundaries(&plan, &mem);
                            let got = t.publish(&plan, &mem);
                            m.state = ModuleState::Initialized;
                            let blocks = plan
                                .tdmrs()
                                .iter()
                                .flat_map(|t| PageSize::ALL.map(|l| t.pamt(l)))
                                .filter(|b| !b.is_empty())
                                .count();
                            let metadata_ok = blocks <= metadata_capacity;
                            let snapshot_ok = match got {
                                Ok(n) => {
                                    assert!(n <= capacity && metadata_ok);
                                    true
                                }
                                Err(PublishError::SnapshotTooLarge {
                                    ranges,
                                    capacity: c,
                                }) => {
                                    assert_eq!(c, capacity);
                                    assert!(ranges > capacity);
                                    assert_eq!(gate.frozen_memory().count(), 0);
                                    false
                                }
                                Err(PublishError::MetadataTooLarge {
                                    blocks: b,
                                    capacity: c,
                                }) => {
                                    assert_eq!(
                                        (b, c, metadata_ok),
                                        (blocks, metadata_capacity, false)
                                    );
                                    true
                                }
                                Err(e) => panic!("publish: {e}"),
                            };
                            if metadata_ok {
                                assert_eq!(gate.tdx_metadata().count(), blocks);
                            }
                            m.published = Some(Published {
                                memory: mem,
                                plan,
                                cuts,
                                snapshot_ok,
                                metadata_ok,
                            });
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
                let want = if m.state == ModuleState::Updating {
                    Err(KeyIdError::Busy)
                } else if m.state != ModuleState::Initialized {
                    Err(KeyIdError::NotInitialized { state: m.state })
                } else if m.in_flight > 0 {
                    // CPU onlines are in flight after initialization too.
                    Err(KeyIdError::Busy)
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
            10 => {
                let got = gate.release_guest_keyid();
                if m.keyids == 0 {
                    assert_eq!(got, Err(KeyIdError::NoneInUse));
                } else {
                    assert_eq!(got, Ok(()));
                    m.keyids -= 1;
                }
            }
            11 => {
                let r = range(u, fx)?;
                let got = gate.admit_removal(r);
                let want: Result<RemovalRule, RemoveError> = if r.is_empty() {
                    Err(RemoveError::Empty { at: r.start() })
                } else if r.start() % 0x1000 != 0 || r.end() % 0x1000 != 0 {
                    Err(RemoveError::Misaligned { range: r })
                } else {
                    match m.state {
                        ModuleState::Initializing | ModuleState::Updating => Err(RemoveError::Busy),
                        ModuleState::Initialized => {
                            let p = m.published.as_ref().expect("published");
                            match first_pamt_hit(&p.plan, r) {
                                _ if !p.metadata_ok => Err(RemoveError::MetadataUnknown {
                                    range: r,
                                    blocks: tdmr::hotplug_gate::tdx_metadata(&p.plan).len(),
                                    capacity: metadata_capacity,
                                }),
                                Some((block, holder)) => Err(RemoveError::HoldsTdxMetadata {
                                    range: r,
                                    overlap: block.intersect(r).expect("overlaps"),
                                    holder,
                                }),
                                None => Ok(RemovalRule::NoTdxMetadata),
                            }
                        }
                        _ if m.pending => Err(RemoveError::Busy),
                        ModuleState::Uninitialized | ModuleState::Failed => {
                            Ok(RemovalRule::BeforeInit)
                        }
                    }
                };
                match (got, want) {
                    (Ok(tok), Ok(rule)) => {
                        assert_eq!((tok.rule(), tok.range()), (rule, r));
                        if rule.is_pre_init() {
                            m.in_flight += 1;
                            m.changes.push((false, r));
                        }
                        removal_tokens.push(tok);
                    }
                    (Err(e), Err(w)) => assert_eq!(e, w),
                    (got, want) => panic!("remove {r}: {:?} vs {want:?}", got.map(|t| t.rule())),
                }
            }
            12 => {
                if !removal_tokens.is_empty() {
                    let i = u.choose_index(removal_tokens.len())?;
                    let tok = removal_tokens.swap_remove(i);
                    if tok.rule().is_pre_init() {
                        m.in_flight -= 1;
                    }
                    if u.arbitrary()? {
                        tok.finish();
                    }
                }
            }
            13 => {
                let got = gate.cancel_init();
                let want = m.pending
                    && matches!(m.state, ModuleState::Uninitialized | ModuleState::Failed);
                assert_eq!(got, want, "cancel_init");
                m.pending &= !want;
            }
            14 => {
                let got = gate.begin_update();
                let want = match m.state {
                    ModuleState::Updating => Err(BeginUpdateError::InProgress),
                    ModuleState::Initialized if m.in_flight > 0 => {
                        m.pending = true;
                        Err(BeginUpdateError::Busy {
                            in_flight: m.in_flight,
                        })
                    }
                    ModuleState::Initialized => Ok(()),
                    state => Err(BeginUpdateError::NotInitialized { state }),
                };
                match (got, want) {
                    (Ok(t), Ok(())) => {
                        m.state = ModuleState::Updating;
                        m.pending = false;
                        frozen_at_update = gate.frozen_memory().collect();
                        metadata_at_update = gate.tdx_metadata().count();
                        update = Some(t);
                    }
                    (Err(e), Err(w)) => assert_eq!(e, w),
                    (got, want) => panic!("begin_update: {:?} vs {want:?}", got.err()),
                }
            }
            15 => {
                if let Some(t) = update.take() {
                    // Frozen memory and the refusal set live through the update unchanged.
                    assert_eq!(gate.frozen_memory().collect::<Vec<_>>(), frozen_at_update);
                    if u.arbitrary()? {
                        t.finish();
                    } else {
                        drop(t);
                    }
                    m.state = ModuleState::Initialized;
                    assert_eq!(gate.frozen_memory().collect::<Vec<_>>(), frozen_at_update);
                    assert_eq!(gate.tdx_metadata().count(), metadata_at_update);
                }
            }
            _ => {
                let got = gate.cancel_update();
                let want = m.pending && m.state == ModuleState::Initialized;
                assert_eq!(got, want, "cancel_update");
                m.pending &= !want;
            }
        }
        // The gate's books match the model after every operation.
        assert_eq!(gate.state(), m.state);
        let before_init = matches!(m.state, ModuleState::Uninitialized | ModuleState::Failed);
        assert_eq!(gate.init_pending(), m.pending && before_init);
        assert_eq!(
            gate.update_pending(),
            m.pending && m.state == ModuleState::Initialized
        );
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
