//! Many threads, random hotplug operations around initialization; checks the gate's
//! invariants at scale. No timing assertions: every check is about what was admitted.

#[path = "gate_common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::thread;

use common::{FIXTURES, Rng, boundaries, candidates, convertible, frozen_range, planned};
use tdmr::addr::{PhysRange, SZ_2M};
use tdmr::hotplug_gate::{
    AdmissionRule, AdmitError, CpuOfflineError, CpuOnlineError, GateConfig, HotplugGate,
    KeyIdError, ModuleState,
};
use tdmr::layout::{HolePolicy, Plan, Planner};
use tdmr::memmap::{Cmrs, MemoryMap, MemoryRegion};

const THREADS: u64 = 8;
const OPS: u64 = 3000;
const CPUS: u32 = 16;
const PACKAGES: u32 = 4;
const UNPLUGGED: u64 = 1024;

/// The kernel's memory map: the fixture's memory plus hot-added ranges, merged.
fn kernel_map(base: &MemoryMap, added: &[PhysRange]) -> MemoryMap {
    let mut all: Vec<PhysRange> = base.regions().iter().map(|r| r.range()).collect();
    all.extend_from_slice(added);
    all.sort_unstable();
    let mut merged: Vec<PhysRange> = Vec::new();
    for r in all {
        match merged.last_mut() {
            Some(last) if r.start() <= last.end() => {
                *last = PhysRange::new(last.start(), last.end().max(r.end())).unwrap()
            }
            _ => merged.push(r),
        }
    }
    MemoryMap::new(
        merged
            .iter()
            .map(|r| MemoryRegion::new(r.start(), r.size(), 0))
            .collect(),
    )
    .unwrap()
}

/// `n` disjoint 2 MiB blocks, one every 4 MiB from the middle of the largest region, so the
/// planner still finds few enough TDMRs.
fn spread_blocks(memory: &MemoryMap, n: u64) -> Vec<PhysRange> {
    let largest = memory.regions().iter().max_by_key(|r| r.size).unwrap();
    let first = (largest.base + largest.size / 2).next_multiple_of(SZ_2M);
    (0..n)
        .map(|i| first + i * 2 * SZ_2M)
        .take_while(|&at| at + SZ_2M <= largest.end())
        .map(|at| PhysRange::new(at, at + SZ_2M).unwrap())
        .collect()
}

/// `memory` less the `holes`, as a map (node 0).
fn without(memory: &MemoryMap, holes: &[PhysRange]) -> MemoryMap {
    let mut pieces: Vec<PhysRange> = memory.regions().iter().map(|r| r.range()).collect();
    for h in holes {
        pieces = pieces
            .into_iter()
            .flat_map(|p| {
                let left = PhysRange::new(p.start(), h.start().clamp(p.start(), p.end())).unwrap();
                let right = PhysRange::new(h.end().clamp(p.start(), p.end()), p.end()).unwrap();
                [left, right]
            })
            .filter(|p| !p.is_empty())
            .collect();
    }
    MemoryMap::new(
        pieces
            .iter()
            .map(|r| MemoryRegion::new(r.start(), r.size(), 0))
            .collect(),
    )
    .unwrap()
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

struct World {
    gate: HotplugGate,
    cmrs: Cmrs,
    base: MemoryMap,
    /// Ranges in the kernel's map by hot-add (pushed before the admission is finished).
    added: Mutex<Vec<PhysRange>>,
    /// What initialization published: the memory it read and the plan.
    published: Mutex<Option<(MemoryMap, Plan)>>,
    /// The reference's answers so far (each range is judged once: the reference is slow).
    judged: Mutex<(Vec<u64>, HashMap<PhysRange, bool>)>,
    /// The kernel's online mask (set before an online is finished, cleared after an offline).
    online: Vec<AtomicBool>,
    /// CPUs that ran TDH.SYS.LP.INIT.
    lp_done: Vec<AtomicBool>,
    /// Guest KeyIDs the workers hold.
    keyids: AtomicU32,
    violations: AtomicUsize,
    /// Set once initialization starts trying.
    init_wanted: AtomicBool,
    /// Operations the workers have started.
    progress: AtomicU64,
    pre_init_added: Mutex<Vec<PhysRange>>,
    /// Blocks not in the initial map, handed out once each.
    unplugged: Vec<PhysRange>,
    next_unplugged: AtomicUsize,
}

impl World {
    fn violation(&self, what: String) {
        eprintln!("violation: {what}");
        self.violations.fetch_add(1, SeqCst);
    }
}

fn worker(w: &World, mut rng: Rng, cands: &[PhysRange], reference: &dyn Fn(PhysRange) -> bool) {
    let mut held_keyids = 0u32;
    // At least OPS operations, of which OPS / 4 after initialization.
    let (mut done, mut after_init) = (0, 0);
    while done < OPS || after_init < OPS / 4 {
        done += 1;
        w.progress.fetch_add(1, SeqCst);
        if w.gate.state() == ModuleState::Initialized {
            after_init += 1;
        }
        match rng.below(10) {
            0..=4 => {
                let seen_initialized = w.gate.state() == ModuleState::Initialized;
                // Hot-adds come in bursts, not a stream that would starve initialization
                // (begin_init is refused while any is in flight, by design).
                if w.init_wanted.load(SeqCst) && !seen_initialized && rng.below(8) != 0 {
                    thread::yield_now();
                    continue;
                }
                // Sometimes, and always once initialization is wanted (when additions race
                // it), a block never added before, so that a lost addition shows.
                let fresh = if w.init_wanted.load(SeqCst) || rng.below(8) == 0 {
                    w.unplugged
                        .get(w.next_unplugged.fetch_add(1, SeqCst))
                        .copied()
                } else {
                    None
                };
                let c = fresh.unwrap_or_else(|| cands[rng.below(cands.len() as u64) as usize]);
                match w.gate.admit_memory(c) {
                    Ok(tok) => match tok.rule() {
                        AdmissionRule::Convertible => {
                            if !convertible(&w.cmrs, c) {
                                w.violation(format!("{c} admitted outside the CMRs"));
                            }
                            w.pre_init_added.lock().unwrap().push(c);
                            // add_memory() takes a while before the memory is in the map.
                            for _ in 0..rng.below(4) {
                                thread::yield_now();
                            }
                            w.added.lock().unwrap().push(c);
                            tok.finish();
                        }
                        AdmissionRule::TdxMemory => {
                            if !reference(c) {
                                w.violation(format!("{c} admitted after init, not TDX memory"));
                            }
                        }
                        AdmissionRule::AnyMemory => w.violation("AnyMemory rule".into()),
                    },
                    Err(AdmitError::Busy) => {
                        if seen_initialized {
                            w.violation(format!("{c}: Busy after init"));
                        }
                    }
                    Err(AdmitError::NotConvertible { .. }) => {
                        if convertible(&w.cmrs, c) {
                            w.violation(format!("{c} convertible but refused"));
                        }
                    }
                    Err(AdmitError::NotTdxMemory { .. }) => {
                        if reference(c) {
                            w.violation(format!("{c} TDX memory but refused after init"));
                        }
                    }
                    Err(e) => w.violation(format!("{c}: {e}")),
                }
            }
            5 | 6 => {
                let cpu = rng.below(u64::from(CPUS)) as u32;
                let pkg = cpu % PACKAGES;
                if rng.below(2) == 0 {
                    match w.gate.cpu_online(cpu, pkg) {
                        Ok(tok) => {
                            if tok.lp_init_required() {
                                w.lp_done[cpu as usize].store(true, SeqCst);
                            }
                            if rng.below(8) == 0 {
                                drop(tok); // the online failed
                                continue;
                            }
                            w.online[cpu as usize].store(true, SeqCst);
                            tok.finish();
                        }
                        Err(CpuOnlineError::Busy | CpuOnlineError::CpuBusy { .. }) => {}
                        Err(CpuOnlineError::AlreadyOnline { .. }) => {}
                        Err(e) => w.violation(format!("online {cpu}: {e}")),
                    }
                } else {
                    match w.gate.cpu_offline(cpu, pkg) {
                        Ok(()) => w.online[cpu as usize].store(false, SeqCst),
                        Err(CpuOfflineError::Busy { .. })
                        | Err(CpuOfflineError::CpuBusy { .. })
                        | Err(CpuOfflineError::NotOnline { .. }) => {}
                        Err(CpuOfflineError::GuestKeyIdsInUse { .. }) => {}
                        Err(e) => w.violation(format!("offline {cpu}: {e}")),
                    }
                }
            }
            7 | 8 => {
                if held_keyids > 0 && rng.below(2) == 0 {
                    // While this thread holds a KeyID, no package may be empty.
                    for p in 0..PACKAGES {
                        if w.gate.online_cpus(p) == Some(0) {
                            w.violation(format!("package {p} empty while a KeyID is in use"));
                        }
                    }
                    w.gate.release_guest_keyid().unwrap();
                    held_keyids -= 1;
                    w.keyids.fetch_sub(1, SeqCst);
                } else {
                    match w.gate.acquire_guest_keyid() {
                        Ok(()) => {
                            held_keyids += 1;
                            w.keyids.fetch_add(1, SeqCst);
                        }
                        Err(KeyIdError::NotInitialized { .. })
                        | Err(KeyIdError::Busy)
                        | Err(KeyIdError::PackageOffline { .. }) => {}
                        Err(e) => w.violation(format!("keyid: {e}")),
                    }
                }
            }
            _ => thread::yield_now(),
        }
    }
    for _ in 0..held_keyids {
        w.gate.release_guest_keyid().unwrap();
        w.keyids.fetch_sub(1, SeqCst);
    }
}

fn initializer(w: &World, mut rng: Rng) {
    // Let the workers run a quarter of their operations before initialization.
    while w.progress.load(SeqCst) < THREADS * OPS / 4 {
        thread::yield_now();
    }
    w.init_wanted.store(true, SeqCst);
    let mut attempts = 0;
    loop {
        thread::yield_now();
        let ticket = match w.gate.begin_init() {
            Ok(t) => t,
            Err(e) => {
                assert!(
                    e.is_retryable()
                        || matches!(e, tdmr::hotplug_gate::BeginInitError::PackageOffline { .. }),
                    "{e}"
                );
                continue;
            }
        };
        attempts += 1;
        // LP.INIT on every CPU online now.
        for (cpu, on) in w.online.iter().enumerate() {
            if on.load(SeqCst) {
                w.lp_done[cpu].store(true, SeqCst);
            }
        }
        let memory = kernel_map(&w.base, &w.added.lock().unwrap());
        for _ in 0..50 {
            for p in 0..PACKAGES {
                if w.gate.online_cpus(p) == Some(0) {
                    w.violation(format!("package {p} empty during init"));
                }
            }
            thread::yield_now();
        }
        // Fail the first attempts on purpose: the pre-init rule must come back.
        if attempts < 3 && rng.below(2) == 0 {
            ticket.fail();
            continue;
        }
        let Some(plan) = plan(&memory, &w.cmrs) else {
            ticket.fail();
            continue;
        };
        *w.published.lock().unwrap() = Some((memory.clone(), plan.clone()));
        ticket.publish(&plan, &memory).unwrap();
        return;
    }
}

#[test]
fn random_hotplug_around_initialization_keeps_every_invariant() {
    for (i, (name, log)) in FIXTURES.iter().enumerate() {
        let (fixture_memory, cmrs, first_plan) = planned(log);
        let mut rng = Rng(0x5eed_0000 + i as u64 * 7919);
        let cands = candidates(&first_plan, &fixture_memory, &cmrs, &mut rng, 512);
        // Memory not plugged in yet: 2 MiB blocks, each hot-added at most once, so that an
        // addition lost by initialization shows in the map it read.
        let unplugged = spread_blocks(&fixture_memory, UNPLUGGED);
        let base = without(&fixture_memory, &unplugged);
        let config = GateConfig::new(CPUS, PACKAGES).with_snapshot_capacity(8192);
        let gate = HotplugGate::new(cmrs.clone(), config).unwrap();
        for cpu in 0..CPUS {
            gate.cpu_online(cpu, cpu % PACKAGES).unwrap().finish();
        }
        let world = World {
            gate,
            cmrs: cmrs.clone(),
            base: base.clone(),
            added: Mutex::new(Vec::new()),
            published: Mutex::new(None),
            judged: Mutex::new((Vec::new(), HashMap::new())),
            online: (0..CPUS).map(|_| AtomicBool::new(true)).collect(),
            lp_done: (0..CPUS).map(|_| AtomicBool::new(false)).collect(),
            keyids: AtomicU32::new(0),
            violations: AtomicUsize::new(0),
            progress: AtomicU64::new(0),
            init_wanted: AtomicBool::new(false),
            pre_init_added: Mutex::new(Vec::new()),
            unplugged,
            next_unplugged: AtomicUsize::new(0),
        };
        // The published plan is only known once init ran; workers look it up lazily.
        let reference = |c: PhysRange| {
            let guard = world.published.lock().unwrap();
            let (m, p) = guard
                .as_ref()
                .expect("initialized before any frozen admission");
            let mut judged = world.judged.lock().unwrap();
            let (bounds, answers) = &mut *judged;
            if bounds.is_empty() {
                *bounds = boundaries(p, m);
            }
            *answers
                .entry(c)
                .or_insert_with(|| frozen_range(p, m, bounds, c))
        };
        thread::scope(|s| {
            for t in 0..THREADS {
                let (w, cands, reference) = (&world, &cands, &reference);
                let rng = Rng(rng.next() ^ t);
                s.spawn(move || worker(w, rng, cands, reference));
            }
            let w = &world;
            let r2 = Rng(rng.next());
            s.spawn(move || initializer(w, r2));
        });

        let g = &world.gate;
        assert_eq!(g.state(), ModuleState::Initialized, "{name}");
        assert_eq!(world.violations.load(SeqCst), 0, "{name}: see stderr");
        assert_eq!(g.in_flight(), 0, "{name}");
        assert_eq!(g.guest_keyids(), 0, "{name}");
        // The gate's books agree with the kernel's view, CPU by CPU and package by package.
        for p in 0..PACKAGES {
            let mine =
                (0..CPUS).filter(|&c| world.online[c as usize].load(SeqCst) && c % PACKAGES == p);
            assert_eq!(
                g.online_cpus(p),
                Some(mine.count() as u32),
                "{name}: package {p}"
            );
        }
        for cpu in 0..CPUS {
            let on = world.online[cpu as usize].load(SeqCst);
            assert_eq!(
                g.cpu_package(cpu),
                on.then_some(cpu % PACKAGES),
                "{name}: CPU {cpu}"
            );
            assert!(
                !on || world.lp_done[cpu as usize].load(SeqCst),
                "{name}: CPU {cpu} online without LP.INIT"
            );
        }
        // Every addition admitted before init had finished when init read the map.
        let (m, p) = world.published.lock().unwrap().clone().unwrap();
        for a in world.pre_init_added.lock().unwrap().iter() {
            assert!(
                m.contains_range(*a),
                "{name}: {a} admitted before init, missing from its map"
            );
        }
        // After init, the answers are exactly the frozen set's.
        let bounds = boundaries(&p, &m);
        for c in &cands {
            assert_eq!(
                g.admit_memory(*c).is_ok(),
                frozen_range(&p, &m, &bounds, *c),
                "{name}: {c}"
            );
        }
    }
}
