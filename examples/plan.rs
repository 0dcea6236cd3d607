//! `plan` — will TDX come up on this machine, and what will it cost?
//!
//! ```text
//! plan [INPUT] [--strategy linux|optimal] [--holes memory|cmr] [--max-tdmrs N]
//!      [--max-reserved N] [--pamt-entry-size N] [--dpamt] [--allow-exclusions] [--compare]
//!      [--cpus N] [--format text|json|svg] [--verbose]
//! ```
//!
//! INPUT is a kernel-log file (`BIOS-e820:`, `ACPI: SRAT:`, `CMR:` lines or `/proc/iomem`), or
//! `-` for standard input; without it, the embedded Emerald Rapids 4-socket map is planned.
//! `--allow-exclusions` lets the optimal strategy leave the least TDX memory out when nothing
//! else fits (listed as `excluded`). `--cpus N` shapes the TDMRs for TDH.SYS.TDMR.INIT on N
//! CPUs at once (`Planner::with_init_cpus`) and estimates its time on them next to Linux's
//! serial loop (text: the `TDMR.INIT` line; JSON: `init_estimate`).
//!
//! - `text` (default): the readiness report (Linux mainline's verdict next to ours, PAMT static
//!   and with Dynamic PAMT, limits, warnings), then the chosen layout, one line per TDMR
//!   (`--verbose`: every reserved area and PAMT block), ending with Linux's
//!   `N KB allocated for PAMT` line.
//! - `json`: the plan; `--compare` adds Linux mainline's summary under `compare`.
//! - `svg`: the memory map; `--compare` draws Linux mainline's layout (or its failure) above ours.
//!
//! Exit status: 0 planned, 1 no valid layout, 2 bad input or usage.

use std::io::{Read, Write};
use std::process::ExitCode;

use tdmr::layout::{HolePolicy, Planner, Strategy};
use tdmr::memmap::parse_kernel_log;
use tdmr::readiness::{InitEstimate, Readiness};
use tdmr::report::{self, Context, svg};
use tdmr::sysinfo::TdxLimits;

const EMBEDDED: &str = include_str!("../tests/fixtures/emr-4s-256g.log");

const USAGE: &str = "usage: plan [INPUT|-] [--strategy linux|optimal] [--holes memory|cmr] \
[--max-tdmrs N] [--max-reserved N] [--pamt-entry-size N] [--dpamt] [--allow-exclusions] [--compare] \
[--cpus N] [--format text|json|svg] [--verbose]";

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Text,
    Json,
    Svg,
}

struct Options {
    input: Option<String>,
    strategy: Strategy,
    holes: Option<HolePolicy>,
    limits: TdxLimits,
    format: Format,
    allow_exclusions: bool,
    compare: bool,
    verbose: bool,
    cpus: u32,
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut o = Options {
        input: None,
        strategy: Strategy::Optimal,
        holes: None,
        limits: TdxLimits::default(),
        format: Format::Text,
        allow_exclusions: false,
        compare: false,
        verbose: false,
        cpus: 1,
    };
    let mut args = args.peekable();
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let number = |name: &str, v: String| -> Result<u16, String> {
            v.parse::<u16>()
                .map_err(|_| format!("{name}: `{v}` is not a number from 0 to 65535"))
        };
        match a.as_str() {
            "--strategy" => {
                o.strategy = match value("--strategy")?.as_str() {
                    "linux" => Strategy::Linux,
                    "optimal" => Strategy::Optimal,
                    other => return Err(format!("--strategy: unknown strategy `{other}`")),
                }
            }
            "--holes" => {
                o.holes = Some(match value("--holes")?.as_str() {
                    "memory" => HolePolicy::Memory,
                    "cmr" => HolePolicy::Cmr,
                    other => return Err(format!("--holes: unknown hole basis `{other}`")),
                })
            }
            "--max-tdmrs" => {
                let n = number("--max-tdmrs", value("--max-tdmrs")?)?;
                o.limits = o
                    .limits
                    .with_max_tdmrs(n)
                    .map_err(|e| format!("--max-tdmrs: {e}"))?;
            }
            "--max-reserved" => {
                let n = number("--max-reserved", value("--max-reserved")?)?;
                o.limits = o.limits.with_max_reserved_per_tdmr(n);
            }
            "--pamt-entry-size" => {
                let n = number("--pamt-entry-size", value("--pamt-entry-size")?)?;
                o.limits = o
                    .limits
                    .with_pamt_entry_size(n)
                    .map_err(|e| format!("--pamt-entry-size: {e}"))?;
            }
            "--dpamt" => {
                o.limits = o
                    .limits
                    .with_dynamic_pamt(1)
                    .map_err(|e| format!("--dpamt: {e}"))?;
            }
            "--format" => {
                o.format = match value("--format")?.as_str() {
                    "text" => Format::Text,
                    "json" => Format::Json,
                    "svg" => Format::Svg,
                    other => return Err(format!("--format: unknown format `{other}`")),
                }
            }
            "--cpus" => {
                let v = value("--cpus")?;
                o.cpus = match v.parse::<u32>() {
                    Ok(n) if n >= 1 => n,
                    _ => return Err(format!("--cpus: `{v}` is not a number of CPUs (1 or more)")),
                };
            }
            "--allow-exclusions" => o.allow_exclusions = true,
            "--compare" => o.compare = true,
            "--verbose" | "-v" => o.verbose = true,
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with("--") => return Err(format!("unknown option `{s}`")),
            _ if o.input.is_some() => return Err(format!("unexpected argument `{a}`")),
            _ => o.input = Some(a),
        }
    }
    Ok(o)
}

fn read_input(input: Option<&str>) -> Result<(String, String), String> {
    match input {
        None => Ok((EMBEDDED.to_string(), "embedded emr-4s-256g.log".to_string())),
        Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("reading standard input: {e}"))?;
            Ok((s, "standard input".to_string()))
        }
        Some(path) => std::fs::read_to_string(path)
            .map(|s| (s, path.to_string()))
            .map_err(|e| format!("{path}: {e}")),
    }
}

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("plan: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (text, name) = match read_input(opts.input.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("plan: {e}");
            return ExitCode::from(2);
        }
    };
    let parsed = match parse_kernel_log(&text) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("plan: {name}: {e}");
            return ExitCode::from(2);
        }
    };
    let mut planner = Planner::new()
        .with_strategy(opts.strategy)
        .with_limits(opts.limits)
        .with_exclusions(opts.allow_exclusions)
        .with_init_cpus(opts.cpus);
    if let Some(h) = opts.holes {
        planner = planner.with_holes(h);
    }
    let ctx = Context::of(&parsed);
    // Linux mainline on the same machine and limits (its own hole basis).
    let linux_planner = Planner::new()
        .with_strategy(Strategy::Linux)
        .with_limits(opts.limits);
    let strategy = opts.strategy.name();
    let out: String;
    let ok = match opts.format {
        Format::Json => {
            let result = planner.plan(parsed.memory(), parsed.cmrs());
            let mut doc = match &result {
                Ok(plan) => {
                    let linux = linux_planner.plan(parsed.memory(), parsed.cmrs()).ok();
                    let one_cpu = (opts.cpus > 1)
                        .then(|| {
                            planner
                                .with_init_cpus(1)
                                .plan(parsed.memory(), parsed.cmrs())
                                .ok()
                        })
                        .flatten();
                    let e = InitEstimate::new(plan, linux.as_ref(), one_cpu.as_ref(), opts.cpus);
                    report::json::with_init_estimate(report::json::plan(plan, &ctx), &e)
                }
                Err(e) => report::json::infeasible_in(strategy, e, &ctx),
            };
            if opts.compare {
                doc = report::json::with_comparison(
                    doc,
                    "linux",
                    &linux_planner.plan(parsed.memory(), parsed.cmrs()),
                );
            }
            out = doc + "\n";
            result.is_ok()
        }
        Format::Svg => {
            let result = planner.plan(parsed.memory(), parsed.cmrs());
            let chosen = svg::Section {
                name: strategy,
                holes: planner.holes(),
                result: &result,
            };
            if opts.compare {
                // Linux mainline above ours; when Linux was chosen, the optimal strategy below.
                let (other_planner, other_name) = if opts.strategy == Strategy::Linux {
                    let p = Planner::new()
                        .with_limits(opts.limits)
                        .with_exclusions(opts.allow_exclusions);
                    (p, Strategy::Optimal.name())
                } else {
                    (linux_planner, "linux")
                };
                let other_result = other_planner.plan(parsed.memory(), parsed.cmrs());
                let other = svg::Section {
                    name: other_name,
                    holes: other_planner.holes(),
                    result: &other_result,
                };
                let sections = if opts.strategy == Strategy::Linux {
                    [chosen, other]
                } else {
                    [other, chosen]
                };
                out = svg::render(&ctx, &name, &sections);
            } else {
                out = svg::render(&ctx, &name, &[chosen]);
            }
            result.is_ok()
        }
        Format::Text => {
            // Linux's verdict is always part of the readiness report; --compare adds nothing.
            let r = Readiness::assess(&planner, parsed.memory(), parsed.cmrs());
            let mut text = format!("{name}\n{}", report::text::readiness(&r, &ctx));
            if let Ok(plan) = &r.chosen().result {
                text.push('\n');
                text.push_str(&report::text::layout(plan, opts.verbose));
            }
            out = text;
            r.chosen().is_ok()
        }
    };
    // A reader that stops early (`plan ... | head`) is not an error.
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("plan: writing the output: {e}");
        return ExitCode::from(2);
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
