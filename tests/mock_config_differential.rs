//! The mock's TDH.SYS.CONFIG accepts a `TDMR_INFO` array exactly when the module's rules do
//! (see `fuzz_bodies/mock_config.rs`), over random inputs; Linux and optimal plans are always
//! accepted.

#[path = "fuzz_bodies/mock_config.rs"]
mod mock_config;

use proptest::prelude::*;

use tdmr::layout::{HolePolicy, Planner, Strategy};
use tdmr::memmap::{Cmrs, MemoryMap, MemoryRegion};
use tdmr::tdx::validate;

/// Strategies whose plans the module must accept. (Add new strategies here.)
const STRATEGIES: &[Strategy] = &[Strategy::Linux, Strategy::Optimal];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn mock_config_agrees_with_the_rules(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        mock_config::run(&data);
    }

    #[test]
    fn plans_are_accepted(
        regions in proptest::collection::vec((0u64..(4 << 18), 1u64..(64 << 18), any::<bool>()), 1..8),
        cmr_holes in any::<bool>(),
    ) {
        let mut at = 0;
        let mut node = 0;
        let mut rs = Vec::new();
        for (gap, pages, next_node) in regions {
            at += gap * 4096;
            rs.push(MemoryRegion::new(at, pages * 4096, node));
            at += pages * 4096;
            node += u32::from(next_node);
        }
        let map = MemoryMap::new(rs).unwrap();
        let cmrs = Cmrs::covering(&map);
        let holes = if cmr_holes { HolePolicy::Cmr } else { HolePolicy::Memory };
        for &s in STRATEGIES {
            let Ok(plan) = Planner::new().with_strategy(s).with_holes(holes).plan(&map, &cmrs) else {
                continue;
            };
            let infos = plan.tdmr_infos().unwrap();
            let env = validate::ConfigEnv::from_limits(plan.limits(), cmrs.listed());
            prop_assert_eq!(validate::sys_config(&infos, &env), Ok(()));
            let status = mock_config::config_on_mock(cmrs.listed(), &infos);
            prop_assert!(status.is_success(), "{:?} plan refused by the mock: {}", s, status);
        }
    }
}
