//! The state word: the module state, the hotplug operations in flight and the guest KeyIDs in
//! use, in one atomic `u64`, and the initialization transitions built on it.
//!
//! ```text
//!  63            32 31                 2 1   0
//! +----------------+--------------------+-----+
//! | guest KeyIDs   | in flight          |state|
//! +----------------+--------------------+-----+
//! ```
//!
//! Every change of the word is a read-modify-write (never a plain store), so the word's
//! modification order is one release sequence: whoever reads it with Acquire sees everything
//! that was done before any earlier change. That single order is what makes the gate's rules
//! hold without locks:
//!
//! * a hotplug operation that must exclude initialization (memory addition or CPU online before
//!   initialization, last-CPU offline) adds one to *in flight* with a CAS that also checks the
//!   state, and subtracts it (Release) when done;
//! * `begin_init` moves the state to initializing with a CAS that requires *in flight* = 0, so
//!   it is ordered after the end of every such operation and sees its effects;
//! * `publish` writes the snapshot, then moves the state to initialized (Release); readers load
//!   the word (Acquire) before they read the snapshot.

use super::HotplugGate;
use super::error::{BeginInitError, PublishError};
use super::module_state::{ModuleState, STATE_MASK};
use super::snapshot::frozen_tdx_memory;
use super::sync::{AtomicU64, Ordering};
use crate::layout::Plan;
use crate::memmap::MemoryMap;

const IN_FLIGHT_SHIFT: u32 = 2;
const IN_FLIGHT_ONE: u64 = 1 << IN_FLIGHT_SHIFT;
/// Most hotplug operations the state word tracks in flight at once (30 bits).
pub const MAX_IN_FLIGHT: u32 = (1 << 30) - 1;
const KEYID_SHIFT: u32 = 32;
const KEYID_ONE: u64 = 1 << KEYID_SHIFT;
/// Most guest KeyIDs the state word counts (32 bits).
pub const MAX_GUEST_KEYIDS: u32 = u32::MAX;

/// A decoded value of the state word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Word(u64);

impl Word {
    #[inline]
    pub(crate) fn state(self) -> ModuleState {
        ModuleState::from_code(self.0)
    }

    #[inline]
    pub(crate) fn in_flight(self) -> u32 {
        ((self.0 >> IN_FLIGHT_SHIFT) as u32) & MAX_IN_FLIGHT
    }

    #[inline]
    pub(crate) fn guest_keyids(self) -> u32 {
        (self.0 >> KEYID_SHIFT) as u32
    }

    #[inline]
    fn with_state(self, state: ModuleState) -> Word {
        Word((self.0 & !STATE_MASK) | state.code())
    }
}

/// The atomic word, alone on its cache lines so that CPU bookkeeping written elsewhere in the
/// gate does not slow down the readers of the initialized path.
#[repr(align(128))]
pub(crate) struct StateWord(AtomicU64);

impl StateWord {
    pub(crate) fn new() -> Self {
        StateWord(AtomicU64::new(ModuleState::Uninitialized.code()))
    }

    /// The word, with Acquire: everything done before the change that produced it is visible.
    #[inline]
    pub(crate) fn load(&self) -> Word {
        Word(self.0.load(Ordering::Acquire))
    }

    #[inline]
    fn cas(&self, current: Word, new: Word) -> Result<(), Word> {
        self.0
            .compare_exchange(current.0, new.0, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| ())
            .map_err(Word)
    }

    /// Adds one operation in flight, starting from the value `w` the caller decided on; on
    /// failure returns the current value to decide again. `None` when the counter is full.
    #[inline]
    pub(crate) fn try_enter(&self, w: Word) -> Option<Result<(), Word>> {
        if w.in_flight() >= MAX_IN_FLIGHT {
            return None;
        }
        Some(self.cas(w, Word(w.0 + IN_FLIGHT_ONE)))
    }

    /// Ends one operation in flight (Release: its effects are visible to `begin_init`).
    #[inline]
    pub(crate) fn leave(&self) {
        self.0.fetch_sub(IN_FLIGHT_ONE, Ordering::Release);
    }

    /// Adds one guest KeyID, starting from `w`.
    #[inline]
    pub(crate) fn try_add_keyid(&self, w: Word) -> Result<(), Word> {
        self.cas(w, Word(w.0 + KEYID_ONE))
    }

    /// Removes one guest KeyID, starting from `w` (which must count at least one).
    #[inline]
    pub(crate) fn try_remove_keyid(&self, w: Word) -> Result<(), Word> {
        self.cas(w, Word(w.0 - KEYID_ONE))
    }

    /// Removes one guest KeyID added by this caller a moment ago (stopping at zero should a
    /// caller have released more than it acquired meanwhile).
    pub(crate) fn undo_add_keyid(&self) {
        let mut w = self.load();
        while w.guest_keyids() > 0 {
            match self.try_remove_keyid(w) {
                Ok(()) => return,
                Err(now) => w = now,
            }
        }
    }

    /// Moves from uninitialized/failed with nothing in flight to initializing; returns the state
    /// it came from.
    fn enter_initializing(&self) -> Result<ModuleState, BeginInitError> {
        let mut w = self.load();
        loop {
            let from = w.state();
            match from {
                ModuleState::Initializing => return Err(BeginInitError::InProgress),
                ModuleState::Initialized => return Err(BeginInitError::AlreadyInitialized),
                ModuleState::Uninitialized | ModuleState::Failed => {
                    if w.in_flight() > 0 {
                        return Err(BeginInitError::Busy {
                            in_flight: w.in_flight(),
                        });
                    }
                    match self.cas(w, w.with_state(ModuleState::Initializing)) {
                        Ok(()) => return Ok(from),
                        Err(now) => w = now,
                    }
                }
            }
        }
    }

    /// Leaves initializing for `to` (Release). Only the holder of the [`InitTicket`] calls this,
    /// and nobody else changes the state bits while they read initializing, so flipping the
    /// bits with one XOR is exact whatever the counters hold.
    fn leave_initializing(&self, to: ModuleState) {
        let flip = ModuleState::Initializing.code() ^ to.code();
        self.0.fetch_xor(flip, Ordering::Release);
    }
}

impl HotplugGate {
    /// Starts TDX module initialization: from uninitialized or failed, with no hotplug
    /// operation in flight, and with an online CPU in every package.
    ///
    /// While the returned ticket lives the state is initializing: memory additions and CPU
    /// onlines are refused with `Busy`, and so is the offline of the last CPU of a package.
    /// Nothing blocks: a refused caller retries later. The memory map read after this call
    /// holds every memory addition admitted before it (they have all finished).
    ///
    /// End with [`InitTicket::publish`] or [`InitTicket::fail`]; dropping the ticket fails.
    pub fn begin_init(&self) -> Result<InitTicket<'_>, BeginInitError> {
        let from = self.word.enter_initializing()?;
        // No last-CPU offline is in flight and none can start now, CPU onlines are refused:
        // per-package counts can only stay or drop to no lower than 1, so this check holds for
        // the whole initialization.
        if let Some(package) = self.cpus.first_package_without_cpu() {
            self.word.leave_initializing(from);
            return Err(BeginInitError::PackageOffline { package });
        }
        Ok(InitTicket {
            gate: self,
            done: false,
        })
    }
}

/// The right to end the one initialization in progress; see [`HotplugGate::begin_init`].
#[must_use = "dropping the ticket marks the initialization failed"]
#[derive(Debug)]
pub struct InitTicket<'g> {
    gate: &'g HotplugGate,
    done: bool,
}

impl InitTicket<'_> {
    /// Freezes the TDX memory of `plan` and marks the module initialized. Call it once the TDX
    /// module accepted the configuration.
    ///
    /// `memory` is the TDX memory the plan was made from (the memory map read after
    /// [`HotplugGate::begin_init`]). From now on a memory addition is admitted iff it lies in
    /// the TDMRs' non-reserved space, was TDX memory at init, and is no PAMT block (see
    /// [`frozen_tdx_memory`]). Returns how many disjoint ranges that is.
    ///
    /// On [`PublishError::SnapshotTooLarge`] the gate is initialized all the same but admits
    /// no memory: the module is configured, so falling back to the CMR rule would be unsound.
    pub fn publish(mut self, plan: &Plan, memory: &MemoryMap) -> Result<usize, PublishError> {
        let ranges = frozen_tdx_memory(plan, memory);
        let written = self.gate.snapshot.write(&ranges);
        self.gate.word.leave_initializing(ModuleState::Initialized);
        self.done = true;
        written.map(|()| ranges.len())
    }

    /// Marks the initialization failed: the pre-initialization rule applies again and
    /// [`HotplugGate::begin_init`] may be retried.
    pub fn fail(mut self) {
        self.gate.word.leave_initializing(ModuleState::Failed);
        self.done = true;
    }
}

impl Drop for InitTicket<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.gate.word.leave_initializing(ModuleState::Failed);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn word_fields_do_not_overlap() {
        let w = Word(
            ModuleState::Failed.code()
                | (u64::from(MAX_IN_FLIGHT) << IN_FLIGHT_SHIFT)
                | (u64::from(MAX_GUEST_KEYIDS) << KEYID_SHIFT),
        );
        assert_eq!(w.state(), ModuleState::Failed);
        assert_eq!(w.in_flight(), MAX_IN_FLIGHT);
        assert_eq!(w.guest_keyids(), MAX_GUEST_KEYIDS);
        let w = w.with_state(ModuleState::Initializing);
        assert_eq!(w.state(), ModuleState::Initializing);
        assert_eq!(w.in_flight(), MAX_IN_FLIGHT);
        assert_eq!(w.guest_keyids(), MAX_GUEST_KEYIDS);
    }

    #[test]
    fn xor_flip_reaches_every_end_state() {
        for to in [
            ModuleState::Uninitialized,
            ModuleState::Initialized,
            ModuleState::Failed,
        ] {
            let s = StateWord(AtomicU64::new(
                ModuleState::Initializing.code() | (5 * IN_FLIGHT_ONE) | (7 * KEYID_ONE),
            ));
            s.leave_initializing(to);
            let w = s.load();
            assert_eq!((w.state(), w.in_flight(), w.guest_keyids()), (to, 5, 7));
        }
    }
}
