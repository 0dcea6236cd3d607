//! TDMR layout: the [`Planner`] and the [`Plan`] it produces, in our types and in the module's
//! binary form ([`Plan::tdmr_infos`]).
//!
//! Strategies: `linux.rs` (Linux mainline, exactly) and `optimal/` (the least PAMT, then the
//! least memory whose PAMT lies on another node, the fewest TDMRs and reserved areas).
//! `reserved.rs` builds reserved areas from holes and PAMT blocks; `nodes.rs` says which node
//! holds a TDMR's memory and its PAMT; `init_split.rs` shapes a finished plan's TDMRs for
//! TDH.SYS.TDMR.INIT on several CPUs ([`Planner::with_init_cpus`], [`Plan::init_work`]).
//! `module_version.rs` keeps plans within what the target module version accepts
//! ([`Planner::with_module_version`]).

mod error;
mod init_split;
mod job;
mod linux;
mod module_version;
mod nodes;
mod optimal;
mod plan;
mod planner;
mod reserved;
mod reserved_areas;
mod strategy;
mod tdmr_info;

pub use error::{BadPamtReason, Obstacle, PlanError};
pub use init_split::{InitWork, tdmr_init_step};
pub use plan::{OffNodeReason, PamtOrigin, Plan, Tdmr};
pub use planner::Planner;
pub use reserved_areas::{ReservedArea, ReservedAreas, ReservedKind};
pub use strategy::{HolePolicy, Strategy, UnknownName};

pub(crate) use init_split::assign as assign_init_cpus;
pub(crate) use job::Job;
#[cfg(feature = "report")]
pub(crate) use reserved::basis_in;
