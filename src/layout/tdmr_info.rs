//! A plan in the TDX module's binary form and back: [`Plan::tdmr_infos`],
//! [`Plan::from_tdmr_infos`].

use alloc::vec::Vec;

use super::plan::{Plan, Tdmr};
use super::reserved_areas::{ReservedArea, ReservedAreas, ReservedKind};
use super::{HolePolicy, Strategy};
use crate::addr::{PageSize, PhysRange};
use crate::sysinfo::TdxLimits;
use crate::tdx::abi::{AbiError, TDMR_INFO_RESERVED_SLOTS, TdmrInfo, TdmrReservedEntry};

impl Tdmr {
    /// This TDMR as the module reads it (`index` names it in errors).
    pub fn tdmr_info(&self, index: usize) -> Result<TdmrInfo, AbiError> {
        let areas = self.reserved();
        if areas.len() > TDMR_INFO_RESERVED_SLOTS {
            return Err(AbiError::TooManyReservedAreas {
                tdmr: index,
                count: areas.len(),
            });
        }
        let mut info = TdmrInfo::ZERO;
        info.base = self.base();
        info.size = self.size();
        for level in PageSize::ALL {
            let p = self.pamt(level);
            info.set_pamt(level, p.start(), p.size());
        }
        for (slot, a) in info.reserved.iter_mut().zip(areas) {
            *slot = TdmrReservedEntry {
                offset: a.offset,
                size: a.size,
            };
        }
        Ok(info)
    }
}

impl Plan {
    /// The `TDMR_INFO` array TDH.SYS.CONFIG reads, in TDMR order.
    ///
    /// ```
    /// use tdmr::layout::Planner;
    /// use tdmr::memmap::parse_kernel_log;
    /// let input = parse_kernel_log("CMR: [0x100000, 0x7f000000)\n")?;
    /// let plan = Planner::new().plan(input.memory(), input.cmrs())?;
    /// let infos = plan.tdmr_infos()?;
    /// assert_eq!((infos[0].base, infos[0].size), (0, 2 << 30));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tdmr_infos(&self) -> Result<Vec<TdmrInfo>, AbiError> {
        self.tdmrs()
            .iter()
            .enumerate()
            .map(|(i, t)| t.tdmr_info(i))
            .collect()
    }

    /// A plan read back from `TDMR_INFO`s (another tool's layout, or a module's). What the ABI
    /// does not carry is filled in plainly: node 0, reserved kind [`ReservedKind::Unknown`],
    /// strategy, hole policy and limits as given. Run [`crate::tdx::validate`] on `infos` to
    /// know whether the module accepts them.
    pub fn from_tdmr_infos(
        infos: &[TdmrInfo],
        strategy: Strategy,
        holes: HolePolicy,
        limits: TdxLimits,
    ) -> Result<Plan, AbiError> {
        let mut tdmrs = Vec::with_capacity(infos.len());
        for (i, info) in infos.iter().enumerate() {
            let mut reserved = ReservedAreas::new();
            let mut seen_null = false;
            for (slot, e) in info.reserved.iter().enumerate() {
                if e.size == 0 {
                    seen_null = true;
                    continue;
                }
                if seen_null {
                    return Err(AbiError::ReservedAfterNull { tdmr: i, slot });
                }
                reserved.push(ReservedArea {
                    offset: e.offset,
                    size: e.size,
                    kind: ReservedKind::Unknown,
                });
            }
            let pamt = PageSize::ALL.map(|level| {
                let (b, s) = info.pamt(level);
                PhysRange::new_unchecked(b, b.saturating_add(s))
            });
            let range = PhysRange::new_unchecked(info.base, info.base.saturating_add(info.size));
            tdmrs.push(Tdmr::new(range, 0, reserved, pamt));
        }
        Ok(Plan::from_parts(strategy, holes, limits, tdmrs, Vec::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_then_non_null_is_refused_on_read_back() {
        let mut t = TdmrInfo::ZERO;
        t.base = 0;
        t.size = 1 << 30;
        t.reserved[1] = TdmrReservedEntry {
            offset: 0,
            size: 0x1000,
        };
        assert_eq!(
            Plan::from_tdmr_infos(
                &[t],
                Strategy::Linux,
                HolePolicy::Memory,
                TdxLimits::default()
            ),
            Err(AbiError::ReservedAfterNull { tdmr: 0, slot: 1 })
        );
    }

    #[test]
    fn a_plan_survives_the_round_trip() {
        let mut reserved = ReservedAreas::new();
        reserved.push(ReservedArea {
            offset: 0x1000,
            size: 0x2000,
            kind: ReservedKind::Unknown,
        });
        let pamt = [
            PhysRange::new_unchecked(0x10_0000, 0x11_0000),
            PhysRange::new_unchecked(0x11_0000, 0x11_1000),
            PhysRange::new_unchecked(0x11_1000, 0x11_2000),
        ];
        let tdmr = Tdmr::new(PhysRange::new_unchecked(0, 1 << 30), 0, reserved, pamt);
        let plan = Plan::from_parts(
            Strategy::Linux,
            HolePolicy::Memory,
            TdxLimits::default(),
            alloc::vec![tdmr],
            Vec::new(),
        );
        let infos = plan.tdmr_infos().unwrap();
        let back = Plan::from_tdmr_infos(
            &infos,
            Strategy::Linux,
            HolePolicy::Memory,
            TdxLimits::default(),
        )
        .unwrap();
        assert_eq!(back, plan);
    }
}
