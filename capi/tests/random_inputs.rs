//! Random inputs over the whole space at the boundary: region and CMR arrays of any values,
//! options with any selector values, firmware tables (E820 entries, UEFI memory maps at any
//! stride, SRAT bytes valid, corrupted or garbage), gate calls with any ranges, CPUs and
//! packages. Every call returns one of the documented codes, fills `tdmr_error` to match, and
//! never reports `TDMR_ERR_INTERNAL` (which, in this `std` build, is what a caught panic would
//! be); the firmware constructors give exactly what the Rust API gives for the same tables.

use std::ptr::{null, null_mut};

use proptest::prelude::*;
use tdmr::memmap::firmware::{
    E820Entry, Srat, memory_map, parse_uefi_memory_map, ram_from_e820, ram_from_uefi,
};
use tdmr::memmap::{Cmr, Cmrs, MapWarning};
use tdmr_capi::error::*;
use tdmr_capi::firmware::*;
use tdmr_capi::gate::*;
use tdmr_capi::memory::*;
use tdmr_capi::plan::*;
use tdmr_capi::validate::*;

fn empty_err() -> tdmr_error {
    // SAFETY: tdmr_error is plain integers; all zeroes is a valid value.
    unsafe { std::mem::zeroed() }
}

/// The code is documented, matches `err`, and is not a caught panic.
fn sane(code: tdmr_code, err: &tdmr_error) {
    assert_ne!(code, TDMR_ERR_INTERNAL, "a panic at the boundary");
    assert_eq!(err.code, code as i32);
    let msg = err.message.iter().position(|&c| c == 0);
    assert!(msg.is_some(), "message not NUL-terminated");
    assert_eq!(msg == Some(0), code == TDMR_OK, "message iff failure");
}

/// Addresses near the interesting edges: 0, page and GiB multiples, 2^52, u64::MAX.
fn addr() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        (0u64..(1 << 20)).prop_map(|x| x << 12),
        (0u64..64).prop_map(|x| x << 30),
        (0u64..4096).prop_map(|x| (1u64 << 52) - (x << 12)),
        any::<u64>(),
        (0u64..4096).prop_map(|x| u64::MAX - x),
    ]
}

fn region() -> impl Strategy<Value = tdmr_region> {
    (addr(), addr(), 0u32..4).prop_map(|(base, size, node)| tdmr_region {
        base,
        size: size % (1 << 40),
        node,
    })
}

/// Regions sorted and disjoint by construction (so most maps plan), each a whole number of
/// pages, on up to 4 nodes.
fn valid_regions() -> impl Strategy<Value = Vec<tdmr_region>> {
    prop::collection::vec((0u64..(1 << 22), 1u64..(1 << 22), 0u32..4), 1..12).prop_map(|v| {
        let mut at = 1u64 << 20;
        v.into_iter()
            .map(|(gap, size, node)| {
                let base = at + (gap << 12);
                at = base + (size << 12);
                tdmr_region {
                    base,
                    size: size << 12,
                    node,
                }
            })
            .collect()
    })
}

/// A machine's firmware tables, valid or not.
#[derive(Clone, Debug)]
struct Tables {
    /// (base, size, usable), mostly sorted and disjoint, sometimes anything.
    ram: Vec<(u64, u64, u32)>,
    /// The SRAT as given: `None` (NULL, 0) or bytes (maybe empty from a non-NULL pointer).
    srat: Option<Vec<u8>>,
    /// 0: no CMRs; 1: one CMR over [0, 2^52); 2: the usable entries (often refused).
    cmr_mode: u8,
    /// UEFI: the stride, and whether the map is cut short of a whole descriptor.
    stride: usize,
    cut: usize,
    /// UEFI: RAM types and attributes chosen per entry.
    uefi_kind: Vec<(u32, u64)>,
}

/// An SRAT's bytes: x2APIC structures naming `pxms` (enabled or not), memory affinity
/// structures, length and checksum set.
fn srat_bytes(pxms: &[(u32, bool)], memory: &[(u32, u64, u64, u32)]) -> Vec<u8> {
    let mut t = vec![0u8; 48];
    t[..4].copy_from_slice(b"SRAT");
    t[8] = 3;
    for &(pxm, enabled) in pxms {
        let mut x = [0u8; 24];
        x[0] = 2;
        x[1] = 24;
        x[4..8].copy_from_slice(&pxm.to_le_bytes());
        x[12] = u8::from(enabled);
        t.extend_from_slice(&x);
    }
    for &(pxm, base, len, flags) in memory {
        let mut x = [0u8; 40];
        x[0] = 1;
        x[1] = 40;
        x[2..6].copy_from_slice(&pxm.to_le_bytes());
        x[8..16].copy_from_slice(&base.to_le_bytes());
        x[16..24].copy_from_slice(&len.to_le_bytes());
        x[28..32].copy_from_slice(&flags.to_le_bytes());
        t.extend_from_slice(&x);
    }
    let len = t.len() as u32;
    t[4..8].copy_from_slice(&len.to_le_bytes());
    let sum = t.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    t[9] = sum.wrapping_neg();
    t
}

fn tables() -> impl Strategy<Value = Tables> {
    let sorted = prop::collection::vec(
        (
            0u64..(1 << 20),
            1u64..(1 << 22),
            prop_oneof![4 => Just(1u32), 1 => 0u32..13],
        ),
        1..10,
    )
    .prop_map(|v| {
        let mut at = 0u64;
        v.into_iter()
            .map(|(gap, size, kind)| {
                let base = at + (gap << 12);
                at = base + (size << 12);
                (base, size << 12, kind)
            })
            .collect::<Vec<_>>()
    });
    let anything = prop::collection::vec(
        (addr(), addr(), prop_oneof![Just(1u32), any::<u32>()]),
        0..8,
    );
    let ram = prop_oneof![5 => sorted, 1 => anything];
    (
        ram,
        // SRAT: 0 none, 1 valid over the RAM, 2 valid then one byte changed, 3 cut short, 4
        // garbage, 5 empty from a non-NULL pointer.
        prop_oneof![2 => Just(0u8), 6 => Just(1u8), 1 => Just(2u8), 1 => Just(3u8), 1 => Just(4u8), 1 => Just(5u8)],
        prop::collection::vec((0u32..6, 0u8..10, 0u8..4, any::<bool>()), 12),
        any::<(usize, u8)>(),
        prop::collection::vec(any::<u8>(), 0..120),
        0u8..3,
        prop_oneof![4 => prop::sample::select(vec![40usize, 48, 56]), 1 => 0usize..80],
        prop_oneof![5 => Just(0usize), 1 => 1usize..8],
        prop::collection::vec((0u32..16, prop_oneof![4 => Just(0u64), 1 => Just(1u64 << 18)]), 12),
    )
        .prop_map(
            |(ram, srat_mode, nodes, flip, garbage, cmr_mode, stride, cut, uefi_kind)| {
                // One affinity structure per RAM entry (base and length its own, sometimes
                // moved by a partial page), a node each, flags from the draw.
                let pxms: Vec<(u32, bool)> = (0..6u32).map(|p| (p * 3 + 1, p != 5)).collect();
                let memory: Vec<(u32, u64, u64, u32)> = ram
                    .iter()
                    .zip(nodes.iter().cycle())
                    .filter(|(_, n)| n.1 != 0) // 1 in 10: RAM in no node
                    .map(|(&(base, size, _), &(node, nudge, hotplug, enabled))| {
                        let flags = u32::from(enabled || nudge > 1) | (u32::from(hotplug == 0) << 1);
                        // A partial page (refused), or a page left in no node (a warning).
                        let off = match nudge {
                            9 => 0x800,
                            8 if size > 0x1000 => 0x1000,
                            _ => 0,
                        };
                        (pxms[node as usize].0, base.wrapping_add(off), size - off.min(size), flags)
                    })
                    .collect();
                let srat = match srat_mode {
                    0 => None,
                    1 => Some(srat_bytes(&pxms, &memory)),
                    2 => {
                        let mut t = srat_bytes(&pxms, &memory);
                        let i = flip.0 % t.len();
                        t[i] ^= flip.1.max(1);
                        Some(t)
                    }
                    3 => {
                        let t = srat_bytes(&pxms, &memory);
                        Some(t[..flip.0 % t.len()].to_vec())
                    }
                    4 => {
                        let mut g = garbage;
                        if flip.1 % 2 == 0 && g.len() >= 4 {
                            g[..4].copy_from_slice(b"SRAT");
                        }
                        Some(g)
                    }
                    _ => Some(Vec::new()),
                };
                Tables {
                    ram,
                    srat,
                    cmr_mode,
                    stride,
                    cut,
                    uefi_kind,
                }
            },
        )
}

/// What a firmware constructor gave: the regions and warning bits, or the code and message.
type Outcome = Result<(Vec<tdmr_region>, u32), (tdmr_code, String)>;

fn bits(warnings: &[MapWarning]) -> u32 {
    warnings.iter().fold(0, |b, w| {
        b | match w {
            MapWarning::NumaOff { .. } => TDMR_MAP_WARN_NUMA_OFF,
            MapWarning::RamWithoutNode { .. } => TDMR_MAP_WARN_RAM_WITHOUT_NODE,
            _ => TDMR_MAP_WARN_OTHER,
        }
    })
}

/// The Rust API on the same tables, checked in the order the C entry points check them
/// (CMRs, SRAT, the memory table, the rules, the CMRs against the memory).
fn expected(
    cmrs: &[tdmr_cmr],
    srat: Option<&[u8]>,
    ram: impl FnOnce() -> Result<tdmr::addr::RangeSet, (tdmr_code, String)>,
) -> Outcome {
    let cmrs = match cmrs.len() {
        0 => None,
        _ => Some(
            Cmrs::new(cmrs.iter().map(|c| Cmr::new(c.base, c.size)).collect())
                .map_err(|e| (TDMR_ERR_CMRS, e.to_string()))?,
        ),
    };
    let srat = srat
        .map(Srat::parse)
        .transpose()
        .map_err(|e| (TDMR_ERR_SRAT, e.to_string()))?;
    let ram = ram()?;
    let fw = memory_map(&ram, srat.as_ref()).map_err(|e| match e {
        tdmr::memmap::firmware::FirmwareMapError::SratOverlap { .. } => {
            (TDMR_ERR_SRAT, e.to_string())
        }
        _ => (TDMR_ERR_MEMORY_MAP, e.to_string()),
    })?;
    let cmrs = cmrs.unwrap_or_else(|| Cmrs::covering(fw.memory()));
    fw.memory()
        .check_within(&cmrs)
        .map_err(|e| (TDMR_ERR_MEMORY_MAP, e.to_string()))?;
    let regions = fw
        .memory()
        .regions()
        .iter()
        .map(|r| tdmr_region {
            base: r.base,
            size: r.size,
            node: r.node,
        })
        .collect();
    Ok((regions, bits(fw.warnings())))
}

/// What the C entry point gave (freeing the handle).
fn got(code: tdmr_code, err: &tdmr_error, mem: *mut tdmr_memory, warnings: u32) -> Outcome {
    sane(code, err);
    assert_eq!(code == TDMR_OK, !mem.is_null());
    if code != TDMR_OK {
        assert_eq!(err.truncated, 0, "messages here fit");
        let msg: Vec<u8> = err
            .message
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        return Err((code, String::from_utf8(msg).expect("UTF-8 message")));
    }
    let mut n = 0;
    let mut e = empty_err();
    // SAFETY: a live handle; size query, then a buffer of that many; freed once.
    unsafe {
        sane(tdmr_memory_regions(mem, null_mut(), 0, &mut n, &mut e), &e);
        let mut r = vec![
            tdmr_region {
                base: 0,
                size: 0,
                node: 0
            };
            n
        ];
        sane(
            tdmr_memory_regions(mem, r.as_mut_ptr(), n, &mut n, &mut e),
            &e,
        );
        tdmr_memory_free(mem);
        Ok((r, warnings))
    }
}

/// The C answer is the Rust API's: the same regions and warnings, or the same code with the
/// library's message in it.
fn agree(c: &Outcome, rust: &Outcome) -> Result<(), TestCaseError> {
    match (c, rust) {
        (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
        (Err((code, msg)), Err((want, text))) => {
            prop_assert_eq!(code, want, "{} / {}", msg, text);
            prop_assert!(
                msg.contains(text.as_str()),
                "`{}` does not say `{}`",
                msg,
                text
            );
        }
        _ => prop_assert!(false, "C {:?}, Rust {:?}", c, rust),
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Tally {
    maps: usize,
    uefi_maps: usize,
    uefi_refused: usize,
    numa_off: usize,
    without_node: usize,
    srat_refused: usize,
    table_refused: usize,
    map_refused: usize,
    cmrs_refused: usize,
}

fn run_tables(t: &Tables, tally: &mut Tally) -> Result<(), TestCaseError> {
    let entries: Vec<tdmr_e820_entry> = t
        .ram
        .iter()
        .map(|&(addr, size, kind)| tdmr_e820_entry { addr, size, kind })
        .collect();
    let cmrs: Vec<tdmr_cmr> = match t.cmr_mode {
        0 => Vec::new(),
        1 => vec![tdmr_cmr {
            base: 0,
            size: 1 << 52,
        }],
        _ => t
            .ram
            .iter()
            .filter(|e| e.2 == 1)
            .map(|&(base, size, _)| tdmr_cmr { base, size })
            .collect(),
    };
    let (srat_ptr, srat_len) = match &t.srat {
        None => (null(), 0),
        // A non-NULL pointer even for an empty table (Vec's dangling one is non-NULL).
        Some(b) => (b.as_ptr().cast(), b.len()),
    };

    // E820.
    let mut err = empty_err();
    let mut mem = null_mut();
    let mut warnings = u32::MAX;
    // SAFETY: arrays of the given lengths, valid out-pointers.
    let code = unsafe {
        tdmr_memory_from_e820(
            entries.as_ptr(),
            entries.len(),
            srat_ptr,
            srat_len,
            cmrs.as_ptr(),
            cmrs.len(),
            &mut mem,
            &mut warnings,
            &mut err,
        )
    };
    let c = got(code, &err, mem, warnings);
    let rust = expected(&cmrs, t.srat.as_deref(), || {
        let e: Vec<E820Entry> = t
            .ram
            .iter()
            .map(|&(a, s, k)| E820Entry::new(a, s, k))
            .collect();
        ram_from_e820(&e).map_err(|e| (TDMR_ERR_MEMORY_TABLE, e.to_string()))
    });
    agree(&c, &rust)?;
    match &c {
        Ok((_, w)) => {
            tally.maps += 1;
            tally.numa_off += usize::from(w & TDMR_MAP_WARN_NUMA_OFF != 0);
            tally.without_node += usize::from(w & TDMR_MAP_WARN_RAM_WITHOUT_NODE != 0);
        }
        Err((code, _)) => match *code {
            TDMR_ERR_SRAT => tally.srat_refused += 1,
            TDMR_ERR_MEMORY_TABLE => tally.table_refused += 1,
            TDMR_ERR_MEMORY_MAP => tally.map_refused += 1,
            TDMR_ERR_CMRS => tally.cmrs_refused += 1,
            other => prop_assert!(false, "undocumented {:?}", other),
        },
    }

    // UEFI: the same entries as descriptors at the drawn stride (RAM types and attributes
    // drawn too), the pages count truncated as UEFI has no partial pages.
    let stride = t.stride;
    let mut map = vec![0u8; entries.len() * stride.max(40)];
    for (i, (&(start, size, kind), &(pick, attr))) in
        t.ram.iter().zip(t.uefi_kind.iter().cycle()).enumerate()
    {
        let ram_types = [1u32, 2, 3, 4, 7, 15];
        let other_types = [0u32, 5, 6, 8, 9, 10, 11, 12, 13, 14];
        let efi = if kind == 1 {
            ram_types[pick as usize % ram_types.len()]
        } else {
            other_types[pick as usize % other_types.len()]
        };
        let Some(d) = map.get_mut(i * stride.max(40)..) else {
            break;
        };
        d[..4].copy_from_slice(&efi.to_le_bytes());
        d[8..16].copy_from_slice(&start.to_le_bytes());
        d[24..32].copy_from_slice(&(size / 4096).to_le_bytes());
        d[32..40].copy_from_slice(&attr.to_le_bytes());
    }
    let len = (entries.len() * stride)
        .min(map.len())
        .saturating_sub(t.cut);
    let map = &map[..len];
    let mut mem = null_mut();
    let mut warnings = u32::MAX;
    // SAFETY: `len` readable bytes, the rest as above.
    let code = unsafe {
        tdmr_memory_from_uefi(
            map.as_ptr().cast(),
            map.len(),
            stride,
            srat_ptr,
            srat_len,
            cmrs.as_ptr(),
            cmrs.len(),
            &mut mem,
            &mut warnings,
            &mut err,
        )
    };
    let c = got(code, &err, mem, warnings);
    let rust = expected(&cmrs, t.srat.as_deref(), || {
        let d = parse_uefi_memory_map(map, stride)
            .map_err(|e| (TDMR_ERR_MEMORY_TABLE, e.to_string()))?;
        ram_from_uefi(&d).map_err(|e| (TDMR_ERR_MEMORY_TABLE, e.to_string()))
    });
    agree(&c, &rust)?;
    tally.uefi_maps += usize::from(c.is_ok());
    tally.uefi_refused += usize::from(matches!(c, Err((TDMR_ERR_MEMORY_TABLE, _))));
    Ok(())
}

#[test]
fn firmware_tables_give_what_the_rust_api_gives() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 1500,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let tally = std::cell::RefCell::new(Tally::default());
    runner
        .run(&tables(), |t| run_tables(&t, &mut tally.borrow_mut()))
        .unwrap();
    let t = tally.into_inner();
    eprintln!("{t:?}");
    // Count what was checked: every kind of answer, often enough to mean something.
    assert!(
        t.maps >= 300 && t.uefi_maps >= 150 && t.uefi_refused >= 100,
        "{t:?}"
    );
    assert!(t.numa_off >= 30 && t.without_node >= 3, "{t:?}");
    assert!(
        t.srat_refused >= 100
            && t.table_refused >= 10
            && t.map_refused >= 30
            && t.cmrs_refused >= 20,
        "{t:?}"
    );
}

#[derive(Clone, Debug)]
struct Case {
    regions: Vec<tdmr_region>,
    sort: bool,
    cmr_count: usize,
    strategy: u32,
    holes: u32,
    exclusions: u32,
    max_tdmrs: u16,
    max_reserved: u16,
    dpamt: u16,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![3 => valid_regions(), 1 => prop::collection::vec(region(), 0..12)],
        any::<bool>(),
        0usize..40,
        prop_oneof![Just(0u32), Just(1), 0u32..3],
        prop_oneof![Just(0u32), 0u32..4],
        prop_oneof![Just(0u32), 0u32..3],
        prop_oneof![Just(64u16), 0u16..6],
        prop_oneof![Just(16u16), 0u16..20],
        prop_oneof![Just(0u16), Just(0), Just(1), any::<u16>()],
    )
        .prop_map(
            |(
                regions,
                sort,
                cmr_count,
                strategy,
                holes,
                exclusions,
                max_tdmrs,
                max_reserved,
                dpamt,
            )| Case {
                regions,
                sort,
                cmr_count,
                strategy,
                holes,
                exclusions,
                max_tdmrs,
                max_reserved,
                dpamt,
            },
        )
}

/// How far one case got: 0 refused map, 1 refused plan, 2 planned and validated.
fn run_case(c: Case) -> Result<usize, TestCaseError> {
    let Case {
        mut regions,
        sort,
        cmr_count,
        strategy,
        holes,
        exclusions,
        max_tdmrs,
        max_reserved,
        dpamt,
    } = c;
    if sort {
        regions.sort_by_key(|r| r.base);
    }
    // CMRs: none (the memory stands in), exactly the regions, or garbage cycled from them.
    let cmrs: Vec<tdmr_cmr> = match cmr_count % 3 {
        0 => Vec::new(),
        1 => regions
            .iter()
            .map(|r| tdmr_cmr {
                base: r.base,
                size: r.size,
            })
            .collect(),
        _ => regions
            .iter()
            .cycle()
            .take(cmr_count.min(regions.len() * 3))
            .map(|r| tdmr_cmr {
                base: r.base,
                size: r.size,
            })
            .collect(),
    };
    let mut err = empty_err();
    let mut mem = null_mut();
    // SAFETY: arrays of the given lengths, valid out-pointers.
    let code = unsafe {
        tdmr_memory_new(
            regions.as_ptr(),
            regions.len(),
            cmrs.as_ptr(),
            cmrs.len(),
            &mut mem,
            &mut err,
        )
    };
    sane(code, &err);
    prop_assert_eq!(code == TDMR_OK, !mem.is_null());
    if mem.is_null() {
        return Ok(0);
    }
    // SAFETY: integers, a nullable function pointer and a raw pointer: all zeroes is valid.
    let mut o = unsafe { std::mem::zeroed::<tdmr_plan_options>() };
    // SAFETY: valid out-pointer.
    sane(unsafe { tdmr_plan_options_default(&mut o, &mut err) }, &err);
    o.strategy = strategy;
    o.holes = holes;
    o.allow_exclusions = exclusions;
    o.limits.max_tdmrs = max_tdmrs;
    o.limits.max_reserved_per_tdmr = max_reserved;
    o.limits.dynamic_pamt_bits = dpamt;
    let mut plan = null_mut();
    // SAFETY: a live memory handle, valid options and out-pointer.
    let code = unsafe { tdmr_plan_new(mem, &o, &mut plan, &mut err) };
    sane(code, &err);
    let planned = code == TDMR_OK;
    if code == TDMR_OK {
        let mut n = 0;
        // SAFETY: a live plan; size query.
        sane(
            unsafe { tdmr_plan_tdmr_infos(plan, null_mut(), 0, &mut n, &mut err) },
            &err,
        );
        let mut infos = vec![[0u8; 512]; n + 1];
        let aligned = infos.as_mut_ptr().cast::<u8>();
        let off = aligned.align_offset(512);
        // A Vec of [u8; 512] is not 512-aligned; use an aligned slot within it when one
        // exists, else expect the misalignment refusal.
        // SAFETY: `off < 512` bytes into a buffer of (n + 1) * 512 bytes.
        let buf = unsafe { aligned.add(off) }.cast::<tdmr_tdmr_info>();
        // SAFETY: `buf` has room for n entries after the offset.
        let code = unsafe { tdmr_plan_tdmr_infos(plan, buf, n, &mut n, &mut err) };
        sane(code, &err);
        prop_assert_eq!(code, TDMR_OK);
        let mut status = 0;
        // The CMRs the map was checked against (the memory itself when none were given).
        let mut k = 0;
        // SAFETY: a live memory handle; size query, then a buffer of that many.
        sane(
            unsafe { tdmr_memory_cmrs(mem, null_mut(), 0, &mut k, &mut err) },
            &err,
        );
        let mut listed = vec![tdmr_cmr { base: 0, size: 0 }; k];
        // SAFETY: as above.
        sane(
            unsafe { tdmr_memory_cmrs(mem, listed.as_mut_ptr(), k, &mut k, &mut err) },
            &err,
        );
        // SAFETY: plain integers: all zeroes is valid.
        let mut vo = unsafe { std::mem::zeroed::<tdmr_validate_options>() };
        // SAFETY: valid out-pointer.
        sane(
            unsafe { tdmr_validate_options_default(&mut vo, &mut err) },
            &err,
        );
        vo.limits = o.limits;
        {
            // SAFETY: arrays of the given lengths.
            let code = unsafe {
                tdmr_validate(
                    buf,
                    n,
                    listed.as_ptr(),
                    listed.len(),
                    &vo,
                    &mut status,
                    &mut err,
                )
            };
            sane(code, &err);
            // What the planner made, the module accepts.
            prop_assert_eq!(code, TDMR_OK, "{:#x}", status);
        }
    }
    // SAFETY: live handles, freed once.
    unsafe {
        tdmr_plan_free(plan);
        tdmr_memory_free(mem);
    }
    Ok(if planned { 2 } else { 1 })
}

#[test]
fn memory_and_plans_answer_with_codes() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    });
    let reached = std::cell::RefCell::new([0usize; 3]);
    runner
        .run(&case(), |c| {
            let r = run_case(c)?;
            reached.borrow_mut()[r] += 1;
            Ok(())
        })
        .unwrap();
    let [refused_map, refused_plan, planned] = *reached.borrow();
    // Count what was checked: each stage was reached often enough to mean something.
    assert!(
        refused_map >= 40 && refused_plan >= 20 && planned >= 60,
        "{refused_map} {refused_plan} {planned}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn gate_calls_answer_with_codes(
        cpus in 0u32..6,
        packages in 0u32..6,
        ops in prop::collection::vec((0u8..12, addr(), addr(), 0u32..8, 0u32..8), 1..60),
    ) {
        let cmrs = [tdmr_cmr { base: 1 << 20, size: 4 << 30 }, tdmr_cmr { base: 8 << 30, size: 8 << 30 }];
        let regions = [tdmr_region { base: 1 << 20, size: 4 << 30, node: 0 }, tdmr_region { base: 8 << 30, size: 8 << 30, node: 1 }];
        let (mut mem, mut plan, mut gate) = (null_mut(), null_mut(), null_mut());
        let mut err = empty_err();
        // SAFETY: valid arrays and out-pointers.
        unsafe {
            prop_assert_eq!(tdmr_memory_new(regions.as_ptr(), 2, cmrs.as_ptr(), 2, &mut mem, &mut err), TDMR_OK);
            prop_assert_eq!(tdmr_plan_new(mem, null(), &mut plan, &mut err), TDMR_OK);
        }
        // SAFETY: as above.
        let code = unsafe { tdmr_gate_new(cmrs.as_ptr(), 2, cpus, packages, null(), &mut gate, &mut err) };
        sane(code, &err);
        if code != TDMR_OK {
            prop_assert_eq!(code, TDMR_ERR_GATE_CONFIG);
            // SAFETY: live handles.
            unsafe { tdmr_plan_free(plan); tdmr_memory_free(mem); }
            return Ok(());
        }
        let mut admissions = Vec::new();
        let mut removals = Vec::new();
        let mut onlines = Vec::new();
        let mut ticket: *mut tdmr_init_ticket = null_mut();
        let mut update: *mut tdmr_update_ticket = null_mut();
        for (op, a, b, cpu, pkg) in ops {
            // SAFETY: a live gate; tokens are ended once, below or at the end.
            let code = unsafe {
                match op {
                    0 | 1 => {
                        let mut adm = null_mut();
                        let c = tdmr_gate_admit_memory(gate, a, b % (1 << 34), &mut adm, &mut err);
                        if !adm.is_null() { admissions.push(adm); }
                        c
                    }
                    2 => {
                        let mut on = null_mut();
                        let c = tdmr_gate_cpu_online(gate, cpu, pkg, &mut on, null_mut(), &mut err);
                        if !on.is_null() { onlines.push(on); }
                        c
                    }
                    3 => tdmr_gate_cpu_offline(gate, cpu, pkg, &mut err),
                    4 => {
                        if ticket.is_null() {
                            tdmr_gate_begin_init(gate, &mut ticket, &mut err)
                        } else {
                            let t = std::mem::replace(&mut ticket, null_mut());
                            if a % 2 == 0 { tdmr_init_ticket_publish(t, plan, null_mut(), &mut err) } else { tdmr_init_ticket_fail(t); TDMR_OK }
                        }
                    }
                    5 => tdmr_gate_acquire_guest_keyid(gate, &mut err),
                    6 => tdmr_gate_release_guest_keyid(gate, &mut err),
                    8 => {
                        let mut rem = null_mut();
                        let mut why = std::mem::zeroed::<tdmr_removal_refusal>();
                        let c = tdmr_gate_admit_removal(gate, a, b % (1 << 34), &mut rem, &mut why, &mut err);
                        if !rem.is_null() { removals.push(rem); }
                        if c == TDMR_ERR_HOLDS_TDX_METADATA {
                            // The overlap lies in the range asked for.
                            prop_assert!(why.overlap.size > 0 && why.overlap.base >= a && why.overlap.base + why.overlap.size <= a + b % (1 << 34));
                        }
                        c
                    }
                    9 => {
                        let mut was = 7;
                        let c = if a % 2 == 0 { tdmr_gate_cancel_init(gate, &mut was, &mut err) } else { tdmr_gate_cancel_update(gate, &mut was, &mut err) };
                        prop_assert!(was <= 1);
                        c
                    }
                    10 => {
                        if update.is_null() {
                            tdmr_gate_begin_update(gate, &mut update, &mut err)
                        } else {
                            tdmr_update_ticket_finish(std::mem::replace(&mut update, null_mut()))
                        }
                    }
                    _ => {
                        for adm in admissions.drain(..) { prop_assert_eq!(tdmr_memory_admission_finish(adm), TDMR_OK); }
                        for (i, rem) in removals.drain(..).enumerate() {
                            let end = if i % 2 == 0 { tdmr_memory_removal_finish(rem) } else { tdmr_memory_removal_abandon(rem) };
                            prop_assert_eq!(end, TDMR_OK);
                        }
                        if let Some(on) = onlines.pop() { prop_assert_eq!(tdmr_cpu_online_finish(on), TDMR_OK); }
                        let mut info = std::mem::zeroed::<tdmr_gate_info>();
                        let c = tdmr_gate_get_info(gate, &mut info, &mut err);
                        prop_assert!(info.init_pending <= 1 && info.update_pending <= 1);
                        prop_assert!(info.init_pending == 0 || info.update_pending == 0);
                        c
                    }
                }
            };
            // The ends of tickets take no `err`; everything else filled it.
            let ended = (op == 4 && ticket.is_null() && code == TDMR_OK) || (op == 10 && update.is_null() && code == TDMR_OK);
            if !ended {
                sane(code, &err);
            }
        }
        // SAFETY: every token once; then the handles.
        unsafe {
            for adm in admissions { prop_assert_eq!(tdmr_memory_admission_finish(adm), TDMR_OK); }
            for rem in removals { prop_assert_eq!(tdmr_memory_removal_abandon(rem), TDMR_OK); }
            for on in onlines { prop_assert_eq!(tdmr_cpu_online_abandon(on), TDMR_OK); }
            if !ticket.is_null() { prop_assert_eq!(tdmr_init_ticket_fail(ticket), TDMR_OK); }
            if !update.is_null() { prop_assert_eq!(tdmr_update_ticket_finish(update), TDMR_OK); }
            let mut info = std::mem::zeroed::<tdmr_gate_info>();
            prop_assert_eq!(tdmr_gate_get_info(gate, &mut info, &mut err), TDMR_OK);
            prop_assert_eq!(info.in_flight, 0, "every token ended");
            tdmr_gate_free(gate);
            tdmr_plan_free(plan);
            tdmr_memory_free(mem);
        }
    }
}
