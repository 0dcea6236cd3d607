//! Where the machine a subcommand works on comes from: a saved kernel log, the embedded demo
//! map, or this machine's own files (`machine`); and how the sources read are described.

use std::io::Read;

use tdmr::memmap::parse_kernel_log;

use crate::CliError;
use crate::args::InputArgs;
use crate::loaded::{Loaded, NO_CMRS, Source};
use crate::machine;

/// An embedded example machine.
#[derive(Clone, Copy, Debug)]
pub struct Demo {
    /// The log.
    pub text: &'static str,
    /// How the output names it.
    pub name: &'static str,
}

/// The embedded Emerald Rapids 4-socket map (`plan --demo`, `hotplug --demo`).
pub const EMR: Demo = Demo {
    text: include_str!("../../tests/fixtures/emr-4s-256g.log"),
    name: "the embedded Emerald Rapids 4-socket map (tests/fixtures/emr-4s-256g.log)",
};

/// The embedded ~1 TiB Sapphire Rapids map (`bringup --demo`).
pub const SPR_1T: Demo = Demo {
    text: include_str!("../../tests/fixtures/spr-1t.log"),
    name: "the embedded 1 TiB Sapphire Rapids map (tests/fixtures/spr-1t.log)",
};

/// Reads a log file (`-`: standard input).
pub fn read_text(path: &str) -> Result<String, CliError> {
    if path == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError::new(format!("reading standard input: {e}")))?;
        return Ok(s);
    }
    std::fs::read(path)
        .map_err(|e| CliError::new(machine::io_message(path, &e)))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// A log's text, parsed, as the named input.
pub fn from_log(text: &str, name: String, path: String) -> Result<Loaded, CliError> {
    let parsed = parse_kernel_log(text).map_err(|e| CliError::new(format!("{name}: {e}")))?;
    let lines = text.lines().count();
    let mut assumed = Vec::new();
    if !parsed.cmrs_listed() {
        assumed.push(NO_CMRS.to_string());
    }
    let sources = vec![Source {
        source: "kernel log",
        path,
        used: true,
        detail: format!("{lines} lines"),
    }];
    Ok(Loaded {
        parsed,
        name,
        sources,
        assumed,
        sysfs_version: None,
    })
}

/// The machine the arguments name; `demo` is what `--demo` plans.
pub fn load(args: &InputArgs, demo: Demo) -> Result<Loaded, CliError> {
    if args.demo {
        return from_log(demo.text, demo.name.to_string(), demo.name.to_string());
    }
    match &args.log {
        Some(path) => {
            let name = if path == "-" {
                "standard input".to_string()
            } else {
                path.clone()
            };
            from_log(&read_text(path)?, name, path.clone())
        }
        None => {
            let root = args
                .machine_root
                .clone()
                .unwrap_or_else(|| std::path::PathBuf::from("/"));
            machine::read(&root)
        }
    }
}

/// The sources and assumptions as text lines (the live machine's sources one per line).
pub fn describe(l: &Loaded) -> String {
    let mut out = format!("input: {}\n", l.name);
    if l.sources.len() > 1 {
        for s in &l.sources {
            out.push_str(&format!("  {:<15}{}: {}\n", s.source, s.path, s.detail));
        }
    } else if let Some(note) = l.sources.first().and_then(|s| s.detail.split_once("; ")) {
        // A log's own detail is its line count; what was decided from it follows.
        out.push_str(&format!("  {}\n", note.1));
    }
    for a in &l.assumed {
        out.push_str(&format!("assumed: {a}\n"));
    }
    out
}
