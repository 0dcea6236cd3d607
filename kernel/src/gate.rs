//! The hotplug gate raced from every vCPU at once: the APs ask for random memory additions
//! while the bootstrap processor begins initialization and publishes the plan. Each AP checks
//! every admission against the rules it must follow, computed here from the plan and the CMRs
//! (not from the gate): before initialization, inside the CMRs and never once initialization
//! has begun; after it, TDX memory of the plan only. A break of either is a violation.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tdmr::addr::{PhysRange, RangeSet};
use tdmr::hotplug_gate::{AdmissionRule, AdmitError, GateConfig, HotplugGate};
use tdmr::init::{CpuId, Cpus};
use tdmr::layout::Plan;
use tdmr::memmap::{Cmrs, MemoryMap};

use crate::cpus::MpCpus;

/// What the race counted.
#[derive(Clone, Copy, Debug, Default)]
pub struct GateRun {
    /// Additions admitted before initialization.
    pub admitted_before: u64,
    /// Additions admitted after it.
    pub admitted_after: u64,
    /// Additions answered `Busy`.
    pub busy: u64,
    /// Additions refused by a rule.
    pub refused: u64,
    /// Admissions that broke a rule.
    pub violations: u64,
    /// `begin_init` attempts answered busy before one succeeded.
    pub init_retries: u64,
}

/// Additions each AP asks for at least (and goes on until the bootstrap processor is done).
const OPS: u64 = 4000;
/// Additions after which an AP gives up waiting for the bootstrap processor (counted as a
/// violation: initialization never finished).
const GIVE_UP: u64 = 50_000_000;

fn next(state: &mut u64) -> u64 {
    // xorshift64*
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// Races the gate on every CPU of `cpus`; `plan` is the configuration the module accepted for
/// `memory`, whose CMRs are `cmrs`.
pub fn race(
    cpus: &MpCpus,
    cmrs: &Cmrs,
    memory: &MemoryMap,
    plan: &Plan,
) -> Result<GateRun, AdmitError> {
    let list = cpus.cpus();
    let packages = list.iter().map(|c| c.package).max().map_or(1, |p| p + 1);
    let count = list.iter().map(|c| c.id).max().map_or(1, |c| c + 1);
    let gate = HotplugGate::new(cmrs.clone(), GateConfig::new(count, packages))
        .map_err(|_| AdmitError::Busy)?;
    for c in &list {
        if let Ok(online) = gate.cpu_online(c.id, c.package) {
            online.finish();
        }
    }
    // The rules, from the inputs: CMRs before; TDX memory of the plan after (the TDMRs'
    // non-reserved space, TDX memory at init, no PAMT block).
    let convertible = RangeSet::from_ranges(cmrs.merged().iter().copied());
    let frozen = RangeSet::from_ranges(plan.tdmrs().iter().flat_map(|t| t.available()))
        .intersect(&RangeSet::from_ranges(
            memory.regions().iter().map(|r| r.range()),
        ))
        .subtract(&plan.pamt_ranges());
    let top = convertible.as_slice().last().map_or(1 << 30, |r| r.end()) + (1 << 30);

    let init_begun = AtomicBool::new(false);
    let published = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    let counts: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];
    let bsp = cpus.bsp();
    let work = |cpu: CpuId| {
        if cpu == bsp {
            // Let the APs add memory for a while, then initialize, then let them go on.
            uefi::boot::stall(20_000);
            let ticket = loop {
                match gate.begin_init() {
                    Ok(t) => break t,
                    Err(_) => {
                        counts[5].fetch_add(1, Ordering::Relaxed);
                        core::hint::spin_loop();
                    }
                }
            };
            init_begun.store(true, Ordering::SeqCst);
            uefi::boot::stall(20_000);
            if ticket.publish(plan, memory).is_err() {
                counts[4].fetch_add(1, Ordering::Relaxed);
            }
            published.store(true, Ordering::SeqCst);
            uefi::boot::stall(20_000);
            stop.store(true, Ordering::SeqCst);
            return;
        }
        let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (u64::from(cpu) << 32 | 1);
        let mut ops = 0;
        while ops < OPS || !stop.load(Ordering::SeqCst) {
            ops += 1;
            // A 2 MiB-aligned block of 2 to 64 MiB anywhere below the top of the CMRs + 1 GiB.
            let size = (1 + next(&mut rng) % 32) << 21;
            let base = (next(&mut rng) % (top >> 21)) << 21;
            let Ok(range) = PhysRange::from_base_size(base, size) else {
                continue;
            };
            match gate.admit_memory(range) {
                Ok(a) => {
                    let ok = match a.rule() {
                        AdmissionRule::TdxMemory => frozen.contains_range(range),
                        _ => {
                            // Hold it a moment: initialization must not begin meanwhile.
                            for _ in 0..20 {
                                core::hint::spin_loop();
                            }
                            convertible.contains_range(range) && !init_begun.load(Ordering::SeqCst)
                        }
                    };
                    let slot = if a.rule() == AdmissionRule::TdxMemory {
                        1
                    } else {
                        0
                    };
                    counts[slot].fetch_add(1, Ordering::Relaxed);
                    if !ok {
                        counts[4].fetch_add(1, Ordering::Relaxed);
                    }
                    a.finish();
                }
                Err(AdmitError::Busy) => {
                    counts[2].fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    counts[3].fetch_add(1, Ordering::Relaxed);
                }
            }
            if ops > GIVE_UP {
                break; // the bootstrap processor never finished: counted as a violation below
            }
        }
        if !published.load(Ordering::SeqCst) {
            counts[4].fetch_add(1, Ordering::Relaxed);
        }
    };
    let ids: alloc::vec::Vec<CpuId> = list.iter().map(|c| c.id).collect();
    cpus.run_on_each(&ids, &work)
        .map_err(|_| AdmitError::Busy)?;
    let c = |i: usize| counts[i].load(Ordering::Relaxed);
    Ok(GateRun {
        admitted_before: c(0),
        admitted_after: c(1),
        busy: c(2),
        refused: c(3),
        violations: c(4),
        init_retries: c(5),
    })
}
