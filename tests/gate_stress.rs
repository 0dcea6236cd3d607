//! Many threads, random hotplug operations (memory additions and removals, CPU online and
//! offline, guest KeyIDs) around initialization, and Dynamic PAMT pairs racing removals after
//! it; checks the gate's invariants at scale. No timing assertions: every check is about what
//! was admitted. Hot-adds are not thinned out: initialization gets through a steady stream.

#[path = "gate_common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::thread;

use common::{
    FIXTURES, PairModule, Pairs, Rng, boundaries, candidates, convertible, first_pamt_hit,
    frozen_range, planned,
};
use tdmr::addr::{PhysRange, RangeSet, SZ_2M};
use tdmr::dpamt::{DynamicPamt, DynamicPamtError, Get, Put};
use tdmr::hotplug_gate::{
    AdmissionRule, AdmitError, CpuOfflineError, CpuOnlineError, GateConfig, HotplugGate,
    KeyIdError, MetadataHolder, ModuleState, RemovalRule, RemoveError,
};
use tdmr::layout::{HolePolicy, Plan, Planner};
use tdmr::memmap::{Cmrs, MemoryMap, MemoryRegion};
use tdmr::sysinfo::TdxLimits;

const THREADS: u64 = 8;
const OPS: u64 = 3000;
const CPUS: u32 = 16;
const PACKAGES: u32 = 4;
const UNPLUGGED: u64 = 1024;

/// The kernel's memory map: the fixture's memory with the hot-adds (true) and removals (false)
/// applied in order; `None` when nothing is left.
fn kernel_map(base: &MemoryMap, changes: &[(usize, bool, PhysRange)]) -> Option<MemoryMap> {
    let mut map = base.clone();
    for &(_, add, r) in changes {
        map = if add {
            map.with_added(&[MemoryRegion::new(r.start(), r.size(), 0)])
        } else {
            map.without(&RangeSet::from_ranges([r]))
        }
        .ok()?;
    }
    Some(map)
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
    /// The kernel's map changes, in order: (operation id, addition?, range), pushed before the
    /// admission or removal is finished.
    changes: Mutex<Vec<(usize, bool, PhysRange)>>,
    /// Ids of the changes the map initialization read held.
    init_saw: Mutex<Option<std::collections::HashSet<usize>>>,
    next_id: AtomicUsize,
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
    /// Ids of the additions and removals admitted before initialization.
    pre_init: Mutex<Vec<(usize, PhysRange)>>,
    /// Removals after initialization: admitted, refused for a PAMT block.
    removals_after: [AtomicUsize; 2],
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
        match rng.below(12) {
            10 | 11 => remove_memory(w, &mut rng, cands),
            0..=4 => {
                let seen_initialized = w.gate.state() == ModuleState::Initialized;
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
                            let id = w.next_id.fetch_add(1, SeqCst);
                            w.pre_init.lock().unwrap().push((id, c));
                            // add_memory() takes a while before the memory is in the map.
                            for _ in 0..rng.below(4) {
                                thread::yield_now();
                            }
                            w.changes.lock().unwrap().push((id, true, c));
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

/// A memory removal: before initialization any memory may go (in flight until the kernel's
/// map no longer holds it); after it, refused exactly where a PAMT block lies.
fn remove_memory(w: &World, rng: &mut Rng, cands: &[PhysRange]) {
    let seen_initialized = w.gate.state() == ModuleState::Initialized;
    let mut c = cands[rng.below(cands.len() as u64) as usize];
    // After init, half the time a PAMT block of the published plan or the memory block
    // around one of its pages.
    if seen_initialized && rng.below(2) == 0 {
        let guard = w.published.lock().unwrap();
        if let Some((_, p)) = guard.as_ref() {
            let blocks = p.pamt_ranges();
            let b = blocks.as_slice()[rng.below(blocks.len() as u64) as usize];
            let at = (b.start() + rng.below(b.size() >> 12) * 0x1000) & !0x7ff_ffff;
            c = match rng.below(3) {
                0 => b,
                1 => PhysRange::new(at, at + 0x800_0000).unwrap(),
                _ => PhysRange::new(b.end() - 0x1000, b.end() + 0x1000).unwrap(),
            };
        }
    }
    match w.gate.admit_removal(c) {
        Ok(tok) => match tok.rule() {
            RemovalRule::BeforeInit => {
                let id = w.next_id.fetch_add(1, SeqCst);
                w.pre_init.lock().unwrap().push((id, c));
                for _ in 0..rng.below(4) {
                    thread::yield_now(); // offline_pages() at work
                }
                w.changes.lock().unwrap().push((id, false, c));
                tok.finish();
            }
            RemovalRule::NoTdxMetadata => {
                let guard = w.published.lock().unwrap();
                match guard.as_ref() {
                    Some((_, p)) if first_pamt_hit(p, c).is_none() => {}
                    _ => w.violation(format!("{c} removed after init over a PAMT block")),
                }
                w.removals_after[0].fetch_add(1, SeqCst);
            }
        },
        Err(RemoveError::Busy) => {
            if seen_initialized {
                w.violation(format!("{c}: removal Busy after init"));
            }
        }
        Err(RemoveError::HoldsTdxMetadata {
            range,
            overlap,
            holder,
        }) => {
            let guard = w.published.lock().unwrap();
            let want = guard.as_ref().and_then(|(_, p)| first_pamt_hit(p, c));
            match want {
                Some((b, tdmr, level))
                    if range == c
                        && Some(overlap) == b.intersect(c)
                        && holder == MetadataHolder::Pamt { tdmr, level } => {}
                _ => w.violation(format!(
                    "{c}: refused as {holder} ({overlap}), want {want:?}"
                )),
            }
            w.removals_after[1].fetch_add(1, SeqCst);
        }
        Err(e) => w.violation(format!("{c}: removal {e}")),
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
        let changes = w.changes.lock().unwrap().clone();
        *w.init_saw.lock().unwrap() = Some(changes.iter().map(|c| c.0).collect());
        let Some(memory) = kernel_map(&w.base, &changes) else {
            ticket.fail();
            continue;
        };
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
        let mut cands = cands;
        // Removals after init also aim at PAMT blocks and the memory blocks around them.
        for b in first_plan.pamt_ranges().iter() {
            let block = b.start() & !0x7ff_ffff;
            cands.extend([b, PhysRange::new(block, block + 0x800_0000).unwrap()]);
        }
        let gate = HotplugGate::new(cmrs.clone(), config).unwrap();
        for cpu in 0..CPUS {
            gate.cpu_online(cpu, cpu % PACKAGES).unwrap().finish();
        }
        let world = World {
            gate,
            cmrs: cmrs.clone(),
            base: base.clone(),
            changes: Mutex::new(Vec::new()),
            init_saw: Mutex::new(None),
            next_id: AtomicUsize::new(0),
            published: Mutex::new(None),
            judged: Mutex::new((Vec::new(), HashMap::new())),
            online: (0..CPUS).map(|_| AtomicBool::new(true)).collect(),
            lp_done: (0..CPUS).map(|_| AtomicBool::new(false)).collect(),
            keyids: AtomicU32::new(0),
            violations: AtomicUsize::new(0),
            progress: AtomicU64::new(0),
            init_wanted: AtomicBool::new(false),
            pre_init: Mutex::new(Vec::new()),
            removals_after: [AtomicUsize::new(0), AtomicUsize::new(0)],
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
        // Every addition and removal admitted before init had finished when init read the map.
        let (m, p) = world.published.lock().unwrap().clone().unwrap();
        let saw = world.init_saw.lock().unwrap().clone().unwrap();
        let pre_init = world.pre_init.lock().unwrap().clone();
        for (id, a) in &pre_init {
            assert!(
                saw.contains(id),
                "{name}: {a} admitted before init, still in flight when init read the map"
            );
        }
        let changed = world.changes.lock().unwrap().len();
        assert_eq!(pre_init.len(), changed, "{name}: one change per admission");
        let [admitted_after, refused_after] =
            world.removals_after.each_ref().map(|c| c.load(SeqCst));
        assert!(
            admitted_after > 10 && refused_after > 10,
            "{name}: removals after init: {admitted_after} admitted, {refused_after} refused"
        );
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

/// After an initialization with Dynamic PAMT: threads back 2 MiB ranges with page pairs taken
/// from TDX memory (TDH.PHYMEM.PAMT.ADD / REMOVE through a stand-in module) while others remove
/// memory blocks around those pages. A removal is never admitted while a pair page in its
/// range is added: checked from both sides, by the removal (the module owns no page of its
/// range while it is in flight) and by the module (no ADD takes a page of a removal in flight).
#[test]
fn removals_never_take_memory_holding_an_added_dynamic_pamt_pair() {
    const PAIRS_AT: u64 = 0x100_0000; // 16 MiB into the largest region
    let (fixture_memory, cmrs, _) = planned(FIXTURES[3].1);
    let limits = TdxLimits::default().with_dynamic_pamt(1).unwrap();
    let plan = Planner::new()
        .with_limits(limits)
        .plan(&fixture_memory, &cmrs)
        .unwrap();
    let gate =
        HotplugGate::new(cmrs.clone(), GateConfig::new(0, 0).with_dynamic_pamt(true)).unwrap();
    gate.begin_init()
        .unwrap()
        .publish(&plan, &fixture_memory)
        .unwrap();

    // Removals in flight, as the kernel sees them.
    let in_flight: std::sync::Arc<Mutex<Vec<PhysRange>>> = Default::default();
    let violations = std::sync::Arc::new(AtomicUsize::new(0));
    let module = {
        let (in_flight, violations) = (in_flight.clone(), violations.clone());
        PairModule::with_add_hook(move |page| {
            if in_flight.lock().unwrap().iter().any(|r| r.contains(page)) {
                eprintln!("violation: PAMT.ADD took page {page:#x} of memory being removed");
                violations.fetch_add(1, SeqCst);
            }
        })
    };
    let table = gate.range_table().unwrap();
    let dpamt = DynamicPamt::for_plan_with_table(&module, &plan, table).unwrap();
    // Pair pages: 64 MiB of TDX memory that holds no PAMT, in the largest region; ranges to
    // back: anywhere in TDX memory.
    let largest = fixture_memory
        .regions()
        .iter()
        .max_by_key(|r| r.size)
        .unwrap();
    let pool = PhysRange::new(
        largest.base + PAIRS_AT,
        largest.base + PAIRS_AT + 0x400_0000,
    )
    .unwrap();
    assert!(first_pamt_hit(&plan, pool).is_none());
    let backable: Vec<PhysRange> = plan.tdmrs().iter().flat_map(|t| t.available()).collect();

    // Pairs added, removals admitted, refused, ADDs refused, pairs back in a source.
    let counts: [AtomicUsize; 5] = Default::default();
    let removers_left = AtomicUsize::new(2);
    thread::scope(|s| {
        for t in 0..4u64 {
            let (dpamt, counts, backable, removers_left) =
                (&dpamt, &counts, &backable, &removers_left);
            s.spawn(move || {
                let mut rng = Rng(0x9a1e_0000 + t);
                // This thread's pairs: its quarter of the pool, in 2 MiB steps.
                let mut pairs = Pairs(
                    (0..128u64)
                        .map(|i| {
                            let p =
                                pool.start() + t * 0x100_0000 + (i % 8) * SZ_2M + (i / 8) * 0x2000;
                            tdmr::dpamt::PamtPagePair::new(p, p + 0x1000).unwrap()
                        })
                        .collect(),
                );
                let mut held: Vec<u64> = Vec::new();
                // Until the removers are done (so the two sides overlap), at least 3000 times.
                let mut done = 0;
                while done < 3000 || removers_left.load(SeqCst) > 0 {
                    done += 1;
                    if held.len() < 16 && rng.below(2) == 0 {
                        let r = backable[rng.below(backable.len() as u64) as usize];
                        let pfn = (r.start() + rng.below(r.size() >> 12) * 0x1000) >> 12;
                        match dpamt.get(pfn, &mut pairs) {
                            Ok(g) => {
                                if g == Get::Added {
                                    counts[0].fetch_add(1, SeqCst);
                                }
                                held.push(pfn);
                            }
                            Err(DynamicPamtError::PairPageLeaving { .. }) => {
                                counts[3].fetch_add(1, SeqCst);
                                // Another pair next time: rotate the source.
                                pairs.0.rotate_left(1);
                            }
                            Err(e) => panic!("get: {e}"),
                        }
                    } else if let Some(pfn) = held.pop() {
                        match dpamt.put(pfn, &mut pairs) {
                            Ok(Put::StillBacked | Put::Removed { unreturned: None }) => {}
                            other => panic!("put: {other:?}"),
                        }
                    }
                }
                for pfn in held {
                    dpamt.put(pfn, &mut pairs).unwrap();
                }
                // Pairs move between threads sharing a range; the total is checked below.
                counts[4].fetch_add(pairs.0.len(), SeqCst);
            });
        }
        for t in 0..2u64 {
            let (gate, module, in_flight, violations, counts, removers_left) = (
                &gate,
                &module,
                &in_flight,
                &violations,
                &counts,
                &removers_left,
            );
            s.spawn(move || {
                let mut rng = Rng(0x7e40_0000 + t);
                for _ in 0..3000 {
                    // 4 KiB to 16 MiB, anywhere in the pool.
                    let size = 0x1000u64 << rng.below(13);
                    let start = pool.start() + (rng.below(pool.size() / size) * size);
                    let r = PhysRange::new(start, start + size).unwrap();
                    match gate.admit_removal(r) {
                        Ok(tok) => {
                            counts[1].fetch_add(1, SeqCst);
                            in_flight.lock().unwrap().push(r);
                            let owned = module.owned_in(r);
                            if !owned.is_empty() {
                                eprintln!(
                                    "violation: {r} removed while the module owns {owned:x?}"
                                );
                                violations.fetch_add(1, SeqCst);
                            }
                            thread::yield_now();
                            let mut f = in_flight.lock().unwrap();
                            let i = f.iter().position(|x| *x == r).unwrap();
                            f.swap_remove(i);
                            drop(f);
                            tok.finish();
                        }
                        Err(RemoveError::HoldsTdxMetadata {
                            holder: MetadataHolder::DynamicPamtPages { range, pages },
                            overlap,
                            ..
                        }) => {
                            assert!(pages >= 1 && range.size() == SZ_2M);
                            assert_eq!(Some(overlap), range.intersect(r));
                            counts[2].fetch_add(1, SeqCst);
                        }
                        Err(e) => panic!("removal {r}: {e}"),
                    }
                }
                removers_left.fetch_sub(1, SeqCst);
            });
        }
    });
    let [added, admitted, refused, leaving, back] = counts.each_ref().map(|c| c.load(SeqCst));
    assert_eq!(back, 4 * 128, "every pair back in a source");
    eprintln!(
        "pairs added {added}, removals admitted {admitted}, refused {refused}, ADDs refused {leaving}"
    );
    assert_eq!(violations.load(SeqCst), 0, "see stderr");
    assert!(added > 1000 && admitted > 100 && refused > 100);
    // Everything is back: no pair page counted, the pool may go.
    assert_eq!((module.pairs(), table.pair_pages(pool)), (0, 0));
    assert_eq!(gate.removals_in_flight(), 0);
    gate.admit_removal(pool).unwrap().finish();
}
