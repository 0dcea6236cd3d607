//! `tdmr`: will TDX come up on this machine, and what will it cost?
//!
//! ```text
//! tdmr plan [LOG | --demo]           readiness report and TDMR layout (text, JSON or SVG)
//! tdmr check LAYOUT [--log LOG]      a layout validated as TDH.SYS.CONFIG validates it
//! tdmr bringup [LOG | --demo]        the software TDX module brought up on the memory map
//! tdmr hotplug [LOG | --demo]        memory and CPU hotplug raced around one initialization
//! ```
//!
//! Without a log, each reads this machine. Exit status: 0 success, 1 the answer is no (no
//! layout, refused, failed bring-up, a violation), 2 bad input or usage. Every JSON output
//! carries `"schema": 1` and is documented field by field in `docs/json.md`.

mod args;
mod bringup;
mod check;
mod hotplug;
mod input;
mod keyids;
mod layout_file;
mod loaded;
mod machine;
mod module;
mod out;
mod plan;

use std::fmt;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Bad input or usage: exit status 2, with a message naming the offending value.
#[derive(Debug)]
pub struct CliError(String);

impl CliError {
    /// An error with this message.
    pub fn new(msg: impl Into<String>) -> Self {
        CliError(msg.into())
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a subcommand prints and how it exits.
#[derive(Debug)]
pub struct Output {
    /// Standard output.
    pub text: String,
    /// Exit status: 0 yes, 1 no.
    pub code: u8,
}

#[derive(Parser, Debug)]
#[command(
    name = "tdmr",
    version,
    about = "Will Intel TDX come up on this machine, and what will it cost?",
    long_about = "Will Intel TDX come up on this machine, and what will it cost?\n\n\
        tdmr plans the TDX module's memory (TDMRs and their PAMTs) the way Linux does and the way \
        this crate does, checks a layout exactly as the TDX module's TDH.SYS.CONFIG does, brings \
        up a software TDX module on a memory map, and races memory and CPU hotplug around its \
        initialization. Give it a saved kernel log (dmesg) or let it read this machine.",
    after_help = "Examples:\n  \
        tdmr plan --demo                         the embedded Emerald Rapids 4-socket map\n  \
        tdmr plan                                this machine (root reads more of it)\n  \
        tdmr plan dmesg.txt --format json        a saved kernel log, as JSON\n  \
        tdmr plan dmesg.txt --format json > p.json && tdmr check p.json --log dmesg.txt\n  \
        tdmr bringup --demo --cpus 4             the software module brought up on 4 CPUs\n  \
        tdmr hotplug --demo --ops 5000           hotplug raced around one initialization\n\n\
        Exit status: 0 yes, 1 no (no layout, refused, failed, a violation), 2 bad input."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Will TDX come up, and what will it cost: Linux mainline's verdict next to ours, PAMT
    /// static and with Dynamic PAMT, the TDMR layout. --demo: the embedded Emerald Rapids
    /// 4-socket map, where Linux mainline fails.
    Plan(plan::Args),
    /// Check a TDMR layout (a JSON plan or a hex dump of TDMR_INFO entries) exactly as the TDX
    /// module's TDH.SYS.CONFIG does, against a kernel log's CMRs and memory: the module's
    /// status, decoded.
    Check(check::Args),
    /// Bring up the software TDX module on the memory map (TDH.SYS.INIT, LP.INIT on every CPU,
    /// CONFIG, KEY.CONFIG, TDMR.INIT spread over the CPUs) and show what it took. --demo: the
    /// embedded 1 TiB Sapphire Rapids map.
    Bringup(Box<bringup::Args>),
    /// Race threads of memory hot-add and removal and CPU hotplug around one TDX
    /// initialization through the hotplug gate, checking every answer; prints one JSON line.
    /// --demo: the embedded Emerald Rapids 4-socket map.
    Hotplug(hotplug::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (name, result) = match &cli.command {
        Command::Plan(a) => ("plan", plan::run(a)),
        Command::Check(a) => ("check", check::run(a)),
        Command::Bringup(a) => ("bringup", bringup::run(a)),
        Command::Hotplug(a) => ("hotplug", hotplug::run(a)),
    };
    match result.and_then(|o| out::write_stdout(&o.text).map(|()| o.code)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("tdmr {name}: {e}");
            ExitCode::from(2)
        }
    }
}
