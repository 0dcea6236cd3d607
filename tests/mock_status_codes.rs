//! One test per status the mock TDX module returns for the initialization leaves, with the
//! exact 64-bit value from the module's rules (tdx-module-rules.md §2, §3, §5, §6, §7).

use tdmr::addr::PhysRange;
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

// ---------------------------------------------------------------- profiles: the ready module

/// A module of `profile` on `platform()`, configured with the Linux plan for `LOG` (R9 =
/// `add_ons` with TDH.SYS.CONFIG v1 when non-zero), every package's key programmed and every
/// TDMR initialized.
fn initialized_with(profile: &str, add_ons: u64) -> MockModule {
    let m = MockModule::new(platform().with_module(profile.parse().unwrap()));
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_INIT, Regs::ZERO), TDX_SUCCESS);
    for lp in 0..2 {
        assert_eq!(raw(&m, lp, leaf::TDH_SYS_LP_INIT, Regs::ZERO), TDX_SUCCESS);
    }
    let regs = Regs {
        r9: add_ons,
        ..place(&m, &infos(), 32)
    };
    let config = if add_ons != 0 {
        leaf::TDH_SYS_CONFIG.with_version(1)
    } else {
        leaf::TDH_SYS_CONFIG
    };
    assert_eq!(raw(&m, 0, config, regs), TDX_SUCCESS);
    for lp in 0..2 {
        assert_eq!(
            raw(&m, lp, leaf::TDH_SYS_KEY_CONFIG, Regs::ZERO),
            TDX_SUCCESS
        );
    }
    for base in [0, 4 * GIB] {
        while on(&m, 0, leaf::TDH_SYS_TDMR_INIT, rcx(base)).status.raw() == TDX_SUCCESS {}
    }
    assert!(m.tdmrs().iter().all(|t| t.is_done()));
    m
}

// ---------------------------------------------------------------- TDH.SYS.CONFIG v1

#[test]
fn config_v1_takes_add_on_features_in_r9() {
    // `next` with TDX Connect (bit 6) as an add-on; R9 outside the add-ons is operand R9.
    let m = after_sys_init_with("next,add_ons=0x40");
    let regs = place(&m, &infos(), 32);
    let v1 = leaf::TDH_SYS_CONFIG.with_version(1);
    assert_eq!(
        raw(
            &m,
            0,
            v1,
            Regs {
                r9: 1 << 39,
                ..regs
            }
        ),
        0xC000_0100_0000_0009
    );
    assert_eq!(raw(&m, 0, v1, Regs { r9: 0x40, ..regs }), TDX_SUCCESS);
    assert_eq!(m.add_on_features(), 0x40);
    // Version 0 ignores R9; version 2 is refused by the dispatcher.
    let m = after_sys_init_with("next,add_ons=0x40");
    assert_eq!(
        raw(
            &m,
            0,
            leaf::TDH_SYS_CONFIG.with_version(2),
            place(&m, &infos(), 32)
        ),
        TDX_OPERAND_INVALID
    );
    let regs = Regs {
        r9: 0x40,
        ..place(&m, &infos(), 32)
    };
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_CONFIG, regs), TDX_SUCCESS);
    assert_eq!(m.add_on_features(), 0);
}

fn after_sys_init_with(profile: &str) -> MockModule {
    let m = MockModule::new(platform().with_module(profile.parse().unwrap()));
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_INIT, Regs::ZERO), TDX_SUCCESS);
    for lp in 0..2 {
        assert_eq!(raw(&m, lp, leaf::TDH_SYS_LP_INIT, Regs::ZERO), TDX_SUCCESS);
    }
    m
}

#[test]
fn tdx_1_0_refuses_a_tdmr_whose_16_reserved_areas_run_to_its_end() {
    // 16 reserved areas, the last one to the TDMR's end, the PAMT in the second CMR. 1.5
    // accepts it; 1.0 checks the empty tail against the CMRs.
    // TDMR [0, 2 GiB): its last reserved area [0x7f000000, 2 GiB) is the gap past the first
    // CMR, so the tail point 2 GiB lies in no CMR.
    let mut t = TdmrInfo::ZERO;
    (t.base, t.size) = (0, 2 * GIB);
    t.reserved[0] = tdmr::tdx::abi::TdmrReservedEntry {
        offset: 0,
        size: 0x10_0000,
    };
    for j in 1..15u64 {
        t.reserved[j as usize] = tdmr::tdx::abi::TdmrReservedEntry {
            offset: 0x100_0000 * j,
            size: 0x1000,
        };
    }
    t.reserved[15] = tdmr::tdx::abi::TdmrReservedEntry {
        offset: 0x7f00_0000,
        size: 2 * GIB - 0x7f00_0000,
    };
    (t.pamt_1g_base, t.pamt_1g_size) = (5 * GIB, 0x1000);
    (t.pamt_2m_base, t.pamt_2m_size) = (5 * GIB + 0x1000, 0x4000);
    (t.pamt_4k_base, t.pamt_4k_size) = (5 * GIB + 0x5000, 0x80_0000);
    for (profile, expect) in [("1.5", TDX_SUCCESS), ("1.0", 0xC000_0A02_0000_0000)] {
        let m = after_sys_init_with(profile);
        let regs = place(&m, &[t], 32);
        assert_eq!(raw(&m, 0, leaf::TDH_SYS_CONFIG, regs), expect, "{profile}");
    }
}

// ---------------------------------------------------------------- module extensions

/// `next` needing 100 extension pages, ready: pages at 4 GiB + 1 MiB on are free TDX memory.
fn ext_ready() -> MockModule {
    initialized_with("next,ext_pages=100", 0)
}

/// Extension pages: TDX memory of the second TDMR, 256 MiB into it, clear of its PAMT (which
/// Linux's allocator takes from the bottom of the node; checked below).
fn ext_page(k: u64) -> u64 {
    4 * GIB + 0x1000_0000 + k * 4096
}

#[test]
fn extension_pages_are_plain_tdx_memory_of_the_plan() {
    let input = parse_kernel_log(LOG).unwrap();
    let plan = Planner::new()
        .with_strategy(Strategy::Linux)
        .plan(input.memory(), input.cmrs())
        .unwrap();
    let span = PhysRange::new(
        ext_page(0),
        ext_page(u64::from(tdmr::mock::NEXT_EXTENSION_PAGES) + 512),
    )
    .unwrap();
    assert!(plan.pamt_ranges().iter().all(|b| !b.overlaps(span)));
    assert!(plan.tdmrs().iter().any(|t| t.range().contains_range(span)));
}

/// Writes a list page of `pages` at 0x30_0000; the MEM.ADD RCX for entries `first..=last`.
fn ext_list(m: &MockModule, pages: &[u64], first: u64, last: u64) -> Regs {
    let bytes: Vec<u8> = pages.iter().flat_map(|p| p.to_le_bytes()).collect();
    m.write_phys(0x30_0000, &bytes).unwrap();
    rcx(tdmr::init::ext_mem_add_rcx(0x30_0000, first, last))
}

#[test]
fn ext_mem_add_is_resumable_and_ext_init_needs_a_full_pool() {
    let m = ext_ready();
    let pages: Vec<u64> = (0..100).map(ext_page).collect();
    // EXT.INIT before the pool is full: wrong state.
    assert_eq!(
        raw(&m, 0, leaf::TDH_EXT_INIT, Regs::ZERO),
        TDX_SYS_STATE_INCORRECT
    );
    let mut regs = ext_list(&m, &pages, 0, 99);
    let mut calls = 0;
    loop {
        let out = on(&m, 0, leaf::TDH_EXT_MEM_ADD, regs);
        calls += 1;
        if out.status.raw() == TDX_SUCCESS {
            break;
        }
        assert_eq!(out.status.raw(), 0x8000_0003_0000_0000);
        // The first index advanced in place by one batch.
        assert_eq!(
            (out.regs.rcx >> 3) & 0x1FF,
            calls * tdmr::mock::EXT_MEM_ADD_BATCH
        );
        regs.rcx = out.regs.rcx;
    }
    assert_eq!(calls, 100u64.div_ceil(tdmr::mock::EXT_MEM_ADD_BATCH));
    assert_eq!(m.extension_pages(), 100);
    // The pool is full: one page more is an operand error.
    let more = ext_list(&m, &[ext_page(200)], 0, 0);
    assert_eq!(
        raw(&m, 0, leaf::TDH_EXT_MEM_ADD, more),
        TDX_OPERAND_INVALID | 1
    );
    // EXT_REQUIRED is 1 until TDH.EXT.INIT completes.
    let rd = |id: md::FieldId| on(&m, 0, leaf::TDH_SYS_RD, rdx(id.raw()));
    assert_eq!(rd(md::EXT_REQUIRED).regs.r8, 1);
    assert_eq!(rd(md::EXT_MEMORY_POOL_REQUIRED_PAGES).regs.r8, 100);
    assert_eq!(raw(&m, 0, leaf::TDH_EXT_INIT, Regs::ZERO), TDX_SUCCESS);
    assert!(m.extensions_initialized());
    assert_eq!(rd(md::EXT_REQUIRED).regs.r8, 0);
    for l in [leaf::TDH_EXT_INIT, leaf::TDH_EXT_MEM_ADD] {
        assert_eq!(raw(&m, 0, l, more), TDX_SYS_STATE_INCORRECT, "{l}");
    }
    // The pool's pages are the module's: the TD stand-in refuses them.
    assert_eq!(
        m.mark_in_use(ext_page(3)).unwrap_err().raw(),
        TDX_PAGE_NOT_FREE | 1
    );
}

#[test]
fn ext_init_resumes_in_batches() {
    let m = initialized_with("next", 0);
    let per_list = 512;
    let mut k = 0;
    while k < u64::from(tdmr::mock::NEXT_EXTENSION_PAGES) {
        let n = per_list.min(u64::from(tdmr::mock::NEXT_EXTENSION_PAGES) - k);
        let pages: Vec<u64> = (k..k + n).map(ext_page).collect();
        let mut regs = ext_list(&m, &pages, 0, n - 1);
        loop {
            let out = on(&m, 0, leaf::TDH_EXT_MEM_ADD, regs);
            match out.status.raw() {
                TDX_SUCCESS => break,
                TDX_INTERRUPTED_RESUMABLE => regs.rcx = out.regs.rcx,
                other => panic!("{other:#x}"),
            }
        }
        k += n;
    }
    let mut calls = 0;
    loop {
        calls += 1;
        match raw(&m, 1, leaf::TDH_EXT_INIT, Regs::ZERO) {
            TDX_SUCCESS => break,
            TDX_INTERRUPTED_RESUMABLE => {}
            other => panic!("{other:#x}"),
        }
    }
    assert_eq!(
        calls,
        u64::from(tdmr::mock::NEXT_EXTENSION_PAGES).div_ceil(tdmr::mock::EXT_INIT_BATCH)
    );
}

#[test]
fn ext_mem_add_checks_rcx_then_each_entry_in_order() {
    let m = ext_ready();
    let good = ext_page(0);
    // RCX: reserved bits, first above last, a list page under a private KeyID.
    for bad in [
        tdmr::init::ext_mem_add_rcx(0x30_0000, 0, 0) | 1,
        tdmr::init::ext_mem_add_rcx(0x30_0000, 0, 0) | 1 << 52,
        tdmr::init::ext_mem_add_rcx(0x30_0000, 5, 4),
        tdmr::init::ext_mem_add_rcx(0x30_0000 | 40 << 46, 0, 0),
    ] {
        assert_eq!(
            raw(&m, 0, leaf::TDH_EXT_MEM_ADD, rcx(bad)),
            TDX_OPERAND_INVALID | 1,
            "{bad:#x}"
        );
    }
    // Entry 1 of each list is bad; entry 0 is added and the RCX returned points at entry 1.
    let pamt_of_tdmr_1 = infos()[1].pamt_4k_base;
    for (k, (bad, expect)) in [
        (good + 8, TDX_OPERAND_INVALID | 1),
        (good | 1 << 47, TDX_OPERAND_INVALID | 1),
        (2 * GIB + 0x1000, TDX_OPERAND_ADDR_RANGE_ERROR | 1),
        (0, TDX_PAGE_NOT_FREE | 1),
        (pamt_of_tdmr_1, TDX_PAGE_NOT_FREE | 1),
        // The first list's first page, added already.
        (ext_page(10), TDX_PAGE_NOT_FREE | 1),
    ]
    .into_iter()
    .enumerate()
    {
        let first = ext_page(10 + 2 * k as u64);
        let regs = ext_list(&m, &[first, bad], 0, 1);
        let out = on(&m, 0, leaf::TDH_EXT_MEM_ADD, regs);
        assert_eq!(out.status.raw(), expect, "entry {bad:#x}");
        assert_eq!((out.regs.rcx >> 3) & 0x1FF, 1, "entry {bad:#x}");
        assert_eq!(m.extension_pages(), k as u64 + 1);
    }
}

// ---------------------------------------------------------------- runtime update

#[test]
fn shutdown_is_busy_while_another_lp_is_inside_and_checks_its_handoff_version() {
    // LP 1 inside TDH.SYS.TDMR.INIT meanwhile.
    let m = ready_with_profile("next");
    let held = m.tdmr_init_in_flight(1, 0).unwrap();
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_SHUTDOWN, rcx(3)), TDX_SYS_BUSY);
    drop(held);
    // `next` takes handoff versions 2..=3, bit 16 (it has update compatibility), nothing else.
    for (rcx_in, expect) in [
        (1, TDX_OPERAND_INVALID | 1),
        (4, TDX_OPERAND_INVALID | 1),
        (3 | 1 << 17, TDX_OPERAND_INVALID | 1),
    ] {
        assert_eq!(
            raw(&m, 0, leaf::TDH_SYS_SHUTDOWN, rcx(rcx_in)),
            expect,
            "{rcx_in:#x}"
        );
    }
    m.set_compat_sensitive(true);
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_SHUTDOWN, rcx(3 | 1 << 16)),
        TDX_UPDATE_COMPAT_SENSITIVE
    );
    assert_eq!(m.state(), SysState::SysReady);
    m.set_compat_sensitive(false);
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_SHUTDOWN, rcx(3 | 1 << 16)),
        TDX_SUCCESS
    );
    assert_eq!(m.state(), SysState::Shutdown);
    // Without update compatibility (1.5) bit 16 is an operand error.
    let m = ready();
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_SHUTDOWN, rcx(1 | 1 << 16)),
        TDX_OPERAND_INVALID | 1
    );
}

/// A module of `profile`, SYS_READY with the Linux plan, TDMRs not initialized.
fn ready_with_profile(profile: &str) -> MockModule {
    let m = after_sys_init_with(profile);
    let regs = place(&m, &infos(), 32);
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_CONFIG, regs), TDX_SUCCESS);
    for lp in 0..2 {
        assert_eq!(
            raw(&m, lp, leaf::TDH_SYS_KEY_CONFIG, Regs::ZERO),
            TDX_SUCCESS
        );
    }
    m
}

fn install_everywhere(m: &MockModule, loader: &tdmr::mock::SeamLoader<'_>) -> Vec<u64> {
    use tdmr::init::ModuleLoader;
    (0..2)
        .map(|lp| {
            let mut s = 0;
            m.run_on(lp, &mut || s = loader.install().status.raw())
                .unwrap();
            s
        })
        .collect()
}

#[test]
fn the_loader_installs_only_into_a_shut_down_module_then_update_resumes_it() {
    use tdmr::mock::SeamLoader;
    let m = initialized_with("1.5.24", 0);
    let loader = SeamLoader::new(&m, "1.5.25".parse().unwrap()).with_remaining_updates(1);
    assert_eq!(
        install_everywhere(&m, &loader),
        [SeamLoader::MODULE_RUNNING; 2]
    );
    // UPDATE without a handoff pending: wrong state.
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_UPDATE, Regs::ZERO),
        TDX_SYS_STATE_INCORRECT
    );
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_SHUTDOWN, rcx(1)), TDX_SUCCESS);
    // A second image while the first is half installed.
    let other = SeamLoader::new(&m, "1.5.25,update=26".parse().unwrap());
    let mut s = 0;
    m.run_on(0, &mut || {
        s = tdmr::init::ModuleLoader::install(&loader).status.raw()
    })
    .unwrap();
    assert_eq!(s, TDX_SUCCESS);
    assert_eq!(
        m.module().version().to_string(),
        "1.5.24",
        "not every LP has it yet"
    );
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_LP_INIT, Regs::ZERO),
        TDX_SYS_SHUTDOWN
    );
    m.run_on(1, &mut || {
        s = tdmr::init::ModuleLoader::install(&other).status.raw()
    })
    .unwrap();
    assert_eq!(s, SeamLoader::OTHER_IMAGE);
    assert_eq!(install_everywhere(&m, &loader), [TDX_SUCCESS, TDX_SUCCESS]);
    // The new module runs, waiting: LP.INIT everywhere, CONFIG frozen, then UPDATE.
    assert_eq!(m.module().version().to_string(), "1.5.25");
    assert!(m.update_pending());
    assert_eq!(m.state(), SysState::SysinitDone);
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_LP_INIT, Regs::ZERO), TDX_SUCCESS);
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_UPDATE, Regs::ZERO),
        TDX_SYS_STATE_INCORRECT
    );
    assert_eq!(raw(&m, 1, leaf::TDH_SYS_LP_INIT, Regs::ZERO), TDX_SUCCESS);
    let regs = place(&m, &infos(), 32);
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_CONFIG, regs),
        TDX_SYS_CONFIG_NOT_PENDING
    );
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_UPDATE.with_version(1), Regs::ZERO),
        TDX_OPERAND_INVALID,
        "1.5 has no UPDATE v1"
    );
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_UPDATE, Regs::ZERO), TDX_SUCCESS);
    assert_eq!((m.state(), m.updates()), (SysState::SysReady, 1));
    // The TDMRs carried over, initialized.
    assert!(m.tdmrs().iter().all(|t| t.is_done()) && m.tdmrs().len() == 2);
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_TDMR_INIT, rcx(0)),
        TDX_TDMR_ALREADY_INITIALIZED
    );
    // The budget is spent.
    assert_eq!(
        tdmr::init::ModuleLoader::remaining_updates(&loader),
        Some(0)
    );
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_SHUTDOWN, rcx(1)), TDX_SUCCESS);
    assert_eq!(
        install_everywhere(&m, &loader),
        [SeamLoader::NO_UPDATES_LEFT; 2]
    );
}

#[test]
fn the_loader_is_one_lp_at_a_time() {
    use tdmr::init::ModuleLoader;
    use tdmr::mock::SeamLoader;
    // While an LP is inside the loader, another's install answers VMfailInvalid (P-SEAMLDR
    // busy) and changes nothing; afterwards it goes through.
    let m = initialized_with("1.5.24", 0);
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_SHUTDOWN, rcx(1)), TDX_SUCCESS);
    let loader = SeamLoader::new(&m, "1.5.25".parse().unwrap());
    let held = loader.hold().unwrap();
    assert!(loader.hold().is_none());
    assert_eq!(loader.install().status.raw(), TDX_SEAMCALL_VMFAILINVALID);
    assert_eq!(
        install_everywhere(&m, &loader),
        [TDX_SEAMCALL_VMFAILINVALID; 2]
    );
    drop(held);
    assert_eq!(install_everywhere(&m, &loader), [TDX_SUCCESS; 2]);
    assert!(m.update_pending());
}

#[test]
fn update_refuses_a_handoff_the_new_module_cannot_run() {
    use tdmr::mock::SeamLoader;
    // A new module with 1 reserved area per TDMR cannot run the Linux plan (TDMR 1 has two):
    // TDH.SYS.UPDATE refuses, and the module stays waiting.
    for (incoming, ok) in [
        ("1.5.25,max_reserved=1", false),
        ("1.5.25,max_tdmrs=1", false),
        ("1.5.25,pamt_entry_size=32", false),
        ("2.0.08", false), // another line's handoff version
        ("1.5.25,max_reserved=3", true),
    ] {
        let m = initialized_with("1.5.24", 0);
        assert_eq!(raw(&m, 0, leaf::TDH_SYS_SHUTDOWN, rcx(1)), TDX_SUCCESS);
        let loader = SeamLoader::new(&m, incoming.parse().unwrap());
        assert_eq!(install_everywhere(&m, &loader), [TDX_SUCCESS; 2]);
        for lp in 0..2 {
            assert_eq!(raw(&m, lp, leaf::TDH_SYS_LP_INIT, Regs::ZERO), TDX_SUCCESS);
        }
        let r = raw(&m, 0, leaf::TDH_SYS_UPDATE, Regs::ZERO);
        if ok {
            assert_eq!(r, TDX_SUCCESS, "{incoming}");
        } else {
            assert_eq!(r, TDX_SYS_STATE_INCORRECT, "{incoming}");
            assert!(m.update_pending(), "{incoming}");
            assert_eq!(
                raw(&m, 0, leaf::TDH_SYS_TDMR_INIT, rcx(0)),
                TDX_SYS_NOT_READY
            );
        }
    }
}

#[test]
fn update_v1_carries_exactly_the_add_ons_config_enabled() {
    use tdmr::mock::SeamLoader;
    let m = initialized_with("next,add_ons=0x40", 0x40);
    // Extensions needed: add them first (the pool must carry over).
    let n = u64::from(tdmr::mock::NEXT_EXTENSION_PAGES);
    let mut k = 0;
    while k < n {
        let c = 512.min(n - k);
        let pages: Vec<u64> = (k..k + c).map(ext_page).collect();
        let mut regs = ext_list(&m, &pages, 0, c - 1);
        while let TDX_INTERRUPTED_RESUMABLE = {
            let out = on(&m, 0, leaf::TDH_EXT_MEM_ADD, regs);
            regs.rcx = out.regs.rcx;
            out.status.raw()
        } {}
        k += c;
    }
    while raw(&m, 0, leaf::TDH_EXT_INIT, Regs::ZERO) == TDX_INTERRUPTED_RESUMABLE {}
    assert!(m.extensions_initialized());
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_SHUTDOWN, rcx(3)), TDX_SUCCESS);
    let loader = SeamLoader::new(&m, "next,add_ons=0x40,update=1".parse().unwrap());
    assert_eq!(install_everywhere(&m, &loader), [TDX_SUCCESS; 2]);
    for lp in 0..2 {
        assert_eq!(raw(&m, lp, leaf::TDH_SYS_LP_INIT, Regs::ZERO), TDX_SUCCESS);
    }
    let v1 = leaf::TDH_SYS_UPDATE.with_version(1);
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_UPDATE, Regs::ZERO),
        TDX_OPERAND_INVALID
    );
    assert_eq!(
        raw(
            &m,
            0,
            v1,
            Regs {
                r9: 0,
                ..Regs::ZERO
            }
        ),
        TDX_OPERAND_INVALID | 9
    );
    assert_eq!(
        raw(
            &m,
            0,
            v1,
            Regs {
                r9: 0x40,
                ..Regs::ZERO
            }
        ),
        TDX_SUCCESS
    );
    assert!(m.extensions_initialized() && m.extension_pages() == n);
}

// ---------------------------------------------------------------- TDH.SYS.DISABLE

#[test]
fn disable_resumes_per_tdmr_is_busy_while_another_lp_is_inside_and_resets_everything() {
    let m = ready_with_profile("next");
    let held = m.tdmr_init_in_flight(1, 0).unwrap();
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_DISABLE, Regs::ZERO), TDX_SYS_BUSY);
    drop(held);
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_DISABLE.with_version(1), Regs::ZERO),
        TDX_OPERAND_INVALID
    );
    // Two TDMRs: one resumption, then done.
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_DISABLE, Regs::ZERO),
        TDX_INTERRUPTED_RESUMABLE
    );
    assert_eq!(m.state(), SysState::SysReady);
    assert_eq!(raw(&m, 1, leaf::TDH_SYS_DISABLE, Regs::ZERO), TDX_SUCCESS);
    assert_eq!(m.state(), SysState::Disabled);
    assert!(m.tdmrs().is_empty() && m.global_keyid().is_none());
    // What a disabled module refuses: everything but a new TDH.SYS.INIT answers as before
    // TDH.SYS.INIT.
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_TDMR_INIT, rcx(0)),
        TDX_SYS_NOT_READY
    );
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_LP_INIT, Regs::ZERO),
        TDX_SYS_LP_INIT_NOT_PENDING
    );
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_RD, rdx(md::MAX_TDMRS.raw())),
        TDX_SYS_LP_INIT_NOT_DONE
    );
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_KEY_CONFIG, Regs::ZERO),
        TDX_SYS_KEY_CONFIG_NOT_PENDING
    );
    assert_eq!(
        raw(&m, 0, leaf::TDH_SYS_SHUTDOWN, rcx(3)),
        TDX_SYS_NOT_READY
    );
    assert_eq!(
        m.mark_in_use(0x20_0000).unwrap_err().raw(),
        TDX_SYS_NOT_READY
    );
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_DISABLE, Regs::ZERO), TDX_SUCCESS);
    // A new kernel brings it up again.
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_INIT, Regs::ZERO), TDX_SUCCESS);
    for lp in 0..2 {
        assert_eq!(raw(&m, lp, leaf::TDH_SYS_LP_INIT, Regs::ZERO), TDX_SUCCESS);
    }
    let regs = place(&m, &infos(), 33);
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_CONFIG, regs), TDX_SUCCESS);
    assert_eq!(m.global_keyid(), Some(33));
}

// ---------------------------------------------------------------- the module's 2 MiB locking

#[test]
fn pamt_add_and_remove_on_a_2m_range_in_flight_are_operand_busy() {
    let dpamt = TdxLimits::default().with_dynamic_pamt(1).unwrap();
    let m = MockModule::new(platform().with_limits(dpamt));
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_INIT, Regs::ZERO), TDX_SUCCESS);
    for lp in 0..2 {
        assert_eq!(raw(&m, lp, leaf::TDH_SYS_LP_INIT, Regs::ZERO), TDX_SUCCESS);
    }
    let input = parse_kernel_log(LOG).unwrap();
    let plan = Planner::new()
        .with_strategy(Strategy::Linux)
        .with_limits(dpamt)
        .plan(input.memory(), input.cmrs())
        .unwrap();
    let regs = place(&m, &plan.tdmr_infos().unwrap(), 32 | 1 << 16);
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_CONFIG, regs), TDX_SUCCESS);
    for lp in 0..2 {
        assert_eq!(
            raw(&m, lp, leaf::TDH_SYS_KEY_CONFIG, Regs::ZERO),
            TDX_SUCCESS
        );
    }
    for base in [0, 4 * GIB] {
        while on(&m, 0, leaf::TDH_SYS_TDMR_INIT, rcx(base)).status.raw() == TDX_SUCCESS {}
    }
    let range = 4 * GIB + 0x20_0000;
    let add = Regs {
        rcx: range | 1,
        rdx: 4 * GIB + 0x80_0000,
        r8: 4 * GIB + 0x80_1000,
        ..Regs::ZERO
    };
    let remove = rcx(range | 1);
    let held = m.pamt_range_in_flight(1, range).unwrap();
    assert_eq!(
        raw(&m, 0, leaf::TDH_PHYMEM_PAMT_ADD, add),
        0x8000_0200_0000_0001
    );
    assert_eq!(
        raw(&m, 0, leaf::TDH_PHYMEM_PAMT_REMOVE, remove),
        0x8000_0200_0000_0001
    );
    assert_eq!(
        m.pamt_range_in_flight(0, range).unwrap_err().raw(),
        0x8000_0200_0000_0001
    );
    // Another 2 MiB range proceeds meanwhile; the held LP itself cannot call.
    let other = Regs {
        rcx: (range + 0x20_0000) | 1,
        rdx: 4 * GIB + 0x80_2000,
        r8: 4 * GIB + 0x80_3000,
        ..Regs::ZERO
    };
    assert_eq!(raw(&m, 0, leaf::TDH_PHYMEM_PAMT_ADD, other), TDX_SUCCESS);
    assert_eq!(raw(&m, 1, leaf::TDH_PHYMEM_PAMT_ADD, add), TDX_SEAMCALL_UD);
    drop(held);
    assert_eq!(raw(&m, 0, leaf::TDH_PHYMEM_PAMT_ADD, add), TDX_SUCCESS);
    assert_eq!(
        raw(&m, 1, leaf::TDH_PHYMEM_PAMT_REMOVE, remove),
        TDX_SUCCESS
    );
    assert_eq!(m.pamt_pair_count(), 1);
}

// Threads standing for LPs need the per-thread LP context of `std`.
#[cfg(feature = "std")]
#[test]
fn racing_pamt_add_and_remove_on_one_range_never_corrupt_the_pair() {
    // Two LPs on OS threads hammer ADD/REMOVE on one 2 MiB range: a call may meet the other's
    // lock (BUSY, how often depends on timing, so it is not counted); every success alternates
    // the range between backed and free, so at the end successful ADDs exceed successful
    // REMOVEs by the pairs left (0 or 1), and no other status appears.
    let dpamt = TdxLimits::default().with_dynamic_pamt(1).unwrap();
    let m = MockModule::new(platform().with_limits(dpamt));
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_INIT, Regs::ZERO), TDX_SUCCESS);
    for lp in 0..2 {
        assert_eq!(raw(&m, lp, leaf::TDH_SYS_LP_INIT, Regs::ZERO), TDX_SUCCESS);
    }
    let input = parse_kernel_log(LOG).unwrap();
    let plan = Planner::new()
        .with_strategy(Strategy::Linux)
        .with_limits(dpamt)
        .plan(input.memory(), input.cmrs())
        .unwrap();
    let regs = place(&m, &plan.tdmr_infos().unwrap(), 32 | 1 << 16);
    assert_eq!(raw(&m, 0, leaf::TDH_SYS_CONFIG, regs), TDX_SUCCESS);
    for lp in 0..2 {
        assert_eq!(
            raw(&m, lp, leaf::TDH_SYS_KEY_CONFIG, Regs::ZERO),
            TDX_SUCCESS
        );
    }
    while on(&m, 0, leaf::TDH_SYS_TDMR_INIT, rcx(4 * GIB))
        .status
        .raw()
        == TDX_SUCCESS
    {}
    let range = 4 * GIB + 0x20_0000;
    let counts = std::sync::Mutex::new((0u64, 0u64, 0u64)); // adds, removes, busy
    std::thread::scope(|s| {
        for lp in 0..2u32 {
            let (m, counts) = (&m, &counts);
            s.spawn(move || {
                let pages = 4 * GIB + 0x80_0000 + u64::from(lp) * 0x2000;
                for i in 0..3000 {
                    let (l, r) = if i % 2 == 0 {
                        (
                            leaf::TDH_PHYMEM_PAMT_ADD,
                            Regs {
                                rcx: range | 1,
                                rdx: pages,
                                r8: pages + 0x1000,
                                ..Regs::ZERO
                            },
                        )
                    } else {
                        (leaf::TDH_PHYMEM_PAMT_REMOVE, rcx(range | 1))
                    };
                    let st = raw(m, lp, l, r);
                    let mut c = counts.lock().unwrap();
                    match (st, l == leaf::TDH_PHYMEM_PAMT_ADD) {
                        (TDX_SUCCESS, true) => c.0 += 1,
                        (TDX_SUCCESS, false) => c.1 += 1,
                        (0x8000_0200_0000_0001, _) => c.2 += 1,
                        // The other LP's pair is there / already removed.
                        (s, true)
                            if s == TDX_HPA_RANGE_NOT_FREE | 1
                                || s == TDX_PAGE_NOT_FREE | 2
                                || s == TDX_PAGE_NOT_FREE | 8 => {}
                        (s, false) if s == TDX_NO_PAMT_PAGE_PAIR | 1 => {}
                        (s, _) => panic!("{l}: {s:#x}"),
                    }
                }
            });
        }
    });
    let (adds, removes, _) = *counts.lock().unwrap();
    assert_eq!(adds - removes, m.pamt_pair_count() as u64);
    assert!(adds > 0 && removes > 0);
}
