//! Interior mutability of the software backends ([`super::FaultInjector`], the mock module):
//! `std`'s mutex with `std`, a spin lock without, so that the backends are `Sync` either way
//! (a UEFI program or a kernel drives them from several CPUs).

#[cfg(feature = "std")]
pub(crate) struct Lock<T>(std::sync::Mutex<T>);

#[cfg(feature = "std")]
impl<T> Lock<T> {
    pub(crate) fn new(value: T) -> Self {
        Lock(std::sync::Mutex::new(value))
    }

    /// Runs `f` with the value locked. A panic in an earlier holder does not poison the mock:
    /// every update is completed before the lock is released.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let mut guard = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }
}

#[cfg(not(feature = "std"))]
pub(crate) struct Lock<T>(spin::mutex::SpinMutex<T>);

#[cfg(not(feature = "std"))]
impl<T> Lock<T> {
    pub(crate) fn new(value: T) -> Self {
        Lock(spin::mutex::SpinMutex::new(value))
    }

    /// Runs `f` with the value locked. Callers never re-enter the lock from `f` (it would
    /// spin for ever), and hold it only for one update of the backend's state.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.0.lock())
    }
}

impl<T: core::fmt::Debug> core::fmt::Debug for Lock<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.with(|v| v.fmt(f))
    }
}
