//! A machine read from its kernel log and from its firmware tables gives the same memory map.
//!
//! Random machines (RAM with holes, partial pages and the low MiB; an SRAT with gaps, hotplug
//! ranges, disabled structures, proximity domains numbered out of order, sometimes overlapping
//! nodes) are written both ways — as the `BIOS-e820:` and `ACPI: SRAT:` lines Linux prints, and
//! as E820 entries, a UEFI memory map and SRAT bytes — and the two front ends must agree on the
//! map, the warnings, and on refusing. Every fixture with RAM lines is checked the same way.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::fmt::Write as _;

use tdmr::memmap::firmware::{
    E820_RESERVED, E820_USABLE, E820Entry, EFI_CONVENTIONAL_MEMORY, FirmwareMapError, Srat,
    UefiDescriptor, memory_map, ram_from_e820, ram_from_uefi,
};
use tdmr::memmap::{MapWarning, MemoryMapError, ParseErrorKind, parse_kernel_log};

const SZ_4K: u64 = 4096;

/// One SRAT memory affinity structure as the firmware writes it.
#[derive(Clone, Debug)]
struct Affinity {
    pxm: u32,
    base: u64,
    len: u64,
    enabled: bool,
    hotplug: bool,
}

#[derive(Clone, Debug)]
struct Machine {
    /// Sorted, disjoint; `true` = usable.
    e820: Vec<(u64, u64, bool)>,
    /// Proximity domains in the order the processor structures name them.
    pxms: Vec<u32>,
    memory: Vec<Affinity>,
}

impl Machine {
    fn node_of(&self, pxm: u32) -> usize {
        self.pxms.iter().position(|&p| p == pxm).unwrap()
    }

    /// The log Linux prints for this machine.
    fn log(&self) -> String {
        let mut s = String::new();
        for &(base, len, usable) in &self.e820 {
            let ty = if usable { "usable" } else { "reserved" };
            writeln!(
                s,
                "[    0.000000] BIOS-e820: [mem {base:#018x}-{:#018x}] {ty}",
                base + len - 1
            )
            .unwrap();
        }
        for m in self.memory.iter().filter(|m| m.enabled) {
            let hp = if m.hotplug { " hotplug" } else { "" };
            writeln!(
                s,
                "[    0.000000] ACPI: SRAT: Node {} PXM {} [mem {:#010x}-{:#010x}]{hp}",
                self.node_of(m.pxm),
                m.pxm,
                m.base,
                m.base + m.len - 1
            )
            .unwrap();
        }
        s
    }

    fn e820_entries(&self) -> Vec<E820Entry> {
        self.e820
            .iter()
            .map(|&(b, l, u)| E820Entry::new(b, l, if u { E820_USABLE } else { E820_RESERVED }))
            .collect()
    }

    /// The UEFI map, when every entry is whole pages (UEFI describes nothing smaller).
    fn uefi(&self) -> Option<Vec<UefiDescriptor>> {
        self.e820
            .iter()
            .map(|&(b, l, u)| {
                (b % SZ_4K == 0 && l % SZ_4K == 0).then(|| {
                    UefiDescriptor::new(
                        if u { EFI_CONVENTIONAL_MEMORY } else { 0 },
                        b,
                        l / SZ_4K,
                        0,
                    )
                })
            })
            .collect()
    }

    /// The SRAT's bytes: x2APIC structures naming the domains in order, then memory.
    fn srat(&self) -> Vec<u8> {
        let mut t = vec![0u8; 48];
        t[..4].copy_from_slice(b"SRAT");
        t[8] = 3;
        t[36] = 1;
        for &pxm in &self.pxms {
            let mut x = [0u8; 24];
            x[0] = 2;
            x[1] = 24;
            x[4..8].copy_from_slice(&pxm.to_le_bytes());
            x[12] = 1; // enabled
            t.extend_from_slice(&x);
        }
        for m in &self.memory {
            let mut x = [0u8; 40];
            x[0] = 1;
            x[1] = 40;
            x[2..6].copy_from_slice(&m.pxm.to_le_bytes());
            x[8..16].copy_from_slice(&m.base.to_le_bytes());
            x[16..24].copy_from_slice(&m.len.to_le_bytes());
            let flags = u32::from(m.enabled) | u32::from(m.hotplug) << 1;
            x[28..32].copy_from_slice(&flags.to_le_bytes());
            t.extend_from_slice(&x);
        }
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        let sum = t.iter().fold(0u8, |s, b| s.wrapping_add(*b));
        t[9] = sum.wrapping_neg();
        t
    }
}

/// A machine from a seed: address space up to 2^40, sizes from a page to hundreds of GiB,
/// boundaries sometimes off the page grid (e820 only; the SRAT stays page aligned except
/// rarely, to reach the unaligned-boundary refusal too).
fn machine(seed: u64) -> Machine {
    let mut x = seed | 1;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n.max(1)
    };
    let size = |rnd: &mut dyn FnMut(u64) -> u64| -> u64 {
        let unit = [SZ_4K, 1 << 20, 1 << 30, 64 << 30][rnd(4) as usize];
        unit * (1 + rnd(8))
    };
    let mut e820 = Vec::new();
    let mut at = 0u64;
    // Half the machines have entries off the page grid somewhere.
    let ragged = rnd(2) == 0;
    if rnd(2) == 0 {
        e820.push((0, 0x9f000 + u64::from(ragged) * rnd(2) * 0x400, true));
        at = 0x10_0000;
    }
    for _ in 0..1 + rnd(10) {
        at += if rnd(3) == 0 { 0 } else { size(&mut rnd) };
        let mut len = size(&mut rnd);
        if ragged && rnd(4) == 0 {
            len += 0x400 * (1 + rnd(3));
        }
        if ragged && rnd(4) == 0 {
            at += 0x200;
        }
        e820.push((at, len, rnd(4) != 0));
        at += len;
    }
    let top = at.next_multiple_of(1 << 30);

    let nodes = 1 + rnd(5) as usize;
    let mut pxms: Vec<u32> = Vec::new();
    while pxms.len() < nodes {
        let p = rnd(16) as u32;
        if !pxms.contains(&p) {
            pxms.push(p);
        }
    }
    let mut memory = Vec::new();
    if rnd(5) != 0 {
        let mut at = 0u64;
        while at < top {
            let mut len = size(&mut rnd).min(top - at);
            if rnd(40) == 0 {
                len += 0x800;
            }
            let gap = rnd(5) == 0;
            if !gap {
                memory.push(Affinity {
                    pxm: pxms[rnd(nodes as u64) as usize],
                    base: at,
                    len,
                    enabled: rnd(10) != 0,
                    hotplug: rnd(4) == 0,
                });
            }
            at += len;
        }
        if rnd(8) == 0 && !memory.is_empty() {
            // An overlapping structure, maybe of another node.
            let m = memory[rnd(memory.len() as u64) as usize].clone();
            memory.push(Affinity {
                pxm: pxms[rnd(nodes as u64) as usize],
                base: m.base + m.len / 2 / SZ_4K * SZ_4K,
                len: m.len,
                enabled: true,
                hotplug: rnd(2) == 0,
            });
        }
        // Table order is not address order.
        for i in (1..memory.len()).rev() {
            memory.swap(i, rnd(i as u64 + 1) as usize);
        }
    }
    Machine { e820, pxms, memory }
}

#[derive(Debug, Default)]
struct Tally {
    maps: usize,
    uefi: usize,
    numa_off: usize,
    ram_without_node: usize,
    hotplug: usize,
    overlaps: usize,
    other_refusals: usize,
}

fn check(m: &Machine, tally: &mut Tally) -> Result<(), TestCaseError> {
    let log = m.log();
    let from_log = parse_kernel_log(&log);
    let srat = Srat::parse(&m.srat()).expect("the test writes valid SRAT bytes");
    let srat = (!m.memory.is_empty()).then_some(&srat);
    let ram = ram_from_e820(&m.e820_entries()).expect("no entry overflows");
    let from_tables = memory_map(&ram, srat);
    match (&from_log, &from_tables) {
        (Ok(l), Ok(t)) => {
            prop_assert_eq!(l.memory(), t.memory(), "log:\n{}", log);
            prop_assert_eq!(l.warnings(), t.warnings(), "log:\n{}", log);
            tally.maps += 1;
            for w in t.warnings() {
                match w {
                    MapWarning::NumaOff { .. } => tally.numa_off += 1,
                    MapWarning::RamWithoutNode { .. } => tally.ram_without_node += 1,
                    _ => {}
                }
            }
            tally.hotplug += usize::from(m.memory.iter().any(|a| a.enabled && a.hotplug));
            if let Some(d) = m.uefi() {
                let ram = ram_from_uefi(&d).expect("no descriptor overflows");
                let from_uefi = memory_map(&ram, srat).expect("same RAM as the E820 map");
                prop_assert_eq!(l.memory(), from_uefi.memory(), "log:\n{}", log);
                tally.uefi += 1;
            }
        }
        (
            Err(l),
            Err(FirmwareMapError::SratOverlap {
                range, other_node, ..
            }),
        ) => {
            prop_assert_eq!(
                l.kind,
                ParseErrorKind::SratOverlap {
                    range: *range,
                    other_node: *other_node
                },
                "log:\n{}",
                log
            );
            tally.overlaps += 1;
        }
        (Err(l), Err(FirmwareMapError::Memory(t))) => {
            // No usable line at all: the log says so in its own words.
            if l.kind != ParseErrorKind::NoMemory || *t != MemoryMapError::NoMemory {
                prop_assert_eq!(l.kind, ParseErrorKind::Memory(*t), "log:\n{}", log);
            }
            tally.other_refusals += 1;
        }
        _ => prop_assert!(
            false,
            "log {:?} but tables {:?}; log:\n{}",
            from_log,
            from_tables,
            log
        ),
    }
    Ok(())
}

#[test]
fn random_machines_read_from_log_and_tables_agree() {
    let mut tally = Tally::default();
    let mut runner = TestRunner::new(Config {
        cases: 3000,
        failure_persistence: None,
        ..Config::default()
    });
    let tally_ref = std::cell::RefCell::new(&mut tally);
    runner
        .run(&any::<u64>(), |seed| {
            check(&machine(seed), &mut tally_ref.borrow_mut())
        })
        .unwrap();
    // Every kind of outcome was reached, and most cases made a map.
    eprintln!("{tally:?}");
    assert!(tally.maps >= 2000, "{tally:?}");
    assert!(tally.uefi >= 500, "{tally:?}");
    assert!(tally.numa_off >= 100, "{tally:?}");
    assert!(tally.ram_without_node >= 20, "{tally:?}");
    assert!(tally.hotplug >= 500, "{tally:?}");
    assert!(tally.overlaps >= 20, "{tally:?}");
    assert!(tally.other_refusals >= 5, "{tally:?}");
}

/// The log's own lines turned back into firmware tables (the test's reader, not the library's).
fn machine_from_log(text: &str) -> Machine {
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    let mut e820 = Vec::new();
    let mut memory = Vec::new();
    let mut pxms: Vec<(usize, u32)> = Vec::new();
    for line in text.lines() {
        if let Some(i) = line.find("BIOS-e820: [mem ") {
            let rest = &line[i + 16..];
            let (range, ty) = rest.split_once("] ").unwrap();
            let (a, b) = range.split_once('-').unwrap();
            e820.push((hex(a), hex(b) - hex(a) + 1, ty.trim() == "usable"));
        } else if let Some(i) = line.find("SRAT: Node ") {
            let mut words = line[i + 11..].split_whitespace();
            let node: usize = words.next().unwrap().parse().unwrap();
            words.next(); // PXM
            let pxm: u32 = words.next().unwrap().parse().unwrap();
            let range = words.next().unwrap().trim_start_matches("[mem ");
            let range = if range == "[mem" {
                words.next().unwrap()
            } else {
                range
            };
            let (a, b) = range.trim_end_matches(']').split_once('-').unwrap();
            let hotplug = words.any(|w| w == "hotplug");
            if !pxms.iter().any(|&(n, _)| n == node) {
                pxms.push((node, pxm));
            }
            memory.push(Affinity {
                pxm,
                base: hex(a),
                len: hex(b) - hex(a) + 1,
                enabled: true,
                hotplug,
            });
        }
    }
    pxms.sort_unstable();
    assert!(
        pxms.iter().enumerate().all(|(i, &(n, _))| i == n),
        "nodes numbered densely"
    );
    Machine {
        e820,
        pxms: pxms.into_iter().map(|(_, p)| p).collect(),
        memory,
    }
}

#[test]
fn every_fixture_with_ram_lines_reads_the_same_from_tables() {
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures")).unwrap()
    {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        if !text.contains("BIOS-e820:") {
            continue; // CMR-only logs have no RAM to write as tables
        }
        let m = machine_from_log(&text);
        let parsed = parse_kernel_log(&text).unwrap();
        let srat = Srat::parse(&m.srat()).unwrap();
        let ram = ram_from_e820(&m.e820_entries()).unwrap();
        let t = memory_map(&ram, (!m.memory.is_empty()).then_some(&srat)).unwrap();
        assert_eq!(parsed.memory(), t.memory(), "{}", path.display());
        assert_eq!(parsed.warnings(), t.warnings(), "{}", path.display());
        checked.push(path.file_name().unwrap().to_owned());
    }
    checked.sort();
    // The fixtures with BIOS-e820 lines, among them NUMA off and hotplug SRAT ranges.
    for name in [
        "emr-4s-256g.log",
        "hotplug-srat.log",
        "hp-16s-12t.log",
        "numa-off.log",
    ] {
        assert!(
            checked.iter().any(|c| c == name),
            "{name} not checked: {checked:?}"
        );
    }
    assert!(checked.len() >= 6, "{checked:?}");
}
