//! [`ModuleState`]: the TDX module's state as the gate tracks it, and its code in the state
//! word's low bits.

use core::fmt;

/// Bits 2:0 of the state word.
pub(crate) const STATE_MASK: u64 = 0b111;

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
    /// A runtime module update is in progress (TDH.SYS.SHUTDOWN to TDH.SYS.UPDATE): memory
    /// and CPU hotplug and new guest KeyIDs answer `Busy`; the TDX memory stays frozen, and
    /// the update ends initialized again with the same layout.
    Updating,
}

impl ModuleState {
    /// Short lower-case name for reports.
    pub fn name(self) -> &'static str {
        match self {
            ModuleState::Uninitialized => "uninitialized",
            ModuleState::Initializing => "initializing",
            ModuleState::Initialized => "initialized",
            ModuleState::Failed => "failed",
            ModuleState::Updating => "updating",
        }
    }

    pub(crate) const fn code(self) -> u64 {
        match self {
            ModuleState::Uninitialized => 0,
            ModuleState::Initializing => 1,
            ModuleState::Initialized => 2,
            ModuleState::Failed => 3,
            ModuleState::Updating => 4,
        }
    }

    pub(crate) const fn from_code(code: u64) -> Self {
        match code & STATE_MASK {
            0 => ModuleState::Uninitialized,
            1 => ModuleState::Initializing,
            2 => ModuleState::Initialized,
            4 => ModuleState::Updating,
            // 3, and 5 to 7 which no transition writes.
            _ => ModuleState::Failed,
        }
    }
}

impl fmt::Display for ModuleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
