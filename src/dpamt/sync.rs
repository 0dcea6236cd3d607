//! The atomics the Dynamic PAMT manager uses: `core`'s normally, loom's under `cfg(loom)` so
//! that `tests/loom_dpamt.rs` can explore every interleaving of [`super::DynamicPamt::get`] and
//! [`super::DynamicPamt::put`].

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Called by a waiter each time it finds its range in transition: a CPU spin hint, or a loom
/// yield point (loom requires one in every spin loop).
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(not(loom))]
    core::hint::spin_loop();
    #[cfg(loom)]
    loom::hint::spin_loop();
}
