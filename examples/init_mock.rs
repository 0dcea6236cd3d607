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
//!   --dynamic-pamt         enable Dynamic PAMT (the mock then supports it); after bring-up,
//!                          map and unmap 4 KiB pages in a few 2 MiB ranges through
//!                          `pamt::dynamic` and report the PAMT.ADD / PAMT.REMOVE calls
//!   --inject KIND@CALL[xN] fail the first N (default 1) calls that can return KIND from call
//!                          number CALL on; KIND@P% fails each eligible call with probability P %.
//!                          KIND: rnd-no-entropy, sys-busy, operand-busy, key-generation-failed
//!   --seed S               seed for rate faults (default 0)
//! ```
//!
//! `--format json` prints
//! `{"status":"initialized","tdmrs":T,"pamt_bytes":P,"seamcalls":{"TDH.SYS.TDMR.INIT":N,...},
//! "tdmr_init_per_lp":[N0,N1,...],"lp_conflicts":0}` (plus the injected faults), or
//! `{"status":"failed",...}` with the raw status of a failure. `tdmr_init_per_lp` is what the
//! mock counted per LP; `lp_conflicts` the calls it refused because their LP had one in
//! flight (always 0 unless the host runs two things on one CPU).

use std::process::ExitCode;

use serde_json::{Map, Value, json};
use tdmr::dpamt::{DynamicPamt, Get, PairCache, Put};
use tdmr::init::Initialized;
use tdmr::init::{Bringup, InitError, InitErrorKind};
use tdmr::layout::{HolePolicy, Planner, Strategy};
use tdmr::memmap::parse_kernel_log;
use tdmr::mock::{LpThreads, MockModule, PagePool, Platform};
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
                            [--strategy linux|optimal] [--holes memory|cmr] [--dynamic-pamt] [--inject KIND@CALL[xN]|KIND@P%]... \
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

fn failure_json(e: &InitError) -> Value {
    let mut v = json!({
        "status": "failed",
        "stage": e.stage.to_string(),
        "error": e.kind.to_string(),
        "seamcalls": counts_json(&e.seamcalls),
    });
    if let InitErrorKind::Seamcall(s) = &e.kind {
        v["leaf"] = json!(s.leaf.to_string());
        v["raw_status"] = json!(format!("{:#018x}", s.status.raw()));
        v["attempts"] = json!(s.attempts);
    }
    if let Some(t) = &e.teardown {
        v["teardown"] = json!({
            "pamt": t.pamt.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            "reset_required": t.reset_required,
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
    let mut limits = TdxLimits::default();
    if args.dynamic_pamt {
        limits = limits.with_dynamic_pamt(1).unwrap_or(limits);
    }
    let platform = Platform::new(input.cmrs().listed())
        .and_then(|p| p.with_topology(args.cpus, args.packages))
        .map(|p| p.with_limits(limits));
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
        Ok(done) => {
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
            if args.json {
                let mut v = json!({
                    "status": "initialized",
                    "strategy": done.plan.strategy().name(),
                    "tdmrs": done.plan.tdmrs().len(),
                    "pamt_bytes": done.pamt_bytes(),
                    "seamcalls": counts_json(&done.seamcalls),
                    "tdmr_init_per_lp": per_lp,
                    "lp_conflicts": conflicts,
                    "injected": injections_json(&injected),
                });
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
                println!(
                    "TDX module {} initialized: {} TDMRs, {} KB allocated for PAMT, global KeyID {}",
                    done.info.version,
                    done.plan.tdmrs().len(),
                    done.pamt_bytes() / 1024,
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
            }
            ExitCode::SUCCESS
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
