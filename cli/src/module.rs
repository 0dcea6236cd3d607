//! Which TDX module a subcommand plays or plans for: `--module PROFILE` when given, else the
//! module the machine names (the kernel log's module line, or this machine's
//! `/sys/devices/faux/tdx_host/version`), else the default release — and, for the output, how
//! it was chosen.

use tdmr::mock::ModuleProfile;
use tdmr::sysinfo::TdxLimits;
use tdmr::tdx::metadata::ModuleVersion;

use crate::CliError;
use crate::loaded::Loaded;

/// The release the software module plays when nothing names one.
pub const DEFAULT: &str = "1.5.25";

/// Parses `--module` / `--update-to`: a release (`1.5.06`), a line (`1.5`: its newest), or
/// `next`, with modifiers (`2.0.08,lacks=MAX_TDMRS`).
pub fn parse_profile(name: &str) -> Result<ModuleProfile, String> {
    ModuleProfile::named(name).map_err(|e| e.to_string())
}

/// How the module was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chosen {
    /// `--module`.
    Flag,
    /// The machine named it (kernel log or sysfs).
    Machine,
    /// Nothing named one: [`DEFAULT`].
    Default,
}

impl Chosen {
    /// `flag`, `machine`, `default` (JSON `module.chosen_by`).
    pub fn name(self) -> &'static str {
        match self {
            Chosen::Flag => "flag",
            Chosen::Machine => "machine",
            Chosen::Default => "default",
        }
    }
}

/// The version the machine names, with where it came from: this machine's running module
/// (sysfs: the exact release), else the log's module line (its update number when the line has
/// one; the attributes form has none).
fn named_by_machine(loaded: &Loaded) -> Option<(u16, u16, Option<u16>, String)> {
    if let Some(v) = loaded.sysfs_version {
        return Some((
            v.major,
            v.minor,
            Some(v.update),
            format!("this machine's module {v} (tdx_host/version)"),
        ));
    }
    loaded.parsed.tdx_lines().module().map(|m| {
        (
            m.major,
            m.minor,
            m.update,
            format!("the kernel log's module {m}"),
        )
    })
}

/// The module to play: `flag` when given, else the machine's (the release it names, or the
/// newest modelled release of its line when that release is not modelled), else [`DEFAULT`].
/// What was chosen and why goes into `loaded.assumed` unless the flag chose it. A machine
/// naming a line no profile models is bad input: pass `--module`.
pub fn choose(
    flag: Option<&ModuleProfile>,
    loaded: &mut Loaded,
) -> Result<(ModuleProfile, Chosen), CliError> {
    if let Some(p) = flag {
        return Ok((p.clone(), Chosen::Flag));
    }
    let Some((major, minor, update, from)) = named_by_machine(loaded) else {
        loaded.assumed.push(format!(
            "no module line in the kernel log: the software module plays TDX module {DEFAULT} (--module to choose)"
        ));
        return Ok((
            parse_profile(DEFAULT).map_err(CliError::new)?,
            Chosen::Default,
        ));
    };
    let release =
        update.and_then(|u| ModuleProfile::named(&format!("{major}.{minor}.{u:02}")).ok());
    let (profile, how) = match release {
        Some(p) => (p, "the same release"),
        None => match ModuleProfile::named(&format!("{major}.{minor}")) {
            Ok(p) => (p, "the newest modelled release of its line"),
            Err(_) => {
                return Err(CliError::new(format!(
                    "{from}: no module profile models TDX {major}.{minor}; choose one with --module (1.0, 1.5, 2.0, next, or a release such as 1.5.06)"
                )));
            }
        },
    };
    loaded.assumed.push(format!(
        "{from}: the software module plays {} ({how})",
        profile.version()
    ));
    Ok((profile, Chosen::Machine))
}

/// The version the machine names, for a plan or a check to suit (the planner's and the
/// validator's version rules look at its line; an attributes-form line without an update
/// number is taken as `.00`); `None` when nothing names one. `what` (`"planned for"`,
/// `"checked as"`) is noted on the source that named it, so the output says which rules held.
pub fn named_version(loaded: &mut Loaded, what: &str) -> Option<ModuleVersion> {
    let (major, minor, update, _) = named_by_machine(loaded)?;
    let source = if loaded.sysfs_version.is_some() {
        "module version"
    } else {
        "kernel log"
    };
    if let Some(s) = loaded.sources.iter_mut().rfind(|s| s.source == source) {
        s.detail.push_str(&format!("; {what} TDX {major}.{minor}"));
    }
    Some(ModuleVersion::new(major, minor, update.unwrap_or(0)))
}

/// `limits` with Dynamic PAMT (one bitmap bit per 4 KiB page), `note` said under `assumed`:
/// how a subcommand honours the kernel's `Enable Dynamic PAMT` line. Limits that already
/// have it are returned as they are, with nothing noted.
pub fn with_dynamic_pamt(
    limits: TdxLimits,
    loaded: &mut Loaded,
    note: &str,
) -> Result<TdxLimits, CliError> {
    if limits.dynamic_pamt() {
        return Ok(limits);
    }
    let with = limits
        .with_dynamic_pamt(1)
        .map_err(|e| CliError::new(format!("Dynamic PAMT: {e}")))?;
    loaded.assumed.push(note.to_string());
    Ok(with)
}
