//! This machine, read from its own files (Linux): memory from `/sys/firmware/memmap` (or the
//! `System RAM` of `/proc/iomem`), NUMA nodes from the ACPI SRAT at
//! `/sys/firmware/acpi/tables/SRAT`, CMR and TDX lines from the kernel log (`/dev/kmsg`, read to
//! its end without waiting, or `dmesg`), the running module's version from
//! `/sys/devices/faux/tdx_host/version`. The library turns the tables into TDX memory by the
//! kernel's own rules (`memmap::firmware::memory_map`).
//!
//! A file that is absent is said so and the plan goes on without it (no SRAT: one node); a
//! file the user may not read is named, with "needs root"; only memory is indispensable.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tdmr::addr::{Bytes, PhysRange, RangeSet};
use tdmr::memmap::firmware::{
    E820_ACPI, E820_NVS, E820_PMEM, E820_RESERVED, E820_UNUSABLE, E820_USABLE, E820Entry, Srat,
    memory_map, ram_from_e820,
};
use tdmr::memmap::parse_kernel_log_with_memory;
use tdmr::report;
use tdmr::tdx::metadata::ModuleVersion;

use crate::CliError;
use crate::loaded::{Loaded, NO_CMRS, Source};

/// `path: what went wrong`, with "needs root" for a permission error.
pub fn io_message(path: &str, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::PermissionDenied => {
            format!("{path}: needs root (permission denied: run tdmr as root)")
        }
        io::ErrorKind::NotFound => format!("{path}: no such file"),
        _ => format!("{path}: {e}"),
    }
}

/// Why a source was not read, short: `absent`, `needs root (permission denied)`, the error.
fn why(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::PermissionDenied => "needs root (permission denied)".to_string(),
        io::ErrorKind::NotFound => "absent".to_string(),
        _ => e.to_string(),
    }
}

struct Files {
    root: PathBuf,
}

impl Files {
    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// How a path is shown: as on this machine when the root is `/`.
    fn show(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }
}

/// `0x1000` (sysfs) or `1000` (iomem) as a number.
fn hex(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    u64::from_str_radix(digits, 16).ok()
}

/// The E820 type of a `/sys/firmware/memmap/N/type` string (the kernel's names for them).
fn e820_kind(name: &str) -> u32 {
    match name {
        "System RAM" => E820_USABLE,
        "ACPI Tables" => E820_ACPI,
        "ACPI Non-volatile Storage" => E820_NVS,
        "Unusable memory" => E820_UNUSABLE,
        "Persistent Memory" => E820_PMEM,
        "Persistent Memory (legacy)" => 12,
        // "Reserved", "Soft Reserved", and anything newer: not RAM.
        _ => E820_RESERVED,
    }
}

/// The firmware map of `/sys/firmware/memmap`: entries `N/{start,end,type}`, `end` inclusive.
fn read_memmap(f: &Files) -> Result<Result<(RangeSet, usize), String>, CliError> {
    let dir = f.path("sys/firmware/memmap");
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) => return Ok(Err(why(&e))),
    };
    let mut e820 = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => return Ok(Err(why(&e))),
        };
        let p = entry.path();
        if !p.is_dir() {
            continue;
        }
        let read = |name: &str| -> Result<String, io::Error> { fs::read_to_string(p.join(name)) };
        let (start, end, kind) = match (read("start"), read("end"), read("type")) {
            (Ok(s), Ok(e), Ok(t)) => (s, e, t),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                return Ok(Err(format!("{}: {}", p.display(), why(&e))));
            }
        };
        let bad = |what: &str, v: &str| {
            CliError::new(format!(
                "{}/{what}: `{}` is not a hexadecimal address",
                p.display(),
                v.trim()
            ))
        };
        let s = hex(&start).ok_or_else(|| bad("start", &start))?;
        let e = hex(&end).ok_or_else(|| bad("end", &end))?;
        if e < s || e == u64::MAX {
            return Err(CliError::new(format!(
                "{}: end {e:#x} before start {s:#x}",
                p.display()
            )));
        }
        e820.push(E820Entry::new(s, e - s + 1, e820_kind(kind.trim())));
    }
    if e820.is_empty() {
        return Ok(Err("no entries".to_string()));
    }
    let n = e820.len();
    let ram = ram_from_e820(&e820).map_err(|e| CliError::new(format!("{}: {e}", dir.display())))?;
    Ok(Ok((ram, n)))
}

/// The top-level `System RAM` ranges of `/proc/iomem`; addresses read as zero when the kernel
/// hides them from users other than root.
fn read_iomem(f: &Files) -> Result<RangeSet, String> {
    let text = fs::read_to_string(f.path("proc/iomem")).map_err(|e| why(&e))?;
    let mut ranges = Vec::new();
    let mut hidden = true;
    for line in text.lines() {
        let Some(head) = line.trim_end().strip_suffix(" : System RAM") else {
            continue;
        };
        let Some((a, b)) = head.trim().split_once('-') else {
            return Err(format!("malformed line `{line}`"));
        };
        let (Some(a), Some(b)) = (hex(a), hex(b)) else {
            return Err(format!("malformed line `{line}`"));
        };
        if a != 0 || b != 0 {
            hidden = false;
        }
        if b >= a && b < u64::MAX {
            ranges.push(PhysRange::new(a, b + 1).map_err(|e| format!("`{line}`: {e}"))?);
        }
    }
    if ranges.is_empty() {
        return Err("no System RAM lines".to_string());
    }
    if hidden {
        return Err("needs root (the kernel shows other users zero addresses)".to_string());
    }
    Ok(RangeSet::from_ranges(ranges))
}

/// The kernel log from a `/dev/kmsg`-style file, read without blocking to its end: each record
/// `PRI,SEQ,USEC,FLAGS;MESSAGE` becomes `[  SEC.USEC] MESSAGE` (continuation lines, which start
/// with a blank, dropped); other lines are kept as they are.
fn read_kmsg(path: &Path) -> io::Result<(String, usize)> {
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    const LIMIT: usize = 64 << 20;
    let mut buf = vec![0u8; 16 << 10];
    let mut all = Vec::new();
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                all.extend_from_slice(&buf[..n]);
                if all.len() > LIMIT {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // Records overwritten while we read: the next read goes on with the oldest left.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) => return Err(e),
        }
    }
    let text = String::from_utf8_lossy(&all);
    let mut out = String::with_capacity(text.len());
    let mut records = 0;
    for line in text.lines() {
        if line.starts_with(' ') {
            continue;
        }
        records += 1;
        match line.split_once(';') {
            Some((head, msg)) if head.split(',').count() >= 3 => {
                let usec: u64 = head
                    .split(',')
                    .nth(2)
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                out.push_str(&format!(
                    "[{:5}.{:06}] {msg}\n",
                    usec / 1_000_000,
                    usec % 1_000_000
                ));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    Ok((out, records))
}

/// The kernel log: `/dev/kmsg`, or `dmesg` where there is none (only for the real root).
fn kernel_log(f: &Files) -> (Option<String>, Source) {
    let kmsg = f.path("dev/kmsg");
    let shown = f.show("dev/kmsg");
    match read_kmsg(&kmsg) {
        Ok((text, records)) => {
            return (
                Some(text),
                Source {
                    source: "kernel log",
                    path: shown,
                    used: true,
                    detail: format!("{records} records"),
                },
            );
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            let restrict = fs::read_to_string(f.path("proc/sys/kernel/dmesg_restrict"))
                .map(|s| s.trim() == "1")
                .unwrap_or(false);
            let detail = if restrict {
                "needs root (kernel.dmesg_restrict = 1: only root reads the kernel log)".to_string()
            } else {
                "needs root (permission denied)".to_string()
            };
            return (
                None,
                Source {
                    source: "kernel log",
                    path: shown,
                    used: false,
                    detail,
                },
            );
        }
        Err(e) if f.root != Path::new("/") => {
            return (
                None,
                Source {
                    source: "kernel log",
                    path: shown,
                    used: false,
                    detail: why(&e),
                },
            );
        }
        Err(_) => {}
    }
    // No /dev/kmsg here (a container?): the syslog(2) buffer through dmesg.
    match std::process::Command::new("dmesg").output() {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let lines = text.lines().count();
            (
                Some(text),
                Source {
                    source: "kernel log",
                    path: "dmesg".to_string(),
                    used: true,
                    detail: format!("{lines} lines ({shown} absent)"),
                },
            )
        }
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
            let detail = if err.contains("Operation not permitted") {
                format!("needs root ({shown} absent; dmesg: {err})")
            } else {
                format!("{shown} absent; dmesg: {err}")
            };
            (
                None,
                Source {
                    source: "kernel log",
                    path: "dmesg".to_string(),
                    used: false,
                    detail,
                },
            )
        }
        Err(e) => (
            None,
            Source {
                source: "kernel log",
                path: "dmesg".to_string(),
                used: false,
                detail: format!("{shown} absent; dmesg: {e}"),
            },
        ),
    }
}

/// Reads this machine (its files under `root`, `/` normally).
pub fn read(root: &Path) -> Result<Loaded, CliError> {
    let f = Files {
        root: root.to_path_buf(),
    };
    let mut sources = Vec::new();
    let mut assumed = Vec::new();

    // Memory.
    let memmap = f.show("sys/firmware/memmap");
    let iomem = f.show("proc/iomem");
    let ram = match read_memmap(&f)? {
        Ok((ram, n)) => {
            sources.push(Source {
                source: "memory",
                path: memmap,
                used: true,
                detail: format!("{n} entries, {} of RAM", Bytes(ram.total_bytes())),
            });
            ram
        }
        Err(memmap_why) => match read_iomem(&f) {
            Ok(ram) => {
                sources.push(Source {
                    source: "memory",
                    path: memmap,
                    used: false,
                    detail: memmap_why,
                });
                sources.push(Source {
                    source: "memory",
                    path: iomem,
                    used: true,
                    detail: format!(
                        "System RAM: {} in {} ranges",
                        Bytes(ram.total_bytes()),
                        ram.len()
                    ),
                });
                ram
            }
            Err(iomem_why) => {
                return Err(CliError::new(format!(
                    "no memory map of this machine: {memmap}: {memmap_why}; {iomem}: {iomem_why}"
                )));
            }
        },
    };

    // NUMA nodes.
    let srat_path = f.path("sys/firmware/acpi/tables/SRAT");
    let srat_shown = f.show("sys/firmware/acpi/tables/SRAT");
    let srat = match fs::read(&srat_path) {
        Ok(bytes) => {
            let srat =
                Srat::parse(&bytes).map_err(|e| CliError::new(format!("{srat_shown}: {e}")))?;
            let mut nodes: Vec<u32> = srat.memory().iter().filter_map(|m| m.node).collect();
            nodes.sort_unstable();
            nodes.dedup();
            sources.push(Source {
                source: "numa",
                path: srat_shown,
                used: true,
                detail: format!(
                    "{} memory affinity structures, {} nodes",
                    srat.memory().len(),
                    nodes.len()
                ),
            });
            Some(srat)
        }
        Err(e) => {
            let w = why(&e);
            assumed.push(format!(
                "no SRAT ({srat_shown}: {w}): no NUMA information, all memory on node 0"
            ));
            sources.push(Source {
                source: "numa",
                path: srat_shown,
                used: false,
                detail: w,
            });
            None
        }
    };
    let firmware = memory_map(&ram, srat.as_ref())
        .map_err(|e| CliError::new(format!("this machine's memory map: {e}")))?;

    // The kernel log: CMRs and TDX lines.
    let (log, mut log_source) = kernel_log(&f);
    let parsed = match log
        .as_deref()
        .map(|text| parse_kernel_log_with_memory(text, firmware.clone()))
    {
        Some(Ok(p)) => {
            let t = p.tdx_lines();
            log_source.detail.push_str(&if t.is_empty() {
                "; no TDX lines".to_string()
            } else {
                format!("; {}", report::text::tdx_lines(t))
            });
            if p.cmrs_listed() {
                log_source
                    .detail
                    .push_str(&format!("; {} CMR lines", p.cmrs().listed().len()));
            }
            p
        }
        Some(Err(e)) => {
            log_source.used = false;
            log_source.detail.push_str(&format!("; not used: {e}"));
            assumed.push(format!(
                "the kernel log was not used ({e}): no CMRs, KeyIDs or module lines"
            ));
            parse_kernel_log_with_memory("", firmware)
                .map_err(|e| CliError::new(format!("this machine: {e}")))?
        }
        None => {
            assumed.push(format!(
                "no kernel log ({}: {}): no CMR, KeyID or module lines",
                log_source.path, log_source.detail
            ));
            parse_kernel_log_with_memory("", firmware)
                .map_err(|e| CliError::new(format!("this machine: {e}")))?
        }
    };
    sources.push(log_source);
    if !parsed.cmrs_listed() {
        assumed.push(NO_CMRS.to_string());
    }

    // The running module.
    let version_shown = f.show("sys/devices/faux/tdx_host/version");
    let sysfs_version = match fs::read_to_string(f.path("sys/devices/faux/tdx_host/version")) {
        Ok(s) => match s.trim().parse::<ModuleVersion>() {
            Ok(v) => {
                sources.push(Source {
                    source: "module version",
                    path: version_shown,
                    used: true,
                    detail: format!("TDX module {v} running"),
                });
                Some(v)
            }
            Err(e) => {
                sources.push(Source {
                    source: "module version",
                    path: version_shown,
                    used: false,
                    detail: format!("`{}`: {e}", s.trim()),
                });
                None
            }
        },
        Err(e) => {
            let detail = if e.kind() == io::ErrorKind::NotFound {
                "absent (no TDX module running, or a kernel before 7.2)".to_string()
            } else {
                why(&e)
            };
            sources.push(Source {
                source: "module version",
                path: version_shown,
                used: false,
                detail,
            });
            None
        }
    };

    Ok(Loaded {
        parsed,
        name: if f.root == Path::new("/") {
            "this machine".to_string()
        } else {
            format!("this machine (files under {})", f.root.display())
        },
        sources,
        assumed,
        sysfs_version,
    })
}
