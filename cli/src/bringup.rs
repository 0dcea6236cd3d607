//! `tdmr bringup`: the software TDX module (`tdmr::mock`) brought up on a memory map by
//! `init::Bringup` — TDH.SYS.INIT, LP.INIT on every CPU at once, metadata, plan, PAMT claim,
//! CONFIG, cache flush, KEY.CONFIG per package, TDMR.INIT spread over the CPUs — and what it
//! took: SEAMCALLs per leaf, TDMR.INIT per LP, the faults injected and how they were survived,
//! or the failure with its stage, raw status and teardown.

use serde_json::{Map, Value, json};
use tdmr::dpamt::{DynamicPamt, Get, PairCache, Put};
use tdmr::init::{Bringup, InitError, InitErrorKind, Initialized};
use tdmr::mock::{LpThreads, MockModule, PagePool, Platform};
use tdmr::report::{self, Context};
use tdmr::seamcall::{FaultInjector, FaultSpec, Injection, SeamcallCounts};
use tdmr::sysinfo::TdxLimits;
use tdmr::tdx::leaf;

use crate::args::{InputArgs, PlannerArgs, TextOrJson};
use crate::input::{self, SPR_1T};
use crate::keyids;
use crate::out;
use crate::{CliError, Output};

/// `tdmr bringup` arguments.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  tdmr bringup --demo --cpus 4\n  tdmr bringup dmesg.txt --dynamic-pamt --format json\n  tdmr bringup --demo --inject sys-busy@10% --seed 3\n\nExit status: 0 initialized, 1 failed (the stage and the module's raw status), 2 bad input."
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

    /// Enable Dynamic PAMT (the software module then supports it); after bring-up, map and
    /// unmap 4 KiB pages in a few 2 MiB ranges through the Dynamic PAMT manager and report the
    /// PAMT.ADD / PAMT.REMOVE calls.
    #[arg(long, alias = "dpamt")]
    pub dynamic_pamt: bool,

    /// Fail calls the module could fail: `KIND@CALL[xN]` fails the first N (default 1) calls
    /// that can return KIND from SEAMCALL number CALL on; KIND@P% fails each eligible call
    /// with probability P %. KIND: rnd-no-entropy, sys-busy, operand-busy,
    /// key-generation-failed. Repeatable.
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

fn failure_json(e: &InitError, doc: &mut Map<String, Value>) {
    doc.insert("status".into(), json!("failed"));
    doc.insert("stage".into(), json!(e.stage.to_string()));
    doc.insert("error".into(), json!(e.kind.to_string()));
    doc.insert("seamcalls".into(), counts_json(&e.seamcalls));
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
        "teardown".into(),
        match &e.teardown {
            Some(t) => json!({
                "pamt": t.pamt.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                "reset_required": t.reset_required,
            }),
            None => Value::Null,
        },
    );
}

/// Runs `tdmr bringup`.
pub fn run(a: &Args) -> Result<Output, CliError> {
    let loaded = input::load(&a.input, SPR_1T)?;
    let faults = a
        .inject
        .iter()
        .map(|spec| {
            spec.parse::<FaultSpec>()
                .map_err(|e| CliError::new(format!("--inject {spec}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let input = &loaded.parsed;
    let mut limits = TdxLimits::default();
    if a.dynamic_pamt {
        limits = limits
            .with_dynamic_pamt(1)
            .map_err(|e| CliError::new(format!("--dynamic-pamt: {e}")))?;
    }
    let mut platform = Platform::new(input.cmrs().listed())
        .and_then(|p| p.with_topology(a.cpus, a.packages))
        .map(|p| p.with_limits(limits))
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
    let planner = a.planner.planner(limits).with_init_cpus(a.cpus);
    let cpus = LpThreads::new(&module);
    let result = Bringup::new(&faulty, &cpus, &module, keyids)
        .with_planner(planner)
        .with_dynamic_pamt(a.dynamic_pamt)
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
        Ok(done) => {
            let run = if a.dynamic_pamt {
                Some(dpamt_run(&module, &done).map_err(|e| {
                    CliError::new(format!("the Dynamic PAMT run after bring-up: {e}"))
                })?)
            } else {
                None
            };
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
                doc.insert(
                    "module".into(),
                    json!({"version": done.info.version.to_string()}),
                );
                doc.insert(
                    "keyids".into(),
                    json!({"first": keyids.first(), "end": u32::from(keyids.first()) + u32::from(keyids.count())}),
                );
                doc.insert("global_keyid".into(), json!(done.global_keyid));
                doc.insert("seamcalls".into(), counts_json(&done.seamcalls));
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
            } else {
                text.push_str(&counts_text(&done.seamcalls));
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
                    "TDX module {} initialized: {} TDMRs, {} KB allocated for PAMT, private KeyIDs {keyids}, global KeyID {}\n",
                    done.info.version,
                    done.plan.tdmrs().len(),
                    done.pamt_bytes() / 1024,
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
            }
            if run.as_ref().is_some_and(|d| !d.pairs_returned) {
                1
            } else {
                0
            }
        }
        Err(e) => {
            if json {
                failure_json(&e, &mut doc);
                doc.insert("tdmr_init_per_lp".into(), json!(per_lp));
                doc.insert("lp_conflicts".into(), json!(conflicts));
                doc.insert("injected".into(), injections_json(&injected));
            } else {
                text.push_str(&counts_text(&e.seamcalls));
                for i in &injected {
                    text.push_str(&format!(
                        "injected {} into call {} ({})\n",
                        i.status, i.call, i.leaf
                    ));
                }
                text.push_str(&format!("{e}\n"));
                if let Some(t) = &e.teardown {
                    let what = if t.reset_required {
                        "flush caches, reset and free"
                    } else {
                        "free"
                    };
                    for r in &t.pamt {
                        text.push_str(&format!("teardown: {what} PAMT {r}\n"));
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
