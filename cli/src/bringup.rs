//! `tdmr bringup`: the software TDX module (`tdmr::mock`) brought up on a memory map by
//! `init::Bringup` — TDH.SYS.INIT, LP.INIT on every CPU at once, metadata, plan, PAMT claim,
//! CONFIG, cache flush, KEY.CONFIG per package, TDMR.INIT spread over the CPUs — and what it
//! took: SEAMCALLs per leaf and per stage, TDMR.INIT per LP, the module extensions' memory, the
//! faults injected and how they were survived, or the failure with its stage, raw status and
//! teardown. The module played is `--module`'s, else the one the kernel log names, else 1.5.25;
//! `--update-to` then replaces it at run time over the frozen layout (`init::Update`), and
//! `--disable` ends with TDH.SYS.DISABLE.

use serde_json::{Map, Value, json};
use tdmr::dpamt::{DynamicPamt, Get, PairCache, Put};
use tdmr::init::{
    Bringup, DisablePolicy, InitError, InitErrorKind, Initialized, Stage, StepCalls, Update,
    UpdateError, UpdateErrorKind, UpdateStep, Updated, disable,
};
use tdmr::mock::{LpThreads, MockModule, ModuleProfile, PagePool, Platform, SeamLoader};
use tdmr::report::{self, Context};
use tdmr::seamcall::{FaultInjector, FaultSpec, Injection, SeamcallCounts};
use tdmr::sysinfo::TdxLimits;
use tdmr::tdx::leaf;

use crate::args::{InputArgs, PlannerArgs, TextOrJson};
use crate::input::{self, SPR_1T};
use crate::keyids;
use crate::module::{self, Chosen};
use crate::out;
use crate::{CliError, Output};

/// `tdmr bringup` arguments.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  tdmr bringup --demo --cpus 4\n  tdmr bringup dmesg.txt --dynamic-pamt --format json\n  tdmr bringup --demo --inject sys-busy@10% --seed 3\n  tdmr bringup --demo --module 1.0 --holes memory      TDX 1.0 (TDH.SYS.INFO, its own layout rule)\n  tdmr bringup --demo --module 2.0.04 --dynamic-pamt --update-to 2.0.08\n  tdmr bringup --demo --module next --disable           module extensions, then TDH.SYS.DISABLE\n\nModule profiles: a release (1.0.00, 1.5.01, 1.5.06, 1.5.24, 1.5.25, 2.0.04, 2.0.05, 2.0.08), a line (1.0, 1.5, 2.0: its newest), or next (module extensions and update compatibility), each optionally with modifiers: lacks=FIELD, max_tdmrs=N, max_reserved=N, pamt_entry_size=N, ext_pages=N (next), add_ons=0xBITS, update=N (e.g. 2.0.08,lacks=MAX_TDMRS or 1.5.25,update=26).\n\nExit status: 0 initialized (and updated or disabled when asked), 1 failed (the stage and the module's raw status) or an update refused or failed, 2 bad input."
)]
pub struct Args {
    #[command(flatten)]
    pub input: InputArgs,

    #[command(flatten)]
    pub planner: PlannerArgs,

    /// Logical processors, each an OS thread: LP.INIT runs on all at once, TDMR.INIT is spread
    /// over them, and the TDMRs are shaped for N CPUs.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub cpus: u32,

    /// Packages (sockets): KEY.CONFIG runs once on each. At most --cpus.
    #[arg(long, value_name = "P", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub packages: u32,

    /// The TDX module the software module plays (see "Module profiles" below). Default: the
    /// release the kernel log (or this machine's tdx_host/version) names, or the newest
    /// modelled release of its line; without either, 1.5.25.
    #[arg(long, value_name = "PROFILE", value_parser = module::parse_profile)]
    pub module: Option<ModuleProfile>,

    /// Enable Dynamic PAMT; after bring-up, map and unmap 4 KiB pages in a few 2 MiB ranges
    /// through the Dynamic PAMT manager and report the PAMT.ADD / PAMT.REMOVE calls. The
    /// module must have it (2.0.04, 2.0.08): a module without it fails at the metadata stage,
    /// as the real one would. On by itself when the kernel log says `Enable Dynamic PAMT`
    /// (the module played then has it unless --module chose one); without a module named
    /// anywhere, the default one gets it.
    #[arg(long, alias = "dpamt")]
    pub dynamic_pamt: bool,

    /// After bring-up, update the module at run time to PROFILE over the frozen layout:
    /// TDH.SYS.SHUTDOWN, the loader on every CPU, LP.INIT, TDH.SYS.UPDATE. Checked first:
    /// refused before SHUTDOWN, naming the reason, when the layout breaks the incoming
    /// module's limits.
    #[arg(long, value_name = "PROFILE", value_parser = module::parse_profile)]
    pub update_to: Option<ModuleProfile>,

    /// At the end, TDH.SYS.DISABLE (what a kernel does before kexec): report the calls it took.
    #[arg(long)]
    pub disable: bool,

    /// Fail calls the module could fail: `KIND@CALL[xN]` fails the first N (default 1) calls
    /// that can return KIND from SEAMCALL number CALL on; KIND@P% fails each eligible call
    /// with probability P %. KIND: rnd-no-entropy, sys-busy, operand-busy,
    /// key-generation-failed, interrupted-resumable (module extensions, TDH.SYS.DISABLE: the
    /// call is made again). Repeatable.
    #[arg(long, value_name = "KIND@CALL[xN]|KIND@P%")]
    pub inject: Vec<String>,

    /// Seed for the --inject KIND@P% faults.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,

    /// Output format.
    #[arg(long, value_enum, default_value_t = TextOrJson::Text)]
    pub format: TextOrJson,
}

fn counts_json(c: &SeamcallCounts) -> Value {
    let mut m = Map::new();
    for (leaf, n) in c.iter() {
        m.insert(leaf.to_string(), json!(n));
    }
    Value::Object(m)
}

fn injections_json(inj: &[Injection]) -> Value {
    inj.iter()
        .map(|i| {
            json!({
                "call": i.call,
                "leaf": i.leaf.to_string(),
                "status": out::status(i.status),
            })
        })
        .collect()
}

fn counts_text(c: &SeamcallCounts) -> String {
    let mut s = String::from("SEAMCALLs per leaf:\n");
    for (leaf, n) in c.iter() {
        s.push_str(&format!("  {:<24} {n:>10}\n", leaf.to_string()));
    }
    s.push_str(&format!("  {:<24} {:>10}\n", "total", c.total()));
    s
}

/// What the Dynamic PAMT run did.
struct DpamtRun {
    pages: u64,
    adds: u64,
    removes: u64,
    pairs_returned: bool,
}

/// Maps 3 pages in each of 8 2 MiB ranges of the first free TDX memory (getting PAMT pages
/// first, as a host does before handing a page to the module), then unmaps them; page pairs
/// come from a cache filled from memory 64 MiB further on.
fn dpamt_run(module: &MockModule, done: &Initialized) -> Result<DpamtRun, String> {
    const RANGE: u64 = 2 << 20;
    let dpamt = DynamicPamt::for_plan(module, &done.plan).map_err(|e| e.to_string())?;
    let window = done
        .plan
        .tdmrs()
        .iter()
        .flat_map(|t| t.available())
        .map(|r| (r.start().next_multiple_of(RANGE), r.end()))
        .find(|&(s, e)| s + 64 * RANGE <= e)
        .map(|(s, _)| s)
        .ok_or("no 128 MiB of free TDX memory for the Dynamic PAMT run")?;
    // Pages of free TDX memory the simulated host sets aside for PAMT page pairs.
    let mut pool = PagePool::new(window + 32 * RANGE, 8).map_err(|e| e.to_string())?;
    let mut cache = PairCache::new(8);
    cache.top_up(&mut pool);
    let pages: Vec<u64> = (0..8)
        .flat_map(|r| [0x0, 0x8000, 0x1f_f000].map(|o| window + r * RANGE + o))
        .collect();
    let (mut adds, mut removes) = (0, 0);
    for &pa in &pages {
        if dpamt.get(pa >> 12, &mut cache).map_err(|e| e.to_string())? == Get::Added {
            adds += 1;
        }
        module.mark_in_use(pa).map_err(|s| s.to_string())?;
    }
    for &pa in &pages {
        module.mark_free(pa);
        if let Put::Removed { .. } = dpamt.put(pa >> 12, &mut cache).map_err(|e| e.to_string())? {
            removes += 1;
        }
    }
    Ok(DpamtRun {
        pages: pages.len() as u64,
        adds,
        removes,
        pairs_returned: cache.len() == 8 && module.pamt_pair_count() == 0,
    })
}

fn stages_json(by_stage: &[(Stage, SeamcallCounts)]) -> Value {
    let mut m = Map::new();
    for (stage, c) in by_stage {
        m.insert(stage.name().to_owned(), counts_json(c));
    }
    Value::Object(m)
}

fn stages_text(by_stage: &[(Stage, SeamcallCounts)]) -> String {
    let mut s = String::from("SEAMCALLs per stage:\n");
    for (stage, c) in by_stage {
        s.push_str(&format!("  {:<24} {c}\n", stage.to_string()));
    }
    s
}

fn steps_json(steps: &[(UpdateStep, StepCalls)]) -> Value {
    let mut m = Map::new();
    for (step, c) in steps {
        let mut v = counts_json(&c.seamcalls);
        if c.loader > 0 {
            v["SEAMLDR.INSTALL"] = json!(c.loader);
        }
        m.insert(step.name().to_owned(), v);
    }
    Value::Object(m)
}

/// `--update-to`'s outcome.
struct UpdateRun {
    from: String,
    to: ModuleProfile,
    result: Result<Updated, UpdateError>,
}

fn update_json(u: &UpdateRun) -> Value {
    match &u.result {
        Ok(done) => json!({
            "status": "updated",
            "from": u.from,
            "to": done.version.to_string(),
            "handoff_version": done.handoff_version,
            "features0": format!("{:#x}", done.features0),
            "steps": steps_json(&done.steps),
            "step": Value::Null,
            "error": Value::Null,
            "module_left": Value::Null,
            "leaf": Value::Null,
            "cpu": Value::Null,
            "module_status": Value::Null,
        }),
        Err(e) => {
            let (leaf, cpu, status) = match &e.kind {
                UpdateErrorKind::Seamcall(s) => (
                    json!(s.leaf.to_string()),
                    Value::Null,
                    out::status(s.status),
                ),
                UpdateErrorKind::Loader { status, cpu, .. } => {
                    (Value::Null, json!(cpu), out::status(*status))
                }
                UpdateErrorKind::TryLater { status } => {
                    (Value::Null, Value::Null, out::status(*status))
                }
                _ => (Value::Null, Value::Null, Value::Null),
            };
            json!({
                "status": if matches!(e.kind, UpdateErrorKind::Refused(_)) { "refused" } else { "failed" },
                "from": u.from,
                "to": u.to.to_string(),
                "handoff_version": Value::Null,
                "features0": Value::Null,
                "steps": steps_json(&e.steps),
                "step": e.step.name(),
                "error": e.kind.to_string(),
                "module_left": format!("{:?}", e.module),
                "leaf": leaf,
                "cpu": cpu,
                "module_status": status,
            })
        }
    }
}

fn update_text(u: &UpdateRun) -> String {
    match &u.result {
        Ok(done) => {
            let mut t = format!(
                "TDX module updated from {} to {} (handoff version {}):\n",
                u.from, done.version, done.handoff_version
            );
            for (step, c) in &done.steps {
                let mut calls = c.seamcalls.to_string();
                if c.loader > 0 {
                    let sep = if calls.is_empty() { "" } else { ", " };
                    calls.push_str(&format!("{sep}SEAMLDR.INSTALL: {}", c.loader));
                }
                t.push_str(&format!("  {:<12} {calls}\n", step.name()));
            }
            t
        }
        Err(e) => format!("update from {} to {}: {e}\n", u.from, u.to),
    }
}

fn failure_json(e: &InitError, doc: &mut Map<String, Value>) {
    doc.insert("status".into(), json!("failed"));
    doc.insert("stage".into(), json!(e.stage.to_string()));
    doc.insert("error".into(), json!(e.kind.to_string()));
    doc.insert("seamcalls".into(), counts_json(&e.seamcalls));
    doc.insert(
        "seamcalls_by_stage".into(),
        stages_json(&e.seamcalls_by_stage),
    );
    let (leaf, status, attempts) = match &e.kind {
        InitErrorKind::Seamcall(s) => (
            json!(s.leaf.to_string()),
            out::status(s.status),
            json!(s.attempts),
        ),
        _ => (Value::Null, Value::Null, Value::Null),
    };
    doc.insert("leaf".into(), leaf);
    doc.insert("module_status".into(), status);
    doc.insert("attempts".into(), attempts);
    doc.insert(
        "metadata_error".into(),
        match &e.kind {
            InitErrorKind::Metadata(m) => json!(m.to_string()),
            _ => Value::Null,
        },
    );
    doc.insert(
        "teardown".into(),
        match &e.teardown {
            Some(t) => json!({
                "pamt": t.pamt.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                "reset_required": t.reset_required,
                "extension_memory": t.extension_memory.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            }),
            None => Value::Null,
        },
    );
}

/// The module the software module plays, as the document gives it.
fn module_json(profile: &ModuleProfile, chosen: Chosen, done: Option<&Initialized>) -> Value {
    json!({
        "profile": profile.to_string(),
        "chosen_by": chosen.name(),
        "version": done.map_or_else(|| profile.version().to_string(), |d| d.info.version.to_string()),
        "build": profile.build(),
        "features0": format!("{:#x}", done.map_or(profile.features0(), |d| d.info.features0)),
        "metadata": done.map(|d| format!("{:?}", d.info.source)),
    })
}

/// Runs `tdmr bringup`.
pub fn run(a: &Args) -> Result<Output, CliError> {
    let mut loaded = input::load(&a.input, SPR_1T)?;
    let faults = a
        .inject
        .iter()
        .map(|spec| {
            spec.parse::<FaultSpec>()
                .map_err(|e| CliError::new(format!("--inject {spec}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (mut profile, chosen) = module::choose(a.module.as_ref(), &mut loaded)?;
    // The kernel's `Enable Dynamic PAMT` turns it on as --dynamic-pamt does.
    let log_dpamt = loaded.parsed.tdx_lines().dynamic_pamt();
    let dynamic_pamt = a.dynamic_pamt || log_dpamt;
    if log_dpamt && !a.dynamic_pamt {
        loaded.assumed.push(
            "the kernel enabled Dynamic PAMT (`Enable Dynamic PAMT`): brought up with it"
                .to_string(),
        );
    }
    // --module did not choose the module: the one played has Dynamic PAMT when the kernel says
    // it enabled it, or when --dynamic-pamt asks and nothing named a module.
    let needs_dpamt = log_dpamt || (a.dynamic_pamt && chosen == Chosen::Default);
    if needs_dpamt && chosen != Chosen::Flag && !profile.supports_dynamic_pamt() {
        let note = if log_dpamt {
            "the kernel enabled Dynamic PAMT (`Enable Dynamic PAMT`): the software module has it"
        } else {
            "--dynamic-pamt: the default software module has Dynamic PAMT"
        };
        let limits = module::with_dynamic_pamt(profile.limits(), &mut loaded, note)?;
        profile = profile.with_limits(limits);
    }
    let input = &loaded.parsed;
    let mut platform = Platform::new(input.cmrs().listed())
        .and_then(|p| p.with_topology(a.cpus, a.packages))
        .map(|p| p.with_module(profile.clone()))
        .map_err(|e| CliError::new(format!("--cpus {} --packages {}: {e}", a.cpus, a.packages)))?;
    // The KeyIDs the BIOS enabled, when the log says: [first, end) private, MKTME below.
    if let Some(k) = input.tdx_lines().keyids() {
        let bad = |e: &dyn std::fmt::Display| {
            CliError::new(format!(
                "the log's KeyID range [{}, {}): {e}",
                k.start, k.end
            ))
        };
        let (private, bits) = keyids::from_range(k.clone()).map_err(|e| bad(&e))?;
        platform = platform
            .with_keyids(
                u32::from(private.first()) - 1,
                u32::from(private.count()),
                bits,
            )
            .map_err(|e| bad(&e))?;
    }
    let keyids = platform.private_keyids();
    let module = MockModule::new(platform);
    let mut faulty = FaultInjector::new(&module, a.seed);
    for f in &faults {
        faulty = faulty.with(*f);
    }
    // Bring-up plans with the limits and version the module reports.
    let planner = a
        .planner
        .planner(TdxLimits::default())
        .with_init_cpus(a.cpus);
    let cpus = LpThreads::new(&module);
    let result = Bringup::new(&faulty, &cpus, &module, keyids)
        .with_planner(planner)
        .with_dynamic_pamt(dynamic_pamt)
        .run(input.memory());
    let injected = faulty.injections();
    let per_lp: Vec<u64> = module
        .calls_per_lp()
        .iter()
        .map(|c| c.get(leaf::TDH_SYS_TDMR_INIT))
        .collect();
    let conflicts = module.lp_conflicts();
    let json = a.format == TextOrJson::Json;
    let mut doc = out::head(&loaded);
    let mut text = if json {
        String::new()
    } else {
        input::describe(&loaded)
    };
    let code = match result {
        Ok(mut done) => {
            let run = if dynamic_pamt {
                Some(dpamt_run(&module, &done).map_err(|e| {
                    CliError::new(format!("the Dynamic PAMT run after bring-up: {e}"))
                })?)
            } else {
                None
            };
            let boot_version = done.info.version.to_string();
            let module_doc = module_json(&profile, chosen, Some(&done));
            let update = a.update_to.as_ref().map(|to| {
                let loader = SeamLoader::new(&module, to.clone());
                let result = Update::new(&faulty, &cpus, &loader, &done).run();
                if let Ok(u) = &result {
                    done.record_update(u);
                }
                UpdateRun {
                    from: boot_version.clone(),
                    to: to.clone(),
                    result,
                }
            });
            let disabled = a
                .disable
                .then(|| disable(&faulty, DisablePolicy::default()));
            // The update's and disable's calls can be injected into too.
            let injected = faulty.injections();
            if json {
                doc.insert("status".into(), json!("initialized"));
                // The plan the module was configured with, in `plan`'s fields.
                let ctx = Context::of(input);
                let mut plan = Map::new();
                out::extend(&mut plan, &report::json::plan(&done.plan, &ctx));
                for key in ["strategy", "holes", "limits", "cmrs", "tdmrs", "pamt_bytes"] {
                    if let Some(v) = plan.remove(key) {
                        doc.insert(key.into(), v);
                    }
                }
                doc.insert("module".into(), module_doc);
                doc.insert(
                    "keyids".into(),
                    json!({"first": keyids.first(), "end": u32::from(keyids.first()) + u32::from(keyids.count())}),
                );
                doc.insert("global_keyid".into(), json!(done.global_keyid));
                doc.insert(
                    "extension_memory".into(),
                    json!({
                        "pages": done.extension_pages(),
                        "bytes": done.extension_bytes(),
                        "ranges": done.extension_memory.len(),
                    }),
                );
                doc.insert("memory_budget".into(), json!(done.memory_budget()));
                doc.insert(
                    "add_on_features".into(),
                    json!(format!("{:#x}", done.add_on_features)),
                );
                doc.insert("seamcalls".into(), counts_json(&done.seamcalls));
                doc.insert(
                    "seamcalls_by_stage".into(),
                    stages_json(&done.seamcalls_by_stage),
                );
                doc.insert("tdmr_init_per_lp".into(), json!(per_lp));
                doc.insert("lp_conflicts".into(), json!(conflicts));
                doc.insert("injected".into(), injections_json(&injected));
                doc.insert(
                    "dynamic_pamt_pages".into(),
                    match &run {
                        Some(d) => json!({
                            "pages": d.pages,
                            "pamt_add": d.adds,
                            "pamt_remove": d.removes,
                            "pairs_returned": d.pairs_returned,
                        }),
                        None => Value::Null,
                    },
                );
                doc.insert(
                    "update".into(),
                    update.as_ref().map_or(Value::Null, update_json),
                );
                doc.insert(
                    "disable".into(),
                    match &disabled {
                        None => Value::Null,
                        Some(Ok(d)) => json!({
                            "status": "disabled",
                            "calls": d.calls,
                            "resumed": d.resumed,
                            "busy": d.busy,
                            "state": module.state().to_string(),
                            "error": Value::Null,
                        }),
                        Some(Err(e)) => json!({
                            "status": "not disabled",
                            "calls": Value::Null,
                            "resumed": Value::Null,
                            "busy": Value::Null,
                            "state": module.state().to_string(),
                            "error": e.to_string(),
                        }),
                    },
                );
            } else {
                text.push_str(&counts_text(&done.seamcalls));
                text.push_str(&stages_text(&done.seamcalls_by_stage));
                let busy = per_lp.iter().filter(|&&n| n > 0).count();
                text.push_str(&format!(
                    "TDH.SYS.TDMR.INIT per LP ({busy} of {} LPs busy, {conflicts} calls refused for an LP already in a call): {per_lp:?}\n",
                    per_lp.len()
                ));
                for i in &injected {
                    text.push_str(&format!(
                        "injected {} into call {} ({}): recovered by retry\n",
                        i.status, i.call, i.leaf
                    ));
                }
                text.push_str(&format!(
                    "TDX module {boot_version} (profile {profile}) initialized: {} TDMRs, {} KB allocated for PAMT, {} KB consumed for TDX module extensions, private KeyIDs {keyids}, global KeyID {}\n",
                    done.plan.tdmrs().len(),
                    done.pamt_bytes() / 1024,
                    done.extension_bytes() / 1024,
                    done.global_keyid
                ));
                if let Some(d) = &run {
                    text.push_str(&format!(
                        "Dynamic PAMT: {} pages mapped and unmapped, {} TDH.PHYMEM.PAMT.ADD, {} TDH.PHYMEM.PAMT.REMOVE, {}\n",
                        d.pages,
                        d.adds,
                        d.removes,
                        if d.pairs_returned {
                            "every page pair returned"
                        } else {
                            "PAGE PAIRS MISSING"
                        }
                    ));
                }
                if let Some(u) = &update {
                    text.push_str(&update_text(u));
                }
                match &disabled {
                    Some(Ok(d)) => text.push_str(&format!(
                        "TDH.SYS.DISABLE: disabled after {} calls ({} resumed, {} busy)\n",
                        d.calls, d.resumed, d.busy
                    )),
                    Some(Err(e)) => text.push_str(&format!("TDH.SYS.DISABLE: {e}\n")),
                    None => {}
                }
            }
            let pairs_lost = run.as_ref().is_some_and(|d| !d.pairs_returned);
            let update_failed = update.as_ref().is_some_and(|u| u.result.is_err());
            u8::from(pairs_lost || update_failed)
        }
        Err(e) => {
            if json {
                failure_json(&e, &mut doc);
                doc.insert("module".into(), module_json(&profile, chosen, None));
                doc.insert("tdmr_init_per_lp".into(), json!(per_lp));
                doc.insert("lp_conflicts".into(), json!(conflicts));
                doc.insert("injected".into(), injections_json(&injected));
            } else {
                text.push_str(&counts_text(&e.seamcalls));
                text.push_str(&stages_text(&e.seamcalls_by_stage));
                for i in &injected {
                    text.push_str(&format!(
                        "injected {} into call {} ({})\n",
                        i.status, i.call, i.leaf
                    ));
                }
                text.push_str(&format!("TDX module profile {profile}: {e}\n"));
                if let Some(t) = &e.teardown {
                    let what = if t.reset_required {
                        "flush caches, reset and free"
                    } else {
                        "free"
                    };
                    for r in &t.pamt {
                        text.push_str(&format!("teardown: {what} PAMT {r}\n"));
                    }
                    for r in &t.extension_memory {
                        text.push_str(&format!(
                            "teardown: module extension memory {r} is lost until reset\n"
                        ));
                    }
                }
            }
            1
        }
    };
    if json {
        text = out::line(doc);
    }
    Ok(Output { text, code })
}
