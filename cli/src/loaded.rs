//! The machine as a subcommand read it: memory, CMRs and the kernel's TDX lines, with the
//! sources it came from and what was assumed for want of one — for the output to say.

use tdmr::memmap::ParsedLog;
use tdmr::tdx::metadata::ModuleVersion;

/// One place the machine was read from.
#[derive(Clone, Debug)]
pub struct Source {
    /// What it tells: `memory`, `numa`, `kernel log`, `module version`.
    pub source: &'static str,
    /// The file (or command) read.
    pub path: String,
    /// Whether what it said went into the plan.
    pub used: bool,
    /// What it held, or why it was not used (`needs root`, `absent`).
    pub detail: String,
}

/// The machine, parsed, and how it was read.
#[derive(Debug)]
pub struct Loaded {
    /// Memory, CMRs and the kernel's TDX lines.
    pub parsed: ParsedLog,
    /// What the input was (`tests/fixtures/spr-1t.log`, `this machine`, ...).
    pub name: String,
    /// Where each part came from.
    pub sources: Vec<Source>,
    /// What was assumed for want of a source.
    pub assumed: Vec<String>,
    /// The running module's version from sysfs (this machine only).
    pub sysfs_version: Option<ModuleVersion>,
}

/// The assumption a log without CMR lines makes.
pub const NO_CMRS: &str = "no CMR lines in the kernel log: all memory taken as convertible (mainline kernels do not print CMRs)";
