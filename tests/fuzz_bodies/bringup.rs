//! `Bringup` over a lying TDX module: the mock behind a `FuzzInjector` whose corruptions the
//! bytes choose. Shared by the `bringup` fuzz target and `cargo test` (seed replay).
//!
//! The first bytes shape the machine (one to three memory regions of 1–3 GiB, LPs, packages,
//! Dynamic PAMT, the planner's CPUs); the rest drive the injector. Whatever the module says:
//! bring-up returns (no panic; the injector passes calls unchanged once its bytes run out, so
//! a bring-up that retried without end would hang the target), and it reports "initialized"
//! only if, for every TDMR of the plan, some TDH.SYS.TDMR.INIT on that TDMR's base reported it
//! done (RDX at the TDMR's end with success, or TDX_TDMR_ALREADY_INITIALIZED).

use tdmr::init::Bringup;
use tdmr::layout::Planner;
use tdmr::memmap::{Cmr, MemoryMap, MemoryRegion};
use tdmr::mock::{MockModule, Platform};
use tdmr::seamcall::FuzzInjector;
use tdmr::sysinfo::TdxLimits;
use tdmr::tdx::leaf;
use tdmr::tdx::status::{STATUS_MASK, TDX_SUCCESS, TDX_TDMR_ALREADY_INITIALIZED};

const GIB: u64 = 1 << 30;

pub fn run(data: &[u8]) {
    let byte = |i: usize| data.get(i).copied().unwrap_or(0);
    let regions = 1 + byte(0) as u64 % 3;
    let mut memory = Vec::new();
    let mut at = 4 * GIB;
    for r in 0..regions {
        let size = (1 + u64::from(byte(1 + r as usize)) % 3) * GIB - 64 * 4096;
        memory.push(MemoryRegion::new(at, size, r as u32 % 2));
        at += size.next_multiple_of(GIB) + GIB * u64::from(byte(4) % 2);
    }
    let Ok(map) = MemoryMap::new(memory) else {
        return;
    };
    let lps = 1 + u32::from(byte(5)) % 4;
    let packages = 1 + u32::from(byte(6)) % lps;
    let dynamic_pamt = byte(7) % 2 == 1;
    let cpus = 1 + u32::from(byte(8)) % 4;
    let cmrs: Vec<Cmr> = map
        .regions()
        .iter()
        .map(|r| Cmr::new(r.base, r.size))
        .collect();
    let mut limits = TdxLimits::default();
    if dynamic_pamt {
        limits = limits.with_dynamic_pamt(1).unwrap();
    }
    let platform = Platform::new(&cmrs)
        .and_then(|p| p.with_topology(lps, packages))
        .unwrap()
        .with_limits(limits);
    let keyids = platform.private_keyids();
    let module = MockModule::new(platform);
    let liar = FuzzInjector::new(&module, data.get(9..).unwrap_or(&[]));
    let result = Bringup::new(&liar, &module, &module, keyids)
        .with_planner(Planner::new().with_init_cpus(cpus))
        .with_dynamic_pamt(dynamic_pamt)
        .run(&map);
    let Ok(done) = result else {
        return;
    };
    let told = liar.outputs();
    for t in done.plan.tdmrs() {
        let reported_done = told.iter().any(|o| {
            o.leaf == leaf::TDH_SYS_TDMR_INIT
                && o.inputs.rcx == t.base()
                && ((o.output.status.raw() == TDX_SUCCESS && o.output.regs.rdx == t.end())
                    || o.output.status.raw() & STATUS_MASK == TDX_TDMR_ALREADY_INITIALIZED)
        });
        assert!(
            reported_done,
            "initialized, but TDMR {:#x}..{:#x} was never reported done",
            t.base(),
            t.end()
        );
    }
}
