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
//!
//! Unrelated lines are ignored; a recognised line that is malformed is an error naming its line.
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
use super::{Cmr, CmrError, Cmrs, MapWarning, MemoryMap, MemoryMapError, NodeId};
use crate::addr::PhysRange;

/// A parsed kernel log: TDX memory and CMRs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedLog {
    memory: MemoryMap,
    cmrs: Cmrs,
    cmrs_listed: bool,
    warnings: Vec<MapWarning>,
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
        }
    }
}

impl core::error::Error for ParseError {}

const E820: &str = "BIOS-e820";
const SRAT: &str = "SRAT";
const CMR: &str = "CMR";
const IOMEM: &str = "/proc/iomem";

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

/// What the recognised lines say: RAM, SRAT affinity (with its line), CMRs (with their lines).
struct Collected {
    ram: Vec<PhysRange>,
    srat: Vec<Affinity>,
    cmrs: Vec<(Cmr, usize)>,
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
    };
    for (i, raw) in text.lines().enumerate() {
        let Some(mut line) = classify(raw, i + 1) else {
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

    let cmr_list: Vec<Cmr> = c.cmrs.iter().map(|(cmr, _)| *cmr).collect();
    let listed = if cmr_list.is_empty() {
        None
    } else {
        Some(Cmrs::new(cmr_list).map_err(|e| {
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
        })?)
    };

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
}
