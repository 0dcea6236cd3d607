//! The state word: the module state, whether initialization is pending, the hotplug operations
//! in flight and the guest KeyIDs in use, in one atomic `u64`, and the initialization
//! transitions built on it.
//!
//! ```text
//!  63            32 31                 4   3     2   0
//! +----------------+--------------------+-------+-----+
//! | guest KeyIDs   | in flight          |pending|state|
//! +----------------+--------------------+-------+-----+
//! ```
//!
//! *Pending* means initialization was asked for (before initialization) or a runtime update
//! was (once initialized); the update's transitions are in `update.rs`.
//!
//! Every change of the word is a read-modify-write (never a plain store), so the word's
//! modification order is one release sequence: whoever reads it with Acquire sees everything
//! that was done before any earlier change. That single order is what makes the gate's rules
//! hold without locks:
//!
//! * a hotplug operation that must exclude initialization (memory addition, memory removal or
//!   CPU online before initialization, last-CPU offline) adds one to *in flight* with a CAS that
//!   also checks the state and *pending*, and subtracts it (Release) when done;
//! * `begin_init` first sets *pending* (one CAS): from then on no new such operation enters,
//!   so *in flight* only falls; once it is 0, a CAS that requires it moves the state to
//!   initializing, ordered after the end of every operation and seeing its effects. This is
//!   the writer preference of a reader-writer lock, without the lock: a stream of hotplug
//!   cannot starve initialization;
//! * `publish` writes the snapshot and the refusal set, then moves the state to initialized
//!   (Release); readers load the word (Acquire) before they read either.

use super::HotplugGate;
use super::error::{BeginInitError, PublishError};
use super::metadata::refusal_set;
use super::module_state::{ModuleState, STATE_MASK};
use super::snapshot::frozen_tdx_memory;
use super::sync::{AtomicU64, Ordering};
use crate::layout::Plan;
use crate::memmap::MemoryMap;

const PENDING: u64 = 1 << 3;
const IN_FLIGHT_SHIFT: u32 = 4;
const IN_FLIGHT_ONE: u64 = 1 << IN_FLIGHT_SHIFT;
/// Most hotplug operations the state word tracks in flight at once (28 bits).
pub const MAX_IN_FLIGHT: u32 = (1 << 28) - 1;
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

    /// Whether initialization is pending (asked for, waiting for operations in flight).
    #[inline]
    pub(crate) fn pending(self) -> bool {
        self.0 & PENDING != 0
    }

    #[inline]
    fn with_state(self, state: ModuleState) -> Word {
        Word((self.0 & !STATE_MASK) | state.code())
    }

    /// The same word with pending set.
    #[inline]
    pub(super) fn marked_pending(self) -> Word {
        Word(self.0 | PENDING)
    }

    /// The same word moved to `state`, pending cleared (what was pending begins).
    #[inline]
    pub(super) fn begun(self, state: ModuleState) -> Word {
        Word(self.0 & !PENDING).with_state(state)
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
    pub(super) fn cas(&self, current: Word, new: Word) -> Result<(), Word> {
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

    /// Withdraws what is pending while the state is one of `states`; whether it was pending.
    pub(super) fn cancel_pending(&self, states: &[ModuleState]) -> bool {
        let mut w = self.load();
        while w.pending() && states.contains(&w.state()) {
            match self.cas(w, Word(w.0 & !PENDING)) {
                Ok(()) => return true,
                Err(now) => w = now,
            }
        }
        false
    }

    /// Leaves initializing for `to` with initialization pending (Release): a `begin_init` that
    /// found a package without an online CPU. The pending bit is 0 while initializing, so one
    /// XOR sets it and flips the state.
    fn leave_initializing_pending(&self, to: ModuleState) {
        let flip = (ModuleState::Initializing.code() ^ to.code()) | PENDING;
        self.0.fetch_xor(flip, Ordering::Release);
    }

    /// Leaves initializing for `to` (Release). Only the holder of the [`InitTicket`] calls this,
    /// and nobody else changes the state bits while they read initializing, so flipping the
    /// bits with one XOR is exact whatever the counters hold.
    fn leave_initializing(&self, to: ModuleState) {
        self.leave_state(ModuleState::Initializing, to);
    }

    /// Leaves `from` for `to` (Release), by the holder of the ticket of `from`: as
    /// [`StateWord::leave_initializing`].
    pub(super) fn leave_state(&self, from: ModuleState, to: ModuleState) {
        let flip = from.code() ^ to.code();
        self.0.fetch_xor(flip, Ordering::Release);
    }
}

impl HotplugGate {
    /// Starts TDX module initialization: from uninitialized or failed, once no hotplug
    /// operation is in flight and every package has an online CPU.
    ///
    /// With nothing in flight it begins at once (one CAS). Otherwise it marks initialization
    /// *pending*: from then on memory additions, memory removals, CPU onlines into a package
    /// that has an online CPU already, and the offline of a package's last CPU answer `Busy`,
    /// so the operations in flight can only drain. While they do, this call answers
    /// [`BeginInitError::Busy`] with how many are left (never more than the call before, bar
    /// CPUs coming online into a package without one) and
    /// the next call proceeds once they are gone: a stream of hotplug cannot starve
    /// initialization. A package without an online CPU is answered
    /// [`BeginInitError::PackageOffline`], pending too: a CPU may still come online into it
    /// (initialization needs it there), so bring one up and call again. Each call takes a
    /// bounded number of steps, whatever other threads do (`tests/loom_gate.rs`); none blocks.
    ///
    /// Initialization stays pending until it begins or [`HotplugGate::cancel_init`] withdraws
    /// it: a caller that gives up after a refusal must cancel, or hotplug stays refused.
    ///
    /// While the returned ticket lives the state is initializing: memory additions, removals
    /// and CPU onlines are refused with `Busy`, and so is the offline of the last CPU of a
    /// package. The memory map read after this call holds every memory addition and removal
    /// admitted before it (they have all finished).
    ///
    /// End with [`InitTicket::publish`] or [`InitTicket::fail`]; dropping the ticket fails.
    pub fn begin_init(&self) -> Result<InitTicket<'_>, BeginInitError> {
        let mut w = self.word.load();
        let from = loop {
            let from = w.state();
            match from {
                ModuleState::Initializing => return Err(BeginInitError::InProgress),
                ModuleState::Initialized | ModuleState::Updating => {
                    return Err(BeginInitError::AlreadyInitialized);
                }
                ModuleState::Uninitialized | ModuleState::Failed => {}
            }
            if w.in_flight() > 0 {
                if w.pending() {
                    return Err(BeginInitError::Busy {
                        in_flight: w.in_flight(),
                    });
                }
                // Mark pending: from now on no new operation enters, those in flight drain.
                match self.word.cas(w, Word(w.0 | PENDING)) {
                    Ok(()) => {
                        return Err(BeginInitError::Busy {
                            in_flight: w.in_flight(),
                        });
                    }
                    Err(now) => w = now,
                }
                continue;
            }
            // Nothing in flight: one CAS to initializing (pending, if marked, ends here).
            let start = Word(w.0 & !PENDING).with_state(ModuleState::Initializing);
            match self.word.cas(w, start) {
                Ok(()) => break from,
                Err(now) => w = now,
            }
        };
        // No last-CPU offline is in flight and none can start now, CPU onlines are refused:
        // per-package counts can only stay or drop to no lower than 1, so this check holds for
        // the whole initialization.
        if let Some(package) = self.cpus.first_package_without_cpu() {
            // Back to where it was, pending: a CPU may come online into the package.
            self.word.leave_initializing_pending(from);
            return Err(BeginInitError::PackageOffline { package });
        }
        Ok(InitTicket {
            gate: self,
            done: false,
        })
    }

    /// Withdraws a pending initialization (see [`HotplugGate::begin_init`]): hotplug is
    /// admitted by the pre-initialization rules again. Returns whether one was pending;
    /// an initialization in progress is not affected (end it with its ticket).
    pub fn cancel_init(&self) -> bool {
        self.word
            .cancel_pending(&[ModuleState::Uninitialized, ModuleState::Failed])
    }

    /// Whether initialization is pending: asked for by [`HotplugGate::begin_init`], waiting
    /// for hotplug operations in flight to finish.
    pub fn init_pending(&self) -> bool {
        let w = self.word.load();
        w.pending() && matches!(w.state(), ModuleState::Uninitialized | ModuleState::Failed)
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
    /// [`frozen_tdx_memory`]). Returns how many disjoint ranges that is. A memory removal is
    /// admitted iff it overlaps no PAMT block ([`super::tdx_metadata`]) and, when the plan
    /// uses Dynamic PAMT, no 2 MiB range holding pages of an added pair.
    ///
    /// On [`PublishError::SnapshotTooLarge`] the gate is initialized all the same but admits
    /// no memory: the module is configured, so falling back to the CMR rule would be unsound.
    /// On [`PublishError::MetadataTooLarge`] likewise it admits no removal.
    pub fn publish(mut self, plan: &Plan, memory: &MemoryMap) -> Result<usize, PublishError> {
        let ranges = frozen_tdx_memory(plan, memory);
        let written = self.gate.snapshot.write(&ranges);
        // Module-extension memory joins the refusal set here once the module takes some.
        let owned = refusal_set(plan, &[]);
        let recorded =
            self.gate
                .metadata
                .write(&owned)
                .map_err(|e| PublishError::MetadataTooLarge {
                    blocks: e.blocks,
                    capacity: e.capacity,
                });
        self.gate
            .dynamic_pamt
            .store(plan.limits().dynamic_pamt(), Ordering::Relaxed);
        self.gate.word.leave_initializing(ModuleState::Initialized);
        self.done = true;
        written.and(recorded).map(|()| ranges.len())
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
    fn pending_has_its_own_bit() {
        let w = Word(
            ModuleState::Failed.code()
                | PENDING
                | (u64::from(MAX_IN_FLIGHT) << IN_FLIGHT_SHIFT)
                | (u64::from(MAX_GUEST_KEYIDS) << KEYID_SHIFT),
        );
        assert!(w.pending());
        assert_eq!(
            (w.state(), w.in_flight(), w.guest_keyids()),
            (ModuleState::Failed, MAX_IN_FLIGHT, MAX_GUEST_KEYIDS)
        );
        let w = Word(w.0 & !PENDING);
        assert!(!w.pending());
        assert_eq!(w.in_flight(), MAX_IN_FLIGHT);
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
            assert!(!w.pending());
            let s = StateWord(AtomicU64::new(ModuleState::Initializing.code()));
            s.leave_initializing_pending(to);
            assert_eq!((s.load().state(), s.load().pending()), (to, true));
        }
    }
}
