//! Memory admission: the pre-initialization CMR rule, `Busy` while initializing, and the
//! frozen-TDX-memory rule once initialized.

use super::HotplugGate;
use super::error::AdmitError;
use super::module_state::ModuleState;
use super::snapshot::first_uncovered;
use super::state::MAX_IN_FLIGHT;
use crate::addr::{PhysRange, SZ_4K, is_aligned};

/// What memory the gate admits before the TDX module is initialized.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PreInitPolicy {
    /// Only memory inside the CMRs: anything else would make initialization fail, because a
    /// TDMR's non-reserved space must be convertible (the design of the 2022 LKML thread).
    #[default]
    Convertible,
    /// Any memory, as Linux does when TDX is off. Initialization then fails on
    /// non-convertible memory unless the plan leaves it out.
    AnyMemory,
}

/// Which rule admitted a memory addition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AdmissionRule {
    /// Before initialization, inside the CMRs ([`PreInitPolicy::Convertible`]).
    Convertible,
    /// Before initialization, any memory ([`PreInitPolicy::AnyMemory`]).
    AnyMemory,
    /// After initialization, TDX memory of the published plan.
    TdxMemory,
}

impl AdmissionRule {
    /// Whether the rule is a pre-initialization one (the addition then holds initialization
    /// off until it is finished).
    pub fn is_pre_init(self) -> bool {
        !matches!(self, AdmissionRule::TdxMemory)
    }
}

/// An admitted memory addition. Until it is finished or dropped, initialization cannot begin
/// (for additions admitted before initialization): add the memory to the kernel's map, then
/// [`finish`](MemoryAdmission::finish). Dropping it has the same effect (use it when the
/// addition is abandoned).
#[must_use = "dropping the admission ends the memory addition at once"]
#[derive(Debug)]
pub struct MemoryAdmission<'g> {
    gate: &'g HotplugGate,
    range: PhysRange,
    rule: AdmissionRule,
}

impl MemoryAdmission<'_> {
    /// The admitted range.
    #[inline]
    pub fn range(&self) -> PhysRange {
        self.range
    }

    /// The rule that admitted it.
    #[inline]
    pub fn rule(&self) -> AdmissionRule {
        self.rule
    }

    /// Ends the addition (the memory is in the kernel's map, or was abandoned).
    #[inline]
    pub fn finish(self) {}
}

impl Drop for MemoryAdmission<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.rule.is_pre_init() {
            self.gate.word.leave();
        }
    }
}

impl HotplugGate {
    /// Decides whether the memory `range` may be added (hot-added or onlined).
    ///
    /// * uninitialized / failed: admitted iff inside the CMRs (or any memory with
    ///   [`PreInitPolicy::AnyMemory`]); the addition is then in flight until the returned
    ///   token is finished, and [`HotplugGate::begin_init`] waits for it (returns `Busy`);
    /// * initializing, or initialization pending ([`HotplugGate::begin_init`]):
    ///   [`AdmitError::Busy`], at once;
    /// * initialized: admitted iff every byte is TDX memory of the published plan
    ///   ([`super::frozen_tdx_memory`]), even when it spans several TDMRs or memory regions.
    ///   This path is wait-free and allocation-free: one Acquire load and a binary search of
    ///   an immutable snapshot.
    ///
    /// Refusals name the first part of the range that broke the rule.
    #[inline]
    pub fn admit_memory(&self, range: PhysRange) -> Result<MemoryAdmission<'_>, AdmitError> {
        if range.is_empty() {
            return Err(AdmitError::Empty { at: range.start() });
        }
        if !is_aligned(range.start(), SZ_4K) || !is_aligned(range.end(), SZ_4K) {
            return Err(AdmitError::Misaligned { range });
        }
        let mut w = self.word.load();
        let mut rule = None;
        loop {
            match w.state() {
                ModuleState::Initialized => return self.admit_frozen(range),
                ModuleState::Initializing | ModuleState::Updating => return Err(AdmitError::Busy),
                // Initialization is pending: let the operations in flight drain.
                _ if w.pending() => return Err(AdmitError::Busy),
                ModuleState::Uninitialized | ModuleState::Failed => {
                    let rule = match rule {
                        Some(rule) => rule,
                        None => *rule.insert(self.pre_init_rule(range)?),
                    };
                    match self.word.try_enter(w) {
                        Some(Ok(())) => {
                            return Ok(MemoryAdmission {
                                gate: self,
                                range,
                                rule,
                            });
                        }
                        Some(Err(now)) => w = now,
                        None => {
                            return Err(AdmitError::TooManyInFlight {
                                limit: MAX_IN_FLIGHT,
                            });
                        }
                    }
                }
            }
        }
    }

    #[inline]
    fn admit_frozen(&self, range: PhysRange) -> Result<MemoryAdmission<'_>, AdmitError> {
        match self.snapshot.first_uncovered(range) {
            None => Ok(MemoryAdmission {
                gate: self,
                range,
                rule: AdmissionRule::TdxMemory,
            }),
            Some(outside) => Err(AdmitError::NotTdxMemory { range, outside }),
        }
    }

    fn pre_init_rule(&self, range: PhysRange) -> Result<AdmissionRule, AdmitError> {
        match self.policy {
            PreInitPolicy::AnyMemory => Ok(AdmissionRule::AnyMemory),
            PreInitPolicy::Convertible => {
                match first_uncovered(range, &self.cmr_starts, &self.cmr_ends) {
                    None => Ok(AdmissionRule::Convertible),
                    Some(outside) => Err(AdmitError::NotConvertible { range, outside }),
                }
            }
        }
    }
}
