//! How long TDH.SYS.TDMR.INIT will take: Linux's serial loop at the published rate next to this
//! crate's spread over N CPUs, in integer milliseconds (the library computes no floating
//! point).

use crate::layout::{Plan, tdmr_init_step};

/// The published rate of TDX bring-up on Linux: about 2.6 s per TiB of TDX memory, almost all
/// of it TDH.SYS.TDMR.INIT issued serially (public boot logs of TDX module 1.5 hosts, from the
/// CMR line to `KB allocated for PAMT`: 512 GiB in 1.29 s, 2046 GiB in 5.18 s). Measured
/// without Dynamic PAMT; the estimate applies it per byte of TDMR either way.
pub const LINUX_MS_PER_TIB: u64 = 2600;

/// Where [`LINUX_MS_PER_TIB`] comes from, for reports.
pub const RATE_SOURCE: &str = "public boot logs of TDX module 1.5 hosts (512 GiB: 1.29 s, 2046 GiB: 5.18 s), CMR line to PAMT line";

const TIB: u128 = 1 << 40;

/// Milliseconds for `bytes` of TDMR at [`LINUX_MS_PER_TIB`], rounded to the nearest.
pub fn tdmr_init_ms(bytes: u64) -> u64 {
    let ms = (u128::from(bytes) * u128::from(LINUX_MS_PER_TIB) + TIB / 2) / TIB;
    ms as u64
}

/// What splitting TDMRs for parallel initialization ([`crate::layout::Planner::with_init_cpus`])
/// cost and saved, against the same strategy's layout for one CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SplitCost {
    /// TDMRs added.
    pub extra_tdmrs: usize,
    /// PAMT bytes added (each extra TDMR rounds its 1G level up to a page).
    pub extra_pamt_bytes: u64,
    /// Milliseconds of TDH.SYS.TDMR.INIT saved on the same CPUs.
    pub saved_ms: u64,
}

/// The TDH.SYS.TDMR.INIT estimate of a plan.
///
/// ```
/// use tdmr::layout::Planner;
/// use tdmr::memmap::parse_kernel_log;
/// use tdmr::readiness::InitEstimate;
/// let log = "virt/tdx: CMR: [0x100000, 0x77800000)\nvirt/tdx: CMR: [0x100000000, 0x407a000000)\n";
/// let input = parse_kernel_log(log)?;
/// let planner = Planner::new().with_init_cpus(8);
/// let plan = planner.plan(input.memory(), input.cmrs())?;
/// let one = Planner::new().plan(input.memory(), input.cmrs())?;
/// let e = InitEstimate::new(&plan, None, Some(&one), 8);
/// assert_eq!(e.linux_serial_ms, 650); // 256 GiB at 2.6 s per TiB
/// assert!(e.tdmr_ms * 6 <= e.linux_serial_ms);
/// assert!(e.split.unwrap().extra_pamt_bytes <= 8 * 4096);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InitEstimate {
    /// TDH.SYS.TDMR.INIT calls the plan takes (TDMR bytes / 4 MiB, / 16 MiB with Dynamic PAMT).
    pub calls: u64,
    /// CPUs the calls are spread over.
    pub cpus: u32,
    /// TDMRs of the plan.
    pub tdmrs: usize,
    /// Linux's serial loop over its own layout (over this plan's TDMRs when Linux has no
    /// layout), at [`LINUX_MS_PER_TIB`].
    pub linux_serial_ms: u64,
    /// This plan on `cpus` CPUs: the longest per-CPU share, at the same rate.
    pub tdmr_ms: u64,
    /// The rate, milliseconds per TiB ([`LINUX_MS_PER_TIB`]).
    pub ms_per_tib: u64,
    /// What shaping the TDMRs for `cpus` CPUs cost and saved, when a one-CPU plan was given.
    pub split: Option<SplitCost>,
}

impl InitEstimate {
    /// The estimate for `plan` on `cpus` CPUs, against Linux's layout `linux` (`None`: Linux
    /// has none, its serial time is taken over `plan`) and, to price the split, the same
    /// strategy's plan for one CPU.
    pub fn new(plan: &Plan, linux: Option<&Plan>, one_cpu: Option<&Plan>, cpus: u32) -> Self {
        let step = tdmr_init_step(plan.limits().dynamic_pamt());
        let work = plan.init_work(cpus);
        let serial_bytes = linux.unwrap_or(plan).covered_bytes();
        let tdmr_ms = tdmr_init_ms(work.longest_share_calls().saturating_mul(step));
        let split = one_cpu.map(|one| {
            let before = one
                .init_work(cpus)
                .longest_share_calls()
                .saturating_mul(step);
            SplitCost {
                extra_tdmrs: plan.tdmrs().len().saturating_sub(one.tdmrs().len()),
                extra_pamt_bytes: plan.pamt_bytes().saturating_sub(one.pamt_bytes()),
                saved_ms: tdmr_init_ms(before).saturating_sub(tdmr_ms),
            }
        });
        InitEstimate {
            calls: work.calls(),
            cpus: work.cpus(),
            tdmrs: plan.tdmrs().len(),
            linux_serial_ms: tdmr_init_ms(serial_bytes),
            tdmr_ms,
            ms_per_tib: LINUX_MS_PER_TIB,
            split,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_at_the_published_rate() {
        assert_eq!(tdmr_init_ms(0), 0);
        assert_eq!(tdmr_init_ms(1 << 40), 2600);
        assert_eq!(tdmr_init_ms(12 << 40), 31_200);
        assert_eq!(tdmr_init_ms(512 << 30), 1300);
        // Rounded to the nearest millisecond; the whole 64-bit range without overflow.
        assert_eq!(tdmr_init_ms((1 << 40) / 2600 / 2 + 1), 1);
        assert_eq!(tdmr_init_ms(u64::MAX), 16 * 1024 * 1024 * 2600);
    }
}
