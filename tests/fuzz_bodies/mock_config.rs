//! Differential check of the mock's TDH.SYS.CONFIG against the validator, driven by arbitrary
//! bytes. Shared by the `mock_config` fuzz target and `cargo test` (seed replay and proptest).
//!
//! From the bytes: a memory map (one to six regions) and CMRs around it, a Linux or optimal
//! plan for it with either hole policy, then mutations of its `TDMR_INFO`s (or entirely arbitrary
//! `TDMR_INFO`s when no plan exists), a TDMR count, a KeyID and an array placement. The mock
//! reads the array from simulated memory; its status must be exactly what the module's rules
//! give: RCX, RDX and R8 checks first (written out here from the rules), then
//! `layout::validate::sys_config` over the `TDMR_INFO`s as the module would fetch them (zeros
//! past the ones written). An unmutated plan must be accepted. On success the mock is
//! SYSCONFIG_DONE with exactly those TDMRs; on failure it stays SYSINIT_DONE.

use arbitrary::{Result, Unstructured};
use tdmr::sysinfo::{PrivateKeyIds, TdxLimits};

use tdmr::init::HostMemory;
use tdmr::layout::{HolePolicy, Planner, Strategy};
use tdmr::memmap::{Cmr, Cmrs, MemoryMap, MemoryRegion};
use tdmr::mock::{MockModule, Platform, SysState};
use tdmr::seamcall::Seamcall;
use tdmr::tdx::abi::{TdmrInfo, TdmrInfoPaArray};
use tdmr::tdx::status::TDX_OPERAND_INVALID;
use tdmr::tdx::validate;
use tdmr::tdx::{Regs, leaf};

const GIB: u64 = 1 << 30;
const PAGE: u64 = 4096;

/// A memory map of up to six regions and CMRs that hold it.
fn memory(u: &mut Unstructured<'_>) -> Result<(MemoryMap, Vec<Cmr>)> {
    let n = u.int_in_range(1..=6)?;
    let mut regions = Vec::new();
    let mut cmrs: Vec<Cmr> = Vec::new();
    let mut at = u.int_in_range(0u64..=4 * GIB / PAGE)? * PAGE;
    let mut node = 0;
    for _ in 0..n {
        let size = u.int_in_range(1u64..=(96 * GIB) / PAGE)? * PAGE;
        regions.push(MemoryRegion::new(at, size, node));
        // The CMR may extend a little past the memory.
        let slack = u.int_in_range(0u64..=16)? * PAGE;
        match cmrs.last_mut() {
            Some(c) if c.base + c.size >= at => c.size = at + size + slack - c.base,
            _ => cmrs.push(Cmr::new(at, size + slack)),
        }
        at += size + slack + u.int_in_range(0u64..=(8 * GIB) / PAGE)? * PAGE;
        if u.ratio(1, 3)? {
            node += 1;
        }
    }
    let map = MemoryMap::new(regions).map_err(|_| arbitrary::Error::IncorrectFormat)?;
    Ok((map, cmrs))
}

fn arbitrary_info(u: &mut Unstructured<'_>) -> Result<TdmrInfo> {
    let mut t = TdmrInfo::ZERO;
    t.base = u.int_in_range(0u64..=64)? * GIB;
    t.size = u.int_in_range(0u64..=8)? * GIB;
    for level in tdmr::addr::PageSize::ALL {
        let base = u.int_in_range(0u64..=(64 * GIB) / PAGE)? * PAGE;
        let size = u.int_in_range(0u64..=8192)? * PAGE;
        t.set_pamt(level, base, size);
    }
    for r in t.reserved.iter_mut().take(u.int_in_range(0..=3)?) {
        r.offset = u.int_in_range(0u64..=(8 * GIB) / PAGE)? * PAGE;
        r.size = u.int_in_range(0u64..=4096)? * PAGE;
    }
    Ok(t)
}

fn word_mut(t: &mut TdmrInfo, i: usize) -> &mut u64 {
    match i {
        0 => &mut t.base,
        1 => &mut t.size,
        2 => &mut t.pamt_1g_base,
        3 => &mut t.pamt_1g_size,
        4 => &mut t.pamt_2m_base,
        5 => &mut t.pamt_2m_size,
        6 => &mut t.pamt_4k_base,
        7 => &mut t.pamt_4k_size,
        j => {
            let e = &mut t.reserved[(j - 8) / 2 % 16];
            if j % 2 == 0 {
                &mut e.offset
            } else {
                &mut e.size
            }
        }
    }
}

fn mutate(u: &mut Unstructured<'_>, infos: &mut [TdmrInfo]) -> Result<()> {
    let i = u.choose_index(infos.len())?;
    match u.int_in_range(0..=5)? {
        0 => *word_mut(&mut infos[i], u.int_in_range(0..=39)?) = u.arbitrary()?,
        1 => {
            let w = word_mut(&mut infos[i], u.int_in_range(0..=39)?);
            *w = w.wrapping_add(PAGE);
        }
        2 => {
            let w = word_mut(&mut infos[i], u.int_in_range(0..=39)?);
            *w = w.wrapping_sub(PAGE);
        }
        3 => {
            let w = word_mut(&mut infos[i], u.int_in_range(0..=39)?);
            *w = w.wrapping_add(GIB);
        }
        4 => {
            let j = u.choose_index(infos.len())?;
            infos.swap(i, j);
        }
        _ => {
            let slot = u.int_in_range(0..=15)?;
            infos[i].reserved[slot].size = 0;
        }
    }
    Ok(())
}

/// The rules' verdict on RCX, RDX and R8 (TDX module 1.5 without Dynamic PAMT, private
/// KeyIDs 32..=63, KeyID bits 46..51, MAX_TDMRS 64).
fn operand_verdict(rcx: u64, rdx: u64, r8: u64) -> Option<u64> {
    let hkid = |pa: u64| (pa >> 46) & 0x3F;
    if !rcx.is_multiple_of(512) || rcx >= 1 << 52 || hkid(rcx) >= 32 {
        return Some(TDX_OPERAND_INVALID | 1);
    }
    if rdx == 0 || rdx > 64 {
        return Some(TDX_OPERAND_INVALID | 2);
    }
    if r8 >> 16 != 0 || !(32..=63).contains(&r8) {
        return Some(TDX_OPERAND_INVALID | 8);
    }
    None
}

pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let _ = check(&mut u);
}

/// A fresh mock with these CMRs, through SYS.INIT and LP.INIT, given `infos` with the
/// first private KeyID: the TDH.SYS.CONFIG status.
#[allow(dead_code)]
pub fn config_on_mock(cmrs: &[Cmr], infos: &[TdmrInfo]) -> tdmr::tdx::status::Status {
    let m = MockModule::new(Platform::new(cmrs).expect("at most 32 CMRs"));
    assert!(
        m.seamcall(leaf::TDH_SYS_INIT, &Regs::ZERO)
            .status
            .is_success()
    );
    assert!(
        m.seamcall(leaf::TDH_SYS_LP_INIT, &Regs::ZERO)
            .status
            .is_success()
    );
    let pas: Vec<u64> = infos
        .iter()
        .map(|t| m.place(&t.to_bytes(), 512).expect("host window"))
        .collect();
    let array = TdmrInfoPaArray::new(&pas).expect("512-aligned");
    let regs = Regs {
        rcx: m.place(&array.to_bytes(), 512).expect("host window"),
        rdx: infos.len() as u64,
        r8: 32,
        ..Regs::ZERO
    };
    m.seamcall(leaf::TDH_SYS_CONFIG, &regs).status
}

fn check(u: &mut Unstructured<'_>) -> Result<()> {
    let (map, cmr_list) = memory(u)?;
    let Ok(cmrs) = Cmrs::new(cmr_list.clone()) else {
        return Ok(());
    };
    let holes = if u.arbitrary()? {
        HolePolicy::Cmr
    } else {
        HolePolicy::Memory
    };
    let strategy = if u.arbitrary()? {
        Strategy::Optimal
    } else {
        Strategy::Linux
    };
    let planned = Planner::new()
        .with_strategy(strategy)
        .with_holes(holes)
        .plan(&map, &cmrs)
        .ok()
        .and_then(|p| p.tdmr_infos().ok());
    let mut infos = match &planned {
        Some(i) => i.clone(),
        None => (0..u.int_in_range(1..=4)?)
            .map(|_| arbitrary_info(u))
            .collect::<Result<_>>()?,
    };
    let mutations = u.int_in_range(0..=3)?;
    for _ in 0..mutations {
        mutate(u, &mut infos)?;
    }
    // Rare choices come from high draws, so an exhausted input takes the common path.
    let len = infos.len() as u64;
    let count: u64 = match u.int_in_range(0..=15)? {
        0..=9 => len,
        10 => 0,
        11 => 64,
        12 => 65,
        13 => len + 1,
        _ => u.int_in_range(0..=70)?,
    };
    let keyid: u64 = match u.int_in_range(0..=15)? {
        0..=11 => 32,
        12 => 31,
        13 => 63,
        14 => 64,
        _ => u.arbitrary()?,
    };
    let misalign: u64 = if !u.ratio(15, 16)? { 8 } else { 0 };

    let platform = Platform::new(&cmr_list).expect("at most 6 CMRs");
    let m = MockModule::new(platform);
    assert!(
        m.seamcall(leaf::TDH_SYS_INIT, &Regs::ZERO)
            .status
            .is_success()
    );
    assert!(
        m.seamcall(leaf::TDH_SYS_LP_INIT, &Regs::ZERO)
            .status
            .is_success()
    );
    let pas: Vec<u64> = infos
        .iter()
        .map(|t| m.place(&t.to_bytes(), 512).expect("host window"))
        .collect();
    let array = TdmrInfoPaArray::new(&pas).expect("512-aligned");
    let rcx = m.place(&array.to_bytes(), 512).expect("host window") + misalign;
    let regs = Regs {
        rcx,
        rdx: count,
        r8: keyid,
        ..Regs::ZERO
    };
    let got = m.seamcall(leaf::TDH_SYS_CONFIG, &regs).status;

    let expected = match operand_verdict(rcx, count, keyid) {
        Some(raw) => Err(raw),
        None => {
            // What the module fetches: the TDMR_INFOs written, then PA 0 (zero memory there).
            let env = validate::ConfigEnv::from_limits(&TdxLimits::default(), &cmr_list)
                .with_keyids(6, PrivateKeyIds::DEFAULT);
            let fetched: Vec<TdmrInfo> = (0..count as usize)
                .map(|i| infos.get(i).copied().unwrap_or(TdmrInfo::ZERO))
                .collect();
            validate::sys_config(&fetched, &env).map_err(|s| s.raw())
        }
    };
    assert_eq!(
        got.raw(),
        expected.err().unwrap_or(0),
        "mock {got} vs rules; count {count}, keyid {keyid:#x}, rcx {rcx:#x}"
    );
    if planned.is_some()
        && mutations == 0
        && count == infos.len() as u64
        && keyid == 32
        && misalign == 0
    {
        assert!(
            got.is_success(),
            "unmutated {strategy:?} plan refused: {got}"
        );
    }
    if got.is_success() {
        assert_eq!(m.state(), SysState::SysconfigDone);
        let t = m.tdmrs();
        assert_eq!(t.len(), count as usize);
        assert!(
            t.iter()
                .zip(&infos)
                .all(|(p, i)| (p.base, p.size) == (i.base, i.size))
        );
    } else {
        assert_eq!(m.state(), SysState::SysinitDone);
    }
    Ok(())
}
