//! Arguments more than one subcommand takes: where the machine comes from, how to plan, the
//! module's limits, the output format.

use std::path::PathBuf;

use clap::ValueEnum;
use tdmr::layout::{HolePolicy, Planner, Strategy};
use tdmr::sysinfo::TdxLimits;

use crate::CliError;

/// Where the machine comes from: a kernel log, the embedded demo map, or this machine.
#[derive(clap::Args, Debug, Clone)]
pub struct InputArgs {
    /// A saved kernel log (`dmesg`, `journalctl -k`, `/proc/iomem`), or `-` for standard
    /// input. Read: `BIOS-e820:`, `ACPI: SRAT: Node`, `CMR:` and `System RAM` lines for the
    /// memory, and the TDX lines (KeyID range, module version, `KB allocated for PAMT`, ...).
    /// Without it (and without --demo): this machine, read from /sys/firmware/memmap (or
    /// /proc/iomem), /sys/firmware/acpi/tables/SRAT, the kernel log (/dev/kmsg or `dmesg`) and
    /// /sys/devices/faux/tdx_host/version.
    #[arg(value_name = "LOG")]
    pub log: Option<String>,

    /// Use the embedded example machine instead (see the subcommand's description).
    #[arg(long, conflicts_with_all = ["log", "machine_root"])]
    pub demo: bool,

    /// Read "this machine" from the files under DIR instead of / (DIR/sys/firmware/memmap,
    /// DIR/proc/iomem, DIR/sys/firmware/acpi/tables/SRAT, DIR/dev/kmsg,
    /// DIR/sys/devices/faux/tdx_host/version): a copy of another machine's files, or a test.
    #[arg(long, value_name = "DIR", conflicts_with = "log")]
    pub machine_root: Option<PathBuf>,
}

/// Planning strategy.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrategyArg {
    /// Linux mainline's TDMR and PAMT construction, exactly (its failures included).
    Linux,
    /// This crate's planner: fewest reserved areas and least PAMT within the module's limits,
    /// PAMTs on their own node.
    Optimal,
}

impl From<StrategyArg> for Strategy {
    fn from(s: StrategyArg) -> Strategy {
        match s {
            StrategyArg::Linux => Strategy::Linux,
            StrategyArg::Optimal => Strategy::Optimal,
        }
    }
}

/// Where reserved areas come from.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HolesArg {
    /// Holes in TDX memory (Linux mainline).
    Memory,
    /// Holes in the CMRs (distribution kernels' fix for "reserved areas exhausted").
    Cmr,
}

impl From<HolesArg> for HolePolicy {
    fn from(h: HolesArg) -> HolePolicy {
        match h {
            HolesArg::Memory => HolePolicy::Memory,
            HolesArg::Cmr => HolePolicy::Cmr,
        }
    }
}

/// How to plan.
#[derive(clap::Args, Debug, Clone)]
pub struct PlannerArgs {
    /// Planning strategy.
    #[arg(long, value_enum, default_value_t = StrategyArg::Optimal)]
    pub strategy: StrategyArg,

    /// Where reserved areas come from (default: the strategy's own: memory for linux, cmr for
    /// optimal).
    #[arg(long, value_enum)]
    pub holes: Option<HolesArg>,
}

impl PlannerArgs {
    /// The planner these arguments describe, over `limits`.
    pub fn planner(&self, limits: TdxLimits) -> Planner {
        let p = Planner::new()
            .with_strategy(self.strategy.into())
            .with_limits(limits);
        match self.holes {
            Some(h) => p.with_holes(h.into()),
            None => p,
        }
    }
}

/// The TDX module's limits, as TDH.SYS.RD would report them.
#[derive(clap::Args, Debug, Clone)]
pub struct LimitArgs {
    /// MAX_TDMRS: how many TDMRs the module takes (1 to 65535).
    #[arg(long, value_name = "N", default_value_t = TdxLimits::default().max_tdmrs() as u16)]
    pub max_tdmrs: u16,

    /// MAX_RESERVED_PER_TDMR: reserved areas per TDMR (at most 16 fit a TDMR_INFO).
    #[arg(long, value_name = "N", default_value_t = TdxLimits::default().max_reserved_per_tdmr() as u16)]
    pub max_reserved: u16,

    /// PAMT entry size in bytes, every level.
    #[arg(long, value_name = "BYTES", default_value_t = 16)]
    pub pamt_entry_size: u16,

    /// The module has Dynamic PAMT (TDH.SYS.CONFIG R8 bit 16): PAMT_4K shrinks to a bitmap of
    /// 1 bit per 4 KiB page. Also on when the kernel log says `Enable Dynamic PAMT`.
    #[arg(long)]
    pub dpamt: bool,
}

impl LimitArgs {
    /// The limits, or the flag whose value the library refuses.
    pub fn limits(&self) -> Result<TdxLimits, CliError> {
        let mut l = TdxLimits::default()
            .with_max_tdmrs(self.max_tdmrs)
            .map_err(|e| CliError::new(format!("--max-tdmrs {}: {e}", self.max_tdmrs)))?
            .with_max_reserved_per_tdmr(self.max_reserved)
            .with_pamt_entry_size(self.pamt_entry_size)
            .map_err(|e| {
                CliError::new(format!("--pamt-entry-size {}: {e}", self.pamt_entry_size))
            })?;
        if self.dpamt {
            l = l
                .with_dynamic_pamt(1)
                .map_err(|e| CliError::new(format!("--dpamt: {e}")))?;
        }
        Ok(l)
    }
}

/// Text or JSON.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextOrJson {
    /// For people.
    Text,
    /// One JSON document (`"schema": 1`, every field in docs/json.md).
    Json,
}
