//! Brings up the software TDX module for a kernel log's memory map and shows what it took.
//!
//! ```text
//! cargo run --release --features mock,std --example init_mock -- [OPTIONS] [KERNEL_LOG]
//!
//!   KERNEL_LOG             e820 / SRAT / CMR lines (default: an embedded ~1 TiB Sapphire Rapids map)
//!   --format text|json     output format (default text)
//!   --cpus N               logical processors (default 8), each an OS thread: LP.INIT runs on
//!                          all at once, TDMR.INIT spread over them, and the TDMRs are shaped
//!                          for N CPUs (`Planner::with_init_cpus`)
//!   --packages P           packages (default 2)
//!   --strategy linux|optimal  planning strategy (default optimal)
//!   --holes memory|cmr     hole policy (default: the strategy's)
//!   --module PROFILE       the TDX module the mock plays (default 1.5.25): a release (1.0.00,
//!                          1.5.01, 1.5.06, 1.5.24, 1.5.25, 2.0.04, 2.0.05, 2.0.08), a line (1.0,
//!                          1.5, 2.0: its newest), or next (extensions, update compatibility);
//!                          with modifiers: 2.0.08,lacks=MAX_TDMRS  next,max_reserved=8 ...
//!   --dynamic-pamt         enable Dynamic PAMT (without --module the mock then supports it);
//!                          after bring-up, map and unmap 4 KiB pages in a few 2 MiB ranges
//!                          through `pamt::dynamic` and report the PAMT.ADD / PAMT.REMOVE calls
//!   --update-to PROFILE    after bring-up, update the module at run time to PROFILE over the
//!                          frozen layout (checked first: refused before TDH.SYS.SHUTDOWN when
//!                          the layout breaks the incoming module's limits)
//!   --disable              at the end, TDH.SYS.DISABLE (kexec): report the calls it took
//!   --inject KIND@CALL[xN] fail the first N (default 1) calls that can return KIND from call
//!                          number CALL on; KIND@P% fails each eligible call with probability P %.
//!                          KIND: rnd-no-entropy, sys-busy, operand-busy, key-generation-failed
//!   --seed S               seed for rate faults (default 0)
//! ```
//!
//! `--format json` prints
//! `{"status":"initialized","module":{"version":"1.5.25",...},"tdmrs":T,"pamt_bytes":P,
//! "extension_memory":{"pages":E,"bytes":B},"memory_budget":P+B,
//! "seamcalls":{"TDH.SYS.TDMR.INIT":N,...},"seamcalls_by_stage":{"sys_init":{...},...},
//! "tdmr_init_per_lp":[N0,N1,...],"lp_conflicts":0}` (plus the injected faults, the Dynamic
//! PAMT demo, `"update":{...}` with every step's calls, `"disable":{...}`), or
//! `{"status":"failed",...}` with the stage and raw status of a failure. `tdmr_init_per_lp` is
//! what the mock counted per LP; `lp_conflicts` the calls it refused because their LP had one
//! in flight (always 0 unless the host runs two things on one CPU). Exit status: 0 when
//! everything asked for succeeded, 1 when bring-up failed or an update was refused or failed
//! (reported), 2 on bad usage.

use std::process::ExitCode;

use serde_json::{Map, Value, json};
use tdmr::dpamt::{DynamicPamt, Get, PairCache, Put};
use tdmr::init::Initialized;
use tdmr::init::{
    Bringup, DisablePolicy, InitError, InitErrorKind, Stage, StepCalls, Update, UpdateError,
    UpdateErrorKind, UpdateStep, Updated, disable,
};
use tdmr::layout::{HolePolicy, Planner, Strategy};
use tdmr::memmap::parse_kernel_log;
use tdmr::mock::{LpThreads, MockModule, ModuleProfile, PagePool, Platform, SeamLoader};
use tdmr::seamcall::SeamcallCounts;
use tdmr::seamcall::{FaultInjector, FaultSpec, Injection};
use tdmr::sysinfo::TdxLimits;
use tdmr::tdx::leaf;

const EMBEDDED: &str = include_str!("../tests/fixtures/spr-1t.log");

struct Args {
    json: bool,
    cpus: u32,
    packages: u32,
    strategy: Strategy,
    holes: Option<HolePolicy>,
    dynamic_pamt: bool,
    module: Option<ModuleProfile>,
    update_to: Option<ModuleProfile>,
    disable: bool,
    faults: Vec<FaultSpec>,
    seed: u64,
    log: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        json: false,
        cpus: 8,
        packages: 2,
        strategy: Strategy::Optimal,
        holes: None,
        dynamic_pamt: false,
        module: None,
        update_to: None,
        disable: false,
        faults: Vec::new(),
        seed: 0,
        log: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--format" => {
                a.json = match value("--format")?.as_str() {
                    "json" => true,
                    "text" => false,
                    other => return Err(format!("unknown format {other:?} (text, json)")),
                }
            }
            "--cpus" => {
                a.cpus = value("--cpus")?
                    .parse()
                    .map_err(|e| format!("--cpus: {e}"))?
            }
            "--packages" => {
                a.packages = value("--packages")?
                    .parse()
                    .map_err(|e| format!("--packages: {e}"))?
            }
            "--strategy" => {
                a.strategy = match value("--strategy")?.as_str() {
                    "linux" => Strategy::Linux,
                    "optimal" => Strategy::Optimal,
                    other => return Err(format!("unknown strategy {other:?} (linux, optimal)")),
                }
            }
            "--holes" => {
                a.holes = Some(match value("--holes")?.as_str() {
                    "memory" => HolePolicy::Memory,
                    "cmr" => HolePolicy::Cmr,
                    other => return Err(format!("unknown hole policy {other:?} (memory, cmr)")),
                })
            }
            "--dynamic-pamt" => a.dynamic_pamt = true,
            "--module" => {
                let name = value("--module")?;
                a.module = Some(name.parse().map_err(|e| format!("--module {name}: {e}"))?);
            }
            "--update-to" => {
                let name = value("--update-to")?;
                a.update_to = Some(
                    name.parse()
                        .map_err(|e| format!("--update-to {name}: {e}"))?,
                );
            }
            "--disable" => a.disable = true,
            "--inject" => {
                let spec = value("--inject")?;
                a.faults
                    .push(spec.parse().map_err(|e| format!("--inject {spec}: {e}"))?);
            }
            "--seed" => {
                a.seed = value("--seed")?
                    .parse()
                    .map_err(|e| format!("--seed: {e}"))?
            }
            "-h" | "--help" => {
                return Err("usage: init_mock [--format text|json] [--cpus N] [--packages P] \
                            [--strategy linux|optimal] [--holes memory|cmr] [--module PROFILE] [--dynamic-pamt] \
                            [--update-to PROFILE] [--disable] [--inject KIND@CALL[xN]|KIND@P%]... \
                            [--seed S] [KERNEL_LOG]"
                    .into());
            }
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            _ => a.log = Some(arg),
        }
    }
    Ok(a)
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
                "status": format!("{:#018x}", i.status.raw()),
            })
        })
        .collect()
}

fn print_counts(c: &SeamcallCounts) {
    println!("SEAMCALLs per leaf:");
    for (leaf, n) in c.iter() {
        println!("  {:<24} {n:>10}", leaf.to_string());
    }
    println!("  {:<24} {:>10}", "total", c.total());
}

fn stages_json(by_stage: &[(Stage, SeamcallCounts)]) -> Value {
    let mut m = Map::new();
    for (stage, c) in by_stage {
        m.insert(stage.name().to_owned(), counts_json(c));
    }
    Value::Object(m)
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

fn update_json(from: &str, to: &ModuleProfile, r: &Result<Updated, UpdateError>) -> Value {
    match r {
        Ok(u) => json!({
            "status": "updated",
            "from": from,
            "to": u.version.to_string(),
            "handoff_version": u.handoff_version,
            "features0": format!("{:#x}", u.features0),
            "steps": steps_json(&u.steps),
        }),
        Err(e) => {
            let mut v = json!({
                "status": if matches!(e.kind, UpdateErrorKind::Refused(_)) { "refused" } else { "failed" },
                "from": from,
                "to": to.to_string(),
                "step": e.step.name(),
                "error": e.kind.to_string(),
                "module_left": format!("{:?}", e.module),
                "steps": steps_json(&e.steps),
            });
            match &e.kind {
                UpdateErrorKind::Seamcall(s) => {
                    v["leaf"] = json!(s.leaf.to_string());
                    v["raw_status"] = json!(format!("{:#018x}", s.status.raw()));
                }
                UpdateErrorKind::Loader { status, cpu, .. } => {
                    v["cpu"] = json!(cpu);
                    v["raw_status"] = json!(format!("{:#018x}", status.raw()));
                }
                UpdateErrorKind::TryLater { status } => {
                    v["raw_status"] = json!(format!("{:#018x}", status.raw()));
                }
                _ => {}
            }
            v
        }
    }
}

fn failure_json(e: &InitError) -> Value {
    let mut v = json!({
        "status": "failed",
        "stage": e.stage.to_string(),
        "error": e.kind.to_string(),
        "seamcalls": counts_json(&e.seamcalls),
        "seamcalls_by_stage": stages_json(&e.seamcalls_by_stage),
    });
    if let InitErrorKind::Seamcall(s) = &e.kind {
        v["leaf"] = json!(s.leaf.to_string());
        v["raw_status"] = json!(format!("{:#018x}", s.status.raw()));
        v["attempts"] = json!(s.attempts);
    }
    if let InitErrorKind::Metadata(m) = &e.kind {
        v["metadata_error"] = json!(m.to_string());
    }
    if let Some(t) = &e.teardown {
        v["teardown"] = json!({
            "pamt": t.pamt.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            "reset_required": t.reset_required,
            "extension_memory": t.extension_memory.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        });
    }
    v
}

/// What the Dynamic PAMT demo did.
struct DpamtDemo {
    pages: u64,
    adds: u64,
    removes: u64,
    pairs_returned: bool,
}

/// Maps 3 pages in each of 8 2 MiB ranges of the first free TDX memory (getting PAMT pages
/// first, as a host does before handing a page to the module), then unmaps them; page pairs
/// come from a cache filled from memory 64 MiB further on.
fn dpamt_demo(module: &MockModule, done: &Initialized) -> Result<DpamtDemo, String> {
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
        .ok_or("no 128 MiB of free TDX memory for the demo")?;
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
    Ok(DpamtDemo {
        pages: pages.len() as u64,
        adds,
        removes,
        pairs_returned: cache.len() == 8 && module.pamt_pair_count() == 0,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("init_mock: {e}");
            return ExitCode::from(2);
        }
    };
    let text = match &args.log {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("init_mock: {path}: {e}");
                return ExitCode::from(2);
            }
        },
        None => EMBEDDED.to_owned(),
    };
    let input = match parse_kernel_log(&text) {
        Ok(i) => i,
        Err(e) => {
            eprintln!(
                "init_mock: {}: {e}",
                args.log.as_deref().unwrap_or("embedded map")
            );
            return ExitCode::from(2);
        }
    };
    let module = match &args.module {
        Some(m) => m.clone(),
        None => {
            // The default module; asked for Dynamic PAMT, it gets it (as the mock always did).
            let m = ModuleProfile::tdx_1_5(25);
            if args.dynamic_pamt {
                let l = TdxLimits::default();
                m.with_limits(l.with_dynamic_pamt(1).unwrap_or(l))
            } else {
                m
            }
        }
    };
    let platform = Platform::new(input.cmrs().listed())
        .and_then(|p| p.with_topology(args.cpus, args.packages))
        .map(|p| p.with_module(module));
    let platform = match platform {
        Ok(p) => p,
        Err(e) => {
            eprintln!("init_mock: {e}");
            return ExitCode::from(2);
        }
    };
    let keyids = platform.private_keyids();
    let module = MockModule::new(platform);
    let mut faulty = FaultInjector::new(&module, args.seed);
    for f in &args.faults {
        faulty = faulty.with(*f);
    }

    let mut planner = Planner::new()
        .with_strategy(args.strategy)
        .with_init_cpus(args.cpus);
    if let Some(h) = args.holes {
        planner = planner.with_holes(h);
    }
    let cpus = LpThreads::new(&module);
    let bringup = Bringup::new(&faulty, &cpus, &module, keyids)
        .with_planner(planner)
        .with_dynamic_pamt(args.dynamic_pamt);
    let result = bringup.run(input.memory());
    let injected = faulty.injections();
    let per_lp: Vec<u64> = module
        .calls_per_lp()
        .iter()
        .map(|c| c.get(leaf::TDH_SYS_TDMR_INIT))
        .collect();
    let conflicts = module.lp_conflicts();

    match result {
        Ok(mut done) => {
            let demo = if args.dynamic_pamt {
                match dpamt_demo(&module, &done) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        eprintln!("init_mock: Dynamic PAMT demo: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                None
            };
            let booted = module.module();
            let boot_json = json!({
                "status": "initialized",
                "module": {
                    "profile": booted.to_string(),
                    "version": done.info.version.to_string(),
                    "build": booted.build(),
                    "features0": format!("{:#x}", done.info.features0),
                    "metadata": format!("{:?}", done.info.source),
                },
                "strategy": done.plan.strategy().name(),
                "tdmrs": done.plan.tdmrs().len(),
                "pamt_bytes": done.pamt_bytes(),
                "extension_memory": {
                    "pages": done.extension_pages(),
                    "bytes": done.extension_bytes(),
                    "ranges": done.extension_memory.len(),
                },
                "memory_budget": done.memory_budget(),
                "add_on_features": format!("{:#x}", done.add_on_features),
                "seamcalls": counts_json(&done.seamcalls),
                "seamcalls_by_stage": stages_json(&done.seamcalls_by_stage),
                "tdmr_init_per_lp": per_lp,
                "lp_conflicts": conflicts,
                "injected": injections_json(&injected),
            });
            let mut ok = true;
            let update = args.update_to.as_ref().map(|to| {
                let loader = SeamLoader::new(&module, to.clone());
                let from = done.info.version.to_string();
                let r = Update::new(&faulty, &cpus, &loader, &done).run();
                if let Ok(u) = &r {
                    done.record_update(u);
                }
                (from, to.clone(), r)
            });
            if let Some((_, _, r)) = &update {
                ok &= r.is_ok();
            }
            let disabled = args
                .disable
                .then(|| disable(&faulty, DisablePolicy::default()));
            if args.json {
                let mut v = boot_json;
                if let Some((from, to, r)) = &update {
                    v["update"] = update_json(from, to, r);
                }
                if let Some(d) = &disabled {
                    v["disable"] = match d {
                        Ok(d) => {
                            json!({"status": "disabled", "calls": d.calls, "resumed": d.resumed, "busy": d.busy, "state": module.state().to_string()})
                        }
                        Err(e) => json!({"status": "not disabled", "error": e.to_string()}),
                    };
                }
                if let Some(d) = &demo {
                    v["dynamic_pamt"] = json!({
                        "pages": d.pages,
                        "pamt_add": d.adds,
                        "pamt_remove": d.removes,
                        "pairs_returned": d.pairs_returned,
                    });
                }
                println!("{v}");
            } else {
                print_counts(&done.seamcalls);
                println!("SEAMCALLs per stage:");
                for (stage, c) in &done.seamcalls_by_stage {
                    println!("  {:<24} {c}", stage.to_string());
                }
                let busy = per_lp.iter().filter(|&&n| n > 0).count();
                println!(
                    "TDH.SYS.TDMR.INIT per LP ({busy} of {} LPs busy, {conflicts} calls refused for an LP already in a call): {per_lp:?}",
                    per_lp.len()
                );
                for i in &injected {
                    println!(
                        "injected {} into call {} ({}): recovered by retry",
                        i.status, i.call, i.leaf
                    );
                }
                let boot_version = match &update {
                    Some((from, _, _)) => from.clone(),
                    None => done.info.version.to_string(),
                };
                println!(
                    "TDX module {boot_version} initialized: {} TDMRs, {} KB allocated for PAMT, {} KB consumed for TDX module extensions, global KeyID {}",
                    done.plan.tdmrs().len(),
                    done.pamt_bytes() / 1024,
                    done.extension_bytes() / 1024,
                    done.global_keyid
                );
                if let Some(d) = &demo {
                    println!(
                        "Dynamic PAMT: {} pages mapped and unmapped, {} TDH.PHYMEM.PAMT.ADD, {} TDH.PHYMEM.PAMT.REMOVE, {}",
                        d.pages,
                        d.adds,
                        d.removes,
                        if d.pairs_returned {
                            "every page pair returned"
                        } else {
                            "PAGE PAIRS MISSING"
                        }
                    );
                }
                if let Some((from, _, r)) = &update {
                    match r {
                        Ok(u) => {
                            println!(
                                "TDX module updated from {from} to {} (handoff version {}):",
                                u.version, u.handoff_version
                            );
                            for (step, c) in &u.steps {
                                let loader = if c.loader > 0 {
                                    format!(", SEAMLDR.INSTALL: {}", c.loader)
                                } else {
                                    String::new()
                                };
                                println!("  {:<12} {}{loader}", step.name(), c.seamcalls);
                            }
                        }
                        Err(e) => println!("{e}"),
                    }
                }
                if let Some(d) = &disabled {
                    match d {
                        Ok(d) => println!(
                            "TDH.SYS.DISABLE: disabled after {} calls ({} resumed, {} busy)",
                            d.calls, d.resumed, d.busy
                        ),
                        Err(e) => println!("TDH.SYS.DISABLE: {e}"),
                    }
                }
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            if args.json {
                let mut v = failure_json(&e);
                v["injected"] = injections_json(&injected);
                v["tdmr_init_per_lp"] = json!(per_lp);
                v["lp_conflicts"] = json!(conflicts);
                println!("{v}");
            } else {
                print_counts(&e.seamcalls);
                for (stage, c) in &e.seamcalls_by_stage {
                    println!("  {:<24} {c}", stage.to_string());
                }
                for i in &injected {
                    println!("injected {} into call {} ({})", i.status, i.call, i.leaf);
                }
                println!("{e}");
                if let Some(t) = &e.teardown {
                    let what = if t.reset_required {
                        "flush caches, reset and free"
                    } else {
                        "free"
                    };
                    for r in &t.pamt {
                        println!("teardown: {what} PAMT {r}");
                    }
                }
            }
            ExitCode::FAILURE
        }
    }
}
