//! One test per status the mock TDX module returns for the initialization leaves, with the
//! exact 64-bit value from the module's rules (tdx-module-rules.md §2, §3, §5, §6, §7).

use tdmr::init::{Cpus, HostMemory};
use tdmr::layout::{Planner, Strategy};
use tdmr::memmap::Cmr;
use tdmr::memmap::parse_kernel_log;
use tdmr::mock::{MockModule, Platform, SysState};
use tdmr::seamcall::Seamcall;
use tdmr::sysinfo::TdxLimits;
use tdmr::tdx::abi::{TdmrInfo, TdmrInfoPaArray};
use tdmr::tdx::leaf::{self, Leaf};
use tdmr::tdx::metadata::{self as md, FIELD_ID_NA};
use tdmr::tdx::status::*;
use tdmr::tdx::validate;
use tdmr::tdx::{Output, Regs};

const LOG: &str =
    "virt/tdx: CMR: [0x100000, 0x7f000000)\nvirt/tdx: CMR: [0x100000000, 0x200000000)\n";
const GIB: u64 = 1 << 30;

fn platform() -> Platform {
    let input = parse_kernel_log(LOG).unwrap();
    Platform::new(input.cmrs().listed())
        .unwrap()
        .with_topology(2, 2)
        .unwrap()
}

fn on(m: &MockModule, lp: u32, l: Leaf, regs: Regs) -> Output {
    let mut out = None;
    m.run_on(lp, &mut || out = Some(m.seamcall(l, &regs)))
        .unwrap();
    out.unwrap()
}

fn raw(m: &MockModule, lp: u32, l: Leaf, regs: Regs) -> u64 {
    on(m, lp, l, regs).status.raw()
}

fn rcx(v: u64) -> Regs {
    Regs {
        rcx: v,
        ..Regs::ZERO
    }
}

fn rdx(v: u64) -> Regs {
    Regs {
        rdx: v,
        ..Regs::ZERO
    }
}

/// The Linux plan for `LOG` as `TDMR_INFO`s.
fn infos() -> Vec<TdmrInfo> {
    let input = parse_kernel_log(LOG).unwrap();
    let plan = Planner::new()
        .with_strategy(Strategy::Linux)
        .plan(input.memory(), input.cmrs())
        .unwrap();
    plan.tdmr_infos().unwrap()
}

/// Writes `infos` and their PA array into the mock's memory; the CONFIG inputs.
fn place(m: &MockModule, infos: &[TdmrInfo], keyid: u64) -> Regs {
    let pas: Vec<u64> = infos
        .iter()
        .map(|t| m.place(&t.to_bytes(), 512).unwrap())
        .collect();
    let array = TdmrInfoPaArray::new(&pas).unwrap();
    Regs {
        rcx: m.place(&array.to_bytes(), 512).unwrap(),
        rdx: infos.len() as u64,
        r8: keyid,
        ..Regs::ZERO
    }
}

fn after_sys_init() -> MockModule {
    let m = MockModule::new(platform());
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_INIT, Regs::ZERO), TDX_SUCCESS);
    m
}

fn after_lp_init() -> MockModule {
    let m = after_sys_init();
    for lp in 0..2 {
        assert_eq!(raw(&m, lp, leaf::TDH_SYS_LP_INIT, Regs::ZERO), TDX_SUCCESS);
    }
    m
}

fn after_config() -> MockModule {
    let m = after_lp_init();
    let regs = place(&m, &infos(), 32);
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_CONFIG, regs), TDX_SUCCESS);
    m
}

fn ready() -> MockModule {
    let m = after_config();
    for lp in 0..2 {
        assert_eq!(
            raw(&m, lp, leaf::TDH_SYS_KEY_CONFIG, Regs::ZERO),
            TDX_SUCCESS
        );
    }
    assert_eq!(m.state(), SysState::SysReady);
    m
}

// ---------------------------------------------------------------- dispatcher

#[test]
fn unknown_leaf_and_nonzero_version_are_operand_invalid_rax() {
    let m = ready();
    assert_eq!(
        raw(&m, 0, Leaf::new(999), Regs::ZERO),
        0xC000_0100_0000_0000
    );
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_RD.with_version(1), Regs::ZERO),
        0xC000_0100_0000_0000
    );
    // Dynamic PAMT leaves on a module without Dynamic PAMT, and a leaf TDX 1.5 lacks.
    assert_eq!(
        raw(&m, 0, leaf::TDH_PHYMEM_PAMT_ADD, Regs::ZERO),
        0xC000_0100_0000_0000
    );
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_DISABLE, Regs::ZERO),
        0xC000_0100_0000_0000
    );
}

#[test]
fn leaves_outside_the_init_set_are_sys_not_ready_before_ready() {
    let m = after_config();
    for l in [
        leaf::TDH_SYS_TDMR_INIT,
        leaf::TDH_SYS_SHUTDOWN,
        Leaf::new(999),
        leaf::TDH_PHYMEM_PAMT_ADD,
    ] {
        assert_eq!(raw(&m, 0, l, rcx(0)), TDX_SYS_NOT_READY, "{l}");
        assert_eq!(TDX_SYS_NOT_READY, 0xC000_0505_0000_0000);
    }
}

#[test]
fn shutdown_gates_every_leaf_but_lp_shutdown() {
    let m = ready();
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_SHUTDOWN, rcx(7)),
        TDX_OPERAND_INVALID | 1
    );
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_SHUTDOWN, rcx(1)), TDX_SUCCESS);
    assert_eq!(m.state(), SysState::Shutdown);
    for l in [
        leaf::TDH_SYS_INIT,
        leaf::TDH_SYS_RD,
        leaf::TDH_SYS_TDMR_INIT,
        leaf::TDH_SYS_CONFIG,
    ] {
        assert_eq!(raw(&m, 0, l, Regs::ZERO), 0xC000_0506_0000_0000, "{l}");
    }
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_LP_SHUTDOWN, Regs::ZERO),
        TDX_SUCCESS
    );
}

// ---------------------------------------------------------------- TDH.SYS.INIT

#[test]
fn sys_init_succeeds_once_and_zeroes_its_outputs() {
    let m = MockModule::new(platform());
    let junk = Regs {
        rdx: 5,
        r8: 6,
        r9: 7,
        r10: 8,
        r11: 9,
        ..Regs::ZERO
    };
    let out = on(&m, 1, leaf::TDH_SYS_INIT, junk);
    assert_eq!(out.status.raw(), TDX_SUCCESS);
    assert_eq!(
        (out.regs.rdx, out.regs.r8, out.regs.r9, out.regs.r10),
        (0, 0, 0, 0)
    );
    assert_eq!(out.regs.r11, 9);
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_INIT, Regs::ZERO),
        0xC000_0500_0000_0000
    );
}

#[test]
fn sys_init_with_attributes_is_operand_invalid_rcx() {
    let m = MockModule::new(platform());
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_INIT, rcx(1)),
        0xC000_0100_0000_0001
    );
    assert_eq!(m.state(), SysState::SysinitPending);
}

#[test]
fn sys_init_checks_the_cmr_list() {
    let bad_lists: [&[Cmr]; 4] = [
        &[
            Cmr::new(0x10_0000, 0x20_0000),
            Cmr::new(0x20_0000, 0x10_0000),
        ], // overlap
        &[Cmr::new(0x10_0800, 0x1000)], // misaligned
        &[Cmr::new(0x20_0000, 0x1000), Cmr::new(0x10_0000, 0x1000)], // unsorted
        &[Cmr::new(1 << 47, 0x1000)],   // KeyID bit 47 set
    ];
    for cmrs in bad_lists {
        let m = MockModule::new(Platform::new(cmrs).unwrap());
        assert_eq!(
            raw(&m, 0, leaf::TDH_SYS_INIT, Regs::ZERO),
            0xC000_0A22_0000_0000,
            "{cmrs:?}"
        );
        assert_eq!(m.state(), SysState::SysinitPending);
    }
    // Null slots between CMRs and abutting CMRs are fine.
    let ok = [
        Cmr::new(0x10_0000, 0x10_0000),
        Cmr::new(0, 0),
        Cmr::new(0x20_0000, 0x1000),
    ];
    let m = MockModule::new(Platform::new(&ok).unwrap());
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_INIT, Regs::ZERO), TDX_SUCCESS);
}

// ---------------------------------------------------------------- TDH.SYS.LP.INIT

#[test]
fn lp_init_is_not_pending_before_sys_init_and_after_config() {
    let m = MockModule::new(platform());
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_LP_INIT, Regs::ZERO),
        0xC000_050B_0000_0000
    );
    let m = after_config();
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_LP_INIT, Regs::ZERO),
        0xC000_050B_0000_0000
    );
}

#[test]
fn lp_init_twice_on_one_lp_is_lp_init_done() {
    let m = after_sys_init();
    assert_eq!(raw(&m, 1, leaf::TDH_SYS_LP_INIT, Regs::ZERO), TDX_SUCCESS);
    assert_eq!(
        raw(&m, 1, leaf::TDH_SYS_LP_INIT, Regs::ZERO),
        0xC000_0503_0000_0000
    );
    assert!(m.lp_initialized(1) && !m.lp_initialized(0));
}

// ---------------------------------------------------------------- TDH.SYS.RD / RDALL / INFO

#[test]
fn rd_needs_an_initialized_lp() {
    let m = after_sys_init();
    let out = on(&m, 0, leaf::TDH_SYS_RD, rdx(md::MAX_TDMRS.raw()));
    assert_eq!(out.status.raw(), 0xC000_0502_0000_0000);
    assert_eq!((out.regs.rdx, out.regs.r8), (FIELD_ID_NA, 0));
}

#[test]
fn rd_returns_values_and_the_next_field() {
    let m = after_lp_init();
    let out = on(&m, 0, leaf::TDH_SYS_RD, rdx(md::MAX_TDMRS.raw()));
    assert_eq!((out.status.raw(), out.regs.r8), (TDX_SUCCESS, 64));
    assert_eq!(out.regs.rdx, md::MAX_RESERVED_PER_TDMR.raw());
    // The element-size bits are ignored: MAX_TDMRS asked for as 8 bytes is still 64.
    let wide = md::MAX_TDMRS.with_element_bytes(8).raw();
    assert_eq!(on(&m, 0, leaf::TDH_SYS_RD, rdx(wide)).regs.r8, 64);
    // CMRs: 32 slots, the given ones first, null after.
    assert_eq!(
        on(&m, 0, leaf::TDH_SYS_RD, rdx(md::NUM_CMRS.raw())).regs.r8,
        32
    );
    assert_eq!(
        on(&m, 0, leaf::TDH_SYS_RD, rdx(md::cmr_base(1).unwrap().raw()))
            .regs
            .r8,
        0x1_0000_0000
    );
    assert_eq!(
        on(
            &m,
            0,
            leaf::TDH_SYS_RD,
            rdx(md::cmr_size(31).unwrap().raw())
        )
        .regs
        .r8,
        0
    );
    let f0 = on(&m, 0, leaf::TDH_SYS_RD, rdx(md::TDX_FEATURES0.raw()))
        .regs
        .r8;
    assert_ne!(f0 & md::features0::NO_RBP_MOD, 0);
}

#[test]
fn rd_of_the_null_id_is_first_field_id_in_context() {
    let m = after_lp_init();
    let out = on(&m, 0, leaf::TDH_SYS_RD, rdx(FIELD_ID_NA));
    assert_eq!(out.status.raw(), 0x0000_0C0B_0000_0000);
    // Walking RDX from the first field visits every field Linux reads, then ends.
    let mut id = out.regs.rdx;
    let mut seen = Vec::new();
    while id != FIELD_ID_NA {
        let o = on(&m, 0, leaf::TDH_SYS_RD, rdx(id));
        assert_eq!(o.status.raw(), TDX_SUCCESS, "{id:#x}");
        seen.push(id);
        id = o.regs.rdx;
        assert!(seen.len() < 1000);
    }
    let linux_reads = [
        md::MAJOR_VERSION,
        md::MINOR_VERSION,
        md::UPDATE_VERSION,
        md::TDX_FEATURES0,
        md::MAX_TDMRS,
        md::MAX_RESERVED_PER_TDMR,
        md::PAMT_4K_ENTRY_SIZE,
        md::PAMT_2M_ENTRY_SIZE,
        md::PAMT_1G_ENTRY_SIZE,
        md::TDR_BASE_SIZE,
        md::TDCS_BASE_SIZE,
        md::TDVPS_BASE_SIZE,
        md::ATTRIBUTES_FIXED0,
        md::ATTRIBUTES_FIXED1,
        md::XFAM_FIXED0,
        md::XFAM_FIXED1,
        md::NUM_CPUID_CONFIG,
        md::MAX_VCPUS_PER_TD,
        md::NUM_CMRS,
        md::NUM_PKGS,
    ];
    for f in linux_reads {
        assert!(seen.contains(&f.raw()), "{f:?} not reachable");
    }
    // Those 20, SYS_ATTRIBUTES, NUM_TDX_FEATURES and MODULE_HANDOFF_VERSION (1.5.25 has a
    // runtime update), 32 CMR bases and sizes, 4 CPUID_CONFIG entries of a leaf and two values.
    assert!(seen.contains(&md::MODULE_HANDOFF_VERSION.raw()));
    assert_eq!(seen.len(), 23 + 64 + 4 * 3);
}

#[test]
fn rd_of_a_malformed_or_unknown_id_is_field_id_incorrect() {
    let m = after_lp_init();
    let base = md::MAX_TDMRS.raw();
    for bad in [
        base | 1 << 24,
        base | 1 << 34,
        base | 1 << 38,
        base | 1 << 62,
        0x9100_0001_0000_00FF,
    ] {
        let out = on(&m, 0, leaf::TDH_SYS_RD, rdx(bad));
        assert_eq!(out.status.raw(), 0xC000_0C00_0000_0000, "{bad:#x}");
        assert_eq!(out.regs.rdx, FIELD_ID_NA);
    }
}

#[test]
fn rdall_writes_the_fields_into_a_page() {
    let m = after_lp_init();
    assert_eq!(
        raw(
            &m,
            0,
            leaf::TDH_SYS_RDALL,
            Regs {
                rdx: 0x20_0800,
                ..Regs::ZERO
            }
        ),
        TDX_OPERAND_INVALID | 2
    );
    let out = on(
        &m,
        0,
        leaf::TDH_SYS_RDALL,
        Regs {
            rdx: 0x30_0000,
            r8: FIELD_ID_NA,
            ..Regs::ZERO
        },
    );
    assert_eq!((out.status.raw(), out.regs.r8), (TDX_SUCCESS, FIELD_ID_NA));
    let mut page = vec![0u8; 4096];
    m.read_phys(0x30_0000, &mut page).unwrap();
    let count = u16::from_le_bytes([page[2], page[3]]) as usize;
    assert_eq!(count, 23 + 64 + 4 * 3);
    let entries: Vec<(u64, u64)> = (0..count)
        .map(|k| {
            let at = 8 + 16 * k;
            let w = |o: usize| u64::from_le_bytes(page[o..o + 8].try_into().unwrap());
            (w(at), w(at + 8))
        })
        .collect();
    assert!(entries.contains(&(md::MAX_RESERVED_PER_TDMR.raw(), 16)));
    assert!(entries.contains(&(md::cmr_size(0).unwrap().raw(), 0x7ef0_0000)));
}

#[test]
fn info_fills_tdsysinfo_and_the_cmr_array() {
    let m = after_lp_init();
    let regs = Regs {
        rcx: 0x30_0000,
        rdx: 1024,
        r8: 0x30_1000,
        r9: 32,
        ..Regs::ZERO
    };
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_INFO, Regs { r9: 31, ..regs }),
        TDX_OPERAND_INVALID | 9
    );
    assert_eq!(
        raw(
            &m,
            0,
            leaf::TDH_SYS_INFO,
            Regs {
                rcx: 0x30_0200,
                ..regs
            }
        ),
        TDX_OPERAND_INVALID | 1
    );
    let out = on(&m, 0, leaf::TDH_SYS_INFO, regs);
    assert_eq!(
        (out.status.raw(), out.regs.rdx, out.regs.r9),
        (TDX_SUCCESS, 1024, 32)
    );
    let mut b = [0u8; 48];
    m.read_phys(0x30_0000, &mut b).unwrap();
    assert_eq!(u32::from_le_bytes(b[4..8].try_into().unwrap()), 0x8086);
    assert_eq!(u16::from_le_bytes([b[32], b[33]]), 64);
    assert_eq!(u16::from_le_bytes([b[34], b[35]]), 16);
    let mut c = [0u8; 32];
    m.read_phys(0x30_1000, &mut c).unwrap();
    assert_eq!(
        u64::from_le_bytes(c[16..24].try_into().unwrap()),
        0x1_0000_0000
    );
}

// ---------------------------------------------------------------- TDH.SYS.CONFIG

#[test]
fn config_is_not_pending_out_of_order() {
    let m = MockModule::new(platform());
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_CONFIG, Regs::ZERO),
        0xC000_050C_0000_0000
    );
    // Not every LP initialized.
    let m = after_sys_init();
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_LP_INIT, Regs::ZERO), TDX_SUCCESS);
    let regs = place(&m, &infos(), 32);
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_CONFIG, regs),
        0xC000_050C_0000_0000
    );
    // Twice.
    let m = after_config();
    let regs = place(&m, &infos(), 32);
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_CONFIG, regs),
        0xC000_050C_0000_0000
    );
}

#[test]
fn config_checks_rcx_rdx_r8_in_that_order() {
    let m = after_lp_init();
    let good = place(&m, &infos(), 32);
    let cfg = |r: Regs| raw(&m, 0, leaf::TDH_SYS_CONFIG, r);
    assert_eq!(
        cfg(Regs {
            rcx: good.rcx + 8,
            rdx: 0,
            r8: 0,
            ..good
        }),
        0xC000_0100_0000_0001
    );
    assert_eq!(
        cfg(Regs {
            rcx: 1 << 52,
            ..good
        }),
        0xC000_0100_0000_0001
    );
    assert_eq!(
        cfg(Regs {
            rdx: 0,
            r8: 0,
            ..good
        }),
        0xC000_0100_0000_0002
    );
    assert_eq!(cfg(Regs { rdx: 65, ..good }), 0xC000_0100_0000_0002);
    assert_eq!(cfg(Regs { r8: 31, ..good }), 0xC000_0100_0000_0008); // an MKTME KeyID
    assert_eq!(cfg(Regs { r8: 64, ..good }), 0xC000_0100_0000_0008); // beyond the TDX KeyIDs
    assert_eq!(
        cfg(Regs {
            r8: 32 | 1 << 16,
            ..good
        }),
        0xC000_0100_0000_0008
    ); // no Dynamic PAMT
    assert_eq!(
        cfg(Regs {
            r8: 32 | 1 << 40,
            ..good
        }),
        0xC000_0100_0000_0008
    );
    assert_eq!(m.state(), SysState::SysinitDone);
    assert_eq!(cfg(good), TDX_SUCCESS);
}

#[test]
fn config_refuses_a_misaligned_tdmr_info_pa_with_operand_rcx() {
    let m = after_lp_init();
    let info = infos()[0].to_bytes();
    let pa = m.place(&[0u8; 1024], 512).unwrap() + 256;
    m.write_phys(pa, &info).unwrap();
    let array = m.place(&pa.to_le_bytes(), 512).unwrap();
    let r = Regs {
        rcx: array,
        rdx: 1,
        r8: 32,
        ..Regs::ZERO
    };
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_CONFIG, r), 0xC000_0100_0000_0001);
}

#[test]
fn config_reports_tdmr_errors_with_info_bytes_and_allows_a_retry() {
    let m = after_lp_init();
    let mut bad = infos();
    bad[1].base += 4096; // TDMR 1 not 1 GiB aligned
    let regs = place(&m, &bad, 33);
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_CONFIG, regs),
        0xC000_0A00_0000_0001
    );
    // The KeyID was taken already; the state did not move; a good configuration is accepted.
    assert_eq!(m.global_keyid(), Some(33));
    assert_eq!(m.state(), SysState::SysinitDone);
    let mut overlap = infos();
    overlap[1].pamt_2m_base = overlap[0].pamt_4k_base;
    let regs = place(&m, &overlap, 32);
    let status = raw(&m, 0, leaf::TDH_SYS_CONFIG, regs);
    assert_eq!(status & STATUS_MASK, TDX_PAMT_OVERLAP);
    assert_eq!(Status::new(status).info_bytes()[..3], [1, 1, 0]);
    let regs = place(&m, &infos(), 32);
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_CONFIG, regs), TDX_SUCCESS);
    assert_eq!(m.state(), SysState::SysconfigDone);
    let t = m.tdmrs();
    assert_eq!(
        (t[0].base, t[0].size, t[1].base, t[1].size),
        (0, 2 * GIB, 4 * GIB, 4 * GIB)
    );
}

#[test]
fn config_matches_the_validator() {
    let m = after_lp_init();
    let mut bad = infos();
    bad[0].reserved[3].size = 0x800;
    let input = parse_kernel_log(LOG).unwrap();
    let env = validate::ConfigEnv::from_limits(&TdxLimits::default(), input.cmrs().listed());
    let expected = validate::sys_config(&bad, &env).unwrap_err();
    let regs = place(&m, &bad, 32);
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_CONFIG, regs), expected.raw());
}

#[test]
fn dynamic_pamt_config_needs_keyid_bits_below_bit_48() {
    let input = parse_kernel_log(LOG).unwrap();
    let dpamt = TdxLimits::default().with_dynamic_pamt(1).unwrap();
    // 3 KeyID bits: the HKID starts at bit 49.
    let p = Platform::new(input.cmrs().listed())
        .unwrap()
        .with_limits(dpamt)
        .with_keyids(3, 4, 3)
        .unwrap();
    let m = MockModule::new(p);
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_INIT, Regs::ZERO), TDX_SUCCESS);
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_LP_INIT, Regs::ZERO), TDX_SUCCESS);
    let regs = place(&m, &infos(), 4 | 1 << 16);
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_CONFIG, regs),
        0xC000_0100_0000_0008
    );
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_CONFIG, Regs { r8: 4, ..regs }),
        TDX_SUCCESS
    );
}

// ---------------------------------------------------------------- TDH.SYS.KEY.CONFIG

#[test]
fn key_config_is_not_pending_before_config_and_after_ready() {
    let m = after_lp_init();
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_KEY_CONFIG, Regs::ZERO),
        0xC000_0507_0000_0000
    );
    let m = ready();
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_KEY_CONFIG, Regs::ZERO),
        0xC000_0507_0000_0000
    );
}

#[test]
fn key_config_twice_on_a_package_is_key_configured() {
    let m = after_config();
    assert_eq!(
        raw(&m, 1, leaf::TDH_SYS_KEY_CONFIG, Regs::ZERO),
        TDX_SUCCESS
    );
    let again = on(&m, 1, leaf::TDH_SYS_KEY_CONFIG, Regs::ZERO).status;
    assert_eq!(again.raw(), 0x0000_0815_0000_0000);
    assert!(!again.is_error());
    assert_eq!(m.state(), SysState::SysconfigDone);
    assert_eq!(m.packages_configured(), [1]);
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_KEY_CONFIG, Regs::ZERO),
        TDX_SUCCESS
    );
    assert_eq!(m.state(), SysState::SysReady);
}

// ---------------------------------------------------------------- TDH.SYS.TDMR.INIT

#[test]
fn tdmr_init_needs_a_tdmr_base() {
    let m = ready();
    for bad in [GIB + 4096, GIB, 12 * GIB, 1 << 52] {
        let out = on(
            &m,
            0,
            leaf::TDH_SYS_TDMR_INIT,
            Regs {
                rcx: bad,
                rdx: 77,
                ..Regs::ZERO
            },
        );
        assert_eq!(out.status.raw(), 0xC000_0100_0000_0001, "{bad:#x}");
        assert_eq!(out.regs.rdx, 0);
    }
}

#[test]
fn tdmr_init_on_a_tdmr_in_use_is_operand_busy_rcx() {
    let m = ready();
    let held = m.tdmr_init_in_flight(1, 4 * GIB).unwrap();
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_TDMR_INIT, rcx(4 * GIB)),
        0x8000_0200_0000_0001
    );
    assert_eq!(
        m.tdmr_init_in_flight(0, 4 * GIB).unwrap_err().raw(),
        0x8000_0200_0000_0001
    );
    // Another TDMR proceeds meanwhile.
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_TDMR_INIT, rcx(0)), TDX_SUCCESS);
    drop(held);
    let out = on(&m, 0, leaf::TDH_SYS_TDMR_INIT, rcx(4 * GIB));
    assert_eq!((out.status.raw(), out.regs.rdx), (TDX_SUCCESS, 4 * GIB));
    assert_eq!(m.tdmrs()[1].next, 4 * GIB + (4 << 20));
}

#[test]
fn tdmr_init_after_the_end_is_already_initialized() {
    let m = ready();
    let mut last = 0;
    for _ in 0..512 {
        let out = on(&m, 1, leaf::TDH_SYS_TDMR_INIT, rcx(0));
        assert_eq!(out.status.raw(), TDX_SUCCESS);
        last = out.regs.rdx;
    }
    assert_eq!(last, 2 * GIB);
    let out = on(&m, 1, leaf::TDH_SYS_TDMR_INIT, rcx(0));
    assert_eq!((out.status.raw(), out.regs.rdx), (0x0000_0A03_0000_0000, 0));
    assert!(m.tdmrs()[0].is_done() && !m.tdmrs()[1].is_done());
}

#[test]
fn tdmr_progress_costs_nothing_per_page() {
    // 16 TiB in one TDMR: configuring and starting it writes only the caller's buffers.
    let cmrs = [Cmr::new(0, 16 << 40)];
    let m = MockModule::new(Platform::new(&cmrs).unwrap());
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_INIT, Regs::ZERO), TDX_SUCCESS);
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_LP_INIT, Regs::ZERO), TDX_SUCCESS);
    let input = parse_kernel_log("virt/tdx: CMR: [0x0, 0x100000000000)\n").unwrap();
    let plan = Planner::new()
        .with_strategy(Strategy::Linux)
        .plan(input.memory(), input.cmrs())
        .unwrap();
    let regs = place(&m, &plan.tdmr_infos().unwrap(), 32);
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_CONFIG, regs), TDX_SUCCESS);
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_KEY_CONFIG, Regs::ZERO),
        TDX_SUCCESS
    );
    for _ in 0..1000 {
        assert_eq!(raw(&m, 0, leaf::TDH_SYS_TDMR_INIT, rcx(0)), TDX_SUCCESS);
    }
    assert_eq!(m.phys_pages(), 1);
    assert_eq!(m.tdmrs()[0].next, 1000 * (4 << 20));
}

/// With `std` the mock is shared between threads: two LPs racing on one TDMR see each other's
/// calls in flight (`TDX_OPERAND_BUSY | RCX`) and together make exactly the progress the TDMR
/// needs, no step lost or doubled.
#[cfg(feature = "std")]
#[test]
fn racing_lps_on_one_tdmr_make_exact_progress() {
    let m = ready();
    let successes = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for lp in 0..2 {
            let (m, successes) = (&m, &successes);
            s.spawn(move || {
                loop {
                    let status = raw(m, lp, leaf::TDH_SYS_TDMR_INIT, rcx(4 * GIB));
                    match status {
                        TDX_SUCCESS => {
                            successes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        0x8000_0200_0000_0001 => {}
                        0x0000_0A03_0000_0000 => break,
                        other => panic!("unexpected {other:#x}"),
                    }
                }
            });
        }
    });
    assert_eq!(successes.into_inner(), 4 * 256);
    assert!(m.tdmrs()[1].is_done());
}

/// Host buffers of TDH.SYS.RDALL, TDH.SYS.INFO and TDH.SYS.CONFIG go through the shared-HPA
/// check with the HKID bits cleared before the SEAM-range comparison: a shared-KeyID alias of
/// the SEAM range is refused with the buffer's operand, the same page under KeyID 0 elsewhere
/// is accepted.
#[test]
fn host_buffers_aliasing_the_seam_range_under_a_shared_keyid_are_refused() {
    const SEAM: u64 = 0x7000_0000;
    const HKID1: u64 = 1 << 46; // 6 KeyID bits: HKID in PA bits 46..51
    let m = MockModule::new(
        platform().with_seamrr(tdmr::addr::PhysRange::new(SEAM, SEAM + (32 << 20)).unwrap()),
    );
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_INIT, Regs::ZERO), TDX_SUCCESS);
    for lp in 0..2 {
        assert_eq!(raw(&m, lp, leaf::TDH_SYS_LP_INIT, Regs::ZERO), TDX_SUCCESS);
    }
    let rdall = |page: u64| {
        raw(
            &m,
            0,
            leaf::TDH_SYS_RDALL,
            Regs {
                rdx: page,
                r8: FIELD_ID_NA,
                ..Regs::ZERO
            },
        )
    };
    assert_eq!(rdall(SEAM | HKID1), TDX_OPERAND_INVALID | 2);
    assert_eq!(
        rdall((SEAM + 0x10_0000) | (31 * HKID1)),
        TDX_OPERAND_INVALID | 2
    );
    assert_eq!(rdall(0x30_0000 | HKID1), TDX_SUCCESS);
    let info = |rcx: u64| {
        raw(
            &m,
            0,
            leaf::TDH_SYS_INFO,
            Regs {
                rcx,
                rdx: 1024,
                r8: 0x31_0000,
                r9: 32,
                ..Regs::ZERO
            },
        )
    };
    assert_eq!(info(SEAM | HKID1), TDX_OPERAND_INVALID | 1);
    assert_eq!(info(0x32_0000), TDX_SUCCESS);
    // TDH.SYS.CONFIG: the PA array at a shared alias of the SEAM range.
    let regs = Regs {
        rcx: SEAM | HKID1,
        rdx: 1,
        r8: 32,
        ..Regs::ZERO
    };
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_CONFIG, regs),
        0xC000_0100_0000_0001
    );
}
