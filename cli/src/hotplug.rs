//! `tdmr hotplug`: random memory and CPU hotplug around one TDX initialization, checked as it
//! runs.
//!
//! Some 128 MiB memory blocks of the machine's memory start unplugged; there is one package of
//! 4 CPUs per NUMA node. T threads hot-add memory blocks (unplugged ones, others anywhere in
//! and around the CMRs) and remove them (and, after initialization, the blocks holding PAMTs),
//! bring CPUs online and offline, and take and drop guest KeyIDs, as fast as they can, while
//! one more thread initializes: `begin_init` (which marks initialization pending, so the
//! stream cannot starve it; a package left without a CPU gets one brought up), read the
//! kernel's memory map, plan it, `publish` (up to 4 tries when the stream has left the map too
//! fragmented to plan; starvation is a violation, an unplannable map is not, and `plan_note`
//! says why). Every answer of the gate is checked against what the rules say, computed here
//! apart from the gate; violations go to standard error as they happen, and the result is one
//! JSON line (docs/json.md).

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

use tdmr::addr::{PageSize, PhysRange, RangeSet};
use tdmr::hotplug_gate::{
    AdmissionRule, AdmitError, BeginInitError, CpuOfflineError, CpuOnlineError, GateConfig,
    HotplugGate, KeyIdError, MetadataHolder, ModuleState, RemovalRule, RemoveError,
};
use tdmr::layout::{HolePolicy, Plan, Planner};
use tdmr::memmap::{Cmrs, MemoryMap, MemoryRegion};

use serde_json::{Value, json};

use crate::args::InputArgs;
use crate::input::{self, EMR};
use crate::out;
use crate::{CliError, Output};

const BLOCK: u64 = 128 << 20; // a Linux memory block
const UNPLUGGED: u64 = 32;
const CPUS_PER_PACKAGE: u32 = 4;

#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn range(start: u64, end: u64) -> PhysRange {
    PhysRange::new(start, end).expect("start <= end")
}

/// Plans with the planner's defaults, or with CMR-based holes when they fail; says which.
fn plan(memory: &MemoryMap, cmrs: &Cmrs) -> Result<(Plan, String), String> {
    match Planner::new().plan(memory, cmrs) {
        Ok(p) => Ok((p, "default".into())),
        Err(first) => match Planner::new()
            .with_holes(HolePolicy::Cmr)
            .plan(memory, cmrs)
        {
            Ok(p) => Ok((p, format!("default failed ({first}); CMR-based holes"))),
            Err(second) => Err(format!("{first}; with CMR-based holes: {second}")),
        },
    }
}

/// The node hot-added memory at `r` belongs to, as SRAT would say: that of the boot region
/// (from the log, before any was unplugged) nearest at or below it.
fn node_of(nodes: &[(PhysRange, u32)], r: PhysRange) -> u32 {
    let i = nodes.partition_point(|(n, _)| n.start() <= r.start());
    nodes.get(i.saturating_sub(1)).map_or(0, |(_, node)| *node)
}

/// The boot memory with the hot-adds (true) and removals (false) applied in order; `None`
/// when nothing is left.
fn kernel_map(
    memory: &[(PhysRange, u32)],
    nodes: &[(PhysRange, u32)],
    changes: &[(u64, bool, PhysRange)],
) -> Option<MemoryMap> {
    let regions = memory
        .iter()
        .map(|(r, n)| MemoryRegion::new(r.start(), r.size(), *n))
        .collect();
    let mut map = MemoryMap::new(regions).ok()?;
    for &(_, add, r) in changes {
        map = if add {
            map.with_added(&[MemoryRegion::new(r.start(), r.size(), node_of(nodes, r))])
        } else {
            map.without(&RangeSet::from_ranges([r]))
        }
        .ok()?;
    }
    Some(map)
}

/// The PAMT block with the lowest start that `r` overlaps, with its TDMR and level: what a
/// removal after initialization must be refused for.
fn pamt_hit(plan: &Plan, r: PhysRange) -> Option<(PhysRange, MetadataHolder)> {
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

/// Whether `r` is TDX memory after init, by the rule: in TDX memory at init, in the TDMRs'
/// non-reserved space (possibly across TDMRs), and in no PAMT block.
fn is_frozen(plan: &Plan, memory: &MemoryMap, r: PhysRange) -> bool {
    if !memory.contains_range(r) {
        return false;
    }
    let pamt_hit = plan
        .tdmrs()
        .iter()
        .any(|t| PageSize::ALL.iter().any(|&l| t.pamt(l).overlaps(r)));
    if pamt_hit {
        return false;
    }
    let mut cursor = r.start();
    for seg in plan.tdmrs().iter().flat_map(|t| t.available()) {
        if seg.start() <= cursor && cursor < seg.end() {
            cursor = seg.end();
        }
        if cursor >= r.end() {
            return true;
        }
    }
    false
}

#[derive(Default)]
struct Counters {
    admitted_pre_init: AtomicU64,
    admitted_post_init: AtomicU64,
    not_convertible: AtomicU64,
    not_tdx_memory: AtomicU64,
    busy: AtomicU64,
    removed_pre_init: AtomicU64,
    removed_post_init: AtomicU64,
    /// Removed after init and admitted again as TDX memory.
    readmitted: AtomicU64,
    holds_pamt: AtomicU64,
    cpu_online: AtomicU64,
    cpu_offline: AtomicU64,
    cpu_busy: AtomicU64,
    last_cpu_refused: AtomicU64,
    keyids: AtomicU64,
    violations: AtomicU64,
}

struct World {
    gate: HotplugGate,
    cmrs: Cmrs,
    boot_memory: Vec<(PhysRange, u32)>,
    /// The log's memory regions and their nodes (where hot-added memory belongs).
    nodes: Vec<(PhysRange, u32)>,
    unplugged: Vec<PhysRange>,
    next_unplugged: AtomicU64,
    others: Vec<PhysRange>,
    /// The kernel's map changes, in order: (id, addition?, range), appended before the
    /// addition or removal is finished.
    changes: Mutex<Vec<(u64, bool, PhysRange)>>,
    next_id: AtomicU64,
    /// Additions and removals admitted before initialization, by id.
    pre_init_admitted: Mutex<Vec<(u64, PhysRange)>>,
    /// The ids of the changes the map initialization read held.
    init_saw: Mutex<HashSet<u64>>,
    published: Mutex<Option<(MemoryMap, Plan)>>,
    online: Vec<AtomicBool>,
    lp_done: Vec<AtomicBool>,
    packages: u32,
    progress: AtomicU64,
    init_wanted: AtomicBool,
    /// Set when initialization has ended other than initialized (the workers stop waiting).
    init_over: AtomicBool,
    c: Counters,
    plan_note: Mutex<String>,
    /// How initialization got its turn: calls to begin_init, refusals, time.
    init: Mutex<InitStats>,
}

#[derive(Clone, Default)]
struct InitStats {
    /// Whether `begin_init` ever succeeded (the stream did not starve it).
    began: bool,
    attempts: u64,
    calls: u64,
    busy: u64,
    package_offline: u64,
    cpus_brought_up: u64,
    waited: Duration,
}

impl World {
    fn violation(&self, what: String) {
        eprintln!("violation: {what}");
        self.c.violations.fetch_add(1, SeqCst);
    }
}

fn worker(w: &World, mut rng: Rng, ops: u64) {
    let mut keyids = 0u32;
    // `ops` operations, of which at least a quarter after initialization (unless it failed).
    let (mut done, mut after_init) = (0, 0);
    while done < ops || (after_init < ops / 4 && !w.init_over.load(SeqCst)) {
        done += 1;
        if w.gate.state() == ModuleState::Initialized {
            after_init += 1;
        }
        w.progress.fetch_add(1, SeqCst);
        match rng.below(12) {
            0..=4 => add_memory(w, &mut rng),
            5..=7 => remove_memory(w, &mut rng),
            8 | 9 => cpu_event(w, &mut rng),
            _ => {
                if keyids > 0 && rng.below(2) == 0 {
                    for p in 0..w.packages {
                        if w.gate.online_cpus(p) == Some(0) {
                            w.violation(format!("package {p} empty while a KeyID is in use"));
                        }
                    }
                    if w.gate.release_guest_keyid().is_err() {
                        w.violation("release of a held KeyID refused".into());
                    }
                    keyids -= 1;
                } else {
                    match w.gate.acquire_guest_keyid() {
                        Ok(()) => {
                            keyids += 1;
                            w.c.keyids.fetch_add(1, SeqCst);
                        }
                        Err(
                            KeyIdError::NotInitialized { .. }
                            | KeyIdError::Busy
                            | KeyIdError::PackageOffline { .. },
                        ) => {}
                        Err(e) => w.violation(format!("KeyID: {e}")),
                    }
                }
            }
        }
    }
    for _ in 0..keyids {
        if w.gate.release_guest_keyid().is_err() {
            w.violation("release of a held KeyID refused".into());
        }
    }
}

fn add_memory(w: &World, rng: &mut Rng) {
    let initialized_before = w.gate.state() == ModuleState::Initialized;
    let init_wanted = w.init_wanted.load(SeqCst) && !initialized_before;
    let fresh = if init_wanted || rng.below(16) == 0 {
        w.unplugged
            .get(w.next_unplugged.fetch_add(1, SeqCst) as usize)
            .copied()
    } else {
        None
    };
    let r = fresh.unwrap_or_else(|| w.others[rng.below(w.others.len() as u64) as usize]);
    match w.gate.admit_memory(r) {
        Ok(tok) => match tok.rule() {
            AdmissionRule::Convertible => {
                w.c.admitted_pre_init.fetch_add(1, SeqCst);
                if !w.cmrs.contains(r) {
                    w.violation(format!("{r} admitted before init outside the CMRs"));
                }
                let id = w.next_id.fetch_add(1, SeqCst);
                w.pre_init_admitted.lock().unwrap().push((id, r));
                thread::yield_now(); // add_memory() at work
                w.changes.lock().unwrap().push((id, true, r));
                tok.finish();
            }
            AdmissionRule::TdxMemory => {
                w.c.admitted_post_init.fetch_add(1, SeqCst);
                let published = w.published.lock().unwrap();
                match published.as_ref() {
                    Some((m, p)) if is_frozen(p, m, r) => {}
                    _ => w.violation(format!("{r} admitted after init, not TDX memory")),
                }
            }
            AdmissionRule::AnyMemory => w.violation("AnyMemory rule not configured".into()),
        },
        Err(AdmitError::NotConvertible { range, outside }) => {
            w.c.not_convertible.fetch_add(1, SeqCst);
            if w.cmrs.contains(r) || range != r || !r.contains_range(outside) {
                w.violation(format!("{r} refused as not convertible ({outside})"));
            }
        }
        Err(AdmitError::NotTdxMemory { outside, .. }) => {
            w.c.not_tdx_memory.fetch_add(1, SeqCst);
            let published = w.published.lock().unwrap();
            match published.as_ref() {
                Some((m, p)) if !is_frozen(p, m, r) => {}
                _ => w.violation(format!("{r} refused after init ({outside})")),
            }
        }
        Err(AdmitError::Busy) => {
            w.c.busy.fetch_add(1, SeqCst);
            if initialized_before {
                w.violation(format!("{r}: Busy after initialization"));
            }
        }
        Err(e) => w.violation(format!("{r}: {e}")),
    }
}

fn remove_memory(w: &World, rng: &mut Rng) {
    let initialized_before = w.gate.state() == ModuleState::Initialized;
    // Memory blocks anywhere; after init, half the time one holding a PAMT page (or the
    // PAMT block itself).
    let mut r = w.others[rng.below(w.others.len() as u64) as usize];
    if initialized_before && rng.below(2) == 0 {
        let published = w.published.lock().unwrap();
        if let Some((_, p)) = published.as_ref() {
            let blocks = p.pamt_ranges();
            let b = blocks.as_slice()[rng.below(blocks.len() as u64) as usize];
            let page = b.start() + rng.below(b.size() / 4096) * 4096;
            r = match rng.below(4) {
                0 => b,
                _ => range(page / BLOCK * BLOCK, page / BLOCK * BLOCK + BLOCK),
            };
        }
    }
    match w.gate.admit_removal(r) {
        Ok(tok) => match tok.rule() {
            RemovalRule::BeforeInit => {
                w.c.removed_pre_init.fetch_add(1, SeqCst);
                if initialized_before {
                    w.violation(format!("{r} removed by the pre-init rule after init"));
                }
                let id = w.next_id.fetch_add(1, SeqCst);
                w.pre_init_admitted.lock().unwrap().push((id, r));
                thread::yield_now(); // offline_pages() at work
                w.changes.lock().unwrap().push((id, false, r));
                tok.finish();
            }
            RemovalRule::NoTdxMetadata => {
                w.c.removed_post_init.fetch_add(1, SeqCst);
                tok.finish();
                let published = w.published.lock().unwrap();
                let Some((m, p)) = published.as_ref() else {
                    return w.violation(format!("{r} removed after init before publish"));
                };
                if let Some((b, h)) = pamt_hit(p, r) {
                    w.violation(format!("{r} removed after init, but {b} is {h}"));
                }
                // The memory comes back: TDX memory is admitted again.
                let frozen = is_frozen(p, m, r);
                match w.gate.admit_memory(r) {
                    Ok(back) if frozen => {
                        w.c.readmitted.fetch_add(1, SeqCst);
                        back.finish();
                    }
                    Err(AdmitError::NotTdxMemory { .. }) if !frozen => {}
                    other => w.violation(format!(
                        "{r} back after removal: {:?}",
                        other.map(|t| t.rule())
                    )),
                }
            }
        },
        Err(RemoveError::Busy) => {
            w.c.busy.fetch_add(1, SeqCst);
            if initialized_before {
                w.violation(format!("{r}: removal Busy after initialization"));
            }
        }
        Err(RemoveError::HoldsTdxMetadata {
            range: asked,
            overlap,
            holder,
        }) => {
            w.c.holds_pamt.fetch_add(1, SeqCst);
            let published = w.published.lock().unwrap();
            let want = published.as_ref().and_then(|(_, p)| pamt_hit(p, r));
            match want {
                Some((b, h)) if asked == r && b.intersect(r) == Some(overlap) && h == holder => {}
                _ => w.violation(format!(
                    "{r} refused for {holder} ({overlap}), want {want:?}"
                )),
            }
        }
        Err(e) => w.violation(format!("removal {r}: {e}")),
    }
}

fn cpu_event(w: &World, rng: &mut Rng) {
    let cpu = rng.below(w.online.len() as u64) as u32;
    let package = cpu / CPUS_PER_PACKAGE;
    if rng.below(2) == 0 {
        match w.gate.cpu_online(cpu, package) {
            Ok(tok) => {
                if tok.lp_init_required() {
                    w.lp_done[cpu as usize].store(true, SeqCst); // TDH.SYS.LP.INIT
                }
                w.online[cpu as usize].store(true, SeqCst);
                tok.finish();
                w.c.cpu_online.fetch_add(1, SeqCst);
            }
            Err(CpuOnlineError::Busy) => {
                w.c.busy.fetch_add(1, SeqCst);
            }
            Err(CpuOnlineError::AlreadyOnline { .. } | CpuOnlineError::CpuBusy { .. }) => {
                w.c.cpu_busy.fetch_add(1, SeqCst);
            }
            Err(e) => w.violation(format!("online CPU {cpu}: {e}")),
        }
    } else {
        match w.gate.cpu_offline(cpu, package) {
            Ok(()) => {
                w.online[cpu as usize].store(false, SeqCst);
                w.c.cpu_offline.fetch_add(1, SeqCst);
            }
            Err(CpuOfflineError::Busy { .. } | CpuOfflineError::GuestKeyIdsInUse { .. }) => {
                w.c.last_cpu_refused.fetch_add(1, SeqCst);
            }
            Err(CpuOfflineError::NotOnline { .. } | CpuOfflineError::CpuBusy { .. }) => {
                w.c.cpu_busy.fetch_add(1, SeqCst);
            }
            Err(e) => w.violation(format!("offline CPU {cpu}: {e}")),
        }
    }
}

/// Brings a CPU of `package` online (initialization needs one in every package; while it is
/// pending the gate admits exactly these onlines). Whether one came up.
fn bring_up(w: &World, package: u32) -> bool {
    for cpu in package * CPUS_PER_PACKAGE..(package + 1) * CPUS_PER_PACKAGE {
        if let Ok(tok) = w.gate.cpu_online(cpu, package) {
            w.online[cpu as usize].store(true, SeqCst);
            tok.finish();
            return true;
        }
    }
    false
}

/// Tries to initialize up to this many times (the map may plan after the hotplug stream has
/// changed it again).
const INIT_ATTEMPTS: u64 = 4;

fn initialize(w: &World, start_after: u64) {
    while w.progress.load(SeqCst) < start_after {
        thread::yield_now();
    }
    w.init_wanted.store(true, SeqCst);
    let mut stats = InitStats::default();
    for attempt in 1..=INIT_ATTEMPTS {
        stats.attempts = attempt;
        let started = Instant::now();
        let ticket = loop {
            stats.calls += 1;
            match w.gate.begin_init() {
                Ok(t) => break t,
                Err(BeginInitError::Busy { .. }) => {
                    stats.busy += 1;
                    thread::yield_now();
                }
                Err(BeginInitError::PackageOffline { package }) => {
                    stats.package_offline += 1;
                    if bring_up(w, package) {
                        stats.cpus_brought_up += 1;
                    }
                }
                Err(e) => {
                    w.violation(format!("begin_init: {e}"));
                    return;
                }
            }
        };
        stats.began = true;
        // How long the (last) initialization waited for the hotplug in flight.
        stats.waited = started.elapsed();
        *w.init.lock().unwrap() = stats.clone();
        // TDH.SYS.LP.INIT on every online CPU, then read the memory map and plan it.
        for (cpu, on) in w.online.iter().enumerate() {
            if on.load(SeqCst) {
                w.lp_done[cpu].store(true, SeqCst);
            }
        }
        let changes = w.changes.lock().unwrap().clone();
        *w.init_saw.lock().unwrap() = changes.iter().map(|c| c.0).collect();
        for p in 0..w.packages {
            if w.gate.online_cpus(p) == Some(0) {
                w.violation(format!("package {p} empty during init"));
            }
        }
        let planned = match kernel_map(&w.boot_memory, &w.nodes, &changes) {
            Some(memory) => plan(&memory, &w.cmrs).map(|p| (memory, p)),
            None => Err("no memory left to plan".into()),
        };
        match planned {
            Ok((memory, (plan, note))) => {
                *w.plan_note.lock().unwrap() = note;
                *w.published.lock().unwrap() = Some((memory.clone(), plan.clone()));
                if let Err(e) = ticket.publish(&plan, &memory) {
                    w.violation(format!("publish: {e}"));
                }
                return;
            }
            Err(e) => {
                // The stream made the map unplannable (too fragmented): the module would
                // refuse it too. Not the gate's doing; try again on the map as it becomes.
                *w.plan_note.lock().unwrap() = format!("planning failed: {e}");
                ticket.fail();
                for _ in 0..1000 {
                    thread::yield_now();
                }
            }
        }
    }
}

/// `tdmr hotplug` arguments.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  tdmr hotplug --demo --ops 5000\n  tdmr hotplug dmesg.txt --threads 8\n\nExit status: 0 no violation, 1 violations (each on standard error as it happens), 2 bad input."
)]
pub struct Args {
    #[command(flatten)]
    pub input: InputArgs,

    /// Hotplug threads (besides the one that initializes).
    #[arg(long, value_name = "T", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    pub threads: u64,

    /// Operations per thread (at least a quarter of them after initialization, unless it
    /// failed).
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    pub ops: u64,

    /// Seed of the random streams.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
}

/// Runs `tdmr hotplug`.
pub fn run(a: &Args) -> Result<Output, CliError> {
    let loaded = input::load(&a.input, EMR)?;
    let (memory, cmrs) = loaded.parsed.clone().into_parts();

    // One package per NUMA node.
    let mut nodes: Vec<u32> = memory.regions().iter().map(|r| r.node).collect();
    nodes.sort_unstable();
    nodes.dedup();
    let packages = nodes.len() as u32;
    let cpus = packages * CPUS_PER_PACKAGE;

    // Memory blocks of the largest region, every other one from its middle, start unplugged.
    let largest = memory
        .regions()
        .iter()
        .max_by_key(|r| r.size)
        .ok_or_else(|| CliError::new("the memory map is empty"))?;
    let first = (largest.base + largest.size / 2).next_multiple_of(BLOCK);
    let unplugged: Vec<PhysRange> = (0..UNPLUGGED)
        .map(|i| first + 2 * i * BLOCK)
        .take_while(|&s| s + BLOCK <= largest.end())
        .map(|s| range(s, s + BLOCK))
        .collect();
    let mut boot_memory: Vec<(PhysRange, u32)> = Vec::new();
    for r in memory.regions() {
        let mut pieces = vec![r.range()];
        for u in &unplugged {
            pieces = pieces
                .into_iter()
                .flat_map(|p| {
                    [
                        range(p.start(), u.start().clamp(p.start(), p.end())),
                        range(u.end().clamp(p.start(), p.end()), p.end()),
                    ]
                })
                .filter(|p| !p.is_empty())
                .collect();
        }
        boot_memory.extend(pieces.into_iter().map(|p| (p, r.node)));
    }

    // Other additions: memory blocks at random across and around the CMRs (re-onlining memory
    // that is there, convertible holes, non-convertible space above and between the CMRs).
    let mut rng = Rng(a.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let top = cmrs.merged().last().map_or(0, |c| c.end()) + 64 * BLOCK;
    let others: Vec<PhysRange> = (0..4096)
        .map(|_| {
            let s = rng.below(top / BLOCK) * BLOCK;
            range(s, s + BLOCK)
        })
        .collect();

    let gate = HotplugGate::new(cmrs.clone(), GateConfig::new(cpus, packages))
        .map_err(|e| CliError::new(format!("the hotplug gate: {e}")))?;
    for cpu in 0..cpus {
        match gate.cpu_online(cpu, cpu / CPUS_PER_PACKAGE) {
            Ok(t) => t.finish(),
            Err(e) => return Err(CliError::new(format!("boot CPU {cpu}: {e}"))),
        }
    }
    let w = World {
        gate,
        cmrs,
        boot_memory,
        nodes: memory
            .regions()
            .iter()
            .map(|r| (r.range(), r.node))
            .collect(),
        unplugged,
        next_unplugged: AtomicU64::new(0),
        others,
        changes: Mutex::new(Vec::new()),
        next_id: AtomicU64::new(0),
        pre_init_admitted: Mutex::new(Vec::new()),
        init_saw: Mutex::new(HashSet::new()),
        published: Mutex::new(None),
        online: (0..cpus).map(|_| AtomicBool::new(true)).collect(),
        lp_done: (0..cpus).map(|_| AtomicBool::new(false)).collect(),
        packages,
        progress: AtomicU64::new(0),
        init_wanted: AtomicBool::new(false),
        init_over: AtomicBool::new(false),
        c: Counters::default(),
        plan_note: Mutex::new(String::new()),
        init: Mutex::new(InitStats::default()),
    };

    thread::scope(|s| {
        for t in 0..a.threads {
            let (w, rng) = (&w, Rng(rng.next() ^ t));
            s.spawn(move || worker(w, rng, a.ops));
        }
        let w = &w;
        s.spawn(move || {
            initialize(w, a.threads * a.ops / 3);
            if w.gate.state() != ModuleState::Initialized {
                w.init_over.store(true, SeqCst);
            }
        });
    });

    // After the run: what initialization read holds every pre-init addition and removal (none
    // was still in flight); every online CPU ran LP.INIT; the gate's CPU books match the
    // kernel's.
    let state = w.gate.state();
    // Starvation is a violation; a map the stream left unplannable is not (see "plan_note").
    if !w.init.lock().unwrap().began {
        w.violation(format!("initialization never began (state {state})"));
    }
    if w.published.lock().unwrap().is_some() {
        let saw = w.init_saw.lock().unwrap().clone();
        for (id, r) in w.pre_init_admitted.lock().unwrap().iter() {
            if !saw.contains(id) {
                w.violation(format!(
                    "{r} admitted before init, still in flight when init read the map"
                ));
            }
        }
        for cpu in 0..cpus as usize {
            if w.online[cpu].load(SeqCst) && !w.lp_done[cpu].load(SeqCst) {
                w.violation(format!("CPU {cpu} online without TDH.SYS.LP.INIT"));
            }
        }
    }
    for cpu in 0..cpus {
        let on = w.online[cpu as usize].load(SeqCst);
        if w.gate.cpu_package(cpu) != on.then_some(cpu / CPUS_PER_PACKAGE) {
            w.violation(format!("CPU {cpu}: the gate's books disagree"));
        }
    }
    if w.gate.in_flight() != 0 || w.gate.guest_keyids() != 0 {
        w.violation("operations left in flight or KeyIDs counted".into());
    }

    let c = &w.c;
    let g = |x: &AtomicU64| x.load(SeqCst);
    let violations = g(&c.violations);
    let init = w.init.lock().unwrap().clone();
    let mut doc = out::head(&loaded);
    let fields = json!({
        "status": if violations == 0 { "ok" } else { "violations" },
        "violations": violations,
        "admitted": g(&c.admitted_pre_init) + g(&c.admitted_post_init),
        "admitted_before_init": g(&c.admitted_pre_init),
        "admitted_after_init": g(&c.admitted_post_init),
        "rejected": {
            "NotConvertible": g(&c.not_convertible),
            "NotTdxMemory": g(&c.not_tdx_memory),
            "HoldsTdxMetadata": g(&c.holds_pamt),
        },
        "busy": g(&c.busy),
        "removed": {
            "before_init": g(&c.removed_pre_init),
            "after_init": g(&c.removed_post_init),
            "admitted_again": g(&c.readmitted),
        },
        "init": {
            "waited_us": init.waited.as_micros() as u64,
            "attempts": init.attempts,
            "begin_init_calls": init.calls,
            "busy": init.busy,
            "package_offline": init.package_offline,
            "cpus_brought_up": init.cpus_brought_up,
        },
        "state": state.name(),
        "plan_note": *w.plan_note.lock().unwrap(),
        "threads": a.threads,
        "ops_per_thread": a.ops,
        "frozen_ranges": w.gate.frozen_memory().count(),
        "tdx_metadata_blocks": w.gate.tdx_metadata().count(),
        "cpu": {
            "packages": packages,
            "cpus": cpus,
            "online": g(&c.cpu_online),
            "offline": g(&c.cpu_offline),
            "last_cpu_refused": g(&c.last_cpu_refused),
            "already_or_moving": g(&c.cpu_busy),
        },
        "guest_keyids_acquired": g(&c.keyids),
    });
    if let Value::Object(m) = fields {
        doc.extend(m);
    }
    Ok(Output {
        text: out::line(doc),
        code: u8::from(violations != 0),
    })
}
