//! [`LpThreads`]: the mock module's logical processors as OS threads (feature `std`), so that
//! bring-up's concurrent work really runs concurrently against the mock.

use alloc::vec::Vec;

use super::MockModule;
use crate::init::{Cpu, CpuId, CpuUnavailable, Cpus};

/// The host's CPUs for a [`MockModule`], one OS thread per simulated LP: [`Cpus::run_on_each`]
/// starts a thread for each CPU of the set, enters that LP on it, lets all start together
/// (a barrier) and waits for all; calls the work makes reach the module from that LP, at the
/// same time as the others'. [`Cpus::run_on`]
/// runs on the calling thread, entered into the LP (as the module's own [`Cpus`] does).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tdmr::init::Bringup;
/// use tdmr::layout::Planner;
/// use tdmr::memmap::parse_kernel_log;
/// use tdmr::mock::{LpThreads, MockModule, Platform};
/// use tdmr::tdx::leaf;
///
/// let log = "virt/tdx: CMR: [0x100000, 0x7f000000)\nvirt/tdx: CMR: [0x100000000, 0x500000000)\n";
/// let input = parse_kernel_log(log)?;
/// let module = MockModule::new(Platform::new(input.cmrs().listed())?.with_topology(4, 2)?);
/// let keyids = module.platform().private_keyids();
/// let cpus = LpThreads::new(&module);
/// let done = Bringup::new(&module, &cpus, &module, keyids)
///     .with_planner(Planner::new().with_init_cpus(4))
///     .run(input.memory())?;
/// // The four LPs initialized TDMRs at once, none with two calls in flight; the busiest did
/// // the plan's longest share.
/// let per_lp: Vec<u64> = module.calls_per_lp().iter().map(|c| c.get(leaf::TDH_SYS_TDMR_INIT)).collect();
/// assert!(per_lp.iter().all(|&n| n > 0));
/// assert_eq!(per_lp.iter().max().copied(), Some(done.plan.init_work(4).longest_share_calls()));
/// assert_eq!(module.lp_conflicts(), 0);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LpThreads<'m> {
    module: &'m MockModule,
}

impl<'m> LpThreads<'m> {
    /// Threads for `module`'s LPs.
    pub fn new(module: &'m MockModule) -> Self {
        LpThreads { module }
    }
}

impl Cpus for LpThreads<'_> {
    fn cpus(&self) -> Vec<Cpu> {
        self.module.cpus()
    }

    fn run_on(&self, cpu: CpuId, f: &mut dyn FnMut()) -> Result<(), CpuUnavailable> {
        self.module.run_on(cpu, f)
    }

    fn run_on_each(
        &self,
        cpus: &[CpuId],
        f: &(dyn Fn(CpuId) + Sync),
    ) -> Result<(), CpuUnavailable> {
        let lps = self.module.platform.lps;
        let module = self.module;
        let start = std::sync::Barrier::new(cpus.iter().filter(|&&c| c < lps).count());
        std::thread::scope(|scope| {
            for &cpu in cpus.iter().filter(|&&c| c < lps) {
                let start = &start;
                scope.spawn(move || {
                    let saved = module.lp.enter(cpu);
                    start.wait();
                    f(cpu);
                    module.lp.leave(saved);
                });
            }
        });
        match cpus.iter().find(|&&c| c >= lps) {
            Some(&cpu) => Err(CpuUnavailable { cpu }),
            None => Ok(()),
        }
    }

    fn flush_caches(&self) {
        self.module.flush_caches();
    }
}
