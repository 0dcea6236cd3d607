//! The mock's Dynamic PAMT leaves, one test per status, with the exact 64-bit values of the
//! module's rules (tdx-module-rules.md §2.2, §5, §8): TDH.PHYMEM.PAMT.ADD (58),
//! TDH.PHYMEM.PAMT.REMOVE (59), and TDH.SYS.TDMR.INIT in 16 MiB steps.

use tdmr::addr::PageSize;
use tdmr::init::{Cpus, HostMemory};
use tdmr::layout::{Plan, Planner, Strategy};
use tdmr::memmap::parse_kernel_log;
use tdmr::mock::{MockModule, Platform, SysState};
use tdmr::seamcall::Seamcall;
use tdmr::sysinfo::TdxLimits;
use tdmr::tdx::abi::TdmrInfoPaArray;
use tdmr::tdx::leaf::{self, Leaf};
use tdmr::tdx::status::*;
use tdmr::tdx::{Output, Regs};

/// CMRs [1 MiB, 0x7f000000) and [4 GiB, 8 GiB): TDMR 0 = [0, 2 GiB) with holes [0, 1 MiB) and
/// [0x7f000000, 2 GiB); TDMR 1 = [4 GiB, 8 GiB) holding every PAMT near its top.
const LOG: &str =
    "virt/tdx: CMR: [0x100000, 0x7f000000)\nvirt/tdx: CMR: [0x100000000, 0x200000000)\n";
const GIB: u64 = 1 << 30;
const FOUR_GIB: u64 = 4 * GIB;
const MIB: u64 = 1 << 20;
const TWO_MIB: u64 = 2 * MIB;
/// RCX level bits for a 2 MiB range.
const PS_2M: u64 = 1;

fn dpamt_limits() -> TdxLimits {
    TdxLimits::default().with_dynamic_pamt(1).unwrap()
}

/// The Linux plan, sized for Dynamic PAMT (a bitmap at the 4K level) or not, its PAMTs at the
/// top of node memory (the top-down model: the pages these tests use stay free).
fn plan(dpamt: bool) -> Plan {
    let input = parse_kernel_log(LOG).unwrap();
    let limits = if dpamt {
        dpamt_limits()
    } else {
        TdxLimits::default()
    };
    Planner::new()
        .with_limits(limits)
        .with_strategy(Strategy::Linux)
        .with_pamt_model(tdmr::pamt::PamtModel::TopDown)
        .plan(input.memory(), input.cmrs())
        .unwrap()
}

fn on(m: &MockModule, lp: u32, l: Leaf, regs: Regs) -> Output {
    let mut out = None;
    m.run_on(lp, &mut || out = Some(m.seamcall(l, &regs)))
        .unwrap();
    out.unwrap()
}

fn raw(m: &MockModule, l: Leaf, regs: Regs) -> u64 {
    on(m, 0, l, regs).status.raw()
}

fn add(m: &MockModule, rcx: u64, rdx: u64, r8: u64) -> u64 {
    raw(
        m,
        leaf::TDH_PHYMEM_PAMT_ADD,
        Regs {
            rcx,
            rdx,
            r8,
            ..Regs::ZERO
        },
    )
}

fn remove(m: &MockModule, rcx: u64) -> Output {
    on(
        m,
        0,
        leaf::TDH_PHYMEM_PAMT_REMOVE,
        Regs { rcx, ..Regs::ZERO },
    )
}

fn tdmr_init(m: &MockModule, base: u64) -> Output {
    on(
        m,
        0,
        leaf::TDH_SYS_TDMR_INIT,
        Regs {
            rcx: base,
            ..Regs::ZERO
        },
    )
}

/// A module that supports Dynamic PAMT, configured (with R8 bit 16 iff `dpamt`) and ready,
/// with no TDMR initialized yet.
fn ready_uninitialized(dpamt: bool) -> MockModule {
    let input = parse_kernel_log(LOG).unwrap();
    let p = Platform::new(input.cmrs().listed())
        .unwrap()
        .with_topology(2, 2)
        .unwrap()
        .with_limits(dpamt_limits());
    let m = MockModule::new(p);
    assert_eq!(raw(&m, leaf::TDH_SYS_INIT, Regs::ZERO), TDX_SUCCESS);
    for lp in 0..2 {
        assert_eq!(
            on(&m, lp, leaf::TDH_SYS_LP_INIT, Regs::ZERO).status.raw(),
            TDX_SUCCESS
        );
    }
    let infos = plan(dpamt).tdmr_infos().unwrap();
    let pas: Vec<u64> = infos
        .iter()
        .map(|t| m.place(&t.to_bytes(), 512).unwrap())
        .collect();
    let array = TdmrInfoPaArray::new(&pas).unwrap();
    let regs = Regs {
        rcx: m.place(&array.to_bytes(), 512).unwrap(),
        rdx: infos.len() as u64,
        r8: 32 | if dpamt { 1 << 16 } else { 0 },
        ..Regs::ZERO
    };
    assert_eq!(raw(&m, leaf::TDH_SYS_CONFIG, regs), TDX_SUCCESS);
    assert_eq!(m.dynamic_pamt(), dpamt);
    for lp in 0..2 {
        let s = on(&m, lp, leaf::TDH_SYS_KEY_CONFIG, Regs::ZERO)
            .status
            .raw();
        assert_eq!(s, TDX_SUCCESS);
    }
    assert_eq!(m.state(), SysState::SysReady);
    m
}

/// The same with both TDMRs initialized.
fn ready(dpamt: bool) -> MockModule {
    let m = ready_uninitialized(dpamt);
    for base in [0, 4 * GIB] {
        while tdmr_init(&m, base).status.raw() == TDX_SUCCESS {}
    }
    assert!(m.tdmrs().iter().all(|t| t.is_done()));
    m
}

/// Pages for pairs: free, non-reserved TDX memory in TDMR 1.
const POOL: u64 = 6 * GIB;
fn pool(i: u64) -> u64 {
    POOL + i * 4096
}

// ---------------------------------------------------------------- TDH.SYS.TDMR.INIT

#[test]
fn tdmr_init_takes_16_mib_steps_with_dynamic_pamt() {
    let m = ready_uninitialized(true);
    // TDMR 0 is 2 GiB: 128 calls of 16 MiB; RDX is the next address rounded down to 1 GiB.
    let mut rdx = Vec::new();
    loop {
        let out = tdmr_init(&m, 0);
        if out.status.raw() != TDX_SUCCESS {
            assert_eq!(out.status.raw(), TDX_TDMR_ALREADY_INITIALIZED);
            break;
        }
        rdx.push(out.regs.rdx);
    }
    assert_eq!(rdx.len(), 128);
    for (k, r) in rdx.iter().enumerate() {
        assert_eq!(*r, ((k as u64 + 1) * 16 * MIB) & !(GIB - 1), "call {k}");
    }
    // Without Dynamic PAMT the same TDMR takes 512 calls of 4 MiB.
    let m = ready_uninitialized(false);
    let mut calls = 0;
    while tdmr_init(&m, 0).status.raw() == TDX_SUCCESS {
        calls += 1;
    }
    assert_eq!(calls, 512);
}

#[test]
fn pamt_leaves_need_an_initialized_1_gib_block() {
    let m = ready_uninitialized(true);
    let range = 4 * GIB + 64 * MIB;
    // 63 calls initialize 1008 MiB: the first 1 GiB block of TDMR 1 is not usable yet.
    for _ in 0..63 {
        assert_eq!(tdmr_init(&m, 4 * GIB).status.raw(), TDX_SUCCESS);
    }
    assert_eq!(
        add(&m, range | PS_2M, pool(0), pool(1)),
        0xC000_0101_0000_0001
    );
    assert_eq!(
        remove(&m, range | PS_2M).status.raw(),
        0xC000_0101_0000_0001
    );
    assert_eq!(
        m.mark_in_use(range).unwrap_err().raw(),
        0xC000_0101_0000_0001
    );
    // The 64th call finishes it; the pair pages at 6 GiB are still in an uninitialized block.
    assert_eq!(tdmr_init(&m, 4 * GIB).status.raw(), TDX_SUCCESS);
    assert_eq!(
        add(&m, range | PS_2M, pool(0), pool(1)),
        0xC000_0101_0000_0002
    );
    assert_eq!(add(&m, range | PS_2M, range, range + 4096), TDX_SUCCESS);
    assert_eq!(m.pamt_pair(range), Some((range, range + 4096)));
}

// ---------------------------------------------------------------- gating

#[test]
fn pamt_leaves_without_dynamic_pamt_are_operand_invalid_rax() {
    let m = ready(false);
    assert_eq!(
        add(&m, FOUR_GIB | PS_2M, pool(0), pool(1)),
        0xC000_0100_0000_0000
    );
    assert_eq!(
        remove(&m, FOUR_GIB | PS_2M).status.raw(),
        0xC000_0100_0000_0000
    );
    // The TD-leaf stand-in works without Dynamic PAMT: no pair needed.
    m.mark_in_use(4 * GIB).unwrap();
    assert!(m.mark_free(4 * GIB));
}

#[test]
fn pamt_leaves_before_ready_or_with_a_version_are_refused() {
    let input = parse_kernel_log(LOG).unwrap();
    let p = Platform::new(input.cmrs().listed())
        .unwrap()
        .with_limits(dpamt_limits());
    let m = MockModule::new(p);
    assert_eq!(
        add(&m, FOUR_GIB | PS_2M, pool(0), pool(1)),
        TDX_SYS_NOT_READY
    );
    let m = ready(true);
    let out = on(
        &m,
        0,
        leaf::TDH_PHYMEM_PAMT_ADD.with_version(1),
        Regs {
            rcx: FOUR_GIB | PS_2M,
            rdx: pool(0),
            r8: pool(1),
            ..Regs::ZERO
        },
    );
    assert_eq!(out.status.raw(), 0xC000_0100_0000_0000);
}

// ---------------------------------------------------------------- operands

#[test]
fn add_checks_rcx_then_rdx_then_r8() {
    let m = ready(true);
    let r = 4 * GIB;
    let rcx_bad = [
        r,                   // level 0 (4 KiB)
        r | 2,               // level 2 (1 GiB)
        r | PS_2M | 1 << 3,  // reserved bit 3
        r | PS_2M | 1 << 11, // reserved bit 11
        (r + 4096) | PS_2M,  // not 2 MiB aligned
        1 << 52 | PS_2M,     // beyond 2^52
        1 << 46 | PS_2M,     // KeyID bits (6 bits: 46..=51)
    ];
    for rcx in rcx_bad {
        // RCX is checked first, even with bad RDX and R8.
        assert_eq!(add(&m, rcx, 1, 1), 0xC000_0100_0000_0001, "RCX {rcx:#x}");
    }
    for page in [pool(0) + 8, 1 << 52, 1 << 47] {
        assert_eq!(
            add(&m, r | PS_2M, page, 3),
            0xC000_0100_0000_0002,
            "{page:#x}"
        );
        assert_eq!(
            add(&m, r | PS_2M, pool(0), page),
            0xC000_0100_0000_0008,
            "{page:#x}"
        );
    }
    assert_eq!(m.pamt_pair_count(), 0);
}

#[test]
fn remove_checks_rcx() {
    let m = ready(true);
    for rcx in [4 * GIB, FOUR_GIB | PS_2M | 1 << 5, (4 * GIB + MIB) | PS_2M] {
        assert_eq!(remove(&m, rcx).status.raw(), 0xC000_0100_0000_0001);
    }
}

#[test]
fn addresses_outside_initialized_tdmrs_are_addr_range_errors() {
    let m = ready(true);
    // [2 GiB, 4 GiB) and [8 GiB, ...) are in no TDMR.
    for range in [2 * GIB, 3 * GIB + TWO_MIB, 8 * GIB] {
        assert_eq!(
            add(&m, range | PS_2M, pool(0), pool(1)),
            0xC000_0101_0000_0001
        );
        assert_eq!(
            remove(&m, range | PS_2M).status.raw(),
            0xC000_0101_0000_0001
        );
    }
    assert_eq!(
        add(&m, FOUR_GIB | PS_2M, 3 * GIB, pool(1)),
        0xC000_0101_0000_0002
    );
    assert_eq!(
        add(&m, FOUR_GIB | PS_2M, pool(0), 9 * GIB),
        0xC000_0101_0000_0008
    );
}

// ---------------------------------------------------------------- ADD

#[test]
fn add_twice_on_a_range_is_hpa_range_not_free() {
    let m = ready(true);
    assert_eq!(add(&m, FOUR_GIB | PS_2M, pool(0), pool(1)), TDX_SUCCESS);
    assert_eq!(
        add(&m, FOUR_GIB | PS_2M, pool(2), pool(3)),
        0xC000_0304_0000_0001
    );
    assert_eq!(m.pamt_pair(4 * GIB), Some((pool(0), pool(1))));
}

#[test]
fn pages_in_reserved_areas_or_pamt_blocks_are_not_free() {
    let m = ready(true);
    let p = plan(true);
    // A hole of TDMR 0 and the static PAMT blocks (reserved areas of TDMR 1).
    let mut taken = vec![0x1000, 0x7f00_0000, 0x7fff_f000];
    for t in p.tdmrs() {
        for level in PageSize::ALL {
            taken.push(t.pamt(level).start());
            taken.push(t.pamt(level).end() - 4096);
        }
    }
    for page in taken {
        assert_eq!(
            add(&m, FOUR_GIB | PS_2M, page, pool(1)),
            0xC000_0303_0000_0002,
            "{page:#x}"
        );
        assert_eq!(
            add(&m, FOUR_GIB | PS_2M, pool(0), page),
            0xC000_0303_0000_0008,
            "{page:#x}"
        );
    }
    assert_eq!(m.pamt_pair_count(), 0);
}

#[test]
fn pamt_pages_cannot_back_a_second_range() {
    let m = ready(true);
    assert_eq!(add(&m, FOUR_GIB | PS_2M, pool(0), pool(1)), TDX_SUCCESS);
    let next = (4 * GIB + TWO_MIB) | PS_2M;
    assert_eq!(add(&m, next, pool(1), pool(2)), 0xC000_0303_0000_0002);
    assert_eq!(add(&m, next, pool(2), pool(0)), 0xC000_0303_0000_0008);
    // The same page twice in one call: page 0 is a PAMT page by the time page 1 is checked.
    assert_eq!(add(&m, next, pool(2), pool(2)), 0xC000_0303_0000_0008);
    // A failed ADD changed nothing: pool(2) is still free.
    assert_eq!(add(&m, next, pool(2), pool(3)), TDX_SUCCESS);
    assert_eq!(m.pamt_pair_count(), 2);
}

#[test]
fn pages_in_use_are_not_free_unless_inside_the_range_being_backed() {
    let m = ready(true);
    // Take a page of range A into use (range A needs a pair first).
    let a = 5 * GIB;
    assert_eq!(add(&m, a | PS_2M, pool(0), pool(1)), TDX_SUCCESS);
    m.mark_in_use(a + 0x3000).unwrap();
    // It cannot back range B.
    let b = 5 * GIB + TWO_MIB;
    assert_eq!(
        add(&m, b | PS_2M, a + 0x3000, pool(2)),
        0xC000_0303_0000_0002
    );
    // Pages inside the range being backed are accepted (their 4K entries are what is added).
    assert_eq!(add(&m, b | PS_2M, b, b + 0x1000), TDX_SUCCESS);
    // ...and are PAMT pages now: not usable as TD pages.
    assert_eq!(m.mark_in_use(b).unwrap_err().raw(), 0xC000_0303_0000_0001);
}

#[test]
fn add_zeroes_the_pair() {
    let m = ready(true);
    m.write_phys(pool(0) + 100, &[0xAA; 16]).unwrap();
    assert_eq!(add(&m, FOUR_GIB | PS_2M, pool(0), pool(1)), TDX_SUCCESS);
    let mut back = [0xFFu8; 16];
    m.read_phys(pool(0) + 100, &mut back).unwrap();
    assert_eq!(back, [0; 16]);
}

// ---------------------------------------------------------------- REMOVE

#[test]
fn remove_without_a_pair_is_no_pamt_page_pair() {
    let m = ready(true);
    assert_eq!(
        remove(&m, FOUR_GIB | PS_2M).status.raw(),
        0xC000_0305_0000_0001
    );
}

#[test]
fn remove_returns_the_pair_and_frees_its_pages() {
    let m = ready(true);
    let r = 7 * GIB + 10 * TWO_MIB;
    assert_eq!(add(&m, r | PS_2M, pool(5), pool(9)), TDX_SUCCESS);
    let out = remove(&m, r | PS_2M);
    assert_eq!(out.status.raw(), TDX_SUCCESS);
    assert_eq!((out.regs.rdx, out.regs.r8), (pool(5), pool(9)));
    assert_eq!(m.pamt_pair_count(), 0);
    assert_eq!(remove(&m, r | PS_2M).status.raw(), 0xC000_0305_0000_0001);
    // The pages are free again: they may back another range, or be used as TD pages.
    assert_eq!(add(&m, FOUR_GIB | PS_2M, pool(9), pool(5)), TDX_SUCCESS);
    let log = m.log();
    assert_eq!(log.counts().get(leaf::TDH_PHYMEM_PAMT_ADD), 2);
    assert_eq!(log.counts().get(leaf::TDH_PHYMEM_PAMT_REMOVE), 2);
}

#[test]
fn remove_with_a_page_in_use_is_pamt_page_not_empty() {
    let m = ready(true);
    let r = 4 * GIB + 20 * TWO_MIB;
    assert_eq!(add(&m, r | PS_2M, pool(0), pool(1)), TDX_SUCCESS);
    m.mark_in_use(r + 511 * 4096).unwrap();
    assert_eq!(remove(&m, r | PS_2M).status.raw(), TDX_PAMT_PAGE_NOT_EMPTY);
    assert_eq!(m.pamt_pair(r), Some((pool(0), pool(1))));
    assert!(m.mark_free(r + 511 * 4096));
    assert!(!m.mark_free(r + 511 * 4096));
    assert_eq!(remove(&m, r | PS_2M).status.raw(), TDX_SUCCESS);
}

// ---------------------------------------------------------------- the TD-leaf stand-in

#[test]
fn pages_need_a_pair_before_use_with_dynamic_pamt() {
    let m = ready(true);
    let page = 4 * GIB + 0x5000;
    assert_eq!(
        m.mark_in_use(page).unwrap_err().raw(),
        TDX_MISSING_PAMT_PAGE_PAIR
    );
    assert_eq!(add(&m, FOUR_GIB | PS_2M, pool(0), pool(1)), TDX_SUCCESS);
    m.mark_in_use(page).unwrap();
    assert_eq!(
        m.mark_in_use(page).unwrap_err().raw(),
        0xC000_0303_0000_0001
    );
    assert_eq!(
        m.mark_in_use(pool(0)).unwrap_err().raw(),
        0xC000_0303_0000_0001
    );
    assert_eq!(
        m.mark_in_use(0x1000).unwrap_err().raw(),
        0xC000_0303_0000_0001
    );
    assert_eq!(
        m.mark_in_use(page + 1).unwrap_err().raw(),
        0xC000_0100_0000_0001
    );
    assert_eq!(m.pages_in_use(), 1);
}

#[test]
fn pamt_state_is_sparse() {
    // A pair and a page in use in each of 1000 ranges: memory per range, nothing per byte.
    let m = ready(true);
    let before = m.phys_pages();
    for i in 0..1000u64 {
        let r = 4 * GIB + i * TWO_MIB;
        assert_eq!(
            add(&m, r | PS_2M, pool(2 * i), pool(2 * i + 1)),
            TDX_SUCCESS
        );
        m.mark_in_use(r + 4096).unwrap();
    }
    assert_eq!(m.pamt_pair_count(), 1000);
    assert_eq!(m.pages_in_use(), 1000);
    assert_eq!(m.phys_pages(), before);
}

// ---------------------------------------------------------------- TDH.SYS.CONFIG, R8 bit 16

/// CONFIG inputs for the Dynamic PAMT plan, placed in `m`'s memory.
fn config_regs(m: &MockModule, r8: u64) -> Regs {
    let infos = plan(true).tdmr_infos().unwrap();
    let pas: Vec<u64> = infos
        .iter()
        .map(|t| m.place(&t.to_bytes(), 512).unwrap())
        .collect();
    let array = TdmrInfoPaArray::new(&pas).unwrap();
    Regs {
        rcx: m.place(&array.to_bytes(), 512).unwrap(),
        rdx: infos.len() as u64,
        r8,
        ..Regs::ZERO
    }
}

/// MKTME KeyIDs 1..=3, TDX KeyIDs 4..=7 (fits 3 KeyID bits and more).
fn lp_initialized(keyid_bits: u32, dpamt: bool) -> MockModule {
    let input = parse_kernel_log(LOG).unwrap();
    let limits = if dpamt {
        dpamt_limits()
    } else {
        TdxLimits::default()
    };
    let p = Platform::new(input.cmrs().listed())
        .unwrap()
        .with_limits(limits)
        .with_keyids(3, 4, keyid_bits)
        .unwrap();
    assert_eq!(p.supports_dynamic_pamt(), dpamt);
    assert_eq!(p.features0() >> 36 & 1, u64::from(dpamt));
    let m = MockModule::new(p);
    assert_eq!(raw(&m, leaf::TDH_SYS_INIT, Regs::ZERO), TDX_SUCCESS);
    assert_eq!(raw(&m, leaf::TDH_SYS_LP_INIT, Regs::ZERO), TDX_SUCCESS);
    m
}

#[test]
fn config_takes_r8_bit_16_only_from_a_module_that_advertises_bit_36() {
    // No Dynamic PAMT support: bit 16 is a reserved bit.
    let m = lp_initialized(6, false);
    let regs = config_regs(&m, 4 | 1 << 16);
    assert_eq!(raw(&m, leaf::TDH_SYS_CONFIG, regs), 0xC000_0100_0000_0008);
    // Support: bit 16 accepted; bit 17 still reserved.
    let m = lp_initialized(6, true);
    let regs = config_regs(&m, 4 | 1 << 17 | 1 << 16);
    assert_eq!(raw(&m, leaf::TDH_SYS_CONFIG, regs), 0xC000_0100_0000_0008);
    assert_eq!(
        raw(
            &m,
            leaf::TDH_SYS_CONFIG,
            Regs {
                r8: 4 | 1 << 16,
                ..regs
            }
        ),
        TDX_SUCCESS
    );
    assert!(m.dynamic_pamt());
}

#[test]
fn config_refuses_dynamic_pamt_when_the_keyid_bits_start_above_bit_48() {
    // 4 KeyID bits: the HKID starts at bit 48, the most Dynamic PAMT allows.
    let m = lp_initialized(4, true);
    let regs = config_regs(&m, 4 | 1 << 16);
    assert_eq!(raw(&m, leaf::TDH_SYS_CONFIG, regs), TDX_SUCCESS);
    // 3 bits: it starts at bit 49 -> OPERAND_INVALID | R8; the same KeyID without bit 16 is
    // fine (but then the bitmap-sized PAMT_4K is too small: INVALID_PAMT for TDMR 0, 4K).
    let m = lp_initialized(3, true);
    let regs = config_regs(&m, 4 | 1 << 16);
    assert_eq!(raw(&m, leaf::TDH_SYS_CONFIG, regs), 0xC000_0100_0000_0008);
    assert_eq!(
        raw(&m, leaf::TDH_SYS_CONFIG, Regs { r8: 4, ..regs }),
        0xC000_0A10_0000_0000
    );
    assert!(!m.dynamic_pamt());
}
