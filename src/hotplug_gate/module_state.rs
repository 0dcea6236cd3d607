//! [`ModuleState`]: the TDX module's state as the gate tracks it, and its code in the state
//! word's low bits.

use core::fmt;

/// Bits 1:0 of the state word.
pub(crate) const STATE_MASK: u64 = 0b11;

/// The TDX module's state as the gate tracks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModuleState {
    /// Not initialized yet: memory is admitted by the pre-initialization rule (CMRs).
    Uninitialized,
    /// Initialization in progress: memory additions and CPU onlines are refused with `Busy`.
    Initializing,
    /// Initialized: TDX memory is frozen, only memory of the published plan is admitted.
    Initialized,
    /// The last initialization failed: as uninitialized, and `begin_init` may try again.
    Failed,
}

impl ModuleState {
    /// Short lower-case name for reports.
    pub fn name(self) -> &'static str {
        match self {
            ModuleState::Uninitialized => "uninitialized",
            ModuleState::Initializing => "initializing",
            ModuleState::Initialized => "initialized",
            ModuleState::Failed => "failed",
        }
    }

    pub(crate) const fn code(self) -> u64 {
        match self {
            ModuleState::Uninitialized => 0,
            ModuleState::Initializing => 1,
            ModuleState::Initialized => 2,
            ModuleState::Failed => 3,
        }
    }

    pub(crate) const fn from_code(code: u64) -> Self {
        match code & STATE_MASK {
            0 => ModuleState::Uninitialized,
            1 => ModuleState::Initializing,
            2 => ModuleState::Initialized,
            _ => ModuleState::Failed,
        }
    }
}

impl fmt::Display for ModuleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
