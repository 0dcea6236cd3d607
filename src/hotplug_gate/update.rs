//! The runtime module update as the gate sees it: [`HotplugGate::begin_update`] and the
//! [`UpdateTicket`] that ends it.
//!
//! An update (TDH.SYS.SHUTDOWN, the new module loaded on every CPU, TDH.SYS.LP.INIT on every
//! CPU, TDH.SYS.UPDATE) runs in lock-step on every CPU and keeps the TDMR and PAMT layout
//! chosen at boot. So while it runs a CPU may neither come online (it would run LP.INIT against
//! a module that is shutting down) nor go offline (the lock-step needs every CPU), no new TD
//! may take a guest KeyID, and memory hotplug waits (the module answers nothing meanwhile);
//! afterwards the gate is initialized with the very same frozen memory and refusal set.
//!
//! The update is asked for the way initialization is: [`HotplugGate::begin_update`] marks it
//! *pending* in the state word when CPU onlines or offlines are in flight, new ones answer
//! `Busy` from then on, and the next call proceeds once those have finished, so a stream of
//! CPU hotplug cannot starve an update either.

use super::HotplugGate;
use super::error::BeginUpdateError;
use super::module_state::ModuleState;

impl HotplugGate {
    /// Starts a runtime module update: from initialized, once no CPU online or offline is in
    /// flight. Call it before TDH.SYS.SHUTDOWN, once the incoming module is known to take the
    /// frozen layout ([`crate::init::Update::check`]), and end the ticket once
    /// [`crate::init::Update::run`] (or `resume`) has the module running again.
    ///
    /// With nothing in flight it begins at once (one CAS). Otherwise it marks the update
    /// pending and answers [`BeginUpdateError::Busy`] with how many are left: new CPU onlines
    /// and offlines answer `Busy`, so the next call after they finish proceeds. A caller that
    /// gives up must [`cancel_update`](HotplugGate::cancel_update). Never blocks.
    ///
    /// While the ticket lives the state is [`ModuleState::Updating`]: memory additions and
    /// removals, CPU onlines and offlines, and new guest KeyIDs answer `Busy` (releasing one
    /// is allowed); [`frozen_memory`](HotplugGate::frozen_memory) and
    /// [`tdx_metadata`](HotplugGate::tdx_metadata) are unchanged.
    ///
    /// ```
    /// use tdmr::addr::PhysRange;
    /// use tdmr::hotplug_gate::{AdmitError, CpuOnlineError, GateConfig, HotplugGate, ModuleState};
    /// use tdmr::layout::Planner;
    /// use tdmr::memmap::parse_kernel_log;
    ///
    /// let log = "CMR: [0x100000, 0x77800000)\nCMR: [0x100000000, 0x407a000000)\n";
    /// let (memory, cmrs) = parse_kernel_log(log)?.into_parts();
    /// let gate = HotplugGate::new(cmrs.clone(), GateConfig::new(2, 1))?;
    /// gate.cpu_online(0, 0)?.finish();
    /// gate.begin_init()?.publish(&Planner::new().plan(&memory, &cmrs)?, &memory)?;
    /// let frozen: Vec<PhysRange> = gate.frozen_memory().collect();
    ///
    /// let update = gate.begin_update()?;
    /// assert_eq!(gate.state(), ModuleState::Updating);
    /// let block = PhysRange::from_base_size(0x200000000, 0x8000000)?;
    /// assert_eq!(gate.admit_memory(block).unwrap_err(), AdmitError::Busy);
    /// assert_eq!(gate.cpu_online(1, 0).unwrap_err(), CpuOnlineError::Busy);
    /// update.finish();
    ///
    /// assert_eq!(gate.state(), ModuleState::Initialized);
    /// assert_eq!(gate.frozen_memory().collect::<Vec<_>>(), frozen);
    /// assert!(gate.admit_memory(block).is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn begin_update(&self) -> Result<UpdateTicket<'_>, BeginUpdateError> {
        let mut w = self.word.load();
        loop {
            match w.state() {
                ModuleState::Initialized => {}
                ModuleState::Updating => return Err(BeginUpdateError::InProgress),
                state => return Err(BeginUpdateError::NotInitialized { state }),
            }
            if w.in_flight() > 0 {
                let in_flight = w.in_flight();
                if w.pending() {
                    return Err(BeginUpdateError::Busy { in_flight });
                }
                match self.word.cas(w, w.marked_pending()) {
                    Ok(()) => return Err(BeginUpdateError::Busy { in_flight }),
                    Err(now) => w = now,
                }
                continue;
            }
            match self.word.cas(w, w.begun(ModuleState::Updating)) {
                Ok(()) => return Ok(UpdateTicket { gate: self }),
                Err(now) => w = now,
            }
        }
    }

    /// Withdraws a pending update (see [`HotplugGate::begin_update`]): CPU hotplug is admitted
    /// again. Returns whether one was pending; an update in progress is not affected.
    pub fn cancel_update(&self) -> bool {
        self.word.cancel_pending(&[ModuleState::Initialized])
    }

    /// Whether an update is pending: asked for, waiting for CPU onlines and offlines in flight.
    pub fn update_pending(&self) -> bool {
        let w = self.word.load();
        w.pending() && w.state() == ModuleState::Initialized
    }
}

/// The right to end the one update in progress; see [`HotplugGate::begin_update`]. The update
/// ends initialized, with the same frozen memory, however it went: a module that refused the
/// update keeps running the old layout, and one that is gone after SHUTDOWN still owns what it
/// owned (only a reboot or TDH.SYS.DISABLE and a fresh start give it back). When an update
/// stops with the module shut down ([`crate::init::ModuleLeft`]), keep the ticket while
/// [`crate::init::Update::resume`] carries on: hotplug stays `Busy` until it has.
#[must_use = "dropping the ticket ends the update at once"]
#[derive(Debug)]
pub struct UpdateTicket<'g> {
    gate: &'g HotplugGate,
}

impl UpdateTicket<'_> {
    /// Ends the update: the gate is initialized again, TDX memory as frozen at boot.
    pub fn finish(self) {
        // Drop does it.
    }
}

impl Drop for UpdateTicket<'_> {
    fn drop(&mut self) {
        self.gate
            .word
            .leave_state(ModuleState::Updating, ModuleState::Initialized);
    }
}
