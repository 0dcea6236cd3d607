//! [`SeamLoader`]: the P-SEAMLDR as its own backend (documented there).

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::MockModule;
use super::profile::ModuleProfile;
use super::update::{self, Install};
use crate::init::{IncomingModule, ModuleLoader};
use crate::tdx::status::{Status, TDX_SEAMCALL_VMFAILINVALID, TDX_SUCCESS};
use crate::tdx::{Output, Regs};

/// The mock's P-SEAMLDR as its own backend, installing a [`ModuleProfile`] into a
/// [`MockModule`] on every LP for a runtime update ([`crate::init::Update`]).
///
/// SEAMLDR.INSTALL (leaf `0x8000000000000001`) runs on one LP at a time: a call while another
/// LP is inside the loader answers `TDX_SEAMCALL_VMFAILINVALID` (how a busy P-SEAMLDR
/// answers). Otherwise, in order (codes the mock's own; the references name no P-SEAMLDR
/// statuses):
///
/// | check | status |
/// |---|---|
/// | the module is not shut down for an update (TDH.SYS.SHUTDOWN not done) | [`SeamLoader::MODULE_RUNNING`] |
/// | another image is being installed | [`SeamLoader::OTHER_IMAGE`] |
/// | the platform's update budget is spent (first install of an update) | [`SeamLoader::NO_UPDATES_LEFT`] |
///
/// An install on an LP that has it already succeeds again. Once every LP has the image, the
/// new module replaces the old one (see `update.rs`), the budget goes down by one, and further
/// installs answer [`SeamLoader::MODULE_RUNNING`] until the next TDH.SYS.SHUTDOWN.
///
/// ```
/// use tdmr::init::ModuleLoader;
/// use tdmr::memmap::Cmr;
/// use tdmr::mock::{MockModule, Platform, SeamLoader};
/// let m = MockModule::new(Platform::new(&[Cmr::new(0x10_0000, 0x7ff0_0000)])?);
/// let loader = SeamLoader::new(&m, "1.5.25".parse()?).with_remaining_updates(3);
/// assert_eq!(loader.incoming().version.to_string(), "1.5.25");
/// // Nothing to install into: the module was not shut down.
/// assert_eq!(loader.install().status.raw(), SeamLoader::MODULE_RUNNING);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SeamLoader<'m> {
    module: &'m MockModule,
    image: ModuleProfile,
    busy: AtomicBool,
    /// Updates left; `u32::MAX` for no limit.
    remaining: AtomicU32,
}

impl<'m> SeamLoader<'m> {
    /// SEAMLDR.INSTALL refused: the TDX module is not shut down for an update.
    pub const MODULE_RUNNING: u64 = 0x8000_0000_0000_0001;
    /// SEAMLDR.INSTALL refused: another image is being installed.
    pub const OTHER_IMAGE: u64 = 0x8000_0000_0000_0002;
    /// SEAMLDR.INSTALL refused: no runtime updates left on this platform.
    pub const NO_UPDATES_LEFT: u64 = 0x8000_0000_0000_0003;

    /// A loader installing `image` into `module`, with no update budget.
    pub fn new(module: &'m MockModule, image: ModuleProfile) -> Self {
        SeamLoader {
            module,
            image,
            busy: AtomicBool::new(false),
            remaining: AtomicU32::new(u32::MAX),
        }
    }

    /// With `n` runtime updates left (`num_remaining_updates`).
    pub fn with_remaining_updates(self, n: u32) -> Self {
        self.remaining.store(n.min(u32::MAX - 1), Ordering::Relaxed);
        self
    }

    /// The image it installs.
    pub fn image(&self) -> &ModuleProfile {
        &self.image
    }

    /// Holds the loader as if an LP were inside SEAMLDR.INSTALL, until the guard drops: every
    /// install meanwhile answers `TDX_SEAMCALL_VMFAILINVALID`. `None` if it is held already.
    pub fn hold(&self) -> Option<LoaderHeld<'_>> {
        (!self.busy.swap(true, Ordering::Acquire)).then(|| LoaderHeld { busy: &self.busy })
    }
}

/// The loader held busy by [`SeamLoader::hold`].
#[derive(Debug)]
pub struct LoaderHeld<'a> {
    busy: &'a AtomicBool,
}

impl Drop for LoaderHeld<'_> {
    fn drop(&mut self) {
        self.busy.store(false, Ordering::Release);
    }
}

impl ModuleLoader for SeamLoader<'_> {
    fn incoming(&self) -> IncomingModule {
        let m = &self.image;
        IncomingModule {
            version: m.version(),
            features0: m.features0(),
            limits: m.limits(),
            extension_pages: m.extension_pages().into(),
            add_on_features: m.add_on_features(),
            handoff_versions: (m.min_handoff_version(), m.handoff_version()),
        }
    }

    fn remaining_updates(&self) -> Option<u32> {
        match self.remaining.load(Ordering::Relaxed) {
            u32::MAX => None,
            n => Some(n),
        }
    }

    fn install(&self) -> Output {
        let answer = |raw: u64| Output::new(Status::new(raw), Regs::ZERO);
        if self.busy.swap(true, Ordering::Acquire) {
            return answer(TDX_SEAMCALL_VMFAILINVALID);
        }
        let lp = self.module.current_lp();
        let budget = self.remaining.load(Ordering::Relaxed);
        let raw = self.module.with_state(|p, s| {
            let first = s.handoff.incoming.is_none();
            if first && budget == 0 && s.handoff.version.is_some() {
                return Self::NO_UPDATES_LEFT;
            }
            match update::install(p, s, lp, &self.image) {
                Install::NotShutDown => Self::MODULE_RUNNING,
                Install::OtherImage => Self::OTHER_IMAGE,
                Install::Done => TDX_SUCCESS,
                Install::Swapped => {
                    if budget != u32::MAX {
                        self.remaining
                            .store(budget.saturating_sub(1), Ordering::Relaxed);
                    }
                    TDX_SUCCESS
                }
            }
        });
        self.busy.store(false, Ordering::Release);
        answer(raw)
    }
}
