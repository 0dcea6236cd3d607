//! `layout::validate` against TDH.SYS.CONFIG's rules (`tdx-module-rules.md` §3.1).
//!
//! Every row starts from one valid configuration ([`base`]), applies one mutation and states the
//! exact 64-bit status the TDX module returns for it. Expected values are written out from the
//! rules (`class | i | level << 8 | j << 16`), never produced by the code under test.
//!
//! The base configuration: four 1 GiB TDMRs at 0, 1 GiB, 2 GiB and 4 GiB (the first three
//! abutting, a gap before the fourth). Each reserves its first MiB (a hole) and its top `P` bytes,
//! where its own PAMT block lives (4K, 2M, 1G levels in that order, each exactly the module's
//! minimum: 4 MiB, 8 KiB, 4 KiB). CMR slots: `[1M, 2G)`, a null slot with a junk base,
//! `[2G, 3.5G)`, `[4G + 1M, 5G)`. KeyID bits K = 6 (HKID in PA bits 46..51), private KeyIDs from
//! 32, a SEAM range at `[3.5G, 3.5G + 32M)`, `TDMR_INFO`s at `0x200000 + i * 0x1000`.

use tdmr::addr::{MAX_PA, PageSize, PhysRange};
use tdmr::memmap::Cmr;
use tdmr::sysinfo::{PrivateKeyIds, TdxLimits};
use tdmr::tdx::abi::{TdmrInfo, TdmrReservedEntry};
use tdmr::tdx::validate::{ConfigEnv, covers_memory, sys_config, sys_config_with, tdmr_info_pa};

const K4: u64 = 1 << 12;
const M: u64 = 1 << 20;
const G: u64 = 1 << 30;
/// HKID bit 0 with K = 6 KeyID bits.
const HKID1: u64 = 1 << 46;
/// PAMT bytes of a 1 GiB TDMR: 4K level 1G/4K*16 = 4 MiB, 2M level 512*16 = 8 KiB, 1G level
/// 16 B rounded up to 4 KiB.
const P: u64 = 4 * M + 8 * 1024 + K4;
const _: () = assert!(P == 0x40_3000);

/// Accepted (`TDX_SUCCESS`).
const OK: u64 = 0;

/// A TDMR at `base` of `size` bytes (a 1 GiB multiple) with a 1 MiB hole at its start and its
/// own PAMT block (exact minimum sizes, from the spec's formula) in a reserved area at its top.
fn tdmr_at(base: u64, size: u64) -> TdmrInfo {
    let n = size / G;
    let (p4k, p2m, p1g) = (n * 4 * M, n * 8 * 1024, (n * 16).div_ceil(K4) * K4);
    let total = p4k + p2m + p1g;
    let block = base.wrapping_add(size - total);
    let mut t = TdmrInfo::ZERO;
    t.base = base;
    t.size = size;
    t.set_pamt(PageSize::Size4K, block, p4k);
    t.set_pamt(PageSize::Size2M, block.wrapping_add(p4k), p2m);
    t.set_pamt(PageSize::Size1G, block.wrapping_add(p4k + p2m), p1g);
    t.reserved[0] = rsv(0, M);
    t.reserved[1] = rsv(size - total, total);
    t
}

fn rsv(offset: u64, size: u64) -> TdmrReservedEntry {
    TdmrReservedEntry { offset, size }
}

/// Everything TDH.SYS.CONFIG sees: the `TDMR_INFO`s, their physical addresses and the module's
/// own state.
#[derive(Clone, Debug)]
struct Setup {
    tdmrs: Vec<TdmrInfo>,
    pas: Vec<u64>,
    cmrs: Vec<Cmr>,
    max_tdmrs: usize,
    pamt_entry_size: [u64; 3],
    dynamic_pamt: bool,
    keyid_bits: u32,
    seamrr: Option<PhysRange>,
    private_keyid_min: u64,
}

fn range(start: u64, end: u64) -> PhysRange {
    PhysRange::new(start, end).unwrap()
}

fn base() -> Setup {
    Setup {
        tdmrs: vec![
            tdmr_at(0, G),
            tdmr_at(G, G),
            tdmr_at(2 * G, G),
            tdmr_at(4 * G, G),
        ],
        pas: (0..80).map(|i| 0x20_0000 + i * 0x1000).collect(),
        cmrs: vec![
            Cmr::new(M, 2 * G - M),
            Cmr::new(0x7777_7000, 0),
            Cmr::new(2 * G, G + G / 2),
            Cmr::new(4 * G + M, G - M),
        ],
        max_tdmrs: 64,
        pamt_entry_size: [16; 3],
        dynamic_pamt: false,
        keyid_bits: 6,
        seamrr: Some(range(3 * G + G / 2, 3 * G + G / 2 + 32 * M)),
        private_keyid_min: 32,
    }
}

impl Setup {
    fn env(&self) -> ConfigEnv<'_> {
        let sizes = self.pamt_entry_size.map(|s| s as u16);
        let mut limits = TdxLimits::new(self.max_tdmrs as u16, 16, sizes).unwrap();
        if self.dynamic_pamt {
            limits = limits.with_dynamic_pamt(1).unwrap();
        }
        let keyids = PrivateKeyIds::new(self.private_keyid_min as u32, 1).unwrap();
        let env = ConfigEnv::from_limits(&limits, &self.cmrs).with_keyids(self.keyid_bits, keyids);
        match self.seamrr {
            Some(r) => env.with_seamrr(r),
            None => env,
        }
    }

    /// TDH.SYS.CONFIG with RDX = number of TDMRs, each `TDMR_INFO` fetched through its PA.
    /// When every PA is good, `sys_config` on the plain array must agree.
    fn run(&self) -> u64 {
        let env = self.env();
        let fetched = sys_config_with(self.tdmrs.len(), &env, |i| {
            tdmr_info_pa(self.pas[i], &env)?;
            Ok(self.tdmrs[i])
        })
        .map_or_else(|s| s.raw(), |()| OK);
        let pas_ok = self.pas[..self.tdmrs.len().min(self.pas.len())]
            .iter()
            .all(|&pa| tdmr_info_pa(pa, &env).is_ok());
        if pas_ok {
            let direct = sys_config(&self.tdmrs, &env).map_or_else(|s| s.raw(), |()| OK);
            assert_eq!(direct, fetched, "sys_config and sys_config_with disagree");
        }
        fetched
    }

    fn t(&mut self, i: usize) -> &mut TdmrInfo {
        &mut self.tdmrs[i]
    }
}

struct Row {
    name: String,
    mutate: Box<dyn Fn(&mut Setup)>,
    expect: u64,
}

fn row(name: impl Into<String>, expect: u64, mutate: impl Fn(&mut Setup) + 'static) -> Row {
    Row {
        name: name.into(),
        mutate: Box::new(mutate),
        expect,
    }
}

fn check_rows(rows: Vec<Row>) {
    let mut names = std::collections::HashSet::new();
    let mut failures = Vec::new();
    for r in &rows {
        assert!(
            names.insert(r.name.clone()),
            "duplicate row name {}",
            r.name
        );
        let mut s = base();
        (r.mutate)(&mut s);
        let got = s.run();
        if got != r.expect {
            failures.push(format!(
                "{}: expected {:#018x}, got {:#018x}",
                r.name, r.expect, got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

/// The PAMT levels with the page-type code the module puts in bits 15:8.
const LEVELS: [(PageSize, &str); 3] = [
    (PageSize::Size4K, "4K"),
    (PageSize::Size2M, "2M"),
    (PageSize::Size1G, "1G"),
];

fn pamt_base(s: &Setup, i: usize, level: PageSize) -> u64 {
    s.tdmrs[i].pamt(level).0
}

fn set_pamt_base(s: &mut Setup, i: usize, level: PageSize, base: u64) {
    let size = s.tdmrs[i].pamt(level).1;
    s.tdmrs[i].set_pamt(level, base, size);
}

fn set_pamt_size(s: &mut Setup, i: usize, level: PageSize, size: u64) {
    let base = s.tdmrs[i].pamt(level).0;
    s.tdmrs[i].set_pamt(level, base, size);
}

#[test]
fn base_configuration_is_accepted() {
    let s = base();
    assert_eq!(s.run(), OK);
    let memory = [
        range(M, G),
        range(G + M, 2 * G),
        range(2 * G + M, 3 * G),
        range(4 * G + M, 5 * G),
    ];
    assert_eq!(covers_memory(&s.tdmrs, memory, &[]), Ok(()));
}

/// Steps 5 and 7.1: the operand checks.
fn operand_rows() -> Vec<Row> {
    vec![
        row("RDX = 0", 0xC000010000000002, |s| s.tdmrs.clear()),
        row("RDX above MAX_TDMRS", 0xC000010000000002, |s| {
            s.max_tdmrs = 3
        }),
        row("RDX equal to MAX_TDMRS", OK, |s| s.max_tdmrs = 4),
        row("RDX = 65 with MAX_TDMRS 64", 0xC000010000000002, |s| {
            s.tdmrs.resize(65, TdmrInfo::ZERO)
        }),
        row("RDX checked before any TDMR", 0xC000010000000002, |s| {
            s.max_tdmrs = 3;
            s.t(0).base += K4;
        }),
        row("PA[1] not 512-byte aligned", 0xC000010000000001, |s| {
            s.pas[1] += 0x100
        }),
        row("PA[1] at 2^52", 0xC000010000000001, |s| s.pas[1] = MAX_PA),
        row("PA[1] with a private HKID", 0xC000010000000001, |s| {
            s.pas[1] |= 40 * HKID1
        }),
        row(
            "PA[1] with the first private HKID",
            0xC000010000000001,
            |s| s.pas[1] |= 32 * HKID1,
        ),
        row("PA[1] with an MKTME (shared) HKID", OK, |s| {
            s.pas[1] |= 31 * HKID1
        }),
        row("PA[1] inside the SEAM range", 0xC000010000000001, |s| {
            s.seamrr = Some(range(0x20_1000, 0x20_2000))
        }),
        row(
            "PA[1]'s last 8 bytes inside the SEAM range",
            0xC000010000000001,
            |s| s.seamrr = Some(range(0x20_11f8, 0x20_1200)),
        ),
        row("SEAM range abutting PA[1]'s 512 bytes", OK, |s| {
            s.seamrr = Some(range(0x20_1200, 0x20_2000))
        }),
        // The module clears the HKID bits before comparing with SEAMRR: an alias of the SEAM
        // range under a shared KeyID is refused (the 2^52 and HKID tests use the raw address).
        row(
            "PA[1] a shared-HKID alias of the SEAM range (HKID 1)",
            0xC000010000000001,
            |s| {
                s.seamrr = Some(range(0x7000_0000, 0x7000_0000 + 32 * M));
                s.pas[1] = 0x7000_0000 | HKID1;
            },
        ),
        row(
            "PA[1] an MKTME-HKID alias of the SEAM range (HKID 31)",
            0xC000010000000001,
            |s| {
                s.seamrr = Some(range(0x7000_0000, 0x7000_0000 + 32 * M));
                s.pas[1] = 0x7000_0000 | (31 * HKID1);
            },
        ),
        row(
            "PA[1] with a shared HKID next to the SEAM range's alias",
            OK,
            |s| {
                s.seamrr = Some(range(0x7000_0000, 0x7000_0000 + 32 * M));
                s.pas[1] = (0x20_1000) | HKID1;
            },
        ),
        row("PA[3] (the last) at 2^52", 0xC000010000000001, |s| {
            s.pas[3] = MAX_PA
        }),
        row(
            "TDMR 0 fault reported before PA[1] is fetched",
            0xC0000A0000000000,
            |s| {
                s.pas[1] += 0x100;
                s.t(0).size = 0;
            },
        ),
        row(
            "PA[1] fault reported before TDMR 1 is checked",
            0xC000010000000001,
            |s| {
                s.pas[1] += 0x100;
                s.t(1).size = 0;
            },
        ),
    ]
}

/// Steps 7.3 to 7.8: the TDMR itself.
fn tdmr_rows() -> Vec<Row> {
    vec![
        row("TDMR 2 base + size overflows", 0xC0000A0000000002, |s| {
            s.t(2).size = 0u64.wrapping_sub(2 * G)
        }),
        row(
            "overflow reported before ordering",
            0xC0000A0000000002,
            |s| {
                s.t(2).base = G / 2;
                s.t(2).size = 0u64.wrapping_sub(G / 2);
            },
        ),
        row("TDMR 2 base below TDMR 1 base", 0xC0000A0100000002, |s| {
            s.t(2).base = 0
        }),
        row(
            "TDMR 2 base equal to TDMR 1 base",
            0xC0000A0100000002,
            |s| s.t(2).base = G,
        ),
        row(
            "TDMR 2 base one page below TDMR 1's end",
            0xC0000A0100000002,
            |s| s.t(2).base = 2 * G - K4,
        ),
        row("TDMR 2 starts inside TDMR 1", 0xC0000A0100000002, |s| {
            s.tdmrs[1] = tdmr_at(G, 2 * G)
        }),
        row(
            "ordering reported before alignment",
            0xC0000A0100000002,
            |s| s.t(2).base = G + 2 * M,
        ),
        row("TDMR 2 base not 1G aligned", 0xC0000A0000000002, |s| {
            s.t(2).base = 2 * G + 2 * M
        }),
        row("TDMR 2 size not a 1G multiple", 0xC0000A0000000002, |s| {
            s.t(2).size = G + K4
        }),
        row("TDMR 2 size 2M", 0xC0000A0000000002, |s| {
            s.t(2).size = 2 * M
        }),
        row("TDMR 2 size 0", 0xC0000A0000000002, |s| s.t(2).size = 0),
        row("TDMR 3 base at 2^52", 0xC0000A0000000003, |s| {
            s.tdmrs[3] = tdmr_at(MAX_PA, G)
        }),
        row("TDMR 3 base with HKID bits", 0xC0000A0000000003, |s| {
            s.tdmrs[3] = tdmr_at(HKID1, G)
        }),
        row("the same base is fine without KeyID bits", OK, |s| {
            s.keyid_bits = 0;
            s.tdmrs[3] = tdmr_at(HKID1, G);
            s.cmrs[3] = Cmr::new(HKID1 + M, G - M);
        }),
        row("TDMR 3 last byte beyond 2^52", 0xC0000A0000000003, |s| {
            s.keyid_bits = 0;
            s.tdmrs[3] = tdmr_at(MAX_PA - G, 2 * G);
        }),
        row("TDMR 3 ending exactly at 2^52", OK, |s| {
            s.keyid_bits = 0;
            s.tdmrs[3] = tdmr_at(MAX_PA - G, G);
            s.cmrs[3] = Cmr::new(MAX_PA - G + M, G - M);
        }),
        row("TDMR 3 last byte with HKID bits", 0xC0000A0000000003, |s| {
            s.tdmrs[3] = tdmr_at(HKID1 - G, 2 * G)
        }),
        row(
            "TDMR 1 fault reported before TDMR 2's",
            0xC0000A0000000001,
            |s| {
                s.t(1).size = 0;
                s.t(2).base += 2 * M;
            },
        ),
        row(
            "TDMR fault reported before its reserved areas",
            0xC0000A0000000002,
            |s| {
                s.t(2).size = G + K4;
                s.t(2).reserved[3] = rsv(G / 2, K4);
            },
        ),
    ]
}

/// Step 7.9: reserved areas, status `| i | j << 8`.
fn reserved_area_rows() -> Vec<Row> {
    /// TDMR 2 with a hole, `n` one-page areas at 16 MiB steps, then its PAMT area.
    fn many(s: &mut Setup, n: usize) {
        let pamt_area = s.t(2).reserved[1];
        for k in 1..=n {
            s.t(2).reserved[k] = rsv(k as u64 * 16 * M, K4);
        }
        s.t(2).reserved[n + 1] = pamt_area;
    }
    vec![
        row(
            "null slot 2 followed by non-null slot 3",
            0xC0000A2100000202,
            |s| s.t(2).reserved[3] = rsv(G / 2, K4),
        ),
        row(
            "null slot 0 followed by non-null slot 1",
            0xC0000A2100000002,
            |s| s.t(2).reserved[0] = rsv(0, 0),
        ),
        row(
            "null slots 2..14 then non-null slot 15: j is slot 14",
            0xC0000A2100000E02,
            |s| s.t(2).reserved[15] = rsv(G / 2, K4),
        ),
        row("offset of a null slot is ignored", OK, |s| {
            s.t(2).reserved[5] = rsv(0x123, 0)
        }),
        row("slot 1 offset + size overflows", 0xC0000A2000000102, |s| {
            s.t(2).reserved[1].offset = 0u64.wrapping_sub(K4)
        }),
        row("slot 1 starts below slot 0", 0xC0000A2100000102, |s| {
            s.t(2).reserved.swap(0, 1)
        }),
        row("slot 1 overlaps slot 0", 0xC0000A2100000102, |s| {
            s.t(2).reserved[2] = s.t(2).reserved[1];
            s.t(2).reserved[1] = rsv(M / 2, M);
        }),
        row("slot 1 at slot 0's offset", 0xC0000A2100000102, |s| {
            s.t(2).reserved[2] = s.t(2).reserved[1];
            s.t(2).reserved[1] = rsv(0, K4);
        }),
        row("slot 1 abutting slot 0", OK, |s| {
            s.t(2).reserved[2] = s.t(2).reserved[1];
            s.t(2).reserved[1] = rsv(M, M);
        }),
        row(
            "overlap reported before misalignment",
            0xC0000A2100000102,
            |s| {
                s.t(2).reserved[2] = s.t(2).reserved[1];
                s.t(2).reserved[1] = rsv(M / 2 + 0x800, M);
            },
        ),
        row("slot 1 offset not 4K aligned", 0xC0000A2000000102, |s| {
            s.t(2).reserved[2] = s.t(2).reserved[1];
            s.t(2).reserved[1] = rsv(M + 0x800, K4);
        }),
        row("slot 0 size not 4K aligned", 0xC0000A2000000002, |s| {
            s.t(2).reserved[0].size = M + 0x800
        }),
        row("slot 5 offset not 4K aligned", 0xC0000A2000000502, |s| {
            many(s, 5);
            s.t(2).reserved[5].offset += 0x800;
        }),
        row("slot 1 reaches beyond the TDMR", 0xC0000A2000000102, |s| {
            s.t(2).reserved[1].size += K4
        }),
        row("base + offset overflows", 0xC0000A2000000102, |s| {
            s.t(2).reserved[1] = rsv(0u64.wrapping_sub(2 * G), K4)
        }),
        row("base + offset + size overflows", 0xC0000A2000000102, |s| {
            s.t(2).reserved[1] = rsv(0u64.wrapping_sub(2 * G + K4), 2 * K4)
        }),
        row("all 16 slots used", OK, |s| many(s, 14)),
        row("slot 15 size not 4K aligned", 0xC0000A2000000F02, |s| {
            many(s, 14);
            s.t(2).reserved[15].size -= 0x800;
        }),
        row("TDMR entirely reserved", OK, |s| {
            s.t(2).reserved[0] = rsv(0, G - P)
        }),
        row(
            "reserved fault reported before PAMT fault",
            0xC0000A2000000002,
            |s| {
                s.t(2).reserved[0].size = M + 0x800;
                set_pamt_size(s, 2, PageSize::Size1G, 0);
            },
        ),
    ]
}

/// Step 7.10: PAMT addresses and sizes, status `| i | PT << 8`, levels checked 1G, 2M, 4K.
fn invalid_pamt_rows() -> Vec<Row> {
    // INVALID_PAMT for TDMR 2 at each level, written out.
    let codes = [0xC0000A1000000002, 0xC0000A1000000102, 0xC0000A1000000202];
    // PAMT_OUTSIDE_CMRS for TDMR 2 at each level.
    let outside = [0xC0000A1100000002, 0xC0000A1100000102, 0xC0000A1100000202];
    // One entry short of the minimum, rounded to pages: 4K level 4 MiB, 2M level 8 KiB,
    // 1G level 16 bytes (so any size below one page, i.e. 0).
    let too_small = [4 * M - K4, K4, 0];
    let mut rows = Vec::new();
    for (idx, (level, name)) in LEVELS.into_iter().enumerate() {
        let code = codes[idx];
        let small = too_small[idx];
        let beyond_cmrs = outside[idx];
        rows.extend([
            row(format!("{name}: base + size overflows"), code, move |s| {
                set_pamt_base(s, 2, level, 0u64.wrapping_sub(K4))
            }),
            row(format!("{name}: base not 4K aligned"), code, move |s| {
                let b = pamt_base(s, 2, level);
                set_pamt_base(s, 2, level, b + 0x800);
            }),
            row(format!("{name}: size not 4K aligned"), code, move |s| {
                let sz = s.t(2).pamt(level).1;
                set_pamt_size(s, 2, level, sz + 0x800);
            }),
            row(format!("{name}: base at 2^52"), code, move |s| {
                set_pamt_base(s, 2, level, MAX_PA)
            }),
            // Starts one page below 2^52 and is at least two pages long.
            row(format!("{name}: last byte beyond 2^52"), code, move |s| {
                s.keyid_bits = 0;
                let sz = s.t(2).pamt(level).1.max(2 * K4);
                s.t(2).set_pamt(level, MAX_PA - K4, sz);
            }),
            // Ending exactly at 2^52 passes step 10 and is caught by step 13 instead.
            row(
                format!("{name}: ending exactly at 2^52 passes step 10"),
                beyond_cmrs,
                move |s| {
                    s.keyid_bits = 0;
                    let sz = s.t(2).pamt(level).1;
                    set_pamt_base(s, 2, level, MAX_PA - sz);
                },
            ),
            row(format!("{name}: base with HKID bits"), code, move |s| {
                set_pamt_base(s, 2, level, HKID1)
            }),
            row(
                format!("{name}: last byte with HKID bits"),
                code,
                move |s| {
                    let sz = s.t(2).pamt(level).1.max(2 * K4);
                    s.t(2).set_pamt(level, HKID1 - K4, sz);
                },
            ),
            row(format!("{name}: one entry too small"), code, move |s| {
                set_pamt_size(s, 2, level, small)
            }),
        ]);
    }
    rows.extend([
        row("1G: larger than the minimum accepted", OK, |s| {
            set_pamt_size(s, 2, PageSize::Size1G, 2 * K4)
        }),
        row("Dynamic PAMT: 4K bitmap of exactly 32 KiB", OK, |s| {
            s.dynamic_pamt = true;
            set_pamt_size(s, 2, PageSize::Size4K, 32 * 1024);
        }),
        row(
            "Dynamic PAMT: 4K bitmap of 28 KiB",
            0xC0000A1000000002,
            |s| {
                s.dynamic_pamt = true;
                set_pamt_size(s, 2, PageSize::Size4K, 28 * 1024);
            },
        ),
        row(
            "without Dynamic PAMT a 32 KiB 4K PAMT is too small",
            0xC0000A1000000002,
            |s| set_pamt_size(s, 2, PageSize::Size4K, 32 * 1024),
        ),
        row(
            "Dynamic PAMT keeps the 2M minimum",
            0xC0000A1000000102,
            |s| {
                s.dynamic_pamt = true;
                set_pamt_size(s, 2, PageSize::Size2M, K4);
            },
        ),
        row(
            "32-byte 2M entries make TDMR 0's 8 KiB too small",
            0xC0000A1000000100,
            |s| s.pamt_entry_size = [16, 32, 16],
        ),
        row("levels checked 1G before 4K", 0xC0000A1000000202, |s| {
            s.t(2).pamt_4k_base += 0x800;
            s.t(2).pamt_1g_base += 0x800;
        }),
        row("levels checked 2M before 4K", 0xC0000A1000000102, |s| {
            s.t(2).pamt_4k_base += 0x800;
            s.t(2).pamt_2m_base += 0x800;
        }),
        row(
            "invalid PAMT reported before PAMT overlap",
            0xC0000A1000000002,
            |s| {
                s.t(2).pamt_4k_base += 0x800;
                let b = pamt_base(s, 1, PageSize::Size4K);
                set_pamt_base(s, 2, PageSize::Size2M, b);
            },
        ),
    ]);
    rows
}

/// Steps 7.11 and 7.12: PAMT overlaps, status `| i | PT << 8 | j << 16`.
fn pamt_overlap_rows() -> Vec<Row> {
    use PageSize::{Size1G, Size2M, Size4K};
    vec![
        // 7.11, against earlier TDMRs.
        row(
            "TDMR 3's 2M PAMT on TDMR 1's PAMT",
            0xC0000A1200010103,
            |s| {
                let b = pamt_base(s, 1, Size4K);
                set_pamt_base(s, 3, Size2M, b);
            },
        ),
        row(
            "TDMR 3's 1G PAMT on TDMR 1's 1G PAMT",
            0xC0000A1200010203,
            |s| {
                let b = pamt_base(s, 1, Size1G);
                set_pamt_base(s, 3, Size1G, b);
            },
        ),
        row(
            "TDMR 3's 4K PAMT sharing one page with TDMR 0's 4K PAMT",
            0xC0000A1200000003,
            |s| {
                let b = pamt_base(s, 0, Size4K);
                set_pamt_base(s, 3, Size4K, b + K4 - 4 * M);
            },
        ),
        row(
            "TDMR 3's 1G PAMT abutting TDMR 1's, in TDMR 2's hole",
            OK,
            |s| set_pamt_base(s, 3, Size1G, 2 * G),
        ),
        row(
            "earlier TDMR reported before later level",
            0xC0000A1200000103,
            |s| {
                let b1 = pamt_base(s, 1, Size4K);
                let b0 = pamt_base(s, 0, Size2M);
                set_pamt_base(s, 3, Size4K, b1);
                set_pamt_base(s, 3, Size2M, b0);
            },
        ),
        row(
            "levels in order 4K, 2M, 1G against one TDMR",
            0xC0000A1200010003,
            |s| {
                let b4 = pamt_base(s, 1, Size4K);
                let b1 = pamt_base(s, 1, Size1G);
                set_pamt_base(s, 3, Size4K, b4);
                set_pamt_base(s, 3, Size1G, b1);
            },
        ),
        // 7.11, within one TDMR.
        row("TDMR 2: 4K vs 2M", 0xC0000A1200020002, |s| {
            let b = pamt_base(s, 2, Size4K);
            set_pamt_base(s, 2, Size2M, b + K4);
        }),
        row("TDMR 2: 4K vs 1G", 0xC0000A1200020002, |s| {
            let b = pamt_base(s, 2, Size4K);
            set_pamt_base(s, 2, Size1G, b);
        }),
        row("TDMR 2: 2M vs 1G", 0xC0000A1200020102, |s| {
            let b = pamt_base(s, 2, Size2M);
            set_pamt_base(s, 2, Size1G, b + K4);
        }),
        row(
            "TDMR 2: 4K vs 2M reported before 2M vs 1G",
            0xC0000A1200020002,
            |s| {
                let b = pamt_base(s, 2, Size4K);
                set_pamt_base(s, 2, Size2M, b);
                set_pamt_base(s, 2, Size1G, b);
            },
        ),
        row(
            "earlier TDMRs reported before the TDMR's own levels",
            0xC0000A1200010002,
            |s| {
                let b1 = pamt_base(s, 1, Size4K);
                set_pamt_base(s, 2, Size4K, b1);
                let b2 = pamt_base(s, 2, Size2M);
                set_pamt_base(s, 2, Size1G, b2);
            },
        ),
        // 7.12, PAMT against non-reserved space.
        row(
            "TDMR 3's 4K PAMT in TDMR 1's non-reserved space",
            0xC0000A1200010003,
            |s| set_pamt_base(s, 3, Size4K, G + G / 2),
        ),
        row(
            "TDMR 2's 1G PAMT in its own non-reserved space",
            0xC0000A1200020202,
            |s| set_pamt_base(s, 2, Size1G, 2 * G + G / 2),
        ),
        row(
            "TDMR 2's 4K PAMT one page into its own non-reserved space",
            0xC0000A1200020002,
            |s| {
                let b = pamt_base(s, 2, Size4K);
                set_pamt_base(s, 2, Size4K, b - K4);
            },
        ),
        row(
            "reverse: TDMR 1's 2M PAMT in TDMR 3's non-reserved space",
            0xC0000A1200030101,
            |s| set_pamt_base(s, 1, Size2M, 4 * G + G / 2),
        ),
        row(
            "forward direction reported before reverse for the same j",
            0xC0000A1200010003,
            |s| {
                set_pamt_base(s, 3, Size4K, G + G / 2);
                set_pamt_base(s, 1, Size2M, 4 * G + G / 2);
            },
        ),
        row(
            "lower j reported first, even in the reverse direction",
            0xC0000A1200030200,
            |s| {
                set_pamt_base(s, 0, Size1G, 4 * G + G / 2);
                set_pamt_base(s, 3, Size4K, G + G / 2);
            },
        ),
        row("PAMT block outside every TDMR", OK, |s| {
            let (b4, b2, b1) = (3 * G, 3 * G + 4 * M, 3 * G + 4 * M + 2 * K4);
            set_pamt_base(s, 3, Size4K, b4);
            set_pamt_base(s, 3, Size2M, b2);
            set_pamt_base(s, 3, Size1G, b1);
        }),
        row(
            "PAMT vs PAMT (7.11) reported before PAMT vs TDMR (7.12)",
            0xC0000A1200010203,
            |s| {
                set_pamt_base(s, 3, Size4K, G / 2);
                let b = pamt_base(s, 1, Size1G);
                set_pamt_base(s, 3, Size1G, b);
            },
        ),
    ]
}

/// Steps 7.13 and 7.14: CMR containment.
fn outside_cmrs_rows() -> Vec<Row> {
    use PageSize::{Size2M, Size4K};
    let codes = [0xC0000A1100000003, 0xC0000A1100000103, 0xC0000A1100000203];
    let mut rows = Vec::new();
    for (idx, (level, name)) in LEVELS.into_iter().enumerate() {
        rows.push(row(
            format!("TDMR 3's {name} PAMT outside every CMR"),
            codes[idx],
            // [3.75G, ...): in no TDMR and no CMR.
            move |s| set_pamt_base(s, 3, level, 3 * G + 3 * G / 4),
        ));
    }
    rows.extend([
        row(
            "PAMT straddling the end of a CMR",
            0xC0000A1100000003,
            |s| set_pamt_base(s, 3, Size4K, 3 * G + G / 2 - 2 * M),
        ),
        row(
            "PAMT spanning abutting CMRs with a null slot between",
            OK,
            |s| {
                // TDMR 1's 1G PAMT moves to the 2M level's place; the 2M PAMT straddles 2G,
                // in TDMR 1's PAMT area and TDMR 2's hole, across CMR slots 0 and 2.
                let b2 = pamt_base(s, 1, Size2M);
                set_pamt_base(s, 1, PageSize::Size1G, b2);
                set_pamt_base(s, 1, Size2M, 2 * G - K4);
            },
        ),
        row(
            "the same PAMT when the CMRs do not abut",
            0xC0000A1100000101,
            |s| {
                let b2 = pamt_base(s, 1, Size2M);
                set_pamt_base(s, 1, PageSize::Size1G, b2);
                set_pamt_base(s, 1, Size2M, 2 * G - K4);
                s.cmrs[2] = Cmr::new(2 * G + K4, G + G / 2 - K4);
            },
        ),
        row(
            "PAMT levels checked 1G, 2M, 4K for CMRs",
            0xC0000A1100000103,
            |s| {
                set_pamt_base(s, 3, Size4K, 3 * G + 3 * G / 4);
                set_pamt_base(s, 3, Size2M, 3 * G + 3 * G / 4 + 8 * M);
            },
        ),
        row(
            "PAMT overlap (7.12) reported before PAMT outside CMRs",
            0xC0000A1200030003,
            // [4G, 4G + 4M): TDMR 3's hole and non-reserved space, partly outside CMR 3.
            |s| set_pamt_base(s, 3, Size4K, 4 * G),
        ),
        // 7.14.
        row(
            "TDMR 3's non-reserved space outside the CMRs",
            0xC0000A0200000003,
            |s| {
                s.t(3).reserved[0] = s.t(3).reserved[1];
                s.t(3).reserved[1] = rsv(0, 0);
            },
        ),
        row(
            "PAMT outside CMRs reported before TDMR outside CMRs",
            0xC0000A1100000003,
            |s| {
                s.t(3).reserved[0] = s.t(3).reserved[1];
                s.t(3).reserved[1] = rsv(0, 0);
                set_pamt_base(s, 3, Size4K, 3 * G + 3 * G / 4);
            },
        ),
        row("non-reserved segment spanning abutting CMRs", OK, |s| {
            s.cmrs = vec![
                Cmr::new(M, G + G / 2 - M),
                Cmr::new(0, 0),
                Cmr::new(G + G / 2, G / 2),
                Cmr::new(2 * G, G + G / 2),
                Cmr::new(4 * G + M, G - M),
            ];
        }),
        row(
            "non-reserved segment over a one-page gap between CMRs",
            0xC0000A0200000001,
            |s| {
                s.cmrs = vec![
                    Cmr::new(M, G + G / 2 - M),
                    Cmr::new(G + G / 2 + K4, G / 2 - K4),
                    Cmr::new(2 * G, G + G / 2),
                    Cmr::new(4 * G + M, G - M),
                ];
            },
        ),
        row(
            "a reserved area over the gap makes it acceptable",
            OK,
            |s| {
                s.cmrs = vec![
                    Cmr::new(M, G + G / 2 - M),
                    Cmr::new(G + G / 2 + K4, G / 2 - K4),
                    Cmr::new(2 * G, G + G / 2),
                    Cmr::new(4 * G + M, G - M),
                ];
                s.t(1).reserved[2] = s.t(1).reserved[1];
                s.t(1).reserved[1] = rsv(G / 2, K4);
            },
        ),
        row(
            "a fully reserved TDMR needs CMRs only for its PAMT",
            OK,
            |s| {
                s.t(3).reserved[0] = rsv(0, G - P);
                s.cmrs[3] = Cmr::new(5 * G - P, P);
            },
        ),
        row(
            "TDMR 1 outside CMRs reported before TDMR 2's fault",
            0xC0000A0200000001,
            |s| {
                s.cmrs[2] = Cmr::new(2 * G, G + G / 2);
                s.cmrs[1] = Cmr::new(G + G / 2 + K4, G / 2 - K4);
                s.cmrs[0] = Cmr::new(M, G + G / 2 - M);
                s.t(2).size = 0;
            },
        ),
    ]);
    rows
}

/// Sixty-four TDMRs: the index bytes reach 63 and RDX = 65 is refused.
#[test]
fn sixty_four_tdmrs() {
    let mut s = base();
    s.tdmrs = (0..64).map(|k| tdmr_at(k * G, G)).collect();
    s.cmrs = vec![Cmr::new(M, 64 * G - M)];
    s.seamrr = None;
    assert_eq!(s.run(), OK);

    let mut bad = s.clone();
    let b = pamt_base(&bad, 62, PageSize::Size1G);
    set_pamt_base(&mut bad, 63, PageSize::Size1G, b);
    assert_eq!(bad.run(), 0xC0000A12003E023F);

    let mut bad = s.clone();
    bad.t(63).base += 2 * M;
    assert_eq!(bad.run(), 0xC0000A000000003F);

    let mut more = s;
    more.tdmrs.push(tdmr_at(64 * G, G));
    assert_eq!(more.run(), 0xC000010000000002);
}

#[test]
fn operand_codes() {
    check_rows(operand_rows());
}

#[test]
fn tdmr_codes() {
    check_rows(tdmr_rows());
}

#[test]
fn reserved_area_codes() {
    check_rows(reserved_area_rows());
}

#[test]
fn invalid_pamt_codes() {
    check_rows(invalid_pamt_rows());
}

#[test]
fn pamt_overlap_codes() {
    check_rows(pamt_overlap_rows());
}

#[test]
fn outside_cmrs_codes() {
    check_rows(outside_cmrs_rows());
}

/// The tables hold at least one row for every status TDH.SYS.CONFIG's steps 5 and 7 return,
/// and an accepting row in every group (so a validator refusing everything fails somewhere
/// besides the base test).
#[test]
fn every_status_has_a_row() {
    const MASK: u64 = 0xFFFF_FFFF_0000_0000;
    let groups = [
        operand_rows(),
        tdmr_rows(),
        reserved_area_rows(),
        invalid_pamt_rows(),
        pamt_overlap_rows(),
        outside_cmrs_rows(),
    ];
    for g in &groups {
        assert!(
            g.iter().any(|r| r.expect == OK),
            "a group without an accepting row"
        );
    }
    let expected: Vec<u64> = groups.iter().flatten().map(|r| r.expect).collect();
    // Operand errors carry the register in the low bits: both registers must appear.
    for status in [0xC000010000000001, 0xC000010000000002] {
        assert!(expected.contains(&status), "no row for {status:#x}");
    }
    for class in [
        0xC0000A0000000000u64, // INVALID_TDMR
        0xC0000A0100000000,    // NON_ORDERED_TDMR
        0xC0000A0200000000,    // TDMR_OUTSIDE_CMRS
        0xC0000A1000000000,    // INVALID_PAMT
        0xC0000A1100000000,    // PAMT_OUTSIDE_CMRS
        0xC0000A1200000000,    // PAMT_OVERLAP
        0xC0000A2000000000,    // INVALID_RESERVED_IN_TDMR
        0xC0000A2100000000,    // NON_ORDERED_RESERVED_IN_TDMR
    ] {
        assert!(
            expected.iter().any(|&e| e & MASK == class),
            "no row for {class:#x}"
        );
    }
}

/// TDX memory of the base configuration: everything but the 1 MiB holes.
fn base_memory() -> Vec<PhysRange> {
    vec![
        range(M, G),
        range(G + M, 2 * G),
        range(2 * G + M, 3 * G),
        range(4 * G + M, 5 * G),
    ]
}

#[test]
fn covers_memory_names_the_first_uncovered_range() {
    let s = base();
    let t = &s.tdmrs;
    // A hole of TDMR 1 that is TDX memory after all.
    let with_hole = [range(M, 2 * G)];
    assert_eq!(
        covers_memory(t, with_hole, &[]).unwrap_err().range,
        range(G, G + M)
    );
    // Memory beyond every TDMR.
    let beyond = [range(M, G), range(5 * G, 5 * G + K4)];
    assert_eq!(
        covers_memory(t, beyond, &[]).unwrap_err().range,
        range(5 * G, 5 * G + K4)
    );
    // Runs into the gap after TDMR 2: named from the first uncovered byte to the range's end.
    let tail = [range(3 * G - M, 3 * G + M)];
    assert_eq!(
        covers_memory(t, tail, &[]).unwrap_err().range,
        range(3 * G, 3 * G + M)
    );
    // Starts in TDMR 3's hole: named up to where the non-reserved part begins.
    let head = [range(4 * G, 4 * G + 2 * M)];
    assert_eq!(
        covers_memory(t, head, &[]).unwrap_err().range,
        range(4 * G, 4 * G + M)
    );
    // No TDMRs: the first range is named whole.
    assert_eq!(
        covers_memory(&[], base_memory(), &[]).unwrap_err().range,
        range(M, G)
    );
    // The error names the range in its message.
    let e = covers_memory(t, with_hole, &[]).unwrap_err();
    assert!(e.to_string().contains("[0x40000000, 0x40100000)"), "{e}");
}

#[test]
fn covers_memory_accepts_pamt_bytes_and_exclusions() {
    let s = base();
    // The base memory holds all four PAMT blocks, which lie in reserved areas.
    assert_eq!(covers_memory(&s.tdmrs, base_memory(), &[]), Ok(()));

    // Excluded memory is accepted; a partial exclusion leaves the rest named.
    let with_hole = [range(M, 2 * G)];
    assert_eq!(
        covers_memory(&s.tdmrs, with_hole, &[range(G, G + M)]),
        Ok(())
    );
    assert_eq!(
        covers_memory(&s.tdmrs, with_hole, &[range(G, G + M / 2)])
            .unwrap_err()
            .range,
        range(G + M / 2, G + M)
    );

    // A reserved area one page larger than the PAMT it holds leaves that page uncovered.
    let mut wide = base();
    wide.t(2).reserved[1].offset -= K4;
    wide.t(2).reserved[1].size += K4;
    assert_eq!(wide.run(), OK);
    assert_eq!(
        covers_memory(&wide.tdmrs, base_memory(), &[])
            .unwrap_err()
            .range,
        range(3 * G - P - K4, 3 * G - P)
    );

    // A PAMT block outside every TDMR covers itself, and nothing past its end.
    let mut moved = base();
    for (level, off) in [
        (PageSize::Size4K, 0),
        (PageSize::Size2M, 4 * M),
        (PageSize::Size1G, 4 * M + 8 * 1024),
    ] {
        set_pamt_base(&mut moved, 3, level, 3 * G + off);
    }
    moved.t(3).reserved[1] = rsv(0, 0);
    assert_eq!(moved.run(), OK);
    let mut memory = base_memory();
    memory.insert(3, range(3 * G, 3 * G + P));
    assert_eq!(covers_memory(&moved.tdmrs, memory.clone(), &[]), Ok(()));
    memory[3] = range(3 * G, 3 * G + P + K4);
    assert_eq!(
        covers_memory(&moved.tdmrs, memory, &[]).unwrap_err().range,
        range(3 * G + P, 3 * G + P + K4)
    );

    // Memory running across two TDMRs' non-reserved parts and PAMTs.
    let mut joined = base();
    joined.t(1).reserved[0] = joined.t(1).reserved[1];
    joined.t(1).reserved[1] = rsv(0, 0);
    assert_eq!(joined.run(), OK);
    assert_eq!(covers_memory(&joined.tdmrs, [range(M, 2 * G)], &[]), Ok(()));
}

#[test]
fn covers_memory_does_not_panic_on_unchecked_tdmrs() {
    // Not something sys_config accepts; covers_memory must still answer rather than overflow.
    let mut t = TdmrInfo::ZERO;
    t.base = 0u64.wrapping_sub(G);
    t.size = 2 * G;
    t.reserved[0] = rsv(u64::MAX, 2);
    t.set_pamt(PageSize::Size4K, u64::MAX, 5);
    assert_eq!(
        covers_memory(&[t], [range(M, 2 * M)], &[])
            .unwrap_err()
            .range,
        range(M, 2 * M)
    );
}
