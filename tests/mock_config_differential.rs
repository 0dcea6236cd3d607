//! The mock's TDH.SYS.CONFIG over random inputs: its operand checks agree with a table of the
//! module's rules written here, independently of the mock (`fuzz_bodies/mock_config.rs`); and
//! every plan of every strategy, on maps where a layout always exists, brings the mock all the
//! way up — CONFIG accepted, every TDMR initialized in exactly size / 4 MiB TDH.SYS.TDMR.INIT
//! calls — with no case skipped.

#[path = "fuzz_bodies/mock_config.rs"]
mod mock_config;

use proptest::prelude::*;

use proptest::test_runner::TestCaseError;
use tdmr::init::Bringup;
use tdmr::layout::{HolePolicy, Planner, Strategy};
use tdmr::memmap::{Cmrs, MemoryMap, MemoryRegion};
use tdmr::mock::{MockModule, Platform};
use tdmr::tdx::leaf;

/// Strategies whose plans the module must accept. (Add new strategies here.)
const STRATEGIES: &[Strategy] = &[Strategy::Linux, Strategy::Optimal];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn mock_config_agrees_with_the_rules(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        mock_config::run(&data);
    }

}

proptest! {
    // Each case brings the mock up twice, up to ~450 GiB of TDMRs (100 000 TDMR.INIT calls).
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Regions of at least 1 GiB (each can hold the PAMT of any TDMR around it), up to 7, on
    /// up to 7 nodes, with gaps: every strategy must find a layout, and the mock must take it.
    #[test]
    fn plans_are_accepted(
        regions in proptest::collection::vec((0u64..(4 << 18), (1u64 << 18)..(64 << 18), any::<bool>()), 1..8),
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
            let planner = Planner::new().with_strategy(s).with_holes(holes);
            let module = MockModule::new(Platform::new(cmrs.listed()).unwrap());
            let keyids = module.platform().private_keyids();
            let done = Bringup::new(&module, &module, &module, keyids)
                .with_planner(planner)
                .run(&map);
            let done = match done {
                Ok(d) => d,
                Err(e) => return Err(TestCaseError::fail(format!("{s:?} on {map:?}: {e}"))),
            };
            let covered: u64 = done.plan.tdmrs().iter().map(|t| t.size()).sum();
            prop_assert_eq!(done.seamcalls.get(leaf::TDH_SYS_TDMR_INIT), covered / (4 << 20));
            prop_assert!(module.tdmrs().iter().all(|t| t.is_done()));
            prop_assert_eq!(module.claimed_pamt(), done.plan.pamt_ranges());
        }
    }
}
