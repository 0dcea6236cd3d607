//! CPU online/offline rules and the guest KeyID count.
//!
//! * A CPU coming online before initialization is in flight until its token is finished, so
//!   initialization (which runs TDH.SYS.LP.INIT on every online CPU) either sees it online or
//!   has not begun. While initialization is in progress onlines are refused (`Busy`); while it
//!   is pending, too, except into a package that has no online CPU (initialization needs one
//!   there, and there are at most as many such onlines as CPUs, so they cannot starve it).
//!   Once initialized, the CPU must run TDH.SYS.LP.INIT itself before any other SEAMCALL.
//! * The last online CPU of a package may not go offline while initialization is pending or
//!   in progress (TDH.SYS.KEY.CONFIG runs once per package) or while guest KeyIDs are in use
//!   (writing back TD private memory needs a CPU in every package). That offline is in flight
//!   in the state word while it happens, which orders it against `begin_init` and guest KeyID
//!   acquisition.
//! * CPUs that leave for good differ from offline CPUs only at a package's last CPU: removing a
//!   whole package takes all its CPUs offline first, and the last one is refused while guest
//!   KeyIDs are in use. So a package is never hot-removed under a TD.
//!
//! Per-package online counts and per-CPU slots are plain atomics; nothing takes a lock.

use alloc::boxed::Box;

use super::HotplugGate;
use super::error::{CpuOfflineError, CpuOnlineError, KeyIdError};
use super::module_state::ModuleState;
use super::state::{MAX_GUEST_KEYIDS, MAX_IN_FLIGHT};
use super::sync::{AtomicU32, Ordering};

/// Slot value of an offline CPU; an online CPU holds `package + 1`.
const SLOT_OFFLINE: u32 = 0;
/// Slot value while the CPU is going online or offline.
const SLOT_MOVING: u32 = u32::MAX;

/// Per-CPU slots and per-package online counts.
pub(crate) struct CpuTable {
    slots: Box<[AtomicU32]>,
    online: Box<[AtomicU32]>,
}

impl CpuTable {
    pub(crate) fn new(cpus: u32, packages: u32) -> Self {
        CpuTable {
            slots: (0..cpus).map(|_| AtomicU32::new(SLOT_OFFLINE)).collect(),
            online: (0..packages).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    pub(crate) fn cpus(&self) -> u32 {
        self.slots.len() as u32
    }

    pub(crate) fn packages(&self) -> u32 {
        self.online.len() as u32
    }

    /// The first package with no online CPU.
    pub(crate) fn first_package_without_cpu(&self) -> Option<u32> {
        self.online
            .iter()
            .position(|c| c.load(Ordering::Acquire) == 0)
            .map(|p| p as u32)
    }

    pub(crate) fn online_in(&self, package: u32) -> Option<u32> {
        self.online
            .get(package as usize)
            .map(|c| c.load(Ordering::Acquire))
    }

    pub(crate) fn package_of(&self, cpu: u32) -> Option<u32> {
        match self.slots.get(cpu as usize)?.load(Ordering::Acquire) {
            SLOT_OFFLINE | SLOT_MOVING => None,
            p => Some(p - 1),
        }
    }
}

/// A CPU coming online. Bring the CPU up (running TDH.SYS.LP.INIT first when
/// [`lp_init_required`](CpuOnline::lp_init_required)), then [`finish`](CpuOnline::finish).
/// Dropping it unfinished means the online failed: the CPU stays offline.
#[must_use = "an unfinished CPU online is abandoned when dropped"]
#[derive(Debug)]
pub struct CpuOnline<'g> {
    gate: &'g HotplugGate,
    cpu: u32,
    package: u32,
    lp_init: bool,
    finished: bool,
}

impl CpuOnline<'_> {
    /// Whether the CPU must run TDH.SYS.LP.INIT before use: true once the module is
    /// initialized. Before that, initialization runs it on every CPU online when it begins.
    #[inline]
    pub fn lp_init_required(&self) -> bool {
        self.lp_init
    }

    /// The CPU.
    #[inline]
    pub fn cpu(&self) -> u32 {
        self.cpu
    }

    /// Its package.
    #[inline]
    pub fn package(&self) -> u32 {
        self.package
    }

    /// The CPU is up: count it online in its package.
    pub fn finish(mut self) {
        let table = &self.gate.cpus;
        if let (Some(count), Some(slot)) = (
            table.online.get(self.package as usize),
            table.slots.get(self.cpu as usize),
        ) {
            count.fetch_add(1, Ordering::AcqRel);
            slot.store(self.package + 1, Ordering::Release);
        }
        self.finished = true;
        // Drop ends the in-flight operation after the count is visible.
    }
}

impl Drop for CpuOnline<'_> {
    fn drop(&mut self) {
        if !self.finished {
            // Abandoned: the CPU stays offline.
            if let Some(slot) = self.gate.cpus.slots.get(self.cpu as usize) {
                slot.store(SLOT_OFFLINE, Ordering::Release);
            }
        }
        // Every online is in flight until it ends: before initialization so that
        // begin_init sees it, after so that begin_update does.
        self.gate.word.leave();
    }
}

impl HotplugGate {
    /// Decides whether `cpu` of `package` may come online, and whether it must run
    /// TDH.SYS.LP.INIT (see [`CpuOnline`]). Refused with [`CpuOnlineError::Busy`] while
    /// initialization is in progress, and while it is pending unless the package has no online
    /// CPU (initialization needs one there); while a runtime update is pending or in progress;
    /// never blocks.
    pub fn cpu_online(&self, cpu: u32, package: u32) -> Result<CpuOnline<'_>, CpuOnlineError> {
        let table = &self.cpus;
        let Some(slot) = table.slots.get(cpu as usize) else {
            return Err(CpuOnlineError::NoSuchCpu {
                cpu,
                cpus: table.cpus(),
            });
        };
        if package >= table.packages() {
            return Err(CpuOnlineError::NoSuchPackage {
                package,
                packages: table.packages(),
            });
        }
        match slot.compare_exchange(
            SLOT_OFFLINE,
            SLOT_MOVING,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => {}
            Err(SLOT_MOVING) => return Err(CpuOnlineError::CpuBusy { cpu }),
            Err(p) => {
                return Err(CpuOnlineError::AlreadyOnline {
                    cpu,
                    package: p - 1,
                });
            }
        }
        let refuse = |e| {
            slot.store(SLOT_OFFLINE, Ordering::Release);
            Err(e)
        };
        let mut w = self.word.load();
        loop {
            let lp_init = match w.state() {
                ModuleState::Initializing | ModuleState::Updating => {
                    return refuse(CpuOnlineError::Busy);
                }
                // An update is pending: the CPU operations in flight drain.
                ModuleState::Initialized if w.pending() => return refuse(CpuOnlineError::Busy),
                ModuleState::Initialized => true,
                // Initialization is pending: only a CPU it needs (the first of its package)
                // may still come online, so the operations in flight drain.
                _ if w.pending() && table.online_in(package).is_some_and(|c| c > 0) => {
                    return refuse(CpuOnlineError::Busy);
                }
                ModuleState::Uninitialized | ModuleState::Failed => false,
            };
            match self.word.try_enter(w) {
                Some(Ok(())) => {
                    return Ok(CpuOnline {
                        gate: self,
                        cpu,
                        package,
                        lp_init,
                        finished: false,
                    });
                }
                Some(Err(now)) => w = now,
                None => {
                    return refuse(CpuOnlineError::TooManyInFlight {
                        limit: MAX_IN_FLIGHT,
                    });
                }
            }
        }
    }

    /// Takes `cpu` of `package` offline in the gate's books, unless it is the last online CPU
    /// of its package while initialization is pending or in progress
    /// ([`CpuOfflineError::Busy`]) or guest KeyIDs are in use
    /// ([`CpuOfflineError::GuestKeyIdsInUse`]), or a runtime update is pending or in progress
    /// (any CPU: [`CpuOfflineError::Busy`]). Never blocks.
    ///
    /// Hot-removing a package means taking all its CPUs offline first, so while guest KeyIDs
    /// exist it is refused at its last CPU: the package keeps that CPU (and the others may come
    /// back). Physical removal is then the platform's to refuse as well.
    pub fn cpu_offline(&self, cpu: u32, package: u32) -> Result<(), CpuOfflineError> {
        let table = &self.cpus;
        let Some(slot) = table.slots.get(cpu as usize) else {
            return Err(CpuOfflineError::NoSuchCpu {
                cpu,
                cpus: table.cpus(),
            });
        };
        let Some(count) = table.online.get(package as usize) else {
            return Err(CpuOfflineError::NoSuchPackage {
                package,
                packages: table.packages(),
            });
        };
        match slot.compare_exchange(
            package + 1,
            SLOT_MOVING,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => {}
            Err(SLOT_OFFLINE) => return Err(CpuOfflineError::NotOnline { cpu }),
            Err(SLOT_MOVING) => return Err(CpuOfflineError::CpuBusy { cpu }),
            Err(p) => {
                return Err(CpuOfflineError::WrongPackage {
                    cpu,
                    package,
                    online_in: p - 1,
                });
            }
        }
        let result = self
            .enter_offline_after_init(cpu, package)
            .and_then(|after_init| {
                let result = self.uncount(count, cpu, package);
                if after_init {
                    self.word.leave();
                }
                result
            });
        let back = if result.is_ok() {
            SLOT_OFFLINE
        } else {
            package + 1
        };
        slot.store(back, Ordering::Release);
        result
    }

    /// Once initialized, every offline is in flight while it happens, so that a runtime update
    /// begins only after it; refused while an update runs or is pending. Whether it went in
    /// flight (before initialization only the last CPU of a package does, in `uncount`).
    fn enter_offline_after_init(&self, cpu: u32, package: u32) -> Result<bool, CpuOfflineError> {
        let mut w = self.word.load();
        loop {
            match w.state() {
                ModuleState::Updating => return Err(CpuOfflineError::Busy { cpu, package }),
                ModuleState::Initialized if w.pending() => {
                    return Err(CpuOfflineError::Busy { cpu, package });
                }
                ModuleState::Initialized => {}
                _ => return Ok(false),
            }
            match self.word.try_enter(w) {
                Some(Ok(())) => return Ok(true),
                Some(Err(now)) => w = now,
                None => {
                    return Err(CpuOfflineError::TooManyInFlight {
                        limit: MAX_IN_FLIGHT,
                    });
                }
            }
        }
    }

    /// Drops one from a package's online count, with the last-CPU rule.
    fn uncount(&self, count: &AtomicU32, cpu: u32, package: u32) -> Result<(), CpuOfflineError> {
        let mut c = count.load(Ordering::Acquire);
        loop {
            if c >= 2 {
                match count.compare_exchange(c, c - 1, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return Ok(()),
                    Err(now) => {
                        c = now;
                        continue;
                    }
                }
            }
            if c == 0 {
                // The slot said online, and the count is raised before the slot: not reached.
                return Err(CpuOfflineError::NotOnline { cpu });
            }
            // The last CPU: go in flight so that begin_init and guest KeyIDs are ordered
            // against this offline.
            let mut w = self.word.load();
            loop {
                if matches!(w.state(), ModuleState::Initializing | ModuleState::Updating)
                    || w.pending()
                {
                    return Err(CpuOfflineError::Busy { cpu, package });
                }
                if w.guest_keyids() > 0 {
                    return Err(CpuOfflineError::GuestKeyIdsInUse {
                        cpu,
                        package,
                        guest_keyids: w.guest_keyids(),
                    });
                }
                match self.word.try_enter(w) {
                    Some(Ok(())) => break,
                    Some(Err(now)) => w = now,
                    None => {
                        return Err(CpuOfflineError::TooManyInFlight {
                            limit: MAX_IN_FLIGHT,
                        });
                    }
                }
            }
            let last = count.compare_exchange(1, 0, Ordering::AcqRel, Ordering::Acquire);
            self.word.leave();
            match last {
                Ok(_) => return Ok(()),
                // Another CPU of the package came online meanwhile: not the last any more.
                Err(now) => c = now,
            }
        }
    }

    /// Counts one more guest KeyID in use. Needs an initialized module and an online CPU in
    /// every package; from then on the last CPU of a package cannot go offline.
    pub fn acquire_guest_keyid(&self) -> Result<(), KeyIdError> {
        let mut w = self.word.load();
        loop {
            match w.state() {
                ModuleState::Initialized => {}
                // No TD starts while the module is being replaced.
                ModuleState::Updating => return Err(KeyIdError::Busy),
                state => return Err(KeyIdError::NotInitialized { state }),
            }
            // Once initialized, CPU onlines and offlines are in flight while they happen; a
            // last-CPU offline among them must not race a new KeyID.
            if w.in_flight() > 0 {
                return Err(KeyIdError::Busy);
            }
            if w.guest_keyids() == MAX_GUEST_KEYIDS {
                return Err(KeyIdError::TooMany {
                    limit: MAX_GUEST_KEYIDS,
                });
            }
            match self.word.try_add_keyid(w) {
                Ok(()) => break,
                Err(now) => w = now,
            }
        }
        // No last-CPU offline is in flight and none can start now: counts cannot reach 0.
        if let Some(package) = self.cpus.first_package_without_cpu() {
            self.word.undo_add_keyid();
            return Err(KeyIdError::PackageOffline { package });
        }
        Ok(())
    }

    /// Counts one guest KeyID fewer in use.
    pub fn release_guest_keyid(&self) -> Result<(), KeyIdError> {
        let mut w = self.word.load();
        loop {
            if w.guest_keyids() == 0 {
                return Err(KeyIdError::NoneInUse);
            }
            match self.word.try_remove_keyid(w) {
                Ok(()) => return Ok(()),
                Err(now) => w = now,
            }
        }
    }
}
