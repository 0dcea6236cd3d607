//! Fuzz body `plan_optimal`: the same inputs as `plan` through `Strategy::Optimal`, with and
//! without exclusions.
//!
//! The planner must never panic and must be deterministic. Every plan passes TDH.SYS.CONFIG's
//! checks and the coverage policy (with its exclusions). Failures are documented obstacles (or
//! memory outside clipped CMRs). Wherever the Linux strategy plans the same map with the same
//! limits, the optimal one plans it too and covers no more span. (PAMT bytes follow the span up
//! to page rounding per TDMR and level, so equal spans may differ by a few pages.)

use arbitrary::{Arbitrary, Unstructured};
use tdmr::layout::{PlanError, Planner, Strategy};
use tdmr::memmap::MemoryMapError;

use crate::plan::{CmrChoice, Input, check_plan, cmrs_of, holes_of, limits_of, memory_of};

/// Runs one input.
pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let memory = memory_of(&input);
    let cmrs = cmrs_of(&input.cmrs, &memory);
    let limits = limits_of(&input);
    let optimal = Planner::new()
        .with_strategy(Strategy::Optimal)
        .with_holes(holes_of(&input))
        .with_limits(limits);
    let result = optimal.plan(&memory, &cmrs);
    assert_eq!(
        result,
        optimal.plan(&memory, &cmrs),
        "planning is not deterministic"
    );
    let linux = Planner::new()
        .with_strategy(Strategy::Linux)
        .with_limits(limits)
        .plan(&memory, &cmrs);

    match &result {
        Ok(plan) => {
            check_plan(plan, &memory, &cmrs, &limits);
            assert!(plan.excluded().is_empty());
            if let Ok(l) = &linux {
                assert!(
                    plan.covered_bytes() <= l.covered_bytes(),
                    "{plan:#?}\n{l:#?}"
                );
            }
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            match e {
                PlanError::Infeasible(_) => {
                    assert!(
                        linux.is_err(),
                        "linux plans what optimal cannot: {e}\n{linux:#?}"
                    );
                }
                PlanError::Memory(MemoryMapError::OutsideCmrs { range }) => {
                    assert!(matches!(input.cmrs, CmrChoice::Clipped(_)), "{range}");
                }
                other => panic!("undocumented failure: {other:?}"),
            }
            // With exclusions allowed: a plan that leaves memory out, listed, or an obstacle.
            if let Ok(plan) = optimal.with_exclusions(true).plan(&memory, &cmrs) {
                check_plan(&plan, &memory, &cmrs, &limits);
                for x in plan.excluded() {
                    assert!(memory.contains_range(*x), "excluded {x} is not TDX memory");
                }
            }
        }
    }
}
