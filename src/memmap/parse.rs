//! Kernel-log text to [`MemoryMap`] + [`Cmrs`].
//!
//! Recognised lines (anything may precede the marker: timestamps, `virt/tdx: `, ...):
//!
//! | line | meaning |
//! |---|---|
//! | `BIOS-e820: [mem 0xA-0xB] TYPE` | firmware map, `B` inclusive; `usable` is RAM |
//! | `ACPI: SRAT: Node N PXM P [mem 0xA-0xB]` (optional ` hotplug`) | NUMA node `N` owns `[A, B]` |
//! | `CMR: [0xA, 0xB)` or `CMR[i]: [0xA, 0xB)` | a convertible memory range, `B` exclusive |
//! | `A-B : System RAM` (`/proc/iomem`, hex without `0x`) | RAM, `B` inclusive |
//! | `BIOS enabled: private KeyID range [a, b)` | the private KeyIDs, `b` exclusive ([`TdxLines::keyids`]) |
//! | `Module version: 1.5.24` | the module's identity, mainline 7.1 on ([`TdxLines::module`]) |
//! | `TDX module: attributes 0xA, vendor_id 0xV, major_version M, minor_version m, build_date D, build_num N` | the module's identity, distribution 6.8 kernels |
//! | `TDX module M.m.UU.II, build number N, build date HHHHHHHH` | the module's identity, distribution 6.14 kernels |
//! | `module initialized`, `TDX-Module initialized`, `… initialization failed (N)` | how initialization ended ([`TdxLines::init`]) |
//! | `Enable Dynamic PAMT` | Dynamic PAMT on ([`TdxLines::dynamic_pamt`]) |
//! | `N KB consumed for TDX module extensions` | module-extension memory ([`TdxLines::extension_kb`]) |
//! | `N KB allocated for PAMT` (or `N KBs allocated for PAMT.`) | the kernel's PAMT total ([`TdxLines::pamt_kb`]) |
//!
//! The three generic phrases — `Module version:`, `module initialized`, `module initialization
//! failed (` — count only on a line that says `tdx` before them (`virt/tdx: `, `TDX-Module`), as
//! every kernel prints them: other drivers print such phrases too. Lines whose first non-blank
//! character is `#` are comments. Unrelated lines are ignored; a recognised line that is
//! malformed is an error naming its line, and so is a fact stated twice with different values
//! (two boots in one file).
//!
//! TDX memory is the RAM (e820 `usable` and/or `System RAM`) split at the SRAT's nodes, by the
//! kernel's rules (whole pages, from 1 MiB up, hotplug ranges kept apart, NUMA off when more than
//! 1 MiB of RAM has no node: see [`MapWarning`]) — the same rules, in the same code, as
//! [`firmware::memory_map`](super::firmware::memory_map) applies to firmware tables, so a
//! machine's log and its tables give the same map. With CMR lines but no RAM lines the memory is
//! the CMRs; with no CMR lines the CMRs are the memory itself.
//!
//! ```
//! use tdmr::memmap::parse_kernel_log;
//! let log = "\
//! [    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009efff] usable
//! [    0.000000] BIOS-e820: [mem 0x0000000000100000-0x000000007fffffff] usable
//! [    0.000000] BIOS-e820: [mem 0x0000000100000000-0x000000047fffffff] usable
//! [    0.000000] ACPI: SRAT: Node 0 PXM 0 [mem 0x00000000-0x27fffffff]
//! [    0.000000] ACPI: SRAT: Node 1 PXM 1 [mem 0x280000000-0x47fffffff]
//! ";
//! let parsed = parse_kernel_log(log).unwrap();
//! let nodes: Vec<_> = parsed.memory().regions().iter().map(|r| (r.base, r.node)).collect();
//! assert_eq!(nodes, [(0x100000, 0), (0x100000000, 0), (0x280000000, 1)]);
//! assert!(!parsed.cmrs_listed());
//! ```

use alloc::vec::Vec;
use core::fmt;

use super::build::{Affinity, BuildError, tdx_memory};
use super::firmware::FirmwareMemory;
use super::tdx_lines::{InitOutcome, ModuleIdentity, ModuleLineForm, TdxLines};
use super::{Cmr, CmrError, Cmrs, MapWarning, MemoryMap, MemoryMapError, NodeId};
use crate::addr::PhysRange;

/// A parsed kernel log: TDX memory and CMRs, and what the kernel printed about TDX.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedLog {
    memory: MemoryMap,
    cmrs: Cmrs,
    cmrs_listed: bool,
    warnings: Vec<MapWarning>,
    tdx: TdxLines,
}

impl ParsedLog {
    /// TDX memory.
    pub fn memory(&self) -> &MemoryMap {
        &self.memory
    }

    /// The CMRs (from the log, or equal to the memory when the log lists none).
    pub fn cmrs(&self) -> &Cmrs {
        &self.cmrs
    }

    /// Whether the log listed CMRs (rather than the memory standing in for them).
    pub fn cmrs_listed(&self) -> bool {
        self.cmrs_listed
    }

    /// What the log says that the kernel boots with but a reader should know (NUMA turned
    /// off, RAM without a node), in the order found.
    ///
    /// ```
    /// use tdmr::memmap::{MapWarning, parse_kernel_log};
    /// let log = "\
    /// BIOS-e820: [mem 0x0000000000100000-0x000000007fffffff] usable
    /// ACPI: SRAT: Node 0 PXM 0 [mem 0x00000000-0x3fffffff]
    /// ";
    /// let parsed = parse_kernel_log(log)?;
    /// assert!(matches!(parsed.warnings(), [MapWarning::NumaOff { uncovered: 0x4000_0000, .. }]));
    /// assert!(parsed.memory().regions().iter().all(|r| r.node == 0));
    /// # Ok::<(), tdmr::memmap::ParseError>(())
    /// ```
    pub fn warnings(&self) -> &[MapWarning] {
        &self.warnings
    }

    /// What the kernel printed about TDX itself: the KeyID range, the module's identity, how
    /// initialization ended, Dynamic PAMT, extension memory and its PAMT total.
    pub fn tdx_lines(&self) -> &TdxLines {
        &self.tdx
    }

    /// The memory map and CMRs.
    pub fn into_parts(self) -> (MemoryMap, Cmrs) {
        (self.memory, self.cmrs)
    }
}

/// What is wrong with the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// A recognised line does not have the expected shape.
    Malformed {
        /// Which kind of line (`BIOS-e820`, `SRAT`, `CMR`, `/proc/iomem`).
        line_kind: &'static str,
        /// What was expected.
        expected: &'static str,
    },
    /// A number does not parse or does not fit in 64 bits.
    BadNumber {
        /// Which kind of line.
        line_kind: &'static str,
    },
    /// The range's end lies before its start, or its exclusive end overflows 64 bits.
    BadRange {
        /// Which kind of line.
        line_kind: &'static str,
        /// Start as written.
        start: u64,
        /// End as written.
        end: u64,
    },
    /// Two SRAT entries of different nodes overlap.
    SratOverlap {
        /// The range of this line.
        range: PhysRange,
        /// The node of an earlier entry that overlaps it.
        other_node: NodeId,
    },
    /// The CMR list is not valid (names the CMR on this line).
    Cmr(CmrError),
    /// The resulting memory map is not valid.
    Memory(MemoryMapError),
    /// Neither RAM lines (e820 `usable`, `System RAM`) nor CMR lines were found.
    NoMemory,
    /// A private KeyID range `[first, end)` that is empty, includes KeyID 0 or goes past
    /// 65536.
    BadKeyIdRange {
        /// First KeyID as written.
        first: u64,
        /// End as written.
        end: u64,
    },
    /// The line states a fact an earlier line stated otherwise (two boots in one file?).
    Contradiction {
        /// Which kind of line.
        line_kind: &'static str,
        /// The 1-based line that said otherwise.
        earlier: usize,
    },
}

/// A parse failure: the 1-based line it concerns (0 when it concerns the whole input).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number, or 0 for the input as a whole.
    pub line: usize,
    /// What is wrong.
    pub kind: ParseErrorKind,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: ", self.line)?;
        }
        match self.kind {
            ParseErrorKind::Malformed {
                line_kind,
                expected,
            } => write!(f, "malformed {line_kind} line: expected {expected}"),
            ParseErrorKind::BadNumber { line_kind } => {
                write!(f, "malformed {line_kind} line: bad hexadecimal number")
            }
            ParseErrorKind::BadRange {
                line_kind,
                start,
                end,
            } => write!(
                f,
                "{line_kind} range {start:#x}-{end:#x} is inverted or overflows"
            ),
            ParseErrorKind::SratOverlap { range, other_node } => write!(
                f,
                "SRAT range {range} overlaps a range of node {other_node}"
            ),
            ParseErrorKind::Cmr(e) => write!(f, "{e}"),
            ParseErrorKind::Memory(e) => write!(f, "{e}"),
            ParseErrorKind::NoMemory => {
                write!(
                    f,
                    "no RAM lines (BIOS-e820 usable, System RAM) and no CMR lines found"
                )
            }
            ParseErrorKind::BadKeyIdRange { first, end } => write!(
                f,
                "private KeyID range [{first}, {end}) is empty, holds KeyID 0 or goes past 65536"
            ),
            ParseErrorKind::Contradiction { line_kind, earlier } => write!(
                f,
                "this {line_kind} line contradicts line {earlier} (two boots in one file?)"
            ),
        }
    }
}

impl core::error::Error for ParseError {}

const E820: &str = "BIOS-e820";
const SRAT: &str = "SRAT";
const CMR: &str = "CMR";
const IOMEM: &str = "/proc/iomem";
const KEYIDS: &str = "private KeyID range";
const VERSION: &str = "module version";
const ATTRIBUTES: &str = "TDX module attributes";
const BUILD: &str = "TDX module build";
const INITIALIZED: &str = "module initialized";
const INIT_FAILED: &str = "module initialization failed";
const DPAMT: &str = "Enable Dynamic PAMT";
const EXTENSIONS: &str = "module extensions";
const PAMT: &str = "PAMT total";

struct Line<'a> {
    no: usize,
    kind: &'static str,
    rest: &'a str,
}

impl<'a> Line<'a> {
    fn err(&self, kind: ParseErrorKind) -> ParseError {
        ParseError {
            line: self.no,
            kind,
        }
    }

    fn malformed(&self, expected: &'static str) -> ParseError {
        self.err(ParseErrorKind::Malformed {
            line_kind: self.kind,
            expected,
        })
    }

    fn eat(&mut self, prefix: &'static str) -> Result<(), ParseError> {
        match self.rest.strip_prefix(prefix) {
            Some(r) => {
                self.rest = r;
                Ok(())
            }
            None => Err(self.malformed(prefix)),
        }
    }

    /// A hexadecimal number (with `0x` when `prefixed`), up to the first non-hex-digit.
    fn hex(&mut self, prefixed: bool) -> Result<u64, ParseError> {
        if prefixed {
            self.rest = self
                .rest
                .strip_prefix("0x")
                .or_else(|| self.rest.strip_prefix("0X"))
                .ok_or_else(|| self.malformed("a 0x-prefixed hexadecimal number"))?;
        }
        let n = self
            .rest
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(self.rest.len());
        let (digits, rest) = self.rest.split_at(n);
        let v = u64::from_str_radix(digits, 16).map_err(|_| {
            self.err(ParseErrorKind::BadNumber {
                line_kind: self.kind,
            })
        })?;
        self.rest = rest;
        Ok(v)
    }

    fn decimal(&mut self) -> Result<u64, ParseError> {
        let n = self
            .rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(self.rest.len());
        let (digits, rest) = self.rest.split_at(n);
        let v = digits
            .parse::<u64>()
            .map_err(|_| self.malformed("a decimal number"))?;
        self.rest = rest;
        Ok(v)
    }

    /// A decimal number below 2^16.
    fn decimal_u16(&mut self) -> Result<u16, ParseError> {
        let v = self.decimal()?;
        u16::try_from(v).map_err(|_| self.malformed("a number below 65536"))
    }

    /// A decimal number below 2^32.
    fn decimal_u32(&mut self) -> Result<u32, ParseError> {
        let v = self.decimal()?;
        u32::try_from(v).map_err(|_| self.malformed("a number below 2^32"))
    }

    /// A 0x-prefixed hexadecimal number below 2^32.
    fn hex_u32(&mut self) -> Result<u32, ParseError> {
        let v = self.hex(true)?;
        u32::try_from(v).map_err(|_| self.malformed("a 32-bit number"))
    }

    /// Nothing left but blanks (and a full stop, as some kernels end their lines).
    fn end(&self, expected: &'static str) -> Result<(), ParseError> {
        match self.rest.trim() {
            "" | "." => Ok(()),
            _ => Err(self.malformed(expected)),
        }
    }

    /// `[start, end]` inclusive to a half-open range.
    fn inclusive(&self, start: u64, end: u64) -> Result<PhysRange, ParseError> {
        end.checked_add(1)
            .and_then(|e| PhysRange::new(start, e).ok())
            .ok_or_else(|| {
                self.err(ParseErrorKind::BadRange {
                    line_kind: self.kind,
                    start,
                    end,
                })
            })
    }

    /// `0xA-0xB]` after `[mem `.
    fn mem_range(&mut self) -> Result<PhysRange, ParseError> {
        self.eat("[mem ")?;
        let start = self.hex(true)?;
        self.eat("-")?;
        let end = self.hex(true)?;
        self.eat("]")?;
        self.inclusive(start, end)
    }
}

/// What the recognised lines say: RAM, SRAT affinity (with its line), CMRs (with their lines),
/// and the TDX lines.
struct Collected {
    ram: Vec<PhysRange>,
    srat: Vec<Affinity>,
    cmrs: Vec<(Cmr, usize)>,
    tdx: TdxFacts,
}

/// The TDX facts with the line that stated each, so that a contradiction names both.
#[derive(Default)]
struct TdxFacts {
    module: Option<(ModuleIdentity, usize)>,
    keyids: Option<((u32, u32), usize)>,
    init: Option<(InitOutcome, usize)>,
    dynamic_pamt: bool,
    extension_kb: Option<(u64, usize)>,
    pamt_kb: Option<(u64, usize)>,
}

impl TdxFacts {
    fn lines(&self) -> TdxLines {
        TdxLines {
            module: self.module.map(|(m, _)| m),
            keyids: self.keyids.map(|(k, _)| k),
            init: self.init.map(|(i, _)| i),
            dynamic_pamt: self.dynamic_pamt,
            extension_kb: self.extension_kb.map(|(n, _)| n),
            pamt_kb: self.pamt_kb.map(|(n, _)| n),
        }
    }
}

/// Records `value` from `line` in `slot`; a different value already there is a contradiction.
fn state<T: PartialEq>(
    slot: &mut Option<(T, usize)>,
    value: T,
    line: &Line<'_>,
) -> Result<(), ParseError> {
    match slot {
        Some((old, earlier)) if *old != value => Err(line.err(ParseErrorKind::Contradiction {
            line_kind: line.kind,
            earlier: *earlier,
        })),
        Some(_) => Ok(()),
        None => {
            *slot = Some((value, line.no));
            Ok(())
        }
    }
}

/// Whether `head` (the text before a generic phrase) says `tdx`, in any case.
fn mentions_tdx(head: &str) -> bool {
    head.as_bytes()
        .windows(3)
        .any(|w| w.eq_ignore_ascii_case(b"tdx"))
}

/// The TDX lines: the text after (or, for the `N KB …` lines, before) their marker.
fn classify_tdx(raw: &str, no: usize) -> Option<Line<'_>> {
    let line = |kind, rest| Some(Line { no, kind, rest });
    if let Some(i) = raw.find("BIOS enabled: private KeyID range ") {
        return line(
            KEYIDS,
            &raw[i + "BIOS enabled: private KeyID range ".len()..],
        );
    }
    if let Some(i) = raw.find("TDX module: attributes ") {
        return line(ATTRIBUTES, &raw[i + "TDX module: attributes ".len()..]);
    }
    if let Some(i) = raw.find("TDX module ") {
        let rest = &raw[i + "TDX module ".len()..];
        if rest.starts_with(|c: char| c.is_ascii_digit()) {
            return line(BUILD, rest);
        }
    }
    if let Some(i) = raw.find("odule version: ")
        && mentions_tdx(&raw[..i])
    {
        return line(VERSION, &raw[i + "odule version: ".len()..]);
    }
    if let Some(i) = raw.find("odule initialized")
        && mentions_tdx(&raw[..i])
    {
        return line(INITIALIZED, "");
    }
    if let Some(i) = raw.find("odule initialization failed (")
        && mentions_tdx(&raw[..i])
    {
        return line(
            INIT_FAILED,
            &raw[i + "odule initialization failed (".len()..],
        );
    }
    if raw.contains("Enable Dynamic PAMT") {
        return line(DPAMT, "");
    }
    for (marker, kind) in [
        (" KB consumed for TDX module extensions", EXTENSIONS),
        (" KB allocated for PAMT", PAMT),
        (" KBs allocated for PAMT", PAMT),
    ] {
        if let Some(i) = raw.find(marker) {
            // The number is before the marker; `rest` is that number and what follows the
            // marker, so that `tdx_line` reads both.
            let head = &raw[..i];
            let digits = head.len() - head.trim_end_matches(|c: char| c.is_ascii_digit()).len();
            return Some(Line {
                no,
                kind,
                rest: &raw[i - digits..],
            });
        }
    }
    None
}

/// `1.5.24`: three decimal numbers below 2^16, dot-separated.
fn dotted3(line: &mut Line<'_>) -> Result<(u16, u16, u16), ParseError> {
    let major = line.decimal_u16()?;
    line.eat(".")?;
    let minor = line.decimal_u16()?;
    line.eat(".")?;
    let update = line.decimal_u16()?;
    Ok((major, minor, update))
}

fn tdx_line(line: &mut Line<'_>, facts: &mut TdxFacts) -> Result<(), ParseError> {
    let identity = |major, minor, form| ModuleIdentity {
        major,
        minor,
        update: None,
        internal: None,
        build_num: None,
        build_date: None,
        attributes: None,
        vendor_id: None,
        form,
    };
    match line.kind {
        KEYIDS => {
            line.eat("[")?;
            let first = line.decimal()?;
            line.eat(", ")?;
            let end = line.decimal()?;
            line.eat(")")?;
            line.end("nothing after the range")?;
            if first == 0 || end <= first || end > 1 << 16 {
                return Err(line.err(ParseErrorKind::BadKeyIdRange { first, end }));
            }
            state(&mut facts.keyids, (first as u32, end as u32), line)
        }
        VERSION => {
            let (major, minor, update) = dotted3(line)?;
            line.end("nothing after MAJOR.MINOR.UPDATE")?;
            let m = ModuleIdentity {
                update: Some(update),
                ..identity(major, minor, ModuleLineForm::Version)
            };
            state(&mut facts.module, m, line)
        }
        ATTRIBUTES => {
            let attributes = line.hex_u32()?;
            line.eat(", vendor_id ")?;
            let vendor_id = line.hex_u32()?;
            line.eat(", major_version ")?;
            let major = line.decimal_u16()?;
            line.eat(", minor_version ")?;
            let minor = line.decimal_u16()?;
            line.eat(", build_date ")?;
            let date = line.decimal_u32()?;
            line.eat(", build_num ")?;
            let build = line.decimal_u16()?;
            line.end("nothing after build_num")?;
            let m = ModuleIdentity {
                build_num: Some(build),
                build_date: Some(date),
                attributes: Some(attributes),
                vendor_id: Some(vendor_id),
                ..identity(major, minor, ModuleLineForm::Attributes)
            };
            state(&mut facts.module, m, line)
        }
        BUILD => {
            let (major, minor, update) = dotted3(line)?;
            line.eat(".")?;
            let internal = line.decimal_u16()?;
            line.eat(", build number ")?;
            let build = line.decimal_u16()?;
            line.eat(", build date ")?;
            let date = line.hex(false)?;
            let date = u32::try_from(date).map_err(|_| line.malformed("an 8-digit build date"))?;
            line.end("nothing after the build date")?;
            let m = ModuleIdentity {
                update: Some(update),
                internal: Some(internal),
                build_num: Some(build),
                build_date: Some(date),
                ..identity(major, minor, ModuleLineForm::Build)
            };
            state(&mut facts.module, m, line)
        }
        INITIALIZED => state(&mut facts.init, InitOutcome::Initialized, line),
        INIT_FAILED => {
            let negative = line.rest.starts_with('-');
            if negative {
                line.rest = &line.rest[1..];
            }
            let n = line.decimal()?;
            line.eat(")")?;
            let code = i32::try_from(n)
                .ok()
                .map(|n| if negative { -n } else { n })
                .ok_or_else(|| line.malformed("an error number that fits 32 bits"))?;
            state(&mut facts.init, InitOutcome::Failed { code }, line)
        }
        DPAMT => {
            facts.dynamic_pamt = true;
            Ok(())
        }
        _ => {
            // EXTENSIONS, PAMT: `N` then the marker.
            let n = line.decimal()?;
            let (slot, marker) = if line.kind == PAMT {
                let marker = if line.rest.starts_with(" KBs") {
                    " KBs allocated for PAMT"
                } else {
                    " KB allocated for PAMT"
                };
                (&mut facts.pamt_kb, marker)
            } else {
                (
                    &mut facts.extension_kb,
                    " KB consumed for TDX module extensions",
                )
            };
            line.eat(marker)?;
            line.end("nothing after the phrase")?;
            state(slot, n, line)
        }
    }
}

fn classify(raw: &str, no: usize) -> Option<Line<'_>> {
    if let Some(i) = raw.find("BIOS-e820:") {
        return Some(Line {
            no,
            kind: E820,
            rest: raw[i + "BIOS-e820:".len()..].trim(),
        });
    }
    if let Some(i) = raw.find("SRAT: Node ") {
        return Some(Line {
            no,
            kind: SRAT,
            rest: raw[i + "SRAT: Node ".len()..].trim(),
        });
    }
    if let Some(i) = raw.find("CMR: [") {
        return Some(Line {
            no,
            kind: CMR,
            rest: raw[i + "CMR: ".len()..].trim(),
        });
    }
    if let Some(i) = raw.find("CMR[") {
        let after = &raw[i + "CMR[".len()..];
        let digits = after
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after.len());
        if digits > 0 && after[digits..].starts_with("]:") {
            return Some(Line {
                no,
                kind: CMR,
                rest: after[digits + 2..].trim(),
            });
        }
    }
    let trimmed = raw.trim_end();
    if let Some(head) = trimmed.strip_suffix(" : System RAM") {
        let token = head.rsplit(char::is_whitespace).next().unwrap_or(head);
        return Some(Line {
            no,
            kind: IOMEM,
            rest: token,
        });
    }
    None
}

fn collect(text: &str) -> Result<Collected, ParseError> {
    let mut c = Collected {
        ram: Vec::new(),
        srat: Vec::new(),
        cmrs: Vec::new(),
        tdx: TdxFacts::default(),
    };
    for (i, raw) in text.lines().enumerate() {
        if raw.trim_start().starts_with('#') {
            continue;
        }
        let Some(mut line) = classify(raw, i + 1) else {
            if let Some(mut line) = classify_tdx(raw, i + 1) {
                tdx_line(&mut line, &mut c.tdx)?;
            }
            continue;
        };
        match line.kind {
            E820 => {
                let range = line.mem_range()?;
                let ty = line.rest.trim();
                if ty.is_empty() {
                    return Err(line.malformed("a memory type after the range"));
                }
                if ty == "usable" {
                    c.ram.push(range);
                }
            }
            SRAT => {
                let node = line.decimal()?;
                let node =
                    NodeId::try_from(node).map_err(|_| line.malformed("a node id below 2^32"))?;
                line.eat(" PXM ")?;
                line.decimal()?;
                line.rest = line.rest.trim_start();
                let range = line.mem_range()?;
                let tail = line.rest.trim();
                let hotplug = match tail {
                    "" | "non-volatile" => false,
                    "hotplug" | "hotplug non-volatile" => true,
                    _ => return Err(line.malformed("nothing or `hotplug` after the range")),
                };
                c.srat.push(Affinity {
                    range,
                    node,
                    hotplug,
                    source: line.no,
                });
            }
            CMR => {
                line.eat("[")?;
                let start = line.hex(true)?;
                line.eat(", ")?;
                let end = line.hex(true)?;
                line.eat(")")?;
                if end <= start {
                    return Err(line.err(ParseErrorKind::BadRange {
                        line_kind: CMR,
                        start,
                        end,
                    }));
                }
                c.cmrs.push((Cmr::new(start, end - start), line.no));
            }
            _ => {
                let start = line.hex(false)?;
                line.eat("-")?;
                let end = line.hex(false)?;
                if !line.rest.is_empty() {
                    return Err(line.malformed("`START-END : System RAM`"));
                }
                c.ram.push(line.inclusive(start, end)?);
            }
        }
    }
    Ok(c)
}

/// Parses kernel-log text into TDX memory and CMRs. Cost is linear in the text.
pub fn parse_kernel_log(text: &str) -> Result<ParsedLog, ParseError> {
    let c = collect(text)?;
    let whole = |kind| ParseError { line: 0, kind };

    let listed = listed_cmrs(&c)?;

    let no_lines = c.ram.is_empty() && listed.is_none();
    let ram: Vec<PhysRange> = match &listed {
        Some(cmrs) if c.ram.is_empty() => cmrs.merged().to_vec(),
        _ => c.ram,
    };
    let (memory, warnings) = tdx_memory(ram, c.srat).map_err(|e| match e {
        BuildError::Overlap {
            source,
            range,
            other_node,
        } => ParseError {
            line: source,
            kind: ParseErrorKind::SratOverlap { range, other_node },
        },
        // The SRAT is checked first, as from firmware tables.
        BuildError::Memory(MemoryMapError::NoMemory) if no_lines => whole(ParseErrorKind::NoMemory),
        BuildError::Memory(e) => whole(ParseErrorKind::Memory(e)),
    })?;
    let (cmrs, cmrs_listed) = match listed {
        Some(c) => (c, true),
        None => (Cmrs::covering(&memory), false),
    };
    Ok(ParsedLog {
        memory,
        cmrs,
        cmrs_listed,
        warnings,
        tdx: c.tdx.lines(),
    })
}

/// The CMR list of the recognised CMR lines (`None` when there are none), an error naming the
/// CMR's line when the list is invalid.
fn listed_cmrs(c: &Collected) -> Result<Option<Cmrs>, ParseError> {
    let cmr_list: Vec<Cmr> = c.cmrs.iter().map(|(cmr, _)| *cmr).collect();
    if cmr_list.is_empty() {
        return Ok(None);
    }
    Cmrs::new(cmr_list).map(Some).map_err(|e| {
        let line = match e {
            CmrError::Range(
                MemoryMapError::Empty { index, .. }
                | MemoryMapError::Misaligned { index, .. }
                | MemoryMapError::EndOverflow { index, .. }
                | MemoryMapError::BeyondMaxPa { index, .. }
                | MemoryMapError::Unsorted { index, .. }
                | MemoryMapError::Overlap { index, .. },
            ) => c.cmrs[index].1,
            _ => c.cmrs.last().map_or(0, |(_, no)| *no),
        };
        ParseError {
            line,
            kind: ParseErrorKind::Cmr(e),
        }
    })
}

/// A kernel log read over memory that came from elsewhere — the machine's firmware tables
/// (`/sys/firmware/memmap` and the SRAT, through [`firmware::memory_map`](super::firmware::memory_map)):
/// the log's CMR and TDX lines are read (every recognised line is still checked), its RAM and
/// SRAT lines are not used. With no CMR lines the CMRs are the memory itself. Cost is linear
/// in the text.
///
/// ```
/// use tdmr::memmap::firmware::{E820Entry, E820_USABLE, memory_map, ram_from_e820};
/// use tdmr::memmap::parse_kernel_log_with_memory;
/// let ram = ram_from_e820(&[E820Entry::new(0x10_0000, 0x7ff0_0000, E820_USABLE)])?;
/// let log = "[ 2.6] virt/tdx: BIOS enabled: private KeyID range [32, 64)\n";
/// let parsed = parse_kernel_log_with_memory(log, memory_map(&ram, None)?)?;
/// assert!(!parsed.cmrs_listed());
/// assert_eq!(parsed.tdx_lines().keyids(), Some(32..64));
/// assert_eq!(parsed.memory().total_bytes(), 0x7ff0_0000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn parse_kernel_log_with_memory(
    text: &str,
    memory: FirmwareMemory,
) -> Result<ParsedLog, ParseError> {
    let c = collect(text)?;
    let listed = listed_cmrs(&c)?;
    let warnings = memory.warnings().to_vec();
    let memory = memory.into_memory();
    let (cmrs, cmrs_listed) = match listed {
        Some(c) => (c, true),
        None => (Cmrs::covering(&memory), false),
    };
    Ok(ParsedLog {
        memory,
        cmrs,
        cmrs_listed,
        warnings,
        tdx: c.tdx.lines(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> (usize, ParseErrorKind) {
        let e = parse_kernel_log(text).unwrap_err();
        (e.line, e.kind)
    }

    #[test]
    fn cmr_only_input_is_memory() {
        let p = parse_kernel_log(
            "junk\nvirt/tdx: CMR: [0x100000, 0x77800000)\nCMR[1]: [0x100000000, 0x180000000)\n",
        )
        .unwrap();
        assert!(p.cmrs_listed());
        assert_eq!(p.memory().len(), 2);
        assert_eq!(p.memory().regions()[1].base, 0x1_0000_0000);
        assert_eq!(p.cmrs().listed().len(), 2);
    }

    #[test]
    fn iomem_and_e820_both_count_as_ram() {
        let p = parse_kernel_log(
            "00100000-3fffffff : System RAM\n  01000000-01ffffff : Kernel code\n\
             BIOS-e820: [mem 0x0000000040000000-0x000000007fffffff] usable\n\
             BIOS-e820: [mem 0x0000000080000000-0x00000000800fffff] reserved\n",
        )
        .unwrap();
        assert_eq!(p.memory().len(), 1);
        assert_eq!(p.memory().regions()[0].size, 0x8000_0000 - 0x10_0000);
    }

    #[test]
    fn partial_pages_and_low_megabyte_are_dropped() {
        let p = parse_kernel_log(
            "BIOS-e820: [mem 0x0000000000000000-0x00000000000987ff] usable\n\
             BIOS-e820: [mem 0x00000000000f0800-0x0000000000200fff] usable\n",
        )
        .unwrap();
        assert_eq!(p.memory().regions()[0].base, 0x10_0000);
        assert_eq!(p.memory().regions()[0].end(), 0x20_1000);
    }

    #[test]
    fn touching_partial_pages_merge_before_they_are_trimmed() {
        // memblock merges the two ranges first: the page across their boundary is whole.
        let p = parse_kernel_log(
            "BIOS-e820: [mem 0x0000000000100000-0x00000000002007ff] usable\n\
             BIOS-e820: [mem 0x0000000000200800-0x0000000000300fff] usable\n",
        )
        .unwrap();
        let r = p.memory().regions();
        assert_eq!((r.len(), r[0].base, r[0].end()), (1, 0x10_0000, 0x30_1000));
    }

    #[test]
    fn malformed_recognised_lines_name_their_line() {
        assert_eq!(kind("ok\nBIOS-e820: [mem 0x1000-0xzz] usable\n").0, 2);
        assert!(matches!(
            kind("BIOS-e820: [mem 0x1000-0x1fff]\n"),
            (
                1,
                ParseErrorKind::Malformed {
                    line_kind: "BIOS-e820",
                    ..
                }
            )
        ));
        assert!(matches!(
            kind("x\ny\nvirt/tdx: CMR: [0x2000, 0x1000)\n"),
            (
                3,
                ParseErrorKind::BadRange {
                    line_kind: "CMR",
                    ..
                }
            )
        ));
        assert!(matches!(
            kind("ACPI: SRAT: Node x PXM 0 [mem 0x0-0xfff]\n"),
            (
                1,
                ParseErrorKind::Malformed {
                    line_kind: "SRAT",
                    ..
                }
            )
        ));
        assert!(matches!(
            kind("0010000g-3fffffff : System RAM\n"),
            (
                1,
                ParseErrorKind::Malformed { .. } | ParseErrorKind::BadNumber { .. }
            )
        ));
        assert_eq!(kind("nothing here\n"), (0, ParseErrorKind::NoMemory));
    }

    #[test]
    fn cmr_errors_point_at_the_cmr_line() {
        let (line, k) = kind("CMR: [0x100000, 0x200000)\n\nCMR: [0x180000, 0x300000)\n");
        assert_eq!(line, 3);
        assert!(matches!(
            k,
            ParseErrorKind::Cmr(CmrError::Range(MemoryMapError::Overlap { index: 1, .. }))
        ));
    }

    #[test]
    fn srat_splits_ram_and_overlaps_across_nodes_fail() {
        let p = parse_kernel_log(
            "BIOS-e820: [mem 0x100000-0x3fffffff] usable\n\
             ACPI: SRAT: Node 0 PXM 0 [mem 0x0-0x1fffffff]\n\
             ACPI: SRAT: Node 1 PXM 1 [mem 0x20000000-0x3fffffff] hotplug\n",
        )
        .unwrap();
        let v: Vec<_> = p
            .memory()
            .regions()
            .iter()
            .map(|r| (r.base, r.node))
            .collect();
        assert_eq!(v, [(0x10_0000, 0), (0x2000_0000, 1)]);
        assert!(p.warnings().is_empty());
        assert!(matches!(
            kind(
                "ACPI: SRAT: Node 0 PXM 0 [mem 0x0-0x1fffffff]\nACPI: SRAT: Node 1 PXM 1 [mem 0x1000000-0x3fffffff]\nCMR: [0x100000, 0x200000)\n"
            ),
            (2, ParseErrorKind::SratOverlap { other_node: 0, .. })
        ));
    }

    const G: u64 = 1 << 30;

    fn regions(p: &ParsedLog) -> Vec<(u64, u64, NodeId)> {
        p.memory()
            .regions()
            .iter()
            .map(|r| (r.base, r.end(), r.node))
            .collect()
    }

    #[test]
    fn hotplug_ranges_stay_regions_of_their_own() {
        // One usable e820 block over node 0's plain and hotplug SRAT ranges: two regions.
        let p = parse_kernel_log(
            "BIOS-e820: [mem 0x0000000000100000-0x000000007fffffff] usable\n\
             BIOS-e820: [mem 0x0000000100000000-0x000000027fffffff] usable\n\
             ACPI: SRAT: Node 0 PXM 0 [mem 0x00000000-0x17fffffff]\n\
             ACPI: SRAT: Node 0 PXM 0 [mem 0x180000000-0x27fffffff] hotplug\n",
        )
        .unwrap();
        assert_eq!(
            regions(&p),
            [(0x10_0000, 2 * G, 0), (4 * G, 6 * G, 0), (6 * G, 10 * G, 0)]
        );
        // Two hotplug ranges of one node that touch are one region; plain ones too.
        let p = parse_kernel_log(
            "BIOS-e820: [mem 0x0000000100000000-0x000000027fffffff] usable\n\
             ACPI: SRAT: Node 0 PXM 0 [mem 0x100000000-0x17fffffff] hotplug\n\
             ACPI: SRAT: Node 0 PXM 0 [mem 0x180000000-0x27fffffff] hotplug\n",
        )
        .unwrap();
        assert_eq!(regions(&p), [(4 * G, 10 * G, 0)]);
        // Overlapping ranges of one node with different flags are refused.
        assert!(matches!(
            kind(
                "BIOS-e820: [mem 0x0000000100000000-0x000000027fffffff] usable\n\
                 ACPI: SRAT: Node 0 PXM 0 [mem 0x100000000-0x1ffffffff]\n\
                 ACPI: SRAT: Node 0 PXM 0 [mem 0x180000000-0x27fffffff] hotplug\n"
            ),
            (3, ParseErrorKind::SratOverlap { other_node: 0, .. })
        ));
    }

    #[test]
    fn ram_outside_every_node_turns_numa_off() {
        // 3 GiB of RAM in no node: NUMA off, everything on node 0, hotplug flags dropped.
        let p = parse_kernel_log(
            "BIOS-e820: [mem 0x0000000000100000-0x000000007fffffff] usable\n\
             BIOS-e820: [mem 0x0000000100000000-0x000000027fffffff] usable\n\
             ACPI: SRAT: Node 0 PXM 0 [mem 0x00000000-0x7fffffff]\n\
             ACPI: SRAT: Node 1 PXM 1 [mem 0x100000000-0x1bfffffff] hotplug\n",
        )
        .unwrap();
        assert_eq!(regions(&p), [(0x10_0000, 2 * G, 0), (4 * G, 10 * G, 0)]);
        assert_eq!(
            p.warnings(),
            [MapWarning::NumaOff {
                uncovered: 3 * G,
                first: PhysRange::new(7 * G, 10 * G).unwrap()
            }]
        );
        assert!(alloc::format!("{}", p.warnings()[0]).contains("NUMA off"));
    }

    #[test]
    fn up_to_a_mebibyte_outside_the_nodes_keeps_numa() {
        // Exactly 1 MiB in no node: NUMA stays on; the orphan pages are a node-0 region of
        // their own, next to node 1.
        let p = parse_kernel_log(
            "BIOS-e820: [mem 0x0000000000000000-0x000000000009ffff] usable\n\
             BIOS-e820: [mem 0x0000000000100000-0x000000007fffffff] usable\n\
             ACPI: SRAT: Node 0 PXM 0 [mem 0x00000000-0x3fffffff]\n\
             ACPI: SRAT: Node 1 PXM 1 [mem 0x40100000-0x7fffffff]\n",
        )
        .unwrap();
        assert_eq!(
            regions(&p),
            [
                (0x10_0000, G, 0),
                (G, G + 0x10_0000, 0),
                (G + 0x10_0000, 2 * G, 1)
            ]
        );
        assert_eq!(
            p.warnings(),
            [MapWarning::RamWithoutNode {
                uncovered: 0x10_0000,
                first: PhysRange::new(G, G + 0x10_0000).unwrap()
            }]
        );
        // One page more and NUMA is off.
        let p = parse_kernel_log(
            "BIOS-e820: [mem 0x0000000000100000-0x000000007fffffff] usable\n\
             ACPI: SRAT: Node 0 PXM 0 [mem 0x00000000-0x3fffffff]\n\
             ACPI: SRAT: Node 1 PXM 1 [mem 0x40101000-0x7fffffff]\n",
        )
        .unwrap();
        assert!(matches!(
            p.warnings(),
            [MapWarning::NumaOff {
                uncovered: 0x10_1000,
                ..
            }]
        ));
        assert!(p.memory().regions().iter().all(|r| r.node == 0));
    }

    /// The TDX lines of `line` under a CMR line (so the log has memory).
    fn tdx_of(line: &str) -> Result<TdxLines, ParseError> {
        parse_kernel_log(&alloc::format!(
            "virt/tdx: CMR: [0x100000, 0x40000000)\n{line}\n"
        ))
        .map(|p| *p.tdx_lines())
    }

    const PREFIXES: [&str; 4] = [
        "",
        "[   10.456524] ",
        "virt/tdx: ",
        "<6>[    2.605559] virt/tdx: ",
    ];

    #[test]
    fn every_tdx_line_is_read_under_any_prefix() {
        let attrs = ModuleIdentity {
            major: 1,
            minor: 5,
            update: None,
            internal: None,
            build_num: Some(698),
            build_date: Some(20240129),
            attributes: Some(0),
            vendor_id: Some(0x8086),
            form: ModuleLineForm::Attributes,
        };
        let build = ModuleIdentity {
            major: 2,
            minor: 0,
            update: Some(8),
            internal: Some(0),
            build_num: Some(882),
            build_date: Some(20250325), // 0x0134fed5
            attributes: None,
            vendor_id: None,
            form: ModuleLineForm::Build,
        };
        let version = ModuleIdentity {
            major: 1,
            minor: 5,
            update: Some(24),
            internal: None,
            build_num: None,
            build_date: None,
            attributes: None,
            vendor_id: None,
            form: ModuleLineForm::Version,
        };
        let cases: [(&str, TdxLines); 14] = [
            (
                "BIOS enabled: private KeyID range [32, 64)",
                TdxLines {
                    keyids: Some((32, 64)),
                    ..TdxLines::default()
                },
            ),
            (
                "BIOS enabled: private KeyID range [1, 65536)",
                TdxLines {
                    keyids: Some((1, 65536)),
                    ..TdxLines::default()
                },
            ),
            (
                "TDX module: attributes 0x0, vendor_id 0x8086, major_version 1, minor_version 5, build_date 20240129, build_num 698",
                TdxLines {
                    module: Some(attrs),
                    ..TdxLines::default()
                },
            ),
            (
                "TDX module 2.0.08.00, build number 882, build date 0134fed5",
                TdxLines {
                    module: Some(build),
                    ..TdxLines::default()
                },
            ),
            (
                "Module version: 1.5.24",
                TdxLines {
                    module: Some(version),
                    ..TdxLines::default()
                },
            ),
            (
                "module initialized",
                TdxLines {
                    init: Some(InitOutcome::Initialized),
                    ..TdxLines::default()
                },
            ),
            (
                "module initialized.",
                TdxLines {
                    init: Some(InitOutcome::Initialized),
                    ..TdxLines::default()
                },
            ),
            (
                "TDX-Module initialized",
                TdxLines {
                    init: Some(InitOutcome::Initialized),
                    ..TdxLines::default()
                },
            ),
            (
                "module initialization failed (-28)",
                TdxLines {
                    init: Some(InitOutcome::Failed { code: -28 }),
                    ..TdxLines::default()
                },
            ),
            (
                "TDX-Module initialization failed (-5)",
                TdxLines {
                    init: Some(InitOutcome::Failed { code: -5 }),
                    ..TdxLines::default()
                },
            ),
            (
                "Enable Dynamic PAMT",
                TdxLines {
                    dynamic_pamt: true,
                    ..TdxLines::default()
                },
            ),
            (
                "51200 KB consumed for TDX module extensions",
                TdxLines {
                    extension_kb: Some(51200),
                    ..TdxLines::default()
                },
            ),
            (
                "2101260 KB allocated for PAMT",
                TdxLines {
                    pamt_kb: Some(2101260),
                    ..TdxLines::default()
                },
            ),
            (
                "4202516 KBs allocated for PAMT.",
                TdxLines {
                    pamt_kb: Some(4202516),
                    ..TdxLines::default()
                },
            ),
        ];
        let mut checked = 0;
        for (line, want) in cases {
            for prefix in PREFIXES {
                // The generic phrases need `tdx` before them.
                let generic = line.starts_with("module ") || line.starts_with("Module version");
                let with_tdx = if generic && !prefix.contains("tdx") {
                    alloc::format!("{prefix}virt/tdx: {line}")
                } else {
                    alloc::format!("{prefix}{line}")
                };
                assert_eq!(tdx_of(&with_tdx), Ok(want), "{with_tdx}");
                checked += 1;
            }
        }
        assert_eq!(checked, 56);
        // `TDX module version:` (a 2026 patch) reads as the mainline form.
        assert_eq!(
            tdx_of("virt/tdx: TDX module version: 1.5.24")
                .unwrap()
                .module(),
            Some(&version)
        );
    }

    #[test]
    fn generic_phrases_of_other_drivers_and_comments_are_ignored() {
        for line in [
            "foo: module initialized",
            "bar: Module version: 2.3",
            "baz: module initialization failed (x)",
            "# virt/tdx: 2101260 KB allocated for PAMT",
            "   # BIOS enabled: private KeyID range [0, 0)",
            "TDX module not loaded",
        ] {
            assert_eq!(tdx_of(line), Ok(TdxLines::default()), "{line}");
        }
        // Comment lines hold no memory either.
        assert_eq!(
            kind("# virt/tdx: CMR: [0x100000, 0x40000000)\n"),
            (0, ParseErrorKind::NoMemory)
        );
    }

    #[test]
    fn malformed_tdx_lines_name_their_line_and_kind() {
        let cases: [(&str, &str); 17] = [
            ("BIOS enabled: private KeyID range [32 64)", KEYIDS),
            ("BIOS enabled: private KeyID range [32, 64]", KEYIDS),
            (
                "BIOS enabled: private KeyID range [32, 64) and more",
                KEYIDS,
            ),
            (
                "TDX module: attributes 0x0, vendor_id 0x8086, major_version 1, minor_version 5, build_date 20240129",
                ATTRIBUTES,
            ),
            (
                "TDX module: attributes 0x100000000, vendor_id 0x8086, major_version 1, minor_version 5, build_date 20240129, build_num 698",
                ATTRIBUTES,
            ),
            (
                "TDX module: attributes 0x0, vendor_id 0x8086, major_version 1, minor_version 5, build_date 20240129, build_num 65536",
                ATTRIBUTES,
            ),
            (
                "TDX module 2.0.08, build number 882, build date 0134fed5",
                BUILD,
            ),
            (
                "TDX module 2.0.08.00, build number 882, build date 10134fed5",
                BUILD,
            ),
            ("TDX module 2.0.08.00, build number 882", BUILD),
            ("virt/tdx: Module version: 1.5", VERSION),
            ("virt/tdx: Module version: 1.5.x", VERSION),
            ("virt/tdx: Module version: 1.5.24 beta", VERSION),
            ("virt/tdx: module initialization failed (x)", INIT_FAILED),
            ("virt/tdx: module initialization failed (-28", INIT_FAILED),
            ("virt/tdx: lots KB allocated for PAMT", PAMT),
            ("virt/tdx: 12 KB allocated for PAMT per node", PAMT),
            (
                "virt/tdx: KB consumed for TDX module extensions",
                EXTENSIONS,
            ),
        ];
        for (line, want) in cases {
            let text = alloc::format!("CMR: [0x100000, 0x40000000)\n\n{line}\n");
            let (no, k) = kind(&text);
            assert_eq!(no, 3, "{line}");
            match k {
                ParseErrorKind::Malformed { line_kind, .. }
                | ParseErrorKind::BadNumber { line_kind } => {
                    assert_eq!(line_kind, want, "{line}")
                }
                other => panic!("{line}: {other:?}"),
            }
            let shown = alloc::format!("{}", parse_kernel_log(&text).unwrap_err());
            assert!(shown.starts_with("line 3: malformed "), "{shown}");
        }
        for (first, end) in [(0, 64), (64, 64), (64, 32), (1, 65537)] {
            let line = alloc::format!("BIOS enabled: private KeyID range [{first}, {end})");
            assert_eq!(
                kind(&alloc::format!("CMR: [0x100000, 0x40000000)\n{line}\n")),
                (2, ParseErrorKind::BadKeyIdRange { first, end })
            );
        }
    }

    #[test]
    fn a_fact_stated_twice_must_agree() {
        let base = "CMR: [0x100000, 0x40000000)\n";
        for (a, b, line_kind) in [
            (
                "virt/tdx: 10 KB allocated for PAMT",
                "virt/tdx: 11 KB allocated for PAMT",
                PAMT,
            ),
            (
                "BIOS enabled: private KeyID range [32, 64)",
                "BIOS enabled: private KeyID range [64, 128)",
                KEYIDS,
            ),
            (
                "virt/tdx: module initialized",
                "virt/tdx: module initialization failed (-28)",
                INIT_FAILED,
            ),
            (
                "virt/tdx: Module version: 1.5.24",
                "TDX module 2.0.08.00, build number 882, build date 0134fed5",
                BUILD,
            ),
            (
                "5 KB consumed for TDX module extensions",
                "6 KB consumed for TDX module extensions",
                EXTENSIONS,
            ),
        ] {
            assert_eq!(
                kind(&alloc::format!("{base}{a}\n{b}\n")),
                (
                    3,
                    ParseErrorKind::Contradiction {
                        line_kind,
                        earlier: 2
                    }
                ),
                "{a} / {b}"
            );
            // The same fact twice is no contradiction.
            assert!(parse_kernel_log(&alloc::format!("{base}{a}\n{a}\n")).is_ok());
        }
    }

    #[test]
    fn the_512g_fixture_says_module_keyids_init_and_pamt() {
        let p = parse_kernel_log(include_str!("../../tests/fixtures/spr-512g.log")).unwrap();
        let t = p.tdx_lines();
        assert_eq!(
            alloc::format!("{}", t.module().unwrap()),
            "1.5 build 698 (20240129)"
        );
        assert_eq!(t.keyids(), Some(32..64));
        assert_eq!(t.init(), Some(InitOutcome::Initialized));
        assert_eq!(
            (t.pamt_kb(), t.extension_kb(), t.dynamic_pamt()),
            (Some(2101260), None, false)
        );
        // A log of memory lines only says nothing about TDX.
        let p = parse_kernel_log(include_str!("../../tests/fixtures/emr-4s-256g.log")).unwrap();
        assert!(p.tdx_lines().is_empty());
    }
}
