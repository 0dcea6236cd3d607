//! `tdmr plan`: will TDX come up on this machine, and what will it cost?
//!
//! Text: the sources read and what was assumed, the readiness report (Linux mainline's verdict
//! next to ours, PAMT static and with Dynamic PAMT, limits, the TDMR.INIT estimate, the
//! kernel's own lines beside our prediction, warnings), then the layout, ending with Linux's
//! `N KB allocated for PAMT` line. JSON: the plan (`docs/json.md`). SVG: the memory map.

use clap::ValueEnum;
use tdmr::layout::{Planner, Strategy};
use tdmr::readiness::Readiness;
use tdmr::report::{self, Context, svg};

use crate::args::{InputArgs, LimitArgs, PlannerArgs};
use crate::input::{self, EMR};
use crate::module;
use crate::out;
use crate::{CliError, Output};

/// Output formats of `plan`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The readiness report and the layout, for people.
    Text,
    /// The plan as one JSON document (docs/json.md).
    Json,
    /// The physical address space as an SVG memory map.
    Svg,
}

/// `tdmr plan` arguments.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  tdmr plan --demo\n  tdmr plan                                  this machine (sudo: with its kernel log and SRAT)\n  tdmr plan dmesg.txt --strategy linux       what Linux mainline builds there\n  tdmr plan dmesg.txt --format svg --compare > map.svg\n  tdmr plan dmesg.txt --cpus 64              TDMRs shaped for TDMR.INIT on 64 CPUs\n\nExit status: 0 a layout, 1 no valid layout (the reason, as Linux would report it), 2 bad input (with its line)."
)]
pub struct Args {
    #[command(flatten)]
    pub input: InputArgs,

    #[command(flatten)]
    pub planner: PlannerArgs,

    #[command(flatten)]
    pub limits: LimitArgs,

    /// Let the optimal strategy leave the least TDX memory out when nothing else fits (listed
    /// as excluded: keep it from the page allocator).
    #[arg(long)]
    pub allow_exclusions: bool,

    /// JSON: add Linux mainline's summary under "compare". SVG: draw Linux mainline's layout
    /// (or its failure) above ours. Text: Linux's verdict is always in the report.
    #[arg(long)]
    pub compare: bool,

    /// Shape the TDMRs for TDH.SYS.TDMR.INIT on N CPUs at once and estimate its time on them
    /// next to Linux's serial loop (2.6 s per TiB).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub cpus: u32,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Text: list every reserved area and PAMT block of every TDMR.
    #[arg(short, long)]
    pub verbose: bool,
}

/// Runs `tdmr plan`.
pub fn run(a: &Args) -> Result<Output, CliError> {
    let mut limits = a.limits.limits()?;
    let mut loaded = input::load(&a.input, EMR)?;
    if loaded.parsed.tdx_lines().dynamic_pamt() {
        limits = module::with_dynamic_pamt(
            limits,
            &mut loaded,
            "the kernel enabled Dynamic PAMT (`Enable Dynamic PAMT`): the module has it, planned with it",
        )?;
    }
    let mut planner = a
        .planner
        .planner(limits)
        .with_exclusions(a.allow_exclusions)
        .with_init_cpus(a.cpus);
    if let Some(version) = module::named_version(&mut loaded, "planned for") {
        planner = planner.with_module_version(version);
    }
    let parsed = &loaded.parsed;
    let ctx = Context::of(parsed);
    let strategy = planner.strategy();
    match a.format {
        Format::Text => {
            let r = Readiness::assess(&planner, parsed.memory(), parsed.cmrs());
            let mut text = input::describe(&loaded);
            text.push_str(&report::text::readiness(&r, &ctx));
            if let Ok(plan) = &r.chosen().result {
                text.push('\n');
                text.push_str(&report::text::layout(plan, a.verbose));
            }
            Ok(Output {
                text,
                code: u8::from(!r.chosen().is_ok()),
            })
        }
        Format::Json => {
            let r = Readiness::assess(&planner, parsed.memory(), parsed.cmrs());
            let mut rendered = match &r.chosen().result {
                Ok(plan) => {
                    let doc = report::json::plan(plan, &ctx);
                    match &r.init_estimate {
                        Some(e) => report::json::with_init_estimate(doc, e),
                        None => doc,
                    }
                }
                Err(e) => report::json::infeasible_in(strategy.name(), e, &ctx),
            };
            rendered = report::json::with_tdx_lines(rendered, parsed.tdx_lines(), Some(&r));
            if a.compare {
                // Linux mainline with its own hole basis, under the same limits.
                let linux = if strategy == Strategy::Linux {
                    Planner::new()
                        .with_strategy(Strategy::Linux)
                        .with_limits(limits)
                        .plan(parsed.memory(), parsed.cmrs())
                } else {
                    r.linux.result.clone()
                };
                rendered = report::json::with_comparison(rendered, "linux", &linux);
            }
            let mut doc = out::head(&loaded);
            out::extend(&mut doc, &rendered);
            Ok(Output {
                text: out::line(doc),
                code: u8::from(!r.chosen().is_ok()),
            })
        }
        Format::Svg => {
            let result = planner.plan(parsed.memory(), parsed.cmrs());
            let chosen = svg::Section {
                name: strategy.name(),
                holes: planner.holes(),
                result: &result,
            };
            let text = if a.compare {
                // Linux mainline above ours; when Linux was chosen, the optimal strategy below.
                let other_planner = if strategy == Strategy::Linux {
                    Planner::new()
                        .with_limits(limits)
                        .with_exclusions(a.allow_exclusions)
                } else {
                    Planner::new()
                        .with_strategy(Strategy::Linux)
                        .with_limits(limits)
                };
                let other_result = other_planner.plan(parsed.memory(), parsed.cmrs());
                let other = svg::Section {
                    name: other_planner.strategy().name(),
                    holes: other_planner.holes(),
                    result: &other_result,
                };
                let sections = if strategy == Strategy::Linux {
                    [chosen, other]
                } else {
                    [other, chosen]
                };
                svg::render(&ctx, &loaded.name, &sections)
            } else {
                svg::render(&ctx, &loaded.name, &[chosen])
            };
            Ok(Output {
                text,
                code: u8::from(result.is_err()),
            })
        }
    }
}
